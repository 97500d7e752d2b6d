package notsotuf

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/afero"
)

// installDirSetup is a repository with releases 1.0, 1.1, 1.2 and a client
// configuration for installed version 1.0, on the OS or in memory.
func installDirSetup(t *testing.T, mode string) (*testRepo, []appRelease, afero.Fs, ClientConfig) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	if mode == "os" {
		fsys, cfg := osClientConfig(t, repo, "1.0")
		return repo, rels, fsys, cfg
	}
	fsys := afero.NewMemMapFs()
	return repo, rels, fsys, repo.config(fsys, "1.0")
}

// TestInstallRefusesForeignDir: an install directory that holds something
// else than the app (a wrong --install-dir, a home directory) is refused
// with an error that says why and how to force it, before the update is
// downloaded; nothing in it changes. Adopt replaces it.
func TestInstallRefusesForeignDir(t *testing.T) {
	for _, mode := range []string{"os", "mem"} {
		t.Run(mode, func(t *testing.T) {
			repo, rels, fsys, cfg := installDirSetup(t, mode)
			user := map[string]string{"notes.txt": "my notes", "photos/cat.jpg": "meow", "lib/libapp.so": "not the app's"}
			writeTree(t, fsys, cfg.InstallDir, user)
			ctx := context.Background()
			_, err := newTestClient(t, cfg).Update(ctx)
			var ide *InstallDirError
			if !errors.Is(err, ErrForeignInstallDir) || !errors.As(err, &ide) || !ide.Adoptable || ide.Version != "1.0" {
				t.Fatalf("err = %v", err)
			}
			for _, want := range []string{cfg.InstallDir, "refusing to replace it", `"app" of the release is missing`} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if hint := ErrorHint(err); !strings.Contains(hint, "--adopt") {
				t.Errorf("hint %q", hint)
			}
			wantTree(t, fsys, cfg.InstallDir, user)
			// Only the installed version's archive, to compare: nothing of 1.2.
			if got := strings.Join(targetRequests(repo), " "); got != "app-1.0.tar.gz" {
				t.Errorf("downloaded %q", got)
			}
			for _, s := range siblingsOf(t, fsys, filepath.Dir(cfg.InstallDir)) {
				if strings.HasPrefix(s, ".app.") && s != ".app"+suffixLock {
					t.Errorf("left beside it: %s", s)
				}
			}
			if v := newTestClient(t, cfg).Current().String(); v != "1.0" {
				t.Errorf("recorded %s", v)
			}

			cfg.Adopt = true
			u, err := newTestClient(t, cfg).Update(ctx)
			if err != nil || u == nil || u.Version.String() != "1.2" {
				t.Fatalf("update with Adopt: %+v, %v", u, err)
			}
			wantTree(t, fsys, cfg.InstallDir, rels[2].files)
		})
	}
}

