package notsotuf

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

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
