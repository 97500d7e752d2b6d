package notsotuf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/notsotuf/notsotuf/internal/faultfs"
	"github.com/spf13/afero"
)

// exchangeSupported: the platforms where osExchange can work.
var exchangeSupported = runtime.GOOS == "linux" || runtime.GOOS == "darwin"

// exchFs is a faultfs.FS over the OS file system that also exchanges
// paths atomically (as afero.OsFs does for the installer), the exchange
// being one counted operation: fault injection then reaches every state of
// an exchange swap.
type exchFs struct{ *faultfs.FS }

func (f exchFs) exchangeIfPossible(a, b string) error {
	if err := f.Fault("exchange", a+" <-> "+b); err != nil {
		return err
	}
	return osExchange(a, b)
}

// watchFs checks, after every operation of a swap that moves or removes
// something, that the install directory exists, as an application started
// at that instant would need.
type watchFs struct {
	afero.Fs
	dir     string
	mu      sync.Mutex
	missing []string // operations after which dir was missing
	ops     []string
}

func (w *watchFs) check(op string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ops = append(w.ops, op)
	if _, err := os.Lstat(w.dir); err != nil {
		w.missing = append(w.missing, op)
	}
}

func (w *watchFs) Rename(a, b string) error {
	err := w.Fs.Rename(a, b)
	w.check("rename " + filepath.Base(a) + " -> " + filepath.Base(b))
	return err
}

func (w *watchFs) RemoveAll(p string) error {
	err := w.Fs.RemoveAll(p)
	w.check("removeall " + filepath.Base(p))
	return err
}

func (w *watchFs) exchangeIfPossible(a, b string) error {
	err := osExchange(a, b)
	w.check("exchange " + filepath.Base(a) + " <-> " + filepath.Base(b))
	return err
}

func (w *watchFs) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	return w.Fs.(afero.Lstater).LstatIfPossible(name)
}

func (w *watchFs) SymlinkIfPossible(oldname, newname string) error {
	return w.Fs.(afero.Linker).SymlinkIfPossible(oldname, newname)
}

func (w *watchFs) ReadlinkIfPossible(name string) (string, error) {
	return w.Fs.(afero.LinkReader).ReadlinkIfPossible(name)
}

// TestInstallTreeDirAlwaysThere: where the operating system can exchange
// two paths atomically, the install directory exists at every instant of
// a swap (an application started then finds a complete version), and the
// previous tree is moved and removed after it.
func TestInstallTreeDirAlwaysThere(t *testing.T) {
	if !exchangeSupported {
		t.Skip("no atomic exchange on " + runtime.GOOS + ": the swap is two renames there")
	}
	fsys, root := tempOsFs(t)
	v1, v2 := installVersions(t, true)
	dir, want1 := installFixture(t, fsys, root, v1)
	w := &watchFs{Fs: fsys, dir: dir}
	in := &installer{fs: w, dir: dir, app: "app"}
	for i, tarball := range [][]byte{v2, v1, v2} {
		in.tag = fmt.Sprint(i)
		if err := in.installTar(context.Background(), bytes.NewReader(tarball), int64(len(tarball))); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.missing) > 0 {
		t.Errorf("the install directory was missing after %q (all operations: %q)", w.missing, w.ops)
	}
	if !strings.Contains(strings.Join(w.ops, ","), "exchange .app.notsotuf-new <-> app") {
		t.Errorf("no exchange: %q", w.ops)
	}
	if got := treeSnapshot(t, fsys, dir); maps.Equal(got, want1) {
		t.Error("v2 not installed")
	}
	checkSiblings(t, fsys, root, ".app"+suffixManifest)
}