// TestInstallDirAccepted: what an install accepts to replace without
// Adopt, and what it refuses.
func TestInstallDirAccepted(t *testing.T) {
	tests := []struct {
		name     string
		current  string
		prepare  func(t *testing.T, fsys afero.Fs, cfg ClientConfig, rels []appRelease)
		refused  string            // "" when accepted; else a part of the reason
		requests string            // target requests of the update
		kept     map[string]string // files the release did not ship, kept by the update
	}{
		{name: "missing", requests: "app-1.2.tar.gz"},
		{name: "empty", prepare: func(t *testing.T, fsys afero.Fs, cfg ClientConfig, _ []appRelease) {
			fsys.MkdirAll(cfg.InstallDir, 0o755)
		}, requests: "app-1.2.tar.gz"},
		{name: "installed by hand", prepare: func(t *testing.T, fsys afero.Fs, cfg ClientConfig, rels []appRelease) {
			writeTree(t, fsys, cfg.InstallDir, rels[0].files)
		}, requests: "app-1.1.patch app-1.2.patch"},
		{name: "installed by hand, files added", prepare: func(t *testing.T, fsys afero.Fs, cfg ClientConfig, rels []appRelease) {
			writeTree(t, fsys, cfg.InstallDir, rels[0].files)
			writeTree(t, fsys, cfg.InstallDir, map[string]string{"app.log": "log", "cache/x.pyc": "pyc"})
		}, requests: "app-1.0.tar.gz app-1.2.tar.gz", kept: map[string]string{"app.log": "log", "cache/x.pyc": "pyc"}},
		{name: "installed by hand, a file changed", prepare: func(t *testing.T, fsys afero.Fs, cfg ClientConfig, rels []appRelease) {
			writeTree(t, fsys, cfg.InstallDir, rels[0].files)
			writeTree(t, fsys, cfg.InstallDir, map[string]string{"share/README": "edited"})
		}, refused: `"share/README" differs from the release's`, requests: "app-1.0.tar.gz"},
		{name: "installed by notsotuf, changed since", prepare: func(t *testing.T, fsys afero.Fs, cfg ClientConfig, rels []appRelease) {
			writeTree(t, fsys, cfg.InstallDir, rels[0].files)
			mp := filepath.Join(filepath.Dir(cfg.InstallDir), ".app"+suffixManifest)
			if err := writeTreeManifest(fsys, cfg.InstallDir, mp, "app", "1.0"); err != nil {
				t.Fatal(err)
			}
			writeTree(t, fsys, cfg.InstallDir, map[string]string{"share/README": "edited", "user.txt": "mine"})
		}, requests: "app-1.2.tar.gz", kept: map[string]string{"user.txt": "mine"}},
		{name: "installed by notsotuf, then replaced", prepare: func(t *testing.T, fsys afero.Fs, cfg ClientConfig, rels []appRelease) {
			writeTree(t, fsys, cfg.InstallDir, rels[0].files)
			mp := filepath.Join(filepath.Dir(cfg.InstallDir), ".app"+suffixManifest)
			if err := writeTreeManifest(fsys, cfg.InstallDir, mp, "app", "1.0"); err != nil {
				t.Fatal(err)
			}
			fsys.RemoveAll(cfg.InstallDir)
			writeTree(t, fsys, cfg.InstallDir, map[string]string{"share/README": "someone else's", "app": "x"})
		}, refused: `"lib", installed by notsotuf (`, requests: "app-1.0.tar.gz"},
		{name: "another app's install", prepare: func(t *testing.T, fsys afero.Fs, cfg ClientConfig, rels []appRelease) {
			writeTree(t, fsys, cfg.InstallDir, map[string]string{"other": "x"})
			mp := filepath.Join(filepath.Dir(cfg.InstallDir), ".app"+suffixManifest)
			if err := writeTreeManifest(fsys, cfg.InstallDir, mp, "other", "1.0"); err != nil {
				t.Fatal(err)
			}
		}, refused: `records an install of "other"`, requests: "app-1.0.tar.gz"},
		{name: "a file", prepare: func(t *testing.T, fsys afero.Fs, cfg ClientConfig, rels []appRelease) {
			fsys.MkdirAll(filepath.Dir(cfg.InstallDir), 0o755)
			afero.WriteFile(fsys, cfg.InstallDir, []byte("a file"), 0o644)
		}, refused: "it is a file, not a directory"},
		{name: "a version the repository does not have", current: "0.9", prepare: func(t *testing.T, fsys afero.Fs, cfg ClientConfig, rels []appRelease) {
			writeTree(t, fsys, cfg.InstallDir, rels[0].files)
		}, refused: "the repository has no release 0.9"},
	}
	for _, mode := range []string{"os", "mem"} {
		for _, tt := range tests {
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				repo, rels, fsys, cfg := installDirSetup(t, mode)
				if tt.current != "" {
					cfg.CurrentVersion = tt.current
				}
				if tt.prepare != nil {
					tt.prepare(t, fsys, cfg, rels)
				}
				before := map[string]string{}
				if ok, _ := afero.DirExists(fsys, cfg.InstallDir); ok {
					before = treeManifest(t, fsys, cfg.InstallDir)
				}
				_, err := newTestClient(t, cfg).Update(context.Background())
				if got := strings.Join(targetRequests(repo), " "); got != tt.requests {
					t.Errorf("downloads %q, want %q", got, tt.requests)
				}
				if tt.refused == "" {
					if err != nil {
						t.Fatal(err)
					}
					want := maps.Clone(rels[2].files)
					maps.Copy(want, tt.kept)
					wantTree(t, fsys, cfg.InstallDir, want)
					return
				}
				if !errors.Is(err, ErrForeignInstallDir) || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("err = %v, want %q", err, tt.refused)
				}
				if ok, _ := afero.DirExists(fsys, cfg.InstallDir); ok {
					diffManifests(t, treeManifest(t, fsys, cfg.InstallDir), before)
				}
				cfg.Adopt = true
				if _, err := newTestClient(t, cfg).Update(context.Background()); err != nil {
					t.Fatalf("with Adopt: %v", err)
				}
				wantTree(t, fsys, cfg.InstallDir, rels[2].files)
			})
		}
	}
}

