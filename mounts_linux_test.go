package notsotuf

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestUpdateRefusesRealMount is TestUpdateRefusesMountInside with a real
// tmpfs mounted inside the install directory (needs the right to mount:
// root here and in CI; skipped elsewhere). Without the check, the swap
// moved the mount to the previous tree's name and its clean-up deleted
// the files in it.
func TestUpdateRefusesRealMount(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := handOffReleases(t, repo)
	fsys, cfg, _ := installed10(t, repo)
	mount := filepath.Join(cfg.InstallDir, "volume")
	if err := os.Mkdir(mount, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("notsotuf-test", mount, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mount, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mount, err)
		}
	})
	db := filepath.Join(mount, "db")
	if err := os.WriteFile(db, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := newTestClient(t, cfg).Update(context.Background())
	var me *MountError
	if !errors.As(err, &me) || len(me.Paths) != 1 || me.Paths[0] != mount {
		t.Fatalf("err = %v", err)
	}
	if b, err := os.ReadFile(db); err != nil || string(b) != "precious" {
		t.Fatalf("the mount's file: %q %v", b, err)
	}
	want := withUser(rels[0].files)
	got := treeManifest(t, fsys, cfg.InstallDir)
	delete(got, "volume")
	delete(got, "volume/db")
	if !maps2Equal(got, want) {
		t.Errorf("install directory changed: %v", got)
	}
}

// TestRemoveTreeKeepsMounts: a previous tree holding a mounted file
// system (mounted after the checks, or before a crash) is not emptied by
// the clean-up: the tree stays, with the mount's files, and the next
// recover tries again.
func TestRemoveTreeKeepsMounts(t *testing.T) {
	repo := newTestRepo(t, false)
	handOffReleases(t, repo)
	_, cfg, _ := installed10(t, repo)
	c := newTestClient(t, cfg)
	in := c.installer()
	name, err := in.newOldName()
	if err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(filepath.Dir(cfg.InstallDir), name)
	mount := filepath.Join(old, "volume")
	if err := os.MkdirAll(mount, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("notsotuf-test", mount, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mount, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mount, err)
		}
	})
	db := filepath.Join(mount, "db")
	if err := os.WriteFile(db, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Recover(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(db); err != nil || string(b) != "precious" {
		t.Fatalf("the mount's file after recover: %q %v", b, err)
	}
}
