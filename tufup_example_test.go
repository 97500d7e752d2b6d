package notsotuf_test

import (
	"fmt"
	"log"

	"github.com/notsotuf/notsotuf"
	"github.com/spf13/afero"
)

// Import the tufup fixture repository: the configuration publishes into the
// same repository with tufup's keys, so `notsotuf add` continues its
// release history.
func ExampleImportTufup() {
	// Read the files from disk, write (nothing, here) in memory.
	fsys := afero.NewCopyOnWriteFs(afero.NewReadOnlyFs(afero.NewOsFs()), afero.NewMemMapFs())
	res, err := notsotuf.ImportTufup(fsys, notsotuf.TufupImport{
		Config:  "testdata/tufup-demoapp/tufup-repo-config.json",
		RepoDir: "testdata/tufup-demoapp",      // the fixture is laid out
		KeysDir: "testdata/tufup-demoapp/keys", // unlike its config says
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("app:", res.Config.AppName, "keys:", res.Config.KeysDir)
	for _, k := range res.Keys {
		fmt.Println(k.Name, k.Roles, k.ID[:12], "private:", k.Private)
	}
	// Then: res.Config.Save(fsys, notsotuf.ConfigFile), and
	// (&notsotuf.Repository{Fs: fsys, Config: res.Config}).Verify(ctx).

	// Output:
	// app: demoapp keys: testdata/tufup-demoapp/keys
	// root [root] c10a2f7bc998 private: true
	// targets [targets] 62b4819ce6cf private: true
	// snapshot [snapshot] aaf6c1a7d9f7 private: true
	// timestamp [timestamp] f0c5866f3a72 private: true
}
