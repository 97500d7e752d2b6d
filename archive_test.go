package notsotuf

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// tufupFixture is the repository made by tufup 0.10.0 (a copy of
// shared/interop/tufup-demoapp).
const tufupFixture = "testdata/tufup-demoapp"

// tufupFixtureDir returns the tufup interop fixture, or skips the test when
// it is not on this machine.
func tufupFixtureDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("NOTSOTUF_TUFUP_FIXTURE")
	if dir == "" {
		dir = tufupFixture
	}
	if _, err := os.Stat(filepath.Join(dir, "metadata", "root.json")); err != nil {
		t.Skipf("tufup fixture not available: %v", err)
	}
	return dir
}

type tarEntry struct {
	Name     string
	Type     byte
	Mode     int64
	Linkname string
	Uname    string
	Gname    string
	Uid, Gid int
	ModTime  int64
	Body     string // sha256 of the content
}

func readTarEntries(t *testing.T, r io.Reader) []tarEntry {
	t.Helper()
	tr := tar.NewReader(r)
	var out []tarEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{h.Name, h.Typeflag, h.Mode, h.Linkname, h.Uname, h.Gname, h.Uid, h.Gid, h.ModTime.Unix(), hex.EncodeToString(sum.Sum(nil))})
	}
}

// extractForTest extracts a trusted test tar into dir on the real disk.
func extractForTest(t *testing.T, r io.Reader, dir string) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, os.FileMode(h.Mode)&os.ModePerm); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, os.FileMode(h.Mode)&os.ModePerm); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, os.FileMode(h.Mode)&os.ModePerm); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestWriteTarTufupLayout extracts an archive made by tufup and rebuilds it:
// every entry (order, name, type, mode, link, owner, content) must match
// tufup's; only the mtime differs (tufup keeps the build time, we use 0).
func TestWriteTarTufupLayout(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("modes and symlinks are not comparable on windows")
	}
	fixture := tufupFixtureDir(t)
	gz, err := os.ReadFile(filepath.Join(fixture, "targets", "demoapp-1.0.0.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	orig, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	extractForTest(t, bytes.NewReader(orig), dir)

	var buf bytes.Buffer
	if err := WriteTar(afero.NewOsFs(), dir, &buf); err != nil {
		t.Fatal(err)
	}
	want := readTarEntries(t, bytes.NewReader(orig))
	got := readTarEntries(t, bytes.NewReader(buf.Bytes()))
	for i := range want {
		if want[i].Type == tar.TypeSymlink {
			// Python stores the symlink's lstat mode; ours is 0777 too.
			want[i].Mode = 0o777
		}
		want[i].ModTime = 0
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d:\n%v\n%v", len(got), len(want), got, want)
	}
	for i := range want {
		// tar.Reader drops the trailing "/" of directory names written by
		// Python, but not of ours: compare without it.
		want[i].Name = strings.TrimSuffix(want[i].Name, "/")
		g := got[i]
		g.Name = strings.TrimSuffix(g.Name, "/")
		if want[i].Name == "." {
			want[i].Name = "./"
		}
		if g.Name == "." {
			g.Name = "./"
		}
		if g != want[i] {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, g, want[i])
		}
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("./")) {
		t.Errorf("first entry is not ./: %q", buf.Bytes()[:16])
	}
}

