//go:build unix

package notsotuf

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/afero"
)

// devFs is the OS file system where the entries at and under mount say
// they are on another device, as a file system mounted there does.
type devFs struct {
	afero.Fs
	mount string
}

func (f devFs) under(name string) bool {
	name = filepath.Clean(name)
	return name == f.mount || strings.HasPrefix(name, f.mount+string(filepath.Separator))
}

func (f devFs) Stat(name string) (os.FileInfo, error) {
	fi, err := f.Fs.Stat(name)
	if err == nil && f.under(name) {
		fi = otherDev{fi}
	}
	return fi, err
}

func (f devFs) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	fi, ok, err := f.Fs.(afero.Lstater).LstatIfPossible(name)
	if err == nil && f.under(name) {
		fi = otherDev{fi}
	}
	return fi, ok, err
}

type otherDev struct{ os.FileInfo }

func (o otherDev) Sys() any {
	st := *o.FileInfo.Sys().(*syscall.Stat_t)
	st.Dev++
	return &st
}

// TestUpdateRefusesMountInside: a file system mounted inside the install
// directory (a container volume at app/data) would move with the tree at
// the swap and its files be deleted with the previous tree: the update is
// refused before its download, and a staged update is not swapped in,
// with the install directory and the mount's files untouched.
func TestUpdateRefusesMountInside(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := handOffReleases(t, repo)
	want := withUser(rels[0].files)
	ctx := context.Background()

	t.Run("update", func(t *testing.T) {
		fsys, cfg, _ := installed10(t, repo)
		mount := filepath.Join(cfg.InstallDir, "data")
		cfg.Fs = devFs{fsys, mount}
		repo.resetRequests()
		_, err := newTestClient(t, cfg).Update(ctx)
		var me *MountError
		if !errors.As(err, &me) || len(me.Paths) != 1 || me.Paths[0] != mount {
			t.Fatalf("err = %v", err)
		}
		if !strings.Contains(err.Error(), "mount it outside the install directory") {
			t.Errorf("err = %v", err)
		}
		if got := targetRequests(repo); len(got) != 0 {
			t.Errorf("downloaded %q", got)
		}
		wantTree(t, fsys, cfg.InstallDir, want)
	})
	t.Run("staged", func(t *testing.T) {
		fsys, cfg, _ := installed10(t, repo)
		c := newTestClient(t, cfg)
		u, err := c.Check(ctx)
		if err != nil || u == nil {
			t.Fatalf("check: %v %v", u, err)
		}
		if err := c.Stage(ctx, u); err != nil {
			t.Fatal(err)
		}
		// The volume is mounted after the update was staged.
		cfg.Fs = devFs{fsys, filepath.Join(cfg.InstallDir, "data")}
		c = newTestClient(t, cfg)
		err = c.Install(ctx, u)
		var me *MountError
		if !errors.As(err, &me) {
			t.Fatalf("err = %v", err)
		}
		wantTree(t, fsys, cfg.InstallDir, want)
		if s, err := c.Staged(); err != nil || s == nil {
			t.Fatalf("the update is no longer staged: %v", err)
		}
		// Once the volume is mounted elsewhere, the staged update goes in.
		cfg.Fs = fsys
		if err := newTestClient(t, cfg).Install(ctx, u); err != nil {
			t.Fatal(err)
		}
		wantTree(t, fsys, cfg.InstallDir, withUser(rels[1].files))
	})
}
