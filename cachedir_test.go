package notsotuf

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/spf13/afero"
)

// TestCheckCacheDir: a cache (or metadata) directory that another user
// can write to is reported as an *UnsafeCacheError, sticky or not; Check
// logs it unless the caller asked CheckCacheDir itself; nothing is
// blocked.
func TestCheckCacheDir(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("permission bits as on Unix")
	}
	repo := newTestRepo(t, false)
	repo.publishRelease("app", buildRelease(t, "1.0", releaseFiles(1)), nil, false, "")
	for _, tc := range []struct {
		name        string
		cache, meta os.FileMode // 0: not created
		owner       int         // chown the cache to this uid (as root only)
		want        string      // "" means safe
	}{
		{"missing", 0, 0, 0, ""},
		{"private", 0o755, 0o700, 0, ""},
		{"world-writable", 0o777, 0, 0, "is writable by group and others (mode drwxrwxrwx)"},
		{"group-writable", 0o775, 0, 0, "is writable by its group (mode drwxrwxr-x)"},
		{"sticky like /tmp", 0o1777, 0, 0, "the sticky bit does not stop them"},
		{"metadata world-writable", 0o755, 0o757, 0, "metadata is writable by others (mode drwxr-xrwx)"},
		{"another user's", 0o755, 0, 4242, "is owned by another user (uid 4242"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.owner != 0 && os.Geteuid() != 0 {
				t.Skip("chown needs root")
			}
			cfg := repo.config(afero.NewOsFs(), "1.0")
			cfg.CacheDir = filepath.Join(t.TempDir(), "cache")
			var log bytes.Buffer
			cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
			for _, d := range []struct {
				path string
				mode os.FileMode
			}{{cfg.CacheDir, tc.cache}, {filepath.Join(cfg.CacheDir, "metadata"), tc.meta}} {
				if d.mode == 0 {
					continue
				}
				if err := os.Mkdir(d.path, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(d.path, d.mode.Perm()|d.mode&os.ModeSticky); err != nil {
					t.Fatal(err)
				}
			}
			if tc.cache&0o1000 != 0 {
				os.Chmod(cfg.CacheDir, 0o777|os.ModeSticky)
			}
			if tc.owner != 0 {
				if err := os.Chown(cfg.CacheDir, tc.owner, tc.owner); err != nil {
					t.Fatal(err)
				}
			}
			err := newTestClient(t, cfg).CheckCacheDir()
			var ue *UnsafeCacheError
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckCacheDir: %v", err)
				}
			} else if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "chmod go-w") {
				t.Fatalf("CheckCacheDir: %v, want an *UnsafeCacheError containing %q", err, tc.want)
			}
			// Check logs it (and still works); not when the caller checked.
			if _, err := newTestClient(t, cfg).Check(context.Background()); err != nil {
				t.Fatal(err)
			}
			if logged := strings.Contains(log.String(), "writable by other users"); logged != (tc.want != "") {
				t.Errorf("logged %v:\n%s", logged, log.String())
			}
			log.Reset()
			c := newTestClient(t, cfg)
			c.CheckCacheDir()
			if _, err := c.Check(context.Background()); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(log.String(), "writable by other users") {
				t.Errorf("logged although the caller checked:\n%s", log.String())
			}
		})
	}
}

// TestCheckInstallParent: the directory holding the install directory,
// where the client keeps its journal, staged tree and install manifest,
// is reported when others can write to it (a sticky /tmp too) or it is
// another user's; a group that can write there (an administrators' group,
// as /Applications on macOS) is not.
func TestCheckInstallParent(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("permission bits as on Unix")
	}
	repo := newTestRepo(t, false)
	for _, tc := range []struct {
		name  string
		mode  os.FileMode
		owner int
		want  string
	}{
		{"private", 0o755, 0, ""},
		{"group-writable", 0o775, 0, ""},
		{"world-writable", 0o777, 0, "which holds the install directory, is writable by others (mode drwxrwxrwx)"},
		{"sticky like /tmp", 0o777 | os.ModeSticky, 0, "the sticky bit does not stop them"},
		{"another user's", 0o755, 4242, "owned by another user (uid 4242"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.owner != 0 && os.Geteuid() != 0 {
				t.Skip("chown needs root")
			}
			cfg := repo.config(afero.NewOsFs(), "1.0")
			parent := filepath.Join(t.TempDir(), "apps")
			cfg.CacheDir = filepath.Join(t.TempDir(), "cache")
			cfg.InstallDir = filepath.Join(parent, "app")
			if err := os.Mkdir(parent, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(parent, tc.mode); err != nil {
				t.Fatal(err)
			}
			if tc.owner != 0 {
				if err := os.Chown(parent, tc.owner, tc.owner); err != nil {
					t.Fatal(err)
				}
			}
			err := newTestClient(t, cfg).CheckCacheDir()
			var ue *UnsafeCacheError
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("CheckCacheDir: %v", err)
			case tc.want != "" && (!errors.As(err, &ue) || !ue.InstallParent || ue.Dir != parent || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("CheckCacheDir: %v, want an *UnsafeCacheError about %s containing %q", err, parent, tc.want)
			}
		})
	}
}
