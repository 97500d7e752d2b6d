package notsotuf

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
)

func testFss(t *testing.T) map[string]struct {
	fs  afero.Fs
	dir string
} {
	return map[string]struct {
		fs  afero.Fs
		dir string
	}{
		"mem": {afero.NewMemMapFs(), "/work"},
		"os":  {afero.NewOsFs(), t.TempDir()},
	}
}

func TestWriteAtomic(t *testing.T) {
	for name, c := range testFss(t) {
		t.Run(name, func(t *testing.T) {
			if err := c.fs.MkdirAll(c.dir, 0o755); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(c.dir, "f.json")
			if err := writeFileAtomic(c.fs, p, []byte("one"), 0o644); err != nil {
				t.Fatal(err)
			}
			boom := errors.New("boom")
			err := writeAtomic(c.fs, p, 0o644, func(w io.Writer) error {
				w.Write([]byte("partial"))
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want boom", err)
			}
			if b, _ := afero.ReadFile(c.fs, p); string(b) != "one" {
				t.Fatalf("content after failed write = %q, want the old one", b)
			}
			if err := writeFileAtomic(c.fs, p, []byte("two"), 0o600); err != nil {
				t.Fatal(err)
			}
			if b, _ := afero.ReadFile(c.fs, p); string(b) != "two" {
				t.Fatalf("content = %q", b)
			}
			entries, _ := afero.ReadDir(c.fs, c.dir)
			if len(entries) != 1 {
				t.Fatalf("temporary files left behind: %v", entries)
			}
			if fi, _ := c.fs.Stat(p); fi.Mode().Perm() != 0o600 && name == "os" && os.PathSeparator == '/' {
				t.Errorf("mode = %v", fi.Mode())
			}
			size, sum, err := hashFile(c.fs, p)
			if err != nil || size != 3 || sum != "3fc4ccfe745870e2c0d99f71f30ff0656c8dedd41cc1d7d3d376b0dbe685e2f3" {
				t.Errorf("hashFile = %d %s %v", size, sum, err)
			}
			if ok, err := exists(c.fs, p); !ok || err != nil {
				t.Errorf("exists = %v %v", ok, err)
			}
			if ok, err := exists(c.fs, p+"x"); ok || err != nil {
				t.Errorf("exists(missing) = %v %v", ok, err)
			}
		})
	}
}

// plantVictim writes a file standing for one only root may change, and
// returns a check that it is unchanged.
func plantVictim(t *testing.T, dir string) (path string, unchanged func()) {
	t.Helper()
	path = filepath.Join(dir, "victim")
	if err := os.WriteFile(path, []byte("root-only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, func() {
		t.Helper()
		if b, err := os.ReadFile(path); err != nil || string(b) != "root-only\n" {
			t.Errorf("victim %s changed: %q, %v", path, b, err)
		}
	}
}

// within fails the test if fn does not return within a few seconds (an
// open that blocks on a FIFO).
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: still blocked after 5 s", what)
	}
}