// TestInstallExecutableRefusesForeign: in single-executable mode a
// directory is refused even with Adopt, a file that is not the installed
// version's executable is refused (without a download when its size
// cannot be the release's), and a hand-copied executable of the installed
// version is accepted.
func TestInstallExecutableRefusesForeign(t *testing.T) {
	repo := newTestRepo(t, false)
	exe := func(n int) map[string]string {
		return map[string]string{"app": strings.Repeat("machine code\n", 5000) + strings.Repeat("v", n) + "\n"}
	}
	r1, r2 := buildRelease(t, "1.0", exe(1)), buildRelease(t, "2.0", exe(2))
	repo.publishRelease("app", r1, nil, false, "")
	repo.publishRelease("app", r2, makePatch(t, r1, r2), false, "")
	ctx := context.Background()
	setup := func(t *testing.T) (afero.Fs, ClientConfig) {
		fsys, cfg := osClientConfig(t, repo, "1.0")
		cfg.InstallDir = filepath.Join(filepath.Dir(cfg.InstallDir), "bin", "app")
		cfg.SingleExecutable = true
		fsys.MkdirAll(filepath.Dir(cfg.InstallDir), 0o755)
		repo.resetRequests()
		return fsys, cfg
	}

	t.Run("directory", func(t *testing.T) {
		fsys, cfg := setup(t)
		writeTree(t, fsys, cfg.InstallDir, map[string]string{"x": "y"})
		cfg.Adopt = true
		_, err := newTestClient(t, cfg).Update(ctx)
		var ide *InstallDirError
		if !errors.As(err, &ide) || ide.Adoptable || !strings.Contains(err.Error(), "is a directory") {
			t.Fatalf("err = %v", err)
		}
		if strings.Contains(ErrorHint(err), "adopt") {
			t.Errorf("hint %q", ErrorHint(err))
		}
		wantTree(t, fsys, cfg.InstallDir, map[string]string{"x": "y"})
	})
	t.Run("another file", func(t *testing.T) {
		fsys, cfg := setup(t)
		afero.WriteFile(fsys, cfg.InstallDir, []byte("#!/bin/sh\necho my script\n"), 0o755)
		_, err := newTestClient(t, cfg).Update(ctx)
		if !errors.Is(err, ErrForeignInstallDir) || !strings.Contains(err.Error(), "does not fit the signed tar") {
			t.Fatalf("err = %v", err)
		}
		if got := targetRequests(repo); len(got) != 0 {
			t.Errorf("downloaded %q", got)
		}
		if b, _ := afero.ReadFile(fsys, cfg.InstallDir); string(b) != "#!/bin/sh\necho my script\n" {
			t.Errorf("file changed: %q", b)
		}
		cfg.Adopt = true
		if _, err := newTestClient(t, cfg).Update(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a big file is not read", func(t *testing.T) {
		// A mistaken path naming a big file (a disk image) is refused by
		// its size, without reading it.
		fsys, cfg := setup(t)
		f, err := fsys.Create(cfg.InstallDir)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(64 << 30); err != nil {
			t.Skipf("no sparse files here: %v", err)
		}
		f.Close()
		cfg.Fs = noOpenFs{fsys, cfg.InstallDir, t}
		_, err = newTestClient(t, cfg).Update(ctx)
		if !errors.Is(err, ErrForeignInstallDir) || !strings.Contains(err.Error(), "does not fit the signed tar") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("same size, other bytes", func(t *testing.T) {
		fsys, cfg := setup(t)
		other := []byte(strings.ToUpper(r1.files["app"]))
		afero.WriteFile(fsys, cfg.InstallDir, other, 0o755)
		_, err := newTestClient(t, cfg).Update(ctx)
		if !errors.Is(err, ErrForeignInstallDir) || !strings.Contains(err.Error(), "not the executable of 1.0") {
			t.Fatalf("err = %v", err)
		}
		if b, _ := afero.ReadFile(fsys, cfg.InstallDir); string(b) != string(other) {
			t.Error("file changed")
		}
	})
	t.Run("copied by hand", func(t *testing.T) {
		fsys, cfg := setup(t)
		afero.WriteFile(fsys, cfg.InstallDir, []byte(r1.files["app"]), 0o755)
		if _, err := newTestClient(t, cfg).Update(ctx); err != nil {
			t.Fatal(err)
		}
		if b, _ := afero.ReadFile(fsys, cfg.InstallDir); string(b) != r2.files["app"] {
			t.Error("not updated")
		}
		// The install manifest now vouches for it: no comparison download.
		r3 := buildRelease(t, "3.0", exe(3))
		repo.publishRelease("app", r3, makePatch(t, r2, r3), false, "")
		repo.resetRequests()
		cfg.CurrentVersion = "2.0"
		os.Remove(filepath.Join(cfg.CacheDir, "app-2.0.tar")) // no cached base either: the full archive
		if _, err := newTestClient(t, cfg).Update(ctx); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(targetRequests(repo), " "); got != "app-3.0.tar.gz" {
			t.Errorf("downloads %q", got)
		}
	})
}

// TestClientRefusesCacheInInstallDir: a cache directory equal to or inside
// the install directory (or the reverse) is refused, lexically by
// NewClient and through symbolic links by Check, Install and Recover.
func TestClientRefusesCacheInInstallDir(t *testing.T) {
	repo := newTestRepo(t, false)
	threeReleases(t, repo)
	for _, tt := range []struct{ install, cache, want string }{
		{"/opt/app", "/opt/app", "the cache directory is the install directory"},
		{"/opt/app", "/opt/app/cache", "the cache directory is inside the install directory"},
		{"/opt/app/", "/opt/app/./x/../cache", "the cache directory is inside the install directory"},
		{"/var/cache/app", "/var/cache", "the install directory is inside the cache directory"},
	} {
		cfg := repo.config(afero.NewMemMapFs(), "1.0")
		cfg.InstallDir, cfg.CacheDir = tt.install, tt.cache
		_, err := NewClient(cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), filepath.Clean(tt.cache)) {
			t.Errorf("%s, %s: %v", tt.install, tt.cache, err)
		}
	}
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links")
	}
	for _, tt := range []struct {
		name           string
		links          map[string]string // link -> target, under the temp dir
		install, cache string
		want           string
	}{
		{"cache link into the install dir", map[string]string{"cachelink": "app/cache"}, "app", "cachelink", "the cache directory is inside the install directory"},
		{"cache through a linked parent", map[string]string{"p": "app"}, "app", "p/cache", "the cache directory is inside the install directory"},
		{"cache link to the install dir", map[string]string{"cachelink": "app"}, "app", "cachelink", "the cache directory is the install directory"},
		{"install link into the cache", map[string]string{"applink": "cache/app"}, "applink", "cache", "the install directory is inside the cache directory"},
		{"install link to the dir holding the cache", map[string]string{"applink": "app"}, "applink", "app/cache", "the cache directory is inside the install directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fsys, cfg := osClientConfig(t, repo, "1.0")
			root := filepath.Dir(cfg.InstallDir)
			os.MkdirAll(filepath.Join(root, "app", "cache"), 0o755)
			os.MkdirAll(filepath.Join(root, "cache", "app"), 0o755)
			for link, target := range tt.links {
				if err := os.Symlink(filepath.Join(root, target), filepath.Join(root, link)); err != nil {
					t.Fatal(err)
				}
			}
			cfg.InstallDir, cfg.CacheDir = filepath.Join(root, tt.install), filepath.Join(root, tt.cache)
			before := treeManifest(t, fsys, root)
			c := newTestClient(t, cfg) // lexically apart
			_, err := c.Check(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "symbolic links") {
				t.Errorf("check: %v", err)
			}
			if err := c.Recover(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("recover: %v", err)
			}
			if err := c.Install(context.Background(), &Update{target: &clientRelease{}}); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("install: %v", err)
			}
			diffManifests(t, treeManifest(t, fsys, root), before)
		})
	}
}

