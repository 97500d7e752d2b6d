package notsotuf_test

import (
	"context"
	"fmt"
	"log"

	"github.com/notsotuf/notsotuf"
	"github.com/spf13/afero"
)

func ExampleParseVersion() {
	v, err := notsotuf.ParseVersion("2.0.0-RC.1")
	if err != nil {
		log.Fatal(err)
	}
	final, _ := notsotuf.ParseVersion("2.0.0")
	fmt.Println(v, v.IsPrerelease(), v.Compare(final), v.OnChannel(""), v.OnChannel("rc"))
	// Output: 2.0.0rc1 true -1 false true
}

func ExampleDeploy() {
	// A published repository (here in memory; usually ./repository on disk).
	src := afero.NewMemMapFs()
	for _, name := range []string{"1.root.json", "root.json", "targets.json", "snapshot.json", "timestamp.json"} {
		afero.WriteFile(src, "repository/metadata/"+name, []byte("{}"), 0o644)
	}
	afero.WriteFile(src, "repository/targets/myapp-1.0.tar.gz", []byte("archive"), 0o644)

	// The web root, e.g. afero.NewBasePathFs(afero.NewOsFs(), "/srv/www").
	dst := afero.NewMemMapFs()
	rep, err := notsotuf.Deploy(src, "repository", dst, "myapp")
	if err != nil {
		log.Fatal(err)
	}
	for _, name := range rep.Copied {
		fmt.Println(name)
	}
	rep, _ = notsotuf.Deploy(src, "repository", dst, "myapp")
	fmt.Println("second run copies", len(rep.Copied), "files")
	// Output:
	// targets/myapp-1.0.tar.gz
	// metadata/1.root.json
	// metadata/root.json
	// metadata/targets.json
	// metadata/snapshot.json
	// metadata/timestamp.json
	// second run copies 0 files
}

func ExampleMetadataClient() {
	// A plain TUF client over any TUF repository: trusted metadata in a
	// directory, refreshed following the TUF client workflow.
	c := &notsotuf.MetadataClient{
		Dir:         "/var/lib/myapp/tuf",
		MetadataURL: "https://updates.example.com/metadata",
	}
	ctx := context.Background()
	if err := c.Refresh(ctx); err != nil {
		log.Fatal(err) // errors.Is(err, notsotuf.ErrSecurity) for a failed check
	}
	path, err := c.Download(ctx, "myapp-1.0.tar.gz", "https://updates.example.com/targets", "/var/lib/myapp/downloads")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("verified", path)
}