// TestRecoverExchangeStates builds, on a real disk, each state that a
// crash can leave around an exchange swap (the journal records the staged
// tree's identity) and checks that recover completes the install: in
// particular right after the exchange, when the staged name holds the
// previous tree and a swap by names would put it back.
func TestRecoverExchangeStates(t *testing.T) {
	v1 := map[string]string{"f": "v1", "only1": "1"}
	v2 := map[string]string{"f": "v2", "g": "new"}
	states := []struct {
		name     string
		exchange bool // the exchange happened
		moveOld  bool // and the previous tree was moved from the staged name to the old name
		twoStep  int  // two renames: 1 = dir moved to old, 2 = staged moved to dir
		manifest string
	}{
		{name: "committed"},
		{name: "committed, manifest staged", manifest: "staged"},
		{name: "exchanged", exchange: true},
		{name: "exchanged, manifest staged", exchange: true, manifest: "staged"},
		{name: "exchanged, previous tree moved", exchange: true, moveOld: true, manifest: "staged"},
		{name: "exchanged, manifest placed", exchange: true, moveOld: true, manifest: "placed"},
		{name: "between two renames", twoStep: 1, manifest: "staged"},
		{name: "after two renames", twoStep: 2, manifest: "staged"},
	}
	for _, st := range states {
		t.Run(st.name, func(t *testing.T) {
			if st.exchange && !exchangeSupported {
				t.Skip("no atomic exchange on " + runtime.GOOS)
			}
			fsys, root := tempOsFs(t)
			dir := filepath.Join(root, "app")
			in := &installer{fs: fsys, dir: dir, app: "app"}
			staged, _, jpath := in.siblings()
			writeTree(t, fsys, dir, v1)
			writeTree(t, fsys, staged, v2)
			if err := writeTreeManifest(fsys, dir, in.manifestPath(), "app", "1"); err != nil {
				t.Fatal(err)
			}
			mnew := in.siblingPrefix() + suffixManifestNew
			if err := writeTreeManifest(fsys, staged, mnew, "app", "2"); err != nil {
				t.Fatal(err)
			}
			id, ok := pathIdentity(fsys, staged)
			if !ok {
				t.Skip("no file identities on this file system")
			}
			oldName, err := in.newOldName()
			if err != nil {
				t.Fatal(err)
			}
			old := filepath.Join(root, oldName)
			j := journal{Op: opSwapTree, Dir: "app", Old: oldName, Tag: "2", Manifest: true, Staged: &id}
			if err := in.writeJournal(jpath, j); err != nil {
				t.Fatal(err)
			}
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			if st.exchange {
				must(osExchange(staged, dir))
				if st.moveOld {
					must(os.Rename(staged, old))
				}
			}
			if st.twoStep >= 1 {
				must(os.Rename(dir, old))
			}
			if st.twoStep >= 2 {
				must(os.Rename(staged, dir))
			}
			if st.manifest == "placed" {
				must(os.Rename(mnew, in.manifestPath()))
			}
			if err := in.recover(); err != nil {
				t.Fatal(err)
			}
			wantTree(t, fsys, dir, v2)
			if in.recovered != "2" {
				t.Errorf("recovered %q", in.recovered)
			}
			if ok, why, err := checkTreeManifest(fsys, dir, in.manifestPath(), "app"); !ok {
				t.Errorf("install manifest: %s %v", why, err)
			}
			h, err := readManifest(fsys, in.manifestPath(), func(manifestHeader, installedEntry) error { return nil })
			if err != nil || h.Version != "2" {
				t.Errorf("install manifest of %q, %v", h.Version, err)
			}
			if s := siblingsOf(t, fsys, root); strings.Join(s, ",") != ".app"+suffixManifest+",app" {
				t.Errorf("left beside the tree: %q", s)
			}
		})
	}
}

// TestInstallLogsRecoveryOnlyWhenInterrupted: a normal install does not
// say "completing an interrupted install"; recovering a real interruption
// does.
func TestInstallLogsRecoveryOnlyWhenInterrupted(t *testing.T) {
	fsys, root := tempMemFs(t)
	v1, v2 := installVersions(t, false)
	dir, _ := installFixture(t, fsys, root, v1)
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	in := &installer{fs: fsys, dir: dir, log: logger}
	if err := in.installTar(context.Background(), bytes.NewReader(v2), int64(len(v2))); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log.String(), "interrupted") {
		t.Errorf("a normal install logged:\n%s", log.String())
	}
	// An install stopped right after its commit point.
	ffs := faultfs.New(fsys, 0, false)
	ffs.FailIf(func(op, name string) bool { return op == "rename" && strings.Contains(name, suffixNew+" -> ") })
	err := (&installer{fs: ffs, dir: dir}).installTar(context.Background(), bytes.NewReader(v1), int64(len(v1)))
	if err == nil || !strings.Contains(err.Error(), "committed but not finished") {
		t.Fatalf("err = %v", err)
	}
	log.Reset()
	if err := in.recover(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "completing an interrupted install") {
		t.Errorf("recovering an interrupted install logged:\n%s", log.String())
	}
}