// TestClientRelativePaths: relative install and cache paths, "." among
// them, are taken from the working directory: the update works, and the
// install's siblings (lock, manifest) go beside the install directory,
// not into it.
func TestClientRelativePaths(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	fsys, cfg := osClientConfig(t, repo, "1.0")
	root := filepath.Dir(cfg.InstallDir)
	writeTree(t, fsys, cfg.InstallDir, rels[0].files)
	t.Chdir(cfg.InstallDir)
	cfg.InstallDir, cfg.CacheDir = ".", "../cache"
	c := newTestClient(t, cfg)
	if err := c.Recover(); err != nil {
		t.Fatal(err)
	}
	u, err := c.Update(context.Background())
	if err != nil || u == nil {
		t.Fatalf("update: %+v, %v", u, err)
	}
	wantTree(t, fsys, filepath.Join(root, "app"), rels[2].files)
	if got := strings.Join(siblingsOf(t, fsys, root), " "); got != ".app.notsotuf-lock .app.notsotuf-manifest app cache" {
		t.Errorf("beside the install dir: %s", got)
	}
	// Paths without a name of their own on a file system with no working
	// directory are refused.
	for _, p := range []string{".", "..", "/"} {
		cfg := repo.config(afero.NewMemMapFs(), "1.0")
		cfg.InstallDir = p
		if _, err := NewClient(cfg); err == nil || !strings.Contains(err.Error(), "install directory") {
			t.Errorf("install dir %q: %v", p, err)
		}
	}
}

