package notsotuf

import (
	"context"
	"io/fs"
	"maps"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// keepReleases are three releases of "app" with real patches: 1.1 drops the
// directory legacy/ of 1.0 and ships share/new.txt; 1.2 changes the library.
func keepReleases(t *testing.T, repo *testRepo) []appRelease {
	big := strings.Repeat("library code line 7\n", 4000)
	v10 := map[string]string{"app": "#!/bin/sh\necho 1.0\n", "lib/libapp.so": big + "1.0\n", "share/README": "readme\n", "legacy/readme": "legacy\n"}
	v11 := map[string]string{"app": "#!/bin/sh\necho 1.1\n", "lib/libapp.so": big + "1.1\n", "share/README": "readme\n", "share/new.txt": "the release's\n"}
	v12 := maps.Clone(v11)
	v12["lib/libapp.so"] = big + "1.2\n"
	rels := []appRelease{buildRelease(t, "1.0", v10), buildRelease(t, "1.1", v11), buildRelease(t, "1.2", v12)}
	repo.publishRelease("app", rels[0], nil, false, "")
	repo.publishRelease("app", rels[1], makePatch(t, rels[0], rels[1]), false, "")
	repo.publishRelease("app", rels[2], makePatch(t, rels[1], rels[2]), false, "")
	return rels
}

// userEntry is a file, directory or link the user put into the install
// directory.
type userEntry struct {
	path, content, link string
	dir                 bool
	mode                fs.FileMode
	mtime               time.Time
}

var userEntries = []userEntry{
	{path: "user.cfg", content: "colour = blue\n", mode: 0o600, mtime: time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)},
	{path: "data", dir: true, mode: 0o750, mtime: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)},
	{path: "data/notes.txt", content: "my notes\n", mode: 0o640, mtime: time.Date(2022, 6, 7, 8, 9, 10, 0, time.UTC)},
	{path: "share/mine.txt", content: "inside a directory of the release\n", mode: 0o644, mtime: time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)},
	{path: "legacy/mine.txt", content: "inside a directory the next release drops\n", mode: 0o644, mtime: time.Date(2023, 2, 1, 0, 0, 0, 0, time.UTC)},
	{path: "share/new.txt", content: "the user's\n", mode: 0o644, mtime: time.Date(2023, 3, 1, 0, 0, 0, 0, time.UTC)},
	{path: "notes-link", link: "data/notes.txt"},
}

