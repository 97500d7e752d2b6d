package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/notsotuf/notsotuf"
	"github.com/spf13/afero"
)

// TestSelfUpdateCycle publishes two builds of this program, serves them on
// loopback, runs version 1.0 and checks that it installs 2.0 and
// re-executes into it.
func TestSelfUpdateCycle(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the Windows path (install from a copy) is built, not run, here")
	}
	if testing.Short() {
		t.Skip("builds the example twice")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	tmp := t.TempDir()
	ctx := context.Background()

	// A repository, whose root the builds embed (through a build overlay,
	// so this directory's root.json stays as it is).
	cfg := notsotuf.DefaultConfig(appName)
	cfg.RepoDir, cfg.KeysDir = filepath.Join(tmp, "repository"), filepath.Join(tmp, "keystore")
	repo := &notsotuf.Repository{Fs: afero.NewOsFs(), Config: cfg}
	if err := repo.Init(); err != nil {
		t.Fatal(err)
	}
	here, err := filepath.Abs("root.json")
	if err != nil {
		t.Fatal(err)
	}
	overlay, err := json.Marshal(map[string]any{"Replace": map[string]string{here: filepath.Join(cfg.RepoDir, "metadata", "root.json")}})
	if err != nil {
		t.Fatal(err)
	}
	overlayPath := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(overlayPath, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0", "2.0"} {
		bundle := filepath.Join(tmp, "bundle-"+v)
		cmd := exec.Command(goBin, "build", "-overlay", overlayPath, "-ldflags", "-s -w -X main.version="+v, "-o", filepath.Join(bundle, appName), ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", v, err, out)
		}
		// A patch between two builds takes a while to compute: publish
		// archives only (the client downloads the full archive).
		if _, err := repo.Add(ctx, notsotuf.AddOptions{Version: v, BundleDir: bundle, SkipPatch: true}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(cfg.RepoDir)))
	defer srv.Close()

	// Install 1.0 and run it.
	install := filepath.Join(tmp, "app")
	if err := os.MkdirAll(install, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(tmp, "bundle-1.0", appName))
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(install, appName)
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	runApp := func() string {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), "SELFUPDATE_URL="+srv.URL, "SELFUPDATE_CACHE="+filepath.Join(tmp, "cache"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", exe, err, out)
		}
		return string(out)
	}
	out := runApp()
	want := "selfupdate 1.0\nupdating selfupdate 1.0 -> 2.0\nselfupdate 2.0\nhello from selfupdate 2.0\n"
	if out != want {
		t.Fatalf("first run:\n%s\nwant:\n%s", out, want)
	}
	// The next start is 2.0, up to date.
	if out := runApp(); out != "selfupdate 2.0\nhello from selfupdate 2.0\n" {
		t.Fatalf("second run:\n%s", out)
	}
	if strings.Contains(out, "level=WARN") {
		t.Errorf("warnings: %s", out)
	}
}