// resetRequests forgets the requests served so far.
func (r *testRepo) resetRequests() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = nil
}

func TestResolvePath(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links")
	}
	fsys, root := tempOsFs(t)
	root, _ = filepath.EvalSymlinks(root)
	os.MkdirAll(filepath.Join(root, "a", "b"), 0o755)
	os.Symlink("a/b", filepath.Join(root, "rel"))
	os.Symlink(filepath.Join(root, "a"), filepath.Join(root, "abs"))
	os.Symlink("../a/b/../b", filepath.Join(root, "a", "up"))
	os.Symlink("loop2", filepath.Join(root, "loop1"))
	os.Symlink("loop1", filepath.Join(root, "loop2"))
	for in, want := range map[string]string{
		"a/b":           "a/b",
		"rel":           "a/b",
		"rel/x":         "a/b/x",
		"abs/b/not/yet": "a/b/not/yet",
		"a/up/c":        "a/b/c", // ".." in a link's target: from where the link points
		"abs/up/c":      "a/b/c",
	} {
		got, err := resolvePath(fsys, filepath.Join(root, in))
		if err != nil || got != filepath.Join(root, want) {
			t.Errorf("%s: %s, %v; want %s", in, got, err, want)
		}
		if want, err := filepath.EvalSymlinks(filepath.Join(root, in)); err == nil && want != got {
			t.Errorf("%s: %s, filepath.EvalSymlinks says %s", in, got, want)
		}
	}
	if _, err := resolvePath(fsys, filepath.Join(root, "loop1", "x")); err == nil {
		t.Error("a loop of links resolved")
	}
	if got, _ := resolvePath(afero.NewMemMapFs(), "rel/x/.."); got != "rel" {
		t.Errorf("relative path on MemMapFs: %s", got)
	}
}