func putUserEntries(t *testing.T, fsys afero.Fs, dir string) {
	t.Helper()
	for _, e := range userEntries {
		p := filepath.Join(dir, filepath.FromSlash(e.path))
		var err error
		switch {
		case e.link != "":
			l, ok := fsys.(afero.Linker)
			if !ok || runtime.GOOS == "windows" {
				continue
			}
			err = l.SymlinkIfPossible(e.link, p)
		case e.dir:
			err = fsys.MkdirAll(p, 0o755)
		default:
			fsys.MkdirAll(filepath.Dir(p), 0o755)
			err = afero.WriteFile(fsys, p, []byte(e.content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Modes and times last (the directory's time changes with its content).
	for i := len(userEntries) - 1; i >= 0; i-- {
		e := userEntries[i]
		if e.link != "" {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(e.path))
		if err := fsys.Chmod(p, e.mode); err != nil {
			t.Fatal(err)
		}
		if err := fsys.Chtimes(p, e.mtime, e.mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// wantUserEntries fails unless dir holds the user's entries, with their
// bytes, modes and times; the user's share/new.txt, which the release now
// ships, is beside it as share/new.txt.notsotuf-user.
func wantUserEntries(t *testing.T, fsys afero.Fs, dir string) {
	t.Helper()
	for _, e := range userEntries {
		p := filepath.Join(dir, filepath.FromSlash(e.path))
		if e.path == "share/new.txt" {
			if b, _ := afero.ReadFile(fsys, p); string(b) != "the release's\n" {
				t.Errorf("%s = %q, want the release's", e.path, b)
			}
			p += userSuffix
		}
		fi, err := lstat(fsys, p)
		if e.link != "" {
			if _, ok := fsys.(afero.Linker); !ok || runtime.GOOS == "windows" {
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", e.path, err)
				continue
			}
			if target, err := readlink(fsys, p); err != nil || target != e.link {
				t.Errorf("%s -> %q (%v), want -> %q", e.path, target, err, e.link)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", e.path, err)
			continue
		}
		if !e.dir {
			if b, _ := afero.ReadFile(fsys, p); string(b) != e.content {
				t.Errorf("%s = %q, want %q", e.path, b, e.content)
			}
		}
		if runtime.GOOS != "windows" && fi.Mode().Perm() != e.mode {
			t.Errorf("%s: mode %04o, want %04o", e.path, fi.Mode().Perm(), e.mode)
		}
		if !fi.ModTime().Equal(e.mtime) {
			t.Errorf("%s: modified %v, want %v", e.path, fi.ModTime(), e.mtime)
		}
	}
}

// TestUpdateKeepsUserFiles: files and directories the user put into the
// install directory survive updates, with their bytes, modes and times,
// on a real disk and in memory (where files are copied, not linked), and
// the patch base is rebuilt from the release's files only, so the next
// update still travels as a patch. Purge drops them.
func TestUpdateKeepsUserFiles(t *testing.T) {
	for _, mode := range []string{"os", "mem"} {
		t.Run(mode, func(t *testing.T) {
			repo := newTestRepo(t, false)
			rels := keepReleases(t, repo)
			fsys, cfg := osClientConfig(t, repo, "1.0")
			if mode == "mem" {
				fsys = afero.NewMemMapFs()
				cfg.Fs = fsys
			}
			// 1.0 copied by hand, then the user's files: the install
			// directory check proves the release's files with 1.0's
			// archive, and the update keeps the rest.
			writeTree(t, fsys, cfg.InstallDir, rels[0].files)
			putUserEntries(t, fsys, cfg.InstallDir)
			cfg.Versions = "<1.2"
			u, err := newTestClient(t, cfg).Update(context.Background())
			if err != nil || u == nil || u.Version.String() != "1.1" {
				t.Fatalf("update to 1.1: %v %v", u, err)
			}
			wantUserEntries(t, fsys, cfg.InstallDir)

			// 1.1 to 1.2 by patch, with the install directory as the
			// base (the cache lost its copy of 1.1): the base leaves the
			// user's files out.
			for _, name := range []string{"app-1.1.tar", "app-1.1.tar.gz"} {
				fsys.Remove(filepath.Join(cfg.CacheDir, name))
			}
			cfg.Versions = ""
			c := newTestClient(t, cfg)
			u, err = c.Check(context.Background())
			if err != nil || u == nil {
				t.Fatalf("check: %v %v", u, err)
			}
			if u.Plan.Full {
				t.Fatalf("the update to 1.2 is planned as the full archive (%s): the patch base must leave out the user's files", u.Plan.Reason)
			}
			if err := c.Install(context.Background(), u); err != nil {
				t.Fatal(err)
			}
			if u.Result.Full {
				t.Fatalf("installed from the full archive: %s", u.Result.Fallback)
			}
			want := maps.Clone(rels[2].files)
			for _, e := range userEntries {
				if !e.dir && e.link == "" {
					want[e.path] = e.content
				}
			}
			want["share/new.txt"] = "the release's\n"
			want["share/new.txt"+userSuffix] = "the user's\n"
			if _, ok := fsys.(afero.Linker); !ok || runtime.GOOS == "windows" {
				wantTree(t, fsys, cfg.InstallDir, want)
			}
			wantUserEntries(t, fsys, cfg.InstallDir)
			// The new tree's manifest lists the release's files only.
			if ok, why, err := checkTreeManifest(fsys, cfg.InstallDir, c.installer().manifestPath(), "app"); !ok || err != nil {
				t.Fatalf("install manifest: %s %v", why, err)
			}
			shipped, err := loadShipped(fsys, c.installer().manifestPath(), "app")
			if err != nil {
				t.Fatal(err)
			}
			for p := range shipped {
				if _, ok := rels[2].files[p]; !ok && p != "lib" && p != "share" {
					t.Errorf("the install manifest lists %q, which the release did not ship", p)
				}
			}

			// Purge: the user's files go.
			repo.publishRelease("app", buildRelease(t, "1.3", rels[2].files), nil, false, "")
			cfg.CurrentVersion, cfg.Purge = "1.2", true
			if _, err := newTestClient(t, cfg).Update(context.Background()); err != nil {
				t.Fatal(err)
			}
			wantTree(t, fsys, cfg.InstallDir, rels[2].files)
		})
	}
}

// TestCarryConflicts: the release wins where it ships what the user has,
// and the user's entry is kept beside it, also for a directory where the
// release now has a file; a directory of the installed release that the
// new one drops is recreated for the user's entries inside it.
func TestCarryConflicts(t *testing.T) {
	fsys, root := tempOsFs(t)
	dir := filepath.Join(root, "app")
	in := &installer{fs: fsys, dir: dir, app: "app"}
	writeTree(t, fsys, dir, map[string]string{"bin/app": "1", "plugins/core": "core"})
	if err := writeTreeManifest(fsys, dir, in.manifestPath(), "app", "1.0"); err != nil {
		t.Fatal(err)
	}
	writeTree(t, fsys, dir, map[string]string{"plugins/mine": "user plugin", "cfg/x": "user dir", "cfg.notsotuf-user": "taken"})
	// 2.0 ships "plugins" and "cfg" as files.
	staged, _, _ := in.siblings()
	mnew := in.siblingPrefix() + suffixManifestNew
	writeTree(t, fsys, staged, map[string]string{"bin/app": "2", "plugins": "now a file", "cfg": "a file too"})
	if err := writeTreeManifest(fsys, staged, mnew, "app", "2.0"); err != nil {
		t.Fatal(err)
	}
	if err := in.carryInto(staged, mnew, false); err != nil {
		t.Fatal(err)
	}
	got := treeManifest(t, fsys, staged)
	want := manifest{
		"bin": "dir", "bin/app": sha256hex([]byte("2")), "plugins": sha256hex([]byte("now a file")), "cfg": sha256hex([]byte("a file too")),
		"plugins.notsotuf-user": "dir", "plugins.notsotuf-user/mine": sha256hex([]byte("user plugin")),
		"cfg.notsotuf-user":   sha256hex([]byte("taken")),
		"cfg.notsotuf-user-2": "dir", "cfg.notsotuf-user-2/x": sha256hex([]byte("user dir")),
	}
	diffManifests(t, got, want)
}

// TestResetStagedTree: a recorded staged tree is brought back to its
// manifest before a carry (an interrupted carry left entries in it), and
// refused when a file of the release changed.
func TestResetStagedTree(t *testing.T) {
	fsys, root := tempOsFs(t)
	dir := filepath.Join(root, "t")
	in := &installer{fs: fsys, dir: filepath.Join(root, "app"), app: "app"}
	writeTree(t, fsys, dir, map[string]string{"a": "1", "d/b": "2"})
	mp := filepath.Join(root, "m")
	if err := writeTreeManifest(fsys, dir, mp, "app", "1"); err != nil {
		t.Fatal(err)
	}
	s, err := loadShipped(fsys, mp, "app")
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, fsys, dir, map[string]string{"extra": "x", "d/extra/y": "y"})
	if err := fsys.Chmod(filepath.Join(dir, "d"), 0o555); err != nil {
		t.Fatal(err)
	}
	if err := in.resetTree(dir, s, true); err != nil {
		t.Fatal(err)
	}
	diffManifests(t, treeManifest(t, fsys, dir), manifest{"a": sha256hex([]byte("1")), "d": "dir", "d/b": sha256hex([]byte("2"))})
	if fi, _ := fsys.Stat(filepath.Join(dir, "d")); fi.Mode().Perm() != 0o555 {
		t.Errorf("mode of d: %v", fi.Mode())
	}
	afero.WriteFile(fsys, filepath.Join(dir, "a"), []byte("changed"), 0o644)
	if err := in.resetTree(dir, s, true); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("reset of a changed tree: %v", err)
	}
	fsys.Remove(filepath.Join(dir, "a"))
	if err := in.resetTree(dir, s, true); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("reset of a tree missing a file: %v", err)
	}
}

// TestCarryIntoReadOnlyDirectory: a directory of the new release without
// write permission receives the user's entries and keeps its mode.
func TestCarryIntoReadOnlyDirectory(t *testing.T) {
	fsys, root := tempOsFs(t)
	dir := filepath.Join(root, "app")
	in := &installer{fs: fsys, dir: dir, app: "app"}
	writeTree(t, fsys, dir, map[string]string{"share/a": "1"})
	if err := writeTreeManifest(fsys, dir, in.manifestPath(), "app", "1.0"); err != nil {
		t.Fatal(err)
	}
	writeTree(t, fsys, dir, map[string]string{"share/mine": "user"})
	staged, _, _ := in.siblings()
	mnew := in.siblingPrefix() + suffixManifestNew
	writeTree(t, fsys, staged, map[string]string{"share/a": "2"})
	if err := writeTreeManifest(fsys, staged, mnew, "app", "2.0"); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Chmod(filepath.Join(staged, "share"), 0o555); err != nil {
		t.Fatal(err)
	}
	if err := in.carryInto(staged, mnew, false); err != nil {
		t.Fatal(err)
	}
	if b, err := afero.ReadFile(fsys, filepath.Join(staged, "share", "mine")); err != nil || string(b) != "user" {
		t.Fatalf("share/mine: %q %v", b, err)
	}
	if fi, _ := fsys.Stat(filepath.Join(staged, "share")); fi.Mode().Perm() != 0o555 {
		t.Errorf("mode of share: %v", fi.Mode())
	}
	fsys.Chmod(filepath.Join(staged, "share"), 0o755)
}
