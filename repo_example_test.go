package notsotuf_test

import (
	"context"
	"fmt"
	"time"

	"github.com/notsotuf/notsotuf"
	"github.com/spf13/afero"
)

// A repository on an in-memory file system: create it, publish two
// releases (the second with a patch from the first), check it as a client
// would, and withdraw the first release.
func ExampleRepository() {
	fsys := afero.NewMemMapFs()
	for v, msg := range map[string]string{"1.0": "hello", "1.1": "hello, world"} {
		_ = afero.WriteFile(fsys, "/build/"+v+"/app", []byte("#!/bin/sh\necho "+msg+"\n"), 0o755)
	}
	repo := &notsotuf.Repository{
		Fs:     fsys,
		Config: notsotuf.DefaultConfig("demo"), // ./repository, ./keystore
		Now:    func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
	if err := repo.Init(); err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	for _, v := range []string{"1.0", "1.1"} {
		res, err := repo.Add(ctx, notsotuf.AddOptions{Version: v, BundleDir: "/build/" + v, UserMeta: []byte(`{"changes": ["..."]}`)})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Print(res.Archive.Name)
		if res.Patch != nil {
			fmt.Printf(" + %s from %s", res.Patch.Name, res.From)
		}
		fmt.Println()
	}
	report, err := repo.Verify(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("verified:", report.Targets, "files,", report.Patches, "patch")
	if err := repo.Remove(ctx, "1.0"); err != nil {
		fmt.Println(err)
		return
	}
	st, _ := repo.Status()
	for _, r := range st.Roles {
		fmt.Println(r.Role, r.Version, r.Expires.Format(time.DateOnly))
	}
	// Output:
	// demo-1.0.tar.gz
	// demo-1.1.tar.gz + demo-1.1.patch from 1.0
	// verified: 3 files, 1 patch
	// root 1 2027-01-01
	// targets 4 2026-01-31
	// snapshot 4 2026-01-08
	// timestamp 4 2026-01-02
}

// Keeping metadata fresh from cron: Refresh re-signs what expires within
// the given time (here the timestamp, which lives one day).
func ExampleRepository_Refresh() {
	fsys := afero.NewMemMapFs()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	repo := &notsotuf.Repository{Fs: fsys, Config: notsotuf.DefaultConfig("demo"), Now: func() time.Time { return now }}
	if err := repo.Init(); err != nil {
		fmt.Println(err)
		return
	}
	now = now.Add(20 * time.Hour)
	res, err := repo.Refresh(6 * time.Hour)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Resigned, res.Expires)
	// Output: [timestamp] [2026-01-02T20:00:00Z]
}

// Rotating a key: the new root version is signed by the old and the new
// root keys, and targets is re-signed with its new key.
func ExampleRepository_ReplaceKey() {
	fsys := afero.NewMemMapFs()
	repo := &notsotuf.Repository{Fs: fsys, Config: notsotuf.DefaultConfig("demo"),
		Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }}
	if err := repo.Init(); err != nil {
		fmt.Println(err)
		return
	}
	if err := repo.ReplaceKey(notsotuf.RoleTargets, "targets", "targets-2026", false); err != nil {
		fmt.Println(err)
		return
	}
	rep, err := repo.Verify(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("root versions:", rep.RootVersions, "targets keys:", repo.Config.KeyMap[notsotuf.RoleTargets])
	// Output: root versions: 2 targets keys: [targets-2026]
}
