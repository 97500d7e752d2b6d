package notsotuf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/spf13/afero"
)

func TestLockInstall(t *testing.T) {
	for name, fsys := range map[string]afero.Fs{"os": afero.NewOsFs(), "mem": afero.NewMemMapFs()} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), ".app"+suffixLock)
			if err := fsys.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			unlock, err := lockInstall(fsys, p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := lockInstall(fsys, p); !errors.Is(err, ErrBusy) {
				t.Fatalf("second lock: %v, want ErrBusy", err)
			}
			unlock()
			unlock, err = lockInstall(fsys, p)
			if err != nil {
				t.Fatalf("lock after unlock: %v", err)
			}
			unlock()
		})
	}
	// The same path on two in-memory file systems is two files.
	a, b := afero.NewMemMapFs(), afero.NewMemMapFs()
	ua, err := lockInstall(a, "/x.lock")
	if err != nil {
		t.Fatal(err)
	}
	defer ua()
	ub, err := lockInstall(b, "/x.lock")
	if err != nil {
		t.Fatalf("another MemMapFs: %v", err)
	}
	ub()
}

// TestLockInstallAcrossProcesses: a lock held by another process makes
// lockInstall fail with ErrBusy, and dies with it (SIGKILL on Unix,
// TerminateProcess on Windows): no stale lock after a crash.
func TestLockInstallAcrossProcesses(t *testing.T) {
	if p := os.Getenv("NOTSOTUF_TEST_LOCK_HOLDER"); p != "" {
		// The helper process: lock, say so, wait to be killed.
		if _, err := lockInstall(afero.NewOsFs(), p); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		select {}
	}
	p := filepath.Join(t.TempDir(), ".app"+suffixLock)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockInstallAcrossProcesses$")
	cmd.Env = append(os.Environ(), "NOTSOTUF_TEST_LOCK_HOLDER="+p)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "locked\n" {
		t.Fatalf("helper said %q", line)
	}
	if _, err := lockInstall(afero.NewOsFs(), p); !errors.Is(err, ErrBusy) {
		t.Fatalf("lock held by another process: %v, want ErrBusy", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	unlock, err := lockInstall(afero.NewOsFs(), p)
	if err != nil {
		t.Fatalf("lock of a killed process: %v", err)
	}
	unlock()
}

// TestInstallBusy: while another process installs into the same directory
// (it holds the lock), Install and Recover change nothing: not the tree,
// not that process's staged tree, not the cache.
func TestInstallBusy(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	fsys, cfg := osClientConfig(t, repo, "1.0")
	writeTree(t, fsys, cfg.InstallDir, rels[0].files)
	c := newTestClient(t, cfg)
	u, err := c.Check(context.Background())
	if err != nil || u == nil {
		t.Fatalf("check: %+v, %v", u, err)
	}
	in := c.installer()
	staged, _, _ := in.siblings()
	writeTree(t, fsys, staged, map[string]string{"half": "written"}) // the other process's work
	unlock, err := lockInstall(fsys, in.lockPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Install(context.Background(), u); !errors.Is(err, ErrBusy) {
		t.Fatalf("install: %v, want ErrBusy", err)
	}
	if _, err := newTestClient(t, cfg).Update(context.Background()); !errors.Is(err, ErrBusy) {
		t.Fatalf("update: %v, want ErrBusy", err)
	}
	if err := c.Recover(); !errors.Is(err, ErrBusy) {
		t.Fatalf("recover: %v, want ErrBusy", err)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[0].files)
	wantTree(t, fsys, staged, map[string]string{"half": "written"})
	if got := targetRequests(repo); len(got) != 0 {
		t.Errorf("downloaded %q while busy", got)
	}
	unlock()
	// The other process is gone (its staged tree with it, by recover).
	if _, err := c.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[2].files)
	if ok, _ := afero.Exists(fsys, staged); ok {
		t.Error("staged tree left behind")
	}
}

// TestRecoverReadOnlyLocation: an app installed where this account cannot
// write (no lock file can be made): Recover has nothing to do and says so
// with nil, as before there was a lock; Install fails with the reason.
func TestRecoverReadOnlyLocation(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	base, cfg := osClientConfig(t, repo, "1.0")
	writeTree(t, base, cfg.InstallDir, rels[0].files)
	ro := afero.NewReadOnlyFs(base)
	cfg.Fs = ro
	c := newTestClient(t, cfg)
	if err := c.Recover(); err != nil {
		t.Fatalf("recover: %v", err)
	}
	v12, err := ParseVersion("1.2")
	if err != nil {
		t.Fatal(err)
	}
	u := &Update{Version: v12, target: &clientRelease{}}
	if err := c.Install(context.Background(), u); err == nil || errors.Is(err, ErrBusy) {
		t.Fatalf("install into a read-only location: %v", err)
	}
	wantTree(t, base, cfg.InstallDir, rels[0].files)
}
