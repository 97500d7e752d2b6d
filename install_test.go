package notsotuf

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/notsotuf/notsotuf/internal/faultfs"
	"github.com/spf13/afero"
)

// faultStep is the stride of the fault-injection loops: every operation,
// or every fifth in -short mode.
func faultStep() int {
	if testing.Short() {
		return 5
	}
	return 1
}

// installVersions returns the tars of two versions of a test app; links
// adds symbolic links (not supported by MemMapFs).
func installVersions(t testing.TB, links bool) (v1, v2 []byte) {
	old := []testEnt{
		{name: "./", typ: tar.TypeDir},
		{name: "./app", mode: 0o755, body: "app v1"},
		{name: "./gone.txt", body: "only in v1"},
		{name: "./lib/", typ: tar.TypeDir},
		{name: "./lib/data", body: strings.Repeat("v1 data ", 300)},
	}
	new := []testEnt{
		{name: "./", typ: tar.TypeDir},
		{name: "./app", mode: 0o755, body: "app v2"},
		{name: "./lib/", typ: tar.TypeDir},
		{name: "./lib/data", body: strings.Repeat("v2 data ", 400)},
		{name: "./lib/new.txt", body: "new in v2"},
		{name: "./share/empty/", typ: tar.TypeDir},
		{name: "./ro/", typ: tar.TypeDir, mode: 0o555},
		{name: "./ro/f", mode: 0o444, body: "read-only"},
	}
	if links {
		old = append(old, testEnt{name: "./lib/link", typ: tar.TypeSymlink, link: "data"})
		new = append(new, testEnt{name: "./lib/link", typ: tar.TypeSymlink, link: "new.txt"}, testEnt{name: "./top", typ: tar.TypeSymlink, link: "lib/data"})
	}
	return buildTestTar(t, old...), buildTestTar(t, new...)
}

