package notsotuf

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestUpdatePlantedCacheFiles: another local user who could write to the
// cache directory, or beside the install directory, plants symbolic links
// (to a file only root may change, to a name that does not exist, to
// /dev/zero) or FIFOs where the client is about to open its own files.
// The client (run as root, say) must neither write through them, nor
// create files through them, nor hang or read endlessly on them: it
// refuses them with an error naming the file, or, for a file it can do
// without (a cached patch base, persisted metadata), ignores them.
func TestUpdatePlantedCacheFiles(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links and FIFOs need Unix here")
	}
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	tests := []struct {
		name  string
		full  bool
		plant func(t *testing.T, cfg ClientConfig, victim string)
		want  string // substring of the error; "" means the update succeeds
	}{
		{"part symlink", true, func(t *testing.T, cfg ClientConfig, victim string) {
			symlink(t, victim, filepath.Join(cfg.CacheDir, "app-1.2.tar.gz.part"))
		}, "app-1.2.tar.gz.part: a symbolic link"},
		{"patch part symlink (falls back to the archive)", false, func(t *testing.T, cfg ClientConfig, victim string) {
			symlink(t, victim, filepath.Join(cfg.CacheDir, "app-1.1.patch.part"))
		}, ""},
		{"part fifo", true, func(t *testing.T, cfg ClientConfig, victim string) {
			fifo(t, filepath.Join(cfg.CacheDir, "app-1.2.tar.gz.part"))
		}, "app-1.2.tar.gz.part: a named pipe"},
		{"lock symlink", true, func(t *testing.T, cfg ClientConfig, victim string) {
			symlink(t, filepath.Join(filepath.Dir(victim), "created-by-lock"), filepath.Join(filepath.Dir(cfg.InstallDir), ".app"+suffixLock))
		}, ".app.notsotuf-lock: a symbolic link"},
		{"journal to /dev/zero", true, func(t *testing.T, cfg ClientConfig, victim string) {
			symlink(t, "/dev/zero", filepath.Join(filepath.Dir(cfg.InstallDir), ".app"+suffixJournal))
		}, ".app.notsotuf-journal: a symbolic link"},
		{"cached tar to /dev/zero, cached archive fifo", false, func(t *testing.T, cfg ClientConfig, victim string) {
			symlink(t, "/dev/zero", filepath.Join(cfg.CacheDir, "app-1.0.tar"))
			fifo(t, filepath.Join(cfg.CacheDir, "app-1.0.tar.gz"))
		}, ""},
		{"kept tar and records", true, func(t *testing.T, cfg ClientConfig, victim string) {
			symlink(t, victim, filepath.Join(cfg.CacheDir, "app-1.2.tar"))
			symlink(t, victim, filepath.Join(cfg.CacheDir, "installed.json"))
			symlink(t, victim, filepath.Join(cfg.CacheDir, "metadata", "targets.json"))
		}, ""},
		{"metadata to /dev/zero", false, func(t *testing.T, cfg ClientConfig, victim string) {
			for _, role := range []string{"timestamp", "snapshot", "targets"} {
				symlink(t, "/dev/zero", filepath.Join(cfg.CacheDir, "metadata", role+".json"))
			}
		}, ""},
		{"trusted root to /dev/zero", false, func(t *testing.T, cfg ClientConfig, victim string) {
			symlink(t, "/dev/zero", filepath.Join(cfg.CacheDir, "metadata", "root.json"))
		}, "root.json: a symbolic link"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys, cfg := osClientConfig(t, repo, "1.0")
			cfg.ForceFull = tt.full
			writeTree(t, fsys, cfg.InstallDir, rels[0].files)
			if err := os.MkdirAll(filepath.Join(cfg.CacheDir, "metadata"), 0o755); err != nil {
				t.Fatal(err)
			}
			victim, unchanged := plantVictim(t, t.TempDir())
			tt.plant(t, cfg, victim)
			var err error
			within(t, "update", func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_, err = newTestClient(t, cfg).Update(ctx)
			})
			unchanged()
			if _, serr := os.Lstat(filepath.Join(filepath.Dir(victim), "created-by-lock")); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("a file was created through the planted lock link: %v", serr)
			}
			if tt.want == "" {
				if err != nil {
					t.Fatalf("update: %v", err)
				}
				wantTree(t, fsys, cfg.InstallDir, rels[2].files)
				return
			}
			if err == nil || !errors.Is(err, errNotRegular) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("update: %v, want a refusal containing %q", err, tt.want)
			}
			wantTree(t, fsys, cfg.InstallDir, rels[0].files)
		})
	}
}

func symlink(t *testing.T, target, name string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

func fifo(t *testing.T, name string) {
	t.Helper()
	if err := mkfifoForTest(name); err != nil {
		t.Fatal(err)
	}
}