// TestInstallDirProofNeedsFiles: a release or an install manifest that
// lists directories only proves nothing about a tree (any tree has them).
func TestInstallDirProofNeedsFiles(t *testing.T) {
	fsys := afero.NewMemMapFs()
	writeTree(t, fsys, "/home/u", map[string]string{"docs/notes.txt": "mine"})
	dirsOnly := buildTestTar(t, testEnt{name: "./", typ: tar.TypeDir}, testEnt{name: "./docs/", typ: tar.TypeDir})
	ok, why, err := treeHoldsTar(context.Background(), fsys, "/home/u", bytes.NewReader(dirsOnly), "dirs.tar", 1<<20, nil)
	if ok || err != nil || !strings.Contains(why, "no file") {
		t.Errorf("release of directories only: %v %q %v", ok, why, err)
	}
	var m bytes.Buffer
	encodeManifest(&m, "app", "1", func(emit func(installedEntry) error) error {
		return emit(installedEntry{Path: "docs", Type: "dir", Mode: "0755"})
	})
	afero.WriteFile(fsys, "/home/.u"+suffixManifest, m.Bytes(), 0o644)
	if ok, why, err := checkTreeManifest(fsys, "/home/u", "/home/.u"+suffixManifest, "app"); ok || err != nil || !strings.Contains(why, "records no file") {
		t.Errorf("manifest of directories only: %v %q %v", ok, why, err)
	}
	// A manifest that is not a regular file is not read (a FIFO would block).
	fsys.Remove("/home/.u" + suffixManifest)
	fsys.Mkdir("/home/.u"+suffixManifest, 0o755)
	if ok, _, err := checkTreeManifest(fsys, "/home/u", "/home/.u"+suffixManifest, "app"); ok || err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("manifest that is a directory: %v %v", ok, err)
	}
}

// openLogFs records the files opened through it.
type openLogFs struct {
	afero.Fs
	mu     sync.Mutex
	opened []string
}

func (f *openLogFs) Open(name string) (afero.File, error) {
	f.mu.Lock()
	f.opened = append(f.opened, name)
	f.mu.Unlock()
	return f.Fs.Open(name)
}

func (f *openLogFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	f.mu.Lock()
	f.opened = append(f.opened, name)
	f.mu.Unlock()
	return f.Fs.OpenFile(name, flag, perm)
}

// TestCheckDoesNotReadABigTree: a wrong --install-dir holding more bytes
// than the installed release's signed tar (a home directory) is not read
// to plan the update, nor to refuse it.
func TestCheckDoesNotReadABigTree(t *testing.T) {
	repo, rels, mem, cfg := installDirSetup(t, "mem")
	big := strings.Repeat("x", 2*len(rels[0].tar))
	writeTree(t, mem, cfg.InstallDir, map[string]string{"videos/big.mkv": big, "notes.txt": "mine"})
	fsys := &openLogFs{Fs: mem}
	cfg.Fs = fsys
	c := newTestClient(t, cfg)
	u, err := c.Check(context.Background())
	if err != nil || !u.Plan.Full {
		t.Fatalf("check: %+v, %v", u, err)
	}
	if err := c.Install(context.Background(), u); !errors.Is(err, ErrForeignInstallDir) {
		t.Fatalf("install: %v", err)
	}
	for _, p := range fsys.opened {
		if strings.HasSuffix(p, "big.mkv") {
			t.Errorf("opened %s", p)
		}
	}
	_ = repo
}

// noOpenFs fails the test when the file at path is opened.
type noOpenFs struct {
	afero.Fs
	path string
	t    *testing.T
}

func (f noOpenFs) Open(name string) (afero.File, error) {
	return f.OpenFile(name, os.O_RDONLY, 0)
}

func (f noOpenFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	if filepath.Clean(name) == filepath.Clean(f.path) {
		f.t.Errorf("%s opened", name)
	}
	return f.Fs.OpenFile(name, flag, perm)
}