// siblingsOf lists the names in dir.
func siblingsOf(t testing.TB, fsys afero.Fs, dir string) []string {
	t.Helper()
	infos, err := afero.ReadDir(fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fi := range infos {
		names = append(names, fi.Name())
	}
	sort.Strings(names)
	return names
}

// installFixture prepares root with an installed v1 in root/app and two
// unrelated siblings that no install may touch.
func installFixture(t testing.TB, fsys afero.Fs, root string, v1 []byte) (dir string, want1 map[string]string) {
	t.Helper()
	dir = filepath.Join(root, "app")
	in := &installer{fs: fsys, dir: dir}
	if err := in.installTar(context.Background(), bytes.NewReader(v1), int64(len(v1))); err != nil {
		t.Fatalf("installing v1: %v", err)
	}
	if err := afero.WriteFile(fsys, filepath.Join(root, "unrelated.txt"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Mkdir(filepath.Join(root, ".app-other"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, treeSnapshot(t, fsys, dir)
}

var wantSiblings = []string{".app-other", "app", "unrelated.txt"}

// checkSiblings fails unless root holds the fixture's siblings, the
// install dir and the extra names (an install manifest...).
func checkSiblings(t testing.TB, fsys afero.Fs, root string, extra ...string) {
	t.Helper()
	want := append(append([]string(nil), wantSiblings...), extra...)
	sort.Strings(want)
	if got := siblingsOf(t, fsys, root); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("install parent holds %q, want %q", got, want)
	}
}

func TestInstallTree(t *testing.T) {
	for _, mode := range []string{"os", "mem"} {
		t.Run(mode, func(t *testing.T) {
			fsys, root := tempOsFs(t)
			if mode == "mem" {
				fsys, root = tempMemFs(t)
			}
			v1, v2 := installVersions(t, mode == "os")
			root = filepath.Join(root, "not", "yet") // first install creates the parents
			dir, want1 := installFixture(t, fsys, root, v1)
			if want1["gone.txt"] == "" || want1["app"] == "" {
				t.Fatalf("v1 tree:\n%s", describeTree(want1))
			}
			in := &installer{fs: fsys, dir: dir}
			if err := in.installTar(context.Background(), bytes.NewReader(v2), int64(len(v2))); err != nil {
				t.Fatal(err)
			}
			got := treeSnapshot(t, fsys, dir)
			if _, ok := got["gone.txt"]; ok {
				t.Error("file of v1 survived the install of v2")
			}
			if got["ro"] != "d 0555" || got["share/empty"] != "d 0755" {
				t.Errorf("v2 tree:\n%s", describeTree(got))
			}
			checkSiblings(t, fsys, root)
			// Installing again over a read-only directory works too.
			if err := in.installTar(context.Background(), bytes.NewReader(v1), int64(len(v1))); err != nil {
				t.Fatal(err)
			}
			if got := treeSnapshot(t, fsys, dir); !maps.Equal(got, want1) {
				t.Errorf("reinstalled v1:\n%s\nwant:\n%s", describeTree(got), describeTree(want1))
			}
			checkSiblings(t, fsys, root)
		})
	}
}

func TestInstallTreeRefusesHostileArchive(t *testing.T) {
	fsys, root := tempOsFs(t)
	v1, _ := installVersions(t, true)
	dir, want1 := installFixture(t, fsys, root, v1)
	bad := buildTestTar(t, testEnt{name: "./", typ: tar.TypeDir}, testEnt{name: "./ok", body: "x"}, testEnt{name: "./l", typ: tar.TypeSymlink, link: "../../x"})
	in := &installer{fs: fsys, dir: dir}
	err := in.installTar(context.Background(), bytes.NewReader(bad), 1<<20)
	if !errors.Is(err, ErrUnsafeArchive) || !strings.Contains(err.Error(), `"./l"`) {
		t.Fatalf("err = %v", err)
	}
	if got := treeSnapshot(t, fsys, dir); !maps.Equal(got, want1) {
		t.Errorf("tree changed by a refused archive:\n%s", describeTree(got))
	}
	checkSiblings(t, fsys, root)
	if _, err := os.Lstat(filepath.Join(filepath.Dir(root), "x")); err == nil {
		t.Error("file written outside")
	}
}

// TestInstallTreeFaults fails every write operation of an install in turn,
// once as a transient error and once as a crash (every later operation
// fails too), on a real disk and in memory. After each failure the tree must
// be v1 or v2, complete, once a fresh installer has recovered, and the next
// install must succeed.
func TestInstallTreeFaults(t *testing.T) {
	for _, mode := range []string{"os", "mem"} {
		for _, crash := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/crash=%v", mode, crash), func(t *testing.T) {
				v1, v2 := installVersions(t, mode == "os")
				var want2 map[string]string
				{
					fsys, root := tempOsFs(t)
					if mode == "mem" {
						fsys, root = tempMemFs(t)
					}
					dir, _ := installFixture(t, fsys, root, v1)
					if err := (&installer{fs: fsys, dir: dir}).installTar(context.Background(), bytes.NewReader(v2), int64(len(v2))); err != nil {
						t.Fatal(err)
					}
					want2 = treeSnapshot(t, fsys, dir)
				}
				for n := 1; ; n += faultStep() {
					fsys, root := tempOsFs(t)
					if mode == "mem" {
						fsys, root = tempMemFs(t)
					}
					dir, want1 := installFixture(t, fsys, root, v1)
					ffs := faultfs.New(fsys, n, crash)
					err := (&installer{fs: ffs, dir: dir, tag: "2.0"}).installTar(context.Background(), bytes.NewReader(v2), int64(len(v2)))
					if !ffs.Failed() {
						if err != nil {
							t.Fatalf("install without fault: %v", err)
						}
						if n < 10 {
							t.Fatalf("only %d operations", n)
						}
						t.Logf("%d write operations in an install", n-1)
						break
					}
					if err == nil && crash {
						// Only the removal of the previous tree, after the
						// swap, may fail without failing the install.
						if got := treeSnapshot(t, fsys, dir); !maps.Equal(got, want2) {
							t.Fatalf("op %d (%s): install succeeded after a crash, tree:\n%s", n, ffs.Ops()[n-1], describeTree(got))
						}
						if op := ffs.Ops()[n-1]; !strings.Contains(op, suffixOld) {
							t.Fatalf("op %d (%s): install succeeded after a crash", n, op)
						}
					}
					if !crash {
						// In-process handling already leaves a usable tree.
						got := treeSnapshot(t, fsys, dir)
						if !maps.Equal(got, want1) && !maps.Equal(got, want2) {
							t.Fatalf("op %d (%s): before recover, tree is neither v1 nor v2:\n%s", n, ffs.Ops()[n-1], describeTree(got))
						}
					}
					in := &installer{fs: fsys, dir: dir}
					if err := in.recover(); err != nil {
						t.Fatalf("op %d (%s): recover: %v", n, ffs.Ops()[n-1], err)
					}
					got := treeSnapshot(t, fsys, dir)
					if !maps.Equal(got, want1) && !maps.Equal(got, want2) {
						t.Fatalf("op %d (%s): after recover, tree is neither v1 nor v2:\n%s", n, ffs.Ops()[n-1], describeTree(got))
					}
					// recover reports the install it completed, if any.
					if crash && err != nil && (in.recovered == "2.0") == maps.Equal(got, want1) {
						t.Fatalf("op %d (%s): recovered %q with tree v1=%v", n, ffs.Ops()[n-1], in.recovered, maps.Equal(got, want1))
					}
					checkSiblings(t, fsys, root)
					if err := in.installTar(context.Background(), bytes.NewReader(v2), int64(len(v2))); err != nil {
						t.Fatalf("op %d: next install: %v", n, err)
					}
					got = treeSnapshot(t, fsys, dir)
					if !maps.Equal(got, want2) {
						t.Fatalf("op %d: next install gave\n%s\nwant\n%s", n, describeTree(got), describeTree(want2))
					}
					checkSiblings(t, fsys, root)
				}
			})
		}
	}
}

// TestRecoverStates builds each on-disk state an interrupted swap can leave
// and checks what recover makes of it.
func TestRecoverStates(t *testing.T) {
	type state struct{ journal, staged, dir, old bool }
	tests := []struct {
		s    state
		want string // "v1", "v2" or "error"
	}{
		{state{false, false, true, false}, "v1"},
		{state{false, true, true, false}, "v1"},  // unfinished staging
		{state{false, false, false, true}, "v1"}, // only the previous tree: restored
		{state{false, true, true, true}, "v1"},
		{state{true, true, true, false}, "v2"}, // committed, not swapped
		{state{true, true, false, true}, "v2"}, // between the two renames
		{state{true, false, true, true}, "v2"}, // swapped, old not removed
		{state{true, false, true, false}, "v2"},
		{state{true, true, true, true}, "v2"},
		{state{true, false, false, true}, "v1"},
		{state{true, false, false, false}, "error"},
	}
	v1 := map[string]string{"f": "v1"}
	v2 := map[string]string{"f": "v2", "g": "new"}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%+v", tt.s), func(t *testing.T) {
			fsys, root := tempMemFs(t)
			dir := filepath.Join(root, "app")
			in := &installer{fs: fsys, dir: dir}
			staged, old, jpath := in.siblings()
			write := func(d string, files map[string]string) {
				fsys.MkdirAll(d, 0o755)
				for k, v := range files {
					afero.WriteFile(fsys, filepath.Join(d, k), []byte(v), 0o644)
				}
			}
			if tt.s.dir {
				if tt.s.journal && !tt.s.staged {
					write(dir, v2) // the staged tree was renamed into place
				} else {
					write(dir, v1)
				}
			}
			if tt.s.old {
				write(old, v1)
			}
			if tt.s.staged {
				write(staged, v2)
			}
			if tt.s.journal {
				if err := in.writeJournal(jpath, journal{Op: opSwapTree, Dir: "app"}); err != nil {
					t.Fatal(err)
				}
			}
			afero.WriteFile(fsys, filepath.Join(root, "..app.notsotuf-journal.tmp-123"), []byte("partial"), 0o644)
			err := in.recover()
			if tt.want == "error" {
				if err == nil {
					t.Fatal("recover succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			infos, _ := afero.ReadDir(fsys, dir)
			for _, fi := range infos {
				b, _ := afero.ReadFile(fsys, filepath.Join(dir, fi.Name()))
				got[fi.Name()] = string(b)
			}
			want := v1
			if tt.want == "v2" {
				want = v2
			}
			if !maps.Equal(got, want) {
				t.Errorf("after recover: %v, want %s", got, tt.want)
			}
			if s := siblingsOf(t, fsys, root); len(s) != 1 || s[0] != "app" {
				t.Errorf("leftovers: %q", s)
			}
		})
	}
}

func TestRecoverJournalOfOtherMode(t *testing.T) {
	fsys, root := tempMemFs(t)
	exe := filepath.Join(root, "app")
	tree := &installer{fs: fsys, dir: exe}
	_, _, jpath := tree.siblings()
	fsys.MkdirAll(root, 0o755)
	afero.WriteFile(fsys, jpath, []byte(`{"op":"swap-exe","exe":"app","old":"app.notsotuf-old-1"}`), 0o644)
	if err := tree.recover(); err == nil || !strings.Contains(err.Error(), "swap-exe") {
		t.Fatalf("err = %v", err)
	}
	afero.WriteFile(fsys, jpath, []byte(`{"op":`), 0o644)
	if err := tree.recover(); err == nil || !strings.Contains(err.Error(), jpath) {
		t.Fatalf("err = %v", err)
	}
}

func exeArchive(t testing.TB, body string) []byte {
	return gzipForTest(t, buildTestTar(t, testEnt{name: "./", typ: tar.TypeDir}, testEnt{name: "./app", mode: 0o755, body: body}))
}

func TestInstallExecutable(t *testing.T) {
	for _, goos := range []string{"", "windows"} {
		t.Run("goos="+goos, func(t *testing.T) {
			fsys, root := tempOsFs(t)
			exe := filepath.Join(root, "app")
			in := &installer{fs: fsys, dir: exe, singleExe: true, goos: goos}
			a1 := exeArchive(t, "binary v1")
			if err := in.installExecutable(context.Background(), bytes.NewReader(a1), 1<<20); err != nil {
				t.Fatal(err)
			}
			fi, err := fsys.Stat(exe)
			if err != nil || fi.Mode().Perm() != 0o755 {
				t.Fatalf("first install: %v %v", fi, err)
			}
			if err := fsys.Chmod(exe, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := in.installExecutable(context.Background(), bytes.NewReader(exeArchive(t, "binary v2")), 1<<20); err != nil {
				t.Fatal(err)
			}
			if b, _ := afero.ReadFile(fsys, exe); string(b) != "binary v2" {
				t.Fatalf("exe holds %q", b)
			}
			if fi, _ := fsys.Stat(exe); fi.Mode().Perm() != 0o700 {
				t.Errorf("mode %v, want the old one 0700", fi.Mode())
			}
			if s := siblingsOf(t, fsys, root); len(s) != 1 {
				t.Errorf("leftovers: %q", s)
			}
		})
	}
}

func TestInstallExecutableRefuses(t *testing.T) {
	tests := []struct {
		name string
		tar  []byte
		want string
	}{
		{"two files", buildTestTar(t, testEnt{name: "a", body: "1"}, testEnt{name: "b", body: "2"}), `found "a" too`},
		{"nested", buildTestTar(t, testEnt{name: "bin/a", body: "1"}), "top of the archive"},
		{"symlink", buildTestTar(t, testEnt{name: "a", typ: tar.TypeSymlink, link: "b"}), "one regular file"},
		{"empty", buildTestTar(t, testEnt{name: "./", typ: tar.TypeDir}), "no regular file"},
		{"dotdot", buildTestTar(t, testEnt{name: "../a", body: "1"}), `".."`},
		{"bomb", buildTestTar(t, testEnt{name: "a", body: strings.Repeat("x", 5000)}), "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys, root := tempMemFs(t)
			exe := filepath.Join(root, "app")
			fsys.MkdirAll(root, 0o755)
			afero.WriteFile(fsys, exe, []byte("old"), 0o755)
			in := &installer{fs: fsys, dir: exe, singleExe: true}
			err := in.installExecutable(context.Background(), bytes.NewReader(tt.tar), 2048)
			if !errors.Is(err, ErrUnsafeArchive) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if b, _ := afero.ReadFile(fsys, exe); string(b) != "old" {
				t.Errorf("exe changed: %q", b)
			}
			if s := siblingsOf(t, fsys, root); len(s) != 1 {
				t.Errorf("leftovers: %q", s)
			}
		})
	}
}

func TestInstallExecutableFaults(t *testing.T) {
	for _, goos := range []string{"linux", "windows"} {
		for _, mode := range []string{"os", "mem"} {
			for _, crash := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/crash=%v", goos, mode, crash), func(t *testing.T) {
					a2 := exeArchive(t, "binary v2")
					for n := 1; ; n += faultStep() {
						fsys, root := tempOsFs(t)
						if mode == "mem" {
							fsys, root = tempMemFs(t)
							fsys.MkdirAll(root, 0o755)
						}
						exe := filepath.Join(root, "app")
						afero.WriteFile(fsys, exe, []byte("binary v1"), 0o755)
						ffs := faultfs.New(fsys, n, crash)
						err := (&installer{fs: ffs, dir: exe, singleExe: true, goos: goos, tag: "2.0"}).installExecutable(context.Background(), bytes.NewReader(a2), 1<<20)
						if !ffs.Failed() {
							if err != nil {
								t.Fatal(err)
							}
							break
						}
						in := &installer{fs: fsys, dir: exe, singleExe: true, goos: goos}
						if err := in.recover(); err != nil {
							t.Fatalf("op %d (%s): recover: %v", n, ffs.Ops()[n-1], err)
						}
						b, err := afero.ReadFile(fsys, exe)
						if err != nil || string(b) != "binary v1" && string(b) != "binary v2" {
							t.Fatalf("op %d (%s): exe holds %q, %v", n, ffs.Ops()[n-1], b, err)
						}
						if in.recovered != "" && (goos != "windows" || string(b) != "binary v2") {
							t.Fatalf("op %d (%s): recovered %q with %q", n, ffs.Ops()[n-1], in.recovered, b)
						}
						if s := siblingsOf(t, fsys, root); len(s) != 1 {
							t.Fatalf("op %d (%s): leftovers: %q", n, ffs.Ops()[n-1], s)
						}
						if err := in.installExecutable(context.Background(), bytes.NewReader(a2), 1<<20); err != nil {
							t.Fatalf("op %d: next install: %v", n, err)
						}
						if b, _ := afero.ReadFile(fsys, exe); string(b) != "binary v2" {
							t.Fatalf("op %d: next install left %q", n, b)
						}
					}
				})
			}
		}
	}
}

