package notsotuf

import (
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/notsotuf/notsotuf/internal/faultfs"
	"github.com/spf13/afero"
)

// TestUpdateSingleExecutable is the usual Go self-update: the install path
// is one executable file, the first install takes the full archive, the
// next one a patch from the tar cached by the first, and each replaces the
// file by rename.
func TestUpdateSingleExecutable(t *testing.T) {
	repo := newTestRepo(t, false)
	exe := func(n int) map[string]string {
		return map[string]string{"app": strings.Repeat("machine code\n", 5000) + strings.Repeat("v", n) + "\n"}
	}
	r1, r2 := buildRelease(t, "1.0", exe(1)), buildRelease(t, "2.0", exe(2))
	repo.publishRelease("app", r1, nil, false, "")
	fsys := afero.NewOsFs()
	dir := t.TempDir()
	cfg := repo.config(fsys, "0")
	cfg.InstallDir = filepath.Join(dir, "bin", "app")
	cfg.CacheDir = filepath.Join(dir, "cache")
	cfg.SingleExecutable = true
	ctx := context.Background()
	if err := fsys.MkdirAll(filepath.Dir(cfg.InstallDir), 0o755); err != nil {
		t.Fatal(err)
	}

	u, err := newTestClient(t, cfg).Update(ctx)
	if err != nil || u == nil || !u.Plan.Full {
		t.Fatalf("first install: %+v, %v", u, err)
	}
	if b, _ := afero.ReadFile(fsys, cfg.InstallDir); string(b) != r1.files["app"] {
		t.Fatalf("installed executable is not release 1.0's")
	}

	repo.publishRelease("app", r2, makePatch(t, r1, r2), false, "")
	cfg.CurrentVersion = "1.0"
	u, err = newTestClient(t, cfg).Update(ctx)
	if err != nil || u == nil || u.Plan.Full {
		t.Fatalf("update by patch: %+v, %v", u, err)
	}
	if b, _ := afero.ReadFile(fsys, cfg.InstallDir); string(b) != r2.files["app"] {
		t.Fatalf("installed executable is not release 2.0's")
	}
	if runtime.GOOS != "windows" {
		if fi, err := fsys.Stat(cfg.InstallDir); err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("install path: %v, %v", fi, err)
		}
	}
	entries, _ := afero.ReadDir(fsys, filepath.Dir(cfg.InstallDir))
	if len(entries) != 3 || entries[1].Name() != filepath.Base(cfg.InstallDir)+suffixLock || entries[2].Name() != filepath.Base(cfg.InstallDir)+suffixManifest {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("beside the executable: %v, want only it, its lock and its install manifest", names)
	}

	// A multi-file archive is refused in this mode, and the executable kept.
	r3 := buildRelease(t, "3.0", releaseFiles(3))
	repo.publishRelease("app", r3, nil, false, "")
	cfg.CurrentVersion = "2.0"
	if _, err := newTestClient(t, cfg).Update(ctx); err == nil {
		t.Fatal("a multi-file archive was installed as an executable")
	}
	if b, _ := afero.ReadFile(fsys, cfg.InstallDir); string(b) != r2.files["app"] {
		t.Fatalf("a refused update changed the executable")
	}
}

// TestRecoverRecordsCompletedInstall: a crash after an install's commit
// point (the journal) and before the client recorded the new version; the
// next start's Recover completes the swap and records the version, so the
// client does not install the same release again.
func TestRecoverRecordsCompletedInstall(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	recorded := 0
	for n := 1; n < 200; n++ {
		base, cfg := osClientConfig(t, repo, "1.0")
		writeTree(t, base, cfg.InstallDir, rels[0].files)
		ffs := faultfs.New(base, n, true)
		cfg.Fs = ffs
		_, err := newTestClient(t, cfg).Update(context.Background())
		if err == nil {
			break // n passed the last write: the whole update succeeded
		}
		journal := filepath.Join(filepath.Dir(cfg.InstallDir), "."+filepath.Base(cfg.InstallDir)+".notsotuf-journal")
		committed, _ := afero.Exists(base, journal)
		cfg.Fs = base
		c := newTestClient(t, cfg)
		if err := c.Recover(); err != nil {
			t.Fatalf("crash at write %d: recover: %v", n, err)
		}
		if committed {
			recorded++
			wantTree(t, base, cfg.InstallDir, rels[2].files)
			if got := c.Current().String(); got != "1.2" {
				t.Fatalf("crash at write %d after the commit: Current() = %s after Recover, want 1.2", n, got)
			}
		} else if got := c.Current().String(); got != "1.0" && got != "1.2" {
			t.Fatalf("crash at write %d: Current() = %s", n, got)
		}
	}
	if recorded == 0 {
		t.Fatal("no crash point fell after the commit: the test checked nothing")
	}
}