// TestOpenNoFollow: cache, staging, lock and temporary files are opened
// without following a symbolic link planted in their place, and only if
// they are regular files (a FIFO does not block, a hard link is not
// written to).
func TestOpenNoFollow(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links and FIFOs need Unix here")
	}
	fsys := afero.NewOsFs()
	dir := t.TempDir()
	victim, unchanged := plantVictim(t, dir)
	p := func(name string) string { return filepath.Join(dir, name) }
	if err := os.Symlink(victim, p("link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(p("created-through-link"), p("dangling")); err != nil {
		t.Fatal(err)
	}
	if err := mkfifoForTest(p("fifo")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(victim, p("hard")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(p("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name string
		flag int
		want string
	}{
		{"link", os.O_RDONLY, "symbolic link"},
		{"link", os.O_RDWR | os.O_CREATE, "symbolic link"},
		{"link", os.O_WRONLY | os.O_CREATE | os.O_TRUNC, "symbolic link"},
		{"dangling", os.O_RDWR | os.O_CREATE, "symbolic link"},
		{"fifo", os.O_RDONLY, "FIFO"},
		{"fifo", os.O_RDWR | os.O_CREATE, "FIFO"},
		{"hard", os.O_RDWR | os.O_CREATE, "hard links"},
		{"hard", os.O_WRONLY | os.O_TRUNC, "hard links"},
		{"dir", os.O_RDONLY, "directory"},
	}
	for _, tt := range refused {
		within(t, "open "+tt.name, func() {
			f, err := openNoFollow(fsys, p(tt.name), tt.flag, 0o644)
			if err == nil {
				f.Close()
				t.Errorf("open %s (flag %#x) succeeded", tt.name, tt.flag)
				return
			}
			if !errors.Is(err, errNotRegular) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p(tt.name)) {
				t.Errorf("open %s (flag %#x): %v, want a refusal naming the file and %q", tt.name, tt.flag, err, tt.want)
			}
		})
	}
	unchanged()
	if _, err := os.Lstat(p("created-through-link")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file was created through the dangling link: %v", err)
	}
	// Reading through a hard link is harmless (it is a file like another).
	if _, _, err := hashFile(fsys, p("hard")); err != nil {
		t.Errorf("hashFile of a hard link: %v", err)
	}

	// Regular files, new and old, on disk and in memory.
	for name, c := range testFss(t) {
		t.Run(name, func(t *testing.T) {
			if err := c.fs.MkdirAll(c.dir, 0o755); err != nil {
				t.Fatal(err)
			}
			n := filepath.Join(c.dir, "f")
			f, err := openNoFollow(c.fs, n, os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte("hello"))
			f.Close()
			if _, err := openNoFollow(c.fs, n, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); !errors.Is(err, fs.ErrExist) {
				t.Errorf("O_EXCL on an existing file: %v", err)
			}
			f, err = openNoFollow(c.fs, n, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			if b, _ := afero.ReadFile(c.fs, n); len(b) != 0 {
				t.Errorf("O_TRUNC left %q", b)
			}
			if _, err := openNoFollow(c.fs, filepath.Join(c.dir, "missing"), os.O_RDONLY, 0); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("missing file: %v", err)
			}
			a, err := createTemp(c.fs, c.dir, ".f.tmp-*")
			if err != nil {
				t.Fatal(err)
			}
			b, err := createTemp(c.fs, c.dir, ".f.tmp-*")
			if err != nil {
				t.Fatal(err)
			}
			if a.Name() == b.Name() || !strings.HasPrefix(filepath.Base(a.Name()), ".f.tmp-") {
				t.Errorf("temporary files %s and %s", a.Name(), b.Name())
			}
			a.Close()
			b.Close()
			afero.WriteFile(c.fs, n, []byte("0123456789ab"), 0o600)
			if _, err := readCacheFile(c.fs, n, 10); err == nil || !strings.Contains(err.Error(), "more than the 10") {
				t.Errorf("readCacheFile beyond its cap: %v", err)
			}
			if _, _, err := hashFileLimit(c.fs, n, 10); err == nil {
				t.Error("hashFileLimit beyond its cap succeeded")
			}
			if data, err := readCacheFile(c.fs, n, 12); err != nil || string(data) != "0123456789ab" {
				t.Errorf("readCacheFile = %q, %v", data, err)
			}
		})
	}
}

// TestReadTrustedRoot: --root reads a regular file (through a link if
// given one) of at most the root cap; a device, a FIFO or a directory is
// refused at once instead of read forever or waited on.
func TestReadTrustedRoot(t *testing.T) {
	fsys := afero.NewOsFs()
	dir := t.TempDir()
	root := filepath.Join(dir, "root.json")
	if err := os.WriteFile(root, []byte(`{"signed":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadTrustedRoot(fsys, root); err != nil || string(b) != `{"signed":{}}` {
		t.Fatalf("ReadTrustedRoot = %q, %v", b, err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, make([]byte, maxRootLength+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTrustedRoot(fsys, big); err == nil || !strings.Contains(err.Error(), "more than the 524288") {
		t.Errorf("a root beyond the cap: %v", err)
	}
	if _, err := ReadTrustedRoot(fsys, dir); !errors.Is(err, errNotRegular) {
		t.Errorf("a directory: %v", err)
	}
	if runtime.GOOS == "windows" {
		return
	}
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTrustedRoot(fsys, link); err != nil {
		t.Errorf("a link to a root file: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := mkfifoForTest(fifo); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, zero, "/dev/zero"} {
		within(t, "ReadTrustedRoot "+p, func() {
			if _, err := ReadTrustedRoot(fsys, p); !errors.Is(err, errNotRegular) || !strings.Contains(err.Error(), p) {
				t.Errorf("ReadTrustedRoot(%s) = %v, want a refusal naming it", p, err)
			}
		})
	}
}