// TestInstallRoundTrip checks that an installed tree gives back the exact
// tar it came from when rebuilt with WriteTar: the client verifies the
// installed version this way before applying a patch to it.
func TestInstallRoundTrip(t *testing.T) {
	fsys, root := tempOsFs(t)
	src := filepath.Join(root, "src")
	for _, d := range []string{"bin", "lib", "share/empty", "ro"} {
		if err := fsys.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]os.FileMode{"bin/app": 0o755, "lib/libx.so.1": 0o750, "README": 0o644, "ro/f": 0o444}
	for name, mode := range files {
		if err := afero.WriteFile(fsys, filepath.Join(src, name), []byte("content of "+name), mode); err != nil {
			t.Fatal(err)
		}
		fsys.Chmod(filepath.Join(src, name), mode)
	}
	if err := os.Symlink("libx.so.1", filepath.Join(src, "lib", "libx.so")); err != nil {
		t.Fatal(err)
	}
	fsys.Chmod(filepath.Join(src, "ro"), 0o555)
	t.Cleanup(func() { os.Chmod(filepath.Join(src, "ro"), 0o755) })
	var t1 bytes.Buffer
	if err := WriteTar(fsys, src, &t1); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "app")
	in := &installer{fs: fsys, dir: dir}
	if err := in.installTar(context.Background(), bytes.NewReader(t1.Bytes()), int64(t1.Len())); err != nil {
		t.Fatal(err)
	}
	var t2 bytes.Buffer
	if err := WriteTar(fsys, dir, &t2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(t1.Bytes(), t2.Bytes()) {
		t.Fatalf("rebuilt tar differs (%d vs %d bytes):\n%s\nvs\n%s", t1.Len(), t2.Len(),
			describeTree(treeSnapshot(t, fsys, src)), describeTree(treeSnapshot(t, fsys, dir)))
	}
}