func TestWriteArchiveDeterministic(t *testing.T) {
	build := func(t *testing.T, fsys afero.Fs, dir string, mtime time.Time, reverse bool) {
		files := []struct {
			name string
			data string
			mode os.FileMode
		}{
			{"bin/app", "#!/bin/sh\necho hi\n", 0o755},
			{"a.txt", "alpha", 0o644},
			{"b/c/d.txt", strings.Repeat("data", 1000), 0o600},
			{"z", "", 0o644},
		}
		if reverse {
			for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
				files[i], files[j] = files[j], files[i]
			}
		}
		for _, f := range files {
			p := filepath.Join(dir, filepath.FromSlash(f.name))
			if err := fsys.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := afero.WriteFile(fsys, p, []byte(f.data), f.mode); err != nil {
				t.Fatal(err)
			}
			if err := fsys.Chmod(p, f.mode); err != nil {
				t.Fatal(err)
			}
			if err := fsys.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
		if err := fsys.MkdirAll(filepath.Join(dir, "empty"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		fs   func(t *testing.T) (afero.Fs, string)
	}{
		{"mem", func(t *testing.T) (afero.Fs, string) { return afero.NewMemMapFs(), "/b" }},
		{"os", func(t *testing.T) (afero.Fs, string) { return afero.NewOsFs(), t.TempDir() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs1, d1 := tc.fs(t)
			fs2, d2 := tc.fs(t)
			if d1 == d2 {
				d2 += "2"
			}
			build(t, fs1, d1, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), false)
			build(t, fs2, d2, time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC), true)
			var a1, a2 bytes.Buffer
			n1, h1, err := WriteArchive(fs1, d1, &a1)
			if err != nil {
				t.Fatal(err)
			}
			n2, h2, err := WriteArchive(fs2, d2, &a2)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a1.Bytes(), a2.Bytes()) || n1 != n2 || h1 != h2 {
				t.Fatalf("archives differ: %d/%s vs %d/%s", n1, h1, n2, h2)
			}
			// tar_size and tar_hash describe the uncompressed tar.
			var raw bytes.Buffer
			if err := WriteTar(fs1, d1, &raw); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(raw.Bytes())
			if int64(raw.Len()) != n1 || hex.EncodeToString(sum[:]) != h1 {
				t.Fatalf("tar size/hash %d/%s, want %d/%x", n1, h1, raw.Len(), sum)
			}
			zr, err := gzip.NewReader(bytes.NewReader(a1.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if zr.Name != "" || !zr.ModTime.IsZero() {
				t.Errorf("gzip header not deterministic: name %q mtime %v", zr.Name, zr.ModTime)
			}
			unz, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(unz, raw.Bytes()) {
				t.Fatal("gunzipped archive differs from WriteTar output")
			}
			entries := readTarEntries(t, bytes.NewReader(raw.Bytes()))
			var names []string
			for _, e := range entries {
				names = append(names, e.Name)
				if e.ModTime != 0 || e.Uid != 0 || e.Gid != 0 || e.Uname != "root" || e.Gname != "root" {
					t.Errorf("entry %s not normalized: %+v", e.Name, e)
				}
			}
			wantNames := "./ ./a.txt ./b/ ./b/c/ ./b/c/d.txt ./bin/ ./bin/app ./empty/ ./z"
			if got := strings.Join(names, " "); got != wantNames {
				t.Errorf("names:\n got %s\nwant %s", got, wantNames)
			}
			if runtime.GOOS != "windows" {
				for _, e := range entries {
					if e.Name == "./bin/app" && e.Mode != 0o755 || e.Name == "./b/c/d.txt" && e.Mode != 0o600 {
						t.Errorf("mode of %s not kept: %o", e.Name, e.Mode)
					}
				}
			}
		})
	}
}

func TestWriteTarSymlinks(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symlinks need privileges on windows")
	}
	for _, tc := range []struct {
		link, target string
		wantErr      string
	}{
		{"lib/libx.so", "libx.so.1", ""},
		{"lib/up", "../top.txt", ""},
		{"lib/deep/self", "../../lib/libx.so.1", ""},
		{"lib/abs", "/etc/passwd", "absolute"},
		{"lib/escape", "../../outside", "outside the bundle"},
		{"esc", "..", "outside the bundle"},
	} {
		t.Run(tc.link, func(t *testing.T) {
			dir := t.TempDir()
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(os.MkdirAll(filepath.Join(dir, "lib", "deep"), 0o755))
			must(os.WriteFile(filepath.Join(dir, "lib", "libx.so.1"), []byte("elf"), 0o755))
			must(os.WriteFile(filepath.Join(dir, "top.txt"), []byte("top"), 0o644))
			must(os.Symlink(tc.target, filepath.Join(dir, filepath.FromSlash(tc.link))))
			var buf bytes.Buffer
			err := WriteTar(afero.NewOsFs(), dir, &buf)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), filepath.FromSlash(tc.link)) {
					t.Fatalf("err = %v, want %q naming %s", err, tc.wantErr, tc.link)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range readTarEntries(t, &buf) {
				if e.Name == "./"+tc.link {
					found = e.Type == tar.TypeSymlink && e.Linkname == tc.target
				}
			}
			if !found {
				t.Fatalf("symlink %s -> %s not stored as a link", tc.link, tc.target)
			}
		})
	}
}

func TestWriteTarErrors(t *testing.T) {
	fsys := afero.NewMemMapFs()
	if err := afero.WriteFile(fsys, "/file", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dir, want string }{
		{"/missing", "bundle /missing"},
		{"/file", "not a directory"},
	} {
		err := WriteTar(fsys, tc.dir, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("WriteTar(%s) = %v, want %q", tc.dir, err, tc.want)
		}
	}
	if runtime.GOOS != "windows" {
		// A named pipe cannot be released.
		dir := t.TempDir()
		if err := mkfifoForTest(filepath.Join(dir, "pipe")); err != nil {
			t.Skip(err)
		}
		err := WriteTar(afero.NewOsFs(), dir, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "unsupported file type") {
			t.Errorf("fifo: err = %v", err)
		}
	}
	// A write error is returned, not swallowed.
	werr := errors.New("disk full")
	if err := afero.WriteFile(fsys, "/b/x", bytes.Repeat([]byte("x"), 10000), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := WriteArchive(fsys, "/b", failWriter{werr}); !errors.Is(err, werr) {
		t.Errorf("WriteArchive to failing writer = %v", err)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

func ExampleWriteArchive() {
	fsys := afero.NewMemMapFs()
	_ = afero.WriteFile(fsys, "/bundle/app", []byte("#!/bin/sh\necho hello\n"), 0o755)
	var archive bytes.Buffer
	tarSize, tarHash, err := WriteArchive(fsys, "/bundle", &archive)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tarSize, len(tarHash))
	// Output: 2560 64
}