// TestInstallOldTreeUndeletable: once the swap is committed, a previous
// tree that cannot be deleted is a warning: the install succeeds and is
// recorded, the leftover waits under a name of its own, later updates go
// through, and a later recover removes it once it can.
func TestInstallOldTreeUndeletable(t *testing.T) {
	modes := []string{"os", "mem"}
	if exchangeSupported {
		modes = append(modes, "exchange")
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			repo := newTestRepo(t, false)
			rels := threeReleases(t, repo)
			var base afero.Fs
			var cfg ClientConfig
			if mode != "mem" {
				base, cfg = osClientConfig(t, repo, "1.0")
			} else {
				base = afero.NewMemMapFs()
				cfg = repo.config(base, "1.0")
			}
			writeTree(t, base, cfg.InstallDir, rels[0].files)
			ffs := faultfs.New(base, 0, false)
			stuck := func(op, name string) bool {
				return (op == "removeall" || op == "remove") && strings.Contains(name, "."+filepath.Base(cfg.InstallDir)+suffixOld)
			}
			ffs.FailIf(stuck)
			cfg.Fs = ffs
			if mode == "exchange" {
				cfg.Fs = exchFs{ffs}
			}
			var log bytes.Buffer
			cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
			ctx := context.Background()

			u, err := newTestClient(t, cfg).Update(ctx)
			if err != nil || u == nil || u.Version.String() != "1.2" {
				t.Fatalf("update: %+v, %v", u, err)
			}
			wantTree(t, base, cfg.InstallDir, rels[2].files)
			if v := newTestClient(t, cfg).Current().String(); v != "1.2" {
				t.Errorf("recorded version %s", v)
			}
			if !strings.Contains(log.String(), "cannot remove the files of a previous install") {
				t.Errorf("no warning logged:\n%s", log.String())
			}
			leftovers := func() []string {
				var l []string
				for _, name := range siblingsOf(t, base, filepath.Dir(cfg.InstallDir)) {
					if strings.HasPrefix(name, "."+filepath.Base(cfg.InstallDir)+suffixOld) {
						l = append(l, name)
					}
				}
				return l
			}
			if l := leftovers(); len(l) != 1 {
				t.Fatalf("leftovers %q", l)
			}

			// Nothing is wedged: recover says nothing is wrong, and the next
			// update (here a reinstall of 1.1 by hand) goes through.
			c := newTestClient(t, cfg)
			if err := c.Recover(); err != nil {
				t.Fatal(err)
			}
			in := c.installer()
			in.tag = "1.1"
			if err := in.installTar(ctx, bytes.NewReader(rels[1].tar), int64(len(rels[1].tar))); err != nil {
				t.Fatalf("next install: %v", err)
			}
			wantTree(t, base, cfg.InstallDir, rels[1].files)
			if l := leftovers(); len(l) != 2 {
				t.Fatalf("leftovers %q", l)
			}

			// Once the trees can go, the next recover removes them.
			ffs.FailIf(nil)
			if err := newTestClient(t, cfg).Recover(); err != nil {
				t.Fatal(err)
			}
			if l := leftovers(); len(l) != 0 {
				t.Errorf("leftovers after recover: %q", l)
			}
			wantTree(t, base, cfg.InstallDir, rels[1].files)
		})
	}
}

// TestInstallManifestFaults: with app set, fault injection at every write
// of an install (and of the exchange, where the system has one) never
// leaves an install manifest that describes the other version once
// recover has run.
func TestInstallManifestFaults(t *testing.T) {
	modes := []string{"mem", "os"}
	if exchangeSupported {
		modes = append(modes, "exchange")
	}
	for _, mode := range modes {
		for _, crash := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/crash=%v", mode, crash), func(t *testing.T) {
				v1, v2 := installVersions(t, mode != "mem")
				for n := 1; ; n += faultStep() {
					fsys, root := tempOsFs(t)
					if mode == "mem" {
						fsys, root = tempMemFs(t)
					}
					dir := filepath.Join(root, "app")
					first := &installer{fs: fsys, dir: dir, app: "app", tag: "1"}
					if err := first.installTar(context.Background(), bytes.NewReader(v1), int64(len(v1))); err != nil {
						t.Fatal(err)
					}
					ffs := faultfs.New(fsys, n, crash)
					var wrapped afero.Fs = ffs
					if mode == "exchange" {
						wrapped = exchFs{ffs}
					}
					err := (&installer{fs: wrapped, dir: dir, app: "app", tag: "2"}).installTar(context.Background(), bytes.NewReader(v2), int64(len(v2)))
					if !ffs.Failed() {
						if err != nil {
							t.Fatal(err)
						}
						if mode == "exchange" && !strings.Contains(strings.Join(ffs.Ops(), "\n"), "exchange ") {
							t.Fatal("no exchange")
						}
						break
					}
					in := &installer{fs: fsys, dir: dir, app: "app"}
					if err := in.recover(); err != nil {
						t.Fatalf("op %d (%s): recover: %v", n, ffs.Ops()[n-1], err)
					}
					h, err := readManifest(fsys, in.manifestPath(), func(manifestHeader, installedEntry) error { return nil })
					if err != nil {
						t.Fatalf("op %d (%s): %v", n, ffs.Ops()[n-1], err)
					}
					if ok, why, err := checkTreeManifest(fsys, dir, in.manifestPath(), "app"); !ok {
						t.Fatalf("op %d (%s): manifest of %s: %s %v", n, ffs.Ops()[n-1], h.Version, why, err)
					}
					// And it is the manifest of the version installed.
					_, err = readManifest(fsys, in.manifestPath(), func(_ manifestHeader, e installedEntry) error {
						if ok, _ := exists(fsys, filepath.Join(dir, filepath.FromSlash(e.Path))); !ok {
							return errors.New(e.Path)
						}
						return nil
					})
					gone, _ := exists(fsys, filepath.Join(dir, "gone.txt")) // only in v1
					if err != nil || (h.Version == "1") != gone {
						t.Fatalf("op %d (%s): manifest of %s, v1 tree %v, %v", n, ffs.Ops()[n-1], h.Version, gone, err)
					}
					if s := siblingsOf(t, fsys, root); strings.Join(s, ",") != ".app"+suffixManifest+",app" {
						t.Fatalf("op %d (%s): left beside the tree: %q", n, ffs.Ops()[n-1], s)
					}
				}
			})
		}
	}
}

