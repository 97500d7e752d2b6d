//go:build unix

package notsotuf

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/afero"
)

// TestRecoverIgnoresPlantedJournal: in a directory others can write to (a
// sticky /tmp-like parent of the install directory), another user plants
// a journal and a staged tree beside the install directory; the next
// recover must not swap their tree in. Needs root (to play the other
// user with chown).
func TestRecoverIgnoresPlantedJournal(t *testing.T) {
	rels, fsys, cfg := installedUnder(t, 0o777|os.ModeSticky, true)
	parent := filepath.Dir(cfg.InstallDir)

	// The other user (uid 4242) plants a tree and a journal naming it.
	const other = 4242
	evil := filepath.Join(parent, ".app"+suffixNew)
	if err := os.Mkdir(evil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(evil, "run"), []byte("#!/bin/sh\necho owned\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	jpath := filepath.Join(parent, ".app"+suffixJournal)
	if err := os.WriteFile(jpath, []byte(`{"op":"swap-tree","dir":"app","tag":"9.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{evil, filepath.Join(evil, "run"), jpath} {
		if err := os.Chown(p, other, other); err != nil {
			t.Fatal(err)
		}
	}

	err := newTestClient(t, cfg).Recover()
	if err == nil || !strings.Contains(err.Error(), "belongs to another user (uid 4242)") {
		t.Fatalf("recover: %v", err)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[0].files)
	// The update is refused the same way, the tree untouched.
	if _, err := newTestClient(t, cfg).Update(context.Background()); err == nil || !strings.Contains(err.Error(), "belongs to another user") {
		t.Fatalf("update: %v", err)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[0].files)
}

// TestPlantedManifestDoesNotVouch: another user's install manifest beside
// a directory that is not the application's does not make the client
// replace it. Needs root (chown).
func TestPlantedManifestDoesNotVouch(t *testing.T) {
	_, fsys, cfg := installedUnder(t, 0o777|os.ModeSticky, false)
	data := map[string]string{"thesis.tex": "years of work"}
	writeTree(t, fsys, cfg.InstallDir, data)
	// A manifest that lists the directory's file as the release's.
	in := newTestClient(t, cfg).installer()
	in.app = "app"
	mp := in.manifestPath()
	if err := writeTreeManifest(fsys, cfg.InstallDir, mp, "app", "1.0"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mp, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	_, err := newTestClient(t, cfg).Update(context.Background())
	if err == nil || !strings.Contains(err.Error(), "belongs to another user (uid 4242)") {
		t.Fatalf("update: %v", err)
	}
	wantTree(t, fsys, cfg.InstallDir, data)
}

// TestSharedInstallOwnersTrusted: in a directory only its owner and group
// may write to (a team's shared install), files another member wrote are
// trusted: an install manifest owned by another user does not stop the
// update. Needs root (chown).
func TestSharedInstallOwnersTrusted(t *testing.T) {
	rels, fsys, cfg := installedUnder(t, 0o775, true)
	if err := os.Chown(newTestClient(t, cfg).installer().manifestPath(), 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := newTestClient(t, cfg).Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[1].files)
}

// installedUnder returns a repository with releases 1.0 and 2.0 and a
// client configuration whose install directory is in a new directory of
// the given mode; with install, 1.0 is installed there. It skips unless
// the test runs as root (the tests play another user with chown).
func installedUnder(t *testing.T, mode os.FileMode, install bool) ([]appRelease, afero.Fs, ClientConfig) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	repo := newTestRepo(t, false)
	rels := handOffReleases(t, repo)
	fsys, cfg := osClientConfig(t, repo, "0")
	parent := filepath.Join(t.TempDir(), "parent")
	if err := os.Mkdir(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(parent, mode); err != nil {
		t.Fatal(err)
	}
	cfg.InstallDir = filepath.Join(parent, "app")
	if install {
		cfg.Versions = "<2"
		if _, err := newTestClient(t, cfg).Update(context.Background()); err != nil {
			t.Fatal(err)
		}
		cfg.Versions = ""
	}
	cfg.CurrentVersion = "1.0"
	return rels, fsys, cfg
}
