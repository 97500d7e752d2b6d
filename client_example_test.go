package notsotuf_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/notsotuf/notsotuf"
	"github.com/spf13/afero"
)

// exampleConfig serves the tufup-made repository in testdata over loopback
// HTTP and returns a client configuration for its app at version 1.0.0.
func exampleConfig() (notsotuf.ClientConfig, func()) {
	srv := httptest.NewServer(http.FileServer(http.Dir("testdata/tufup-demoapp")))
	root, err := os.ReadFile("testdata/tufup-demoapp/root.json") // an app embeds this
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "notsotuf-example-")
	if err != nil {
		log.Fatal(err)
	}
	return notsotuf.ClientConfig{
			App:            "demoapp",
			CurrentVersion: "1.0.0",
			InstallDir:     filepath.Join(dir, "app"),
			CacheDir:       filepath.Join(dir, "cache"),
			MetadataURL:    srv.URL + "/metadata",
			TargetsURL:     srv.URL + "/targets",
			TrustedRoot:    root,
			Fs:             afero.NewOsFs(),
			Now:            func() time.Time { return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) },
		}, func() {
			srv.Close()
			os.RemoveAll(dir)
		}
}

func ExampleClient_Check() {
	cfg, done := exampleConfig()
	defer done()
	cfg.Channel = "a" // accept alphas, betas and release candidates
	c, err := notsotuf.NewClient(cfg)
	if err != nil {
		log.Fatal(err)
	}
	u, err := c.Check(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	if u == nil {
		fmt.Println("up to date")
		return
	}
	fmt.Printf("%s is available: %s\n", u.Version, u.UserMeta)
	for _, f := range u.Plan.Files {
		fmt.Println("download", f.Name)
	}
	// Output:
	// 2.0.0a1 is available: {"changes":["release 2.0.0a1"],"channel":"pre"}
	// download demoapp-2.0.0a1.tar.gz
}

func ExampleClient_Update() {
	cfg, done := exampleConfig()
	defer done()
	cfg.OnProgress = func(p notsotuf.Progress) {
		if p.Phase == notsotuf.PhaseDownload && p.Done == p.Total {
			fmt.Printf("downloaded %d bytes\n", p.Total)
		}
	}
	c, err := notsotuf.NewClient(cfg)
	if err != nil {
		log.Fatal(err)
	}
	// Finish an install that a crash interrupted, if any.
	if err := c.Recover(); err != nil {
		log.Fatal(err)
	}
	u, err := c.Update(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("installed", u.Version)
	version, err := os.ReadFile(filepath.Join(cfg.InstallDir, "VERSION"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("VERSION: %s", version)

	// The same process asking again: nothing to do.
	u, err = c.Update(context.Background())
	fmt.Println(u == nil, err)
	// Output:
	// downloaded 2131859 bytes
	// installed 1.1.0
	// VERSION: 1.1.0
	// true <nil>
}