// FuzzReadManifest: any bytes as an install manifest give an answer or an
// error, never a panic, and never a path outside the tree.
func FuzzReadManifest(f *testing.F) {
	var buf bytes.Buffer
	encodeManifest(&buf, "app", "1.0", func(emit func(installedEntry) error) error {
		emit(installedEntry{Path: "bin", Type: "dir", Mode: "0755"})
		emit(installedEntry{Path: "bin/app", Type: "file", Mode: "0755", Size: 3, SHA256: strings.Repeat("0", 64)})
		return emit(installedEntry{Path: "link", Type: "symlink", Link: "bin/app"})
	})
	f.Add(buf.Bytes())
	f.Add([]byte(`{"manifest":1,"app":"app"}` + "\n" + `{"path":"../x","type":"file"}`))
	f.Add([]byte(`{"manifest":2}`))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := afero.NewMemMapFs()
		afero.WriteFile(fsys, "/m", data, 0o644)
		fsys.MkdirAll("/tree/bin", 0o755)
		afero.WriteFile(fsys, "/tree/bin/app", []byte("app"), 0o755)
		_, err := readManifest(fsys, "/m", func(_ manifestHeader, e installedEntry) error {
			rel, err := filepath.Rel("/tree", filepath.Join("/tree", filepath.FromSlash(e.Path)))
			if !validManifestPath(e.Path) || err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				t.Fatalf("path %q accepted", e.Path)
			}
			return nil
		})
		ok, _, cerr := checkTreeManifest(fsys, "/tree", "/m", "app")
		if ok && (err != nil || cerr != nil) {
			t.Fatalf("accepted a manifest that does not read: %v %v", err, cerr)
		}
		checkExeManifest(fsys, "/m", "app", 3, func() (string, error) { return strings.Repeat("0", 64), nil })
	})
}

// TestInstallExecutableManifestFaults: in single-executable mode, after a
// fault at any write of an install and recover, the install manifest
// accepts the executable that is there (old or new), with both swap
// strategies.
func TestInstallExecutableManifestFaults(t *testing.T) {
	for _, goos := range []string{"linux", "windows"} {
		for _, crash := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/crash=%v", goos, crash), func(t *testing.T) {
				a1, a2 := exeArchive(t, "binary v1"), exeArchive(t, "binary v2")
				for n := 1; ; n += faultStep() {
					fsys, root := tempOsFs(t)
					exe := filepath.Join(root, "app")
					first := &installer{fs: fsys, dir: exe, singleExe: true, goos: goos, app: "app", tag: "1"}
					if err := first.installExecutable(context.Background(), bytes.NewReader(a1), 1<<20); err != nil {
						t.Fatal(err)
					}
					ffs := faultfs.New(fsys, n, crash)
					err := (&installer{fs: ffs, dir: exe, singleExe: true, goos: goos, app: "app", tag: "2"}).installExecutable(context.Background(), bytes.NewReader(a2), 1<<20)
					if !ffs.Failed() {
						if err != nil {
							t.Fatal(err)
						}
						break
					}
					in := &installer{fs: fsys, dir: exe, singleExe: true, goos: goos, app: "app"}
					if err := in.recover(); err != nil {
						t.Fatalf("op %d (%s): recover: %v", n, ffs.Ops()[n-1], err)
					}
					size, sum, err := hashFile(fsys, exe)
					if err != nil {
						t.Fatal(err)
					}
					if ok, why, err := checkExeManifest(fsys, in.manifestPath(), "app", size, func() (string, error) { return sum, nil }); !ok {
						t.Fatalf("op %d (%s): %s %v", n, ffs.Ops()[n-1], why, err)
					}
					if s := siblingsOf(t, fsys, root); strings.Join(s, ",") != "app,app"+suffixManifest {
						t.Fatalf("op %d (%s): leftovers: %q", n, ffs.Ops()[n-1], s)
					}
				}
			})
		}
	}
}