// lockedDirFs refuses to rename one directory, as Windows does for a
// directory holding a running executable.
type lockedDirFs struct {
	afero.Fs
	locked string
}

func (l lockedDirFs) Rename(oldname, newname string) error {
	if filepath.Clean(oldname) == filepath.Clean(l.locked) {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: errors.New("access is denied")}
	}
	return l.Fs.Rename(oldname, newname)
}

func TestInstallTreeInUse(t *testing.T) {
	fsys, root := tempOsFs(t)
	v1, v2 := installVersions(t, false) // lockedDirFs hides afero.Linker
	dir, want1 := installFixture(t, fsys, root, v1)
	locked := lockedDirFs{Fs: fsys, locked: dir}
	in := &installer{fs: locked, dir: dir}
	err := in.installTar(context.Background(), bytes.NewReader(v2), int64(len(v2)))
	if !errors.Is(err, errInstallAbandoned) || !strings.Contains(err.Error(), "access is denied") {
		t.Fatalf("err = %v", err)
	}
	if got := treeSnapshot(t, fsys, dir); !maps.Equal(got, want1) {
		t.Errorf("tree changed:\n%s", describeTree(got))
	}
	checkSiblings(t, fsys, root)
	if err := in.recover(); err != nil {
		t.Fatal(err)
	}
	// Once the directory is free, the update goes through.
	if err := (&installer{fs: fsys, dir: dir}).installTar(context.Background(), bytes.NewReader(v2), int64(len(v2))); err != nil {
		t.Fatal(err)
	}
	checkSiblings(t, fsys, root)
}

func FuzzInstallExecutable(f *testing.F) {
	f.Add(exeArchive(f, "binary"))
	f.Add(buildTestTar(f, testEnt{name: "./", typ: tar.TypeDir}, testEnt{name: "./a", body: "1"}, testEnt{name: "./b", body: "2"}))
	f.Add(buildTestTar(f, testEnt{name: "a", typ: tar.TypeSymlink, link: "/etc/passwd"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := afero.NewMemMapFs()
		afero.WriteFile(fsys, "/bin/app", []byte("old"), 0o755)
		in := &installer{fs: fsys, dir: "/bin/app", singleExe: true}
		err := in.installExecutable(context.Background(), bytes.NewReader(data), 1<<16)
		if s := siblingsOf(t, fsys, "/bin"); len(s) != 1 || s[0] != "app" {
			t.Fatalf("/bin holds %q", s)
		}
		b, rerr := afero.ReadFile(fsys, "/bin/app")
		if rerr != nil {
			t.Fatal(rerr)
		}
		if err != nil && string(b) != "old" {
			t.Fatalf("failed install (%v) changed the executable", err)
		}
		if len(b) > 1<<16 {
			t.Fatalf("executable of %d bytes beyond the limit", len(b))
		}
	})
}
