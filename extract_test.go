package notsotuf

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/afero"
)

// testEnt is one entry of a test archive.
type testEnt struct {
	name string
	typ  byte // 0: regular file
	mode int64
	body string
	link string
}

// buildTestTar builds a PAX tar of ents.
func buildTestTar(t testing.TB, ents ...testEnt) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipForTest(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// snapshot describes the tree at dir: one line per entry with type, mode
// (on Unix) and content hash or link target.
func treeSnapshot(t testing.TB, fsys afero.Fs, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := afero.Walk(fsys, dir, func(p string, fi fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		mode := ""
		if runtime.GOOS != "windows" {
			mode = fmt.Sprintf(" %04o", fi.Mode().Perm())
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := fsys.(afero.LinkReader).ReadlinkIfPossible(p)
			if err != nil {
				return err
			}
			out[rel] = "l " + target
		case fi.IsDir():
			out[rel] = "d" + mode
		default:
			data, err := afero.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			out[rel] = "f" + mode + " " + hex.EncodeToString(sum[:8])
		}
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return out
}

func describeTree(m map[string]string) string {
	var lines []string
	for k, v := range m {
		lines = append(lines, k+": "+v)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// osFs returns a real filesystem and a fresh temp dir.
func tempOsFs(t testing.TB) (afero.Fs, string) {
	return afero.NewOsFs(), t.TempDir()
}

func tempMemFs(t testing.TB) (afero.Fs, string) {
	return afero.NewMemMapFs(), filepath.FromSlash("/work")
}

func extractBytes(t testing.TB, fsys afero.Fs, dst string, data []byte, limit int64) (*tarManifest, error) {
	t.Helper()
	if err := fsys.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	return extractTar(context.Background(), fsys, dst, "test.tar", bytes.NewReader(data), limit)
}

func TestExtractTufupLayout(t *testing.T) {
	data := buildTestTar(t,
		testEnt{name: "./", typ: tar.TypeDir, mode: 0o750},
		testEnt{name: "./VERSION", body: "1.0\n"},
		testEnt{name: "./app", mode: 0o755, body: "#!/bin/sh\necho hi\n"},
		testEnt{name: "./lib/", typ: tar.TypeDir},
		testEnt{name: "./lib/libx.so.1", mode: 0o755, body: "elf"},
		testEnt{name: "./lib/libx.so", typ: tar.TypeSymlink, link: "libx.so.1"},
		testEnt{name: "./lib/up", typ: tar.TypeSymlink, link: "../VERSION"},
		testEnt{name: "./share/empty/", typ: tar.TypeDir, mode: 0o700},
		testEnt{name: "./ro/", typ: tar.TypeDir, mode: 0o555},
		testEnt{name: "./ro/file", mode: 0o444, body: "read only"},
		testEnt{name: "./hard", typ: tar.TypeLink, link: "./app"},
	)
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprint("gzip=", gz), func(t *testing.T) {
			fsys, root := tempOsFs(t)
			dst := filepath.Join(root, "x")
			in := data
			if gz {
				in = gzipForTest(t, data)
			}
			m, err := extractBytes(t, fsys, dst, in, int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(filepath.Join(dst, "ro"), 0o755) })
			if err := verifyTree(fsys, dst, m); err != nil {
				t.Fatal(err)
			}
			got := treeSnapshot(t, fsys, dst)
			sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:8]) }
			want := map[string]string{
				".":             "d 0750",
				"VERSION":       "f 0644 " + sum("1.0\n"),
				"app":           "f 0755 " + sum("#!/bin/sh\necho hi\n"),
				"hard":          "f 0755 " + sum("#!/bin/sh\necho hi\n"),
				"lib":           "d 0755",
				"lib/libx.so.1": "f 0755 " + sum("elf"),
				"lib/libx.so":   "l libx.so.1",
				"lib/up":        "l ../VERSION",
				"share":         "d 0755",
				"share/empty":   "d 0700",
				"ro":            "d 0555",
				"ro/file":       "f 0444 " + sum("read only"),
			}
			if runtime.GOOS == "windows" {
				t.Skip("modes differ on windows")
			}
			if !maps.Equal(got, want) {
				t.Errorf("tree:\n%s\nwant:\n%s", describeTree(got), describeTree(want))
			}
		})
	}
}

func TestExtractPlainNames(t *testing.T) {
	fsys, root := tempMemFs(t)
	data := buildTestTar(t, testEnt{name: "a/b/c.txt", body: "c"}, testEnt{name: "a/", typ: tar.TypeDir, mode: 0o711}, testEnt{name: "top", body: "t"})
	m, err := extractBytes(t, fsys, root, data, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyTree(fsys, root, m); err != nil {
		t.Fatal(err)
	}
	got := treeSnapshot(t, fsys, root)
	if got["a"] != "d 0711" || got["a/b"] != "d 0755" || !strings.HasPrefix(got["a/b/c.txt"], "f 0644") || len(got) != 5 {
		t.Errorf("tree:\n%s", describeTree(got))
	}
}

func TestExtractMemMapFsSymlink(t *testing.T) {
	fsys, root := tempMemFs(t)
	data := buildTestTar(t, testEnt{name: "f", body: "x"}, testEnt{name: "l", typ: tar.TypeSymlink, link: "f"})
	_, err := extractBytes(t, fsys, root, data, 1<<20)
	if err == nil || !errors.Is(err, afero.ErrNoSymlink) || !strings.Contains(err.Error(), `entry "l"`) {
		t.Fatalf("err = %v, want symlink not supported naming the entry", err)
	}
}

// TestExtractHostile checks that every hostile entry is refused with an
// error naming it, and that nothing is written outside the destination.
func TestExtractHostile(t *testing.T) {
	big := strings.Repeat("A", 1<<16)
	tests := []struct {
		name  string
		ents  []testEnt
		limit int64
		entry string // the entry the error must name
		want  string // substring of the error
	}{
		{"dotdot", []testEnt{{name: "../evil", body: "x"}}, 0, "../evil", `".."`},
		{"dotdot inner", []testEnt{{name: "./a/../../evil", body: "x"}}, 0, "./a/../../evil", `".."`},
		{"absolute", []testEnt{{name: "/tmp/evil", body: "x"}}, 0, "/tmp/evil", "absolute"},
		{"unc", []testEnt{{name: "//server/share/evil", body: "x"}}, 0, "//server/share/evil", "absolute"},
		{"drive", []testEnt{{name: "C:/evil", body: "x"}}, 0, "C:/evil", "drive"},
		{"drive relative", []testEnt{{name: "c:evil", body: "x"}}, 0, "c:evil", "drive"},
		{"backslash", []testEnt{{name: `..\evil`, body: "x"}}, 0, `..\evil`, "backslash"},
		{"dot element", []testEnt{{name: "a/./b", body: "x"}}, 0, "a/./b", `"."`},
		{"empty element", []testEnt{{name: "a//b", body: "x"}}, 0, "a//b", "empty"},
		{"symlink escape", []testEnt{{name: "l", typ: tar.TypeSymlink, link: "../outside"}}, 0, "l", "escapes"},
		{"symlink deep escape", []testEnt{{name: "a/", typ: tar.TypeDir}, {name: "a/l", typ: tar.TypeSymlink, link: "../../outside"}}, 0, "a/l", "escapes"},
		{"symlink absolute", []testEnt{{name: "l", typ: tar.TypeSymlink, link: "/etc/passwd"}}, 0, "l", "absolute"},
		{"symlink drive", []testEnt{{name: "l", typ: tar.TypeSymlink, link: `C:\Windows`}}, 0, "l", "backslash"},
		{"symlink chain escape", []testEnt{
			{name: "sub/", typ: tar.TypeDir},
			{name: "sub/up", typ: tar.TypeSymlink, link: ".."},
			{name: "l", typ: tar.TypeSymlink, link: "sub/up/.."},
		}, 0, "l", "escapes"},
		{"symlink loop", []testEnt{
			{name: "a", typ: tar.TypeSymlink, link: "b"},
			{name: "b", typ: tar.TypeSymlink, link: "a"},
		}, 0, "a", "too many levels"},
		{"write through symlink", []testEnt{
			{name: "sub/", typ: tar.TypeDir},
			{name: "l", typ: tar.TypeSymlink, link: "sub"},
			{name: "l/file", body: "x"},
		}, 0, "l/file", "not a directory"},
		{"below a file", []testEnt{{name: "f", body: "x"}, {name: "f/g", body: "y"}}, 0, "f/g", "not a directory"},
		{"hardlink escape", []testEnt{{name: "h", typ: tar.TypeLink, link: "../../etc/passwd"}}, 0, "h", "hard link"},
		{"hardlink absolute", []testEnt{{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}}, 0, "h", "hard link"},
		{"hardlink forward", []testEnt{{name: "h", typ: tar.TypeLink, link: "f"}, {name: "f", body: "x"}}, 0, "h", "earlier regular file"},
		{"hardlink to dir", []testEnt{{name: "d/", typ: tar.TypeDir}, {name: "h", typ: tar.TypeLink, link: "d"}}, 0, "h", "earlier regular file"},
		{"long name", []testEnt{{name: strings.Repeat("a/", 2100) + "f", body: "x"}}, 0, strings.Repeat("a/", 2100) + "f", "longer than 4096"},
		{"long element", []testEnt{{name: strings.Repeat("b", 256), body: "x"}}, 0, strings.Repeat("b", 256), "longer than 255"},
		{"link fan-out", []testEnt{
			{name: "a", typ: tar.TypeSymlink, link: strings.Repeat("b/", 100)},
			{name: "b", typ: tar.TypeSymlink, link: "./" + strings.Repeat("a/", 100)},
		}, 0, "a", "too many levels"},
		{"link steps", []testEnt{
			{name: "a", typ: tar.TypeSymlink, link: strings.Repeat("x/../", 800) + "b"},
			{name: "b", typ: tar.TypeSymlink, link: strings.Repeat("x/../", 800) + "a"},
		}, 0, "a", "steps"},
		{"char device", []testEnt{{name: "null", typ: tar.TypeChar}}, 0, "null", "device"},
		{"block device", []testEnt{{name: "sda", typ: tar.TypeBlock}}, 0, "sda", "device"},
		{"fifo", []testEnt{{name: "p", typ: tar.TypeFifo}}, 0, "p", "FIFO"},
		{"duplicate", []testEnt{{name: "./f", body: "x"}, {name: "f", body: "y"}}, 0, "f", "duplicate"},
		{"duplicate dir", []testEnt{{name: "d/", typ: tar.TypeDir}, {name: "./d/", typ: tar.TypeDir}}, 0, "./d/", "duplicate"},
		{"case collision", []testEnt{{name: "README", body: "x"}, {name: "readme", body: "y"}}, 0, "readme", "case"},
		{"top not dir", []testEnt{{name: ".", body: "x"}}, 0, ".", "top entry"},
		{"bomb", []testEnt{{name: "big", body: big}}, 4096, "big", "limit"},
		{"hardlink bomb", []testEnt{
			{name: "f", body: big[:3000]},
			{name: "h1", typ: tar.TypeLink, link: "f"},
			{name: "h2", typ: tar.TypeLink, link: "f"},
		}, 8000, "h2", "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys, root := tempOsFs(t)
			dst := filepath.Join(root, "stage")
			limit := tt.limit
			if limit == 0 {
				limit = 1 << 20
			}
			_, err := extractBytes(t, fsys, dst, buildTestTar(t, tt.ents...), limit)
			if err == nil {
				t.Fatal("extraction succeeded")
			}
			if !errors.Is(err, ErrUnsafeArchive) {
				t.Errorf("error %v does not wrap ErrUnsafeArchive", err)
			}
			if tt.name != "bomb" && !strings.Contains(err.Error(), fmt.Sprintf("entry %q", tt.entry)) {
				t.Errorf("error %q does not name entry %q", err, tt.entry)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "test.tar") {
				t.Errorf("error %q does not contain %q and the archive name", err, tt.want)
			}
			// Nothing outside the destination.
			ents, _ := os.ReadDir(root)
			if len(ents) != 1 || ents[0].Name() != "stage" {
				t.Errorf("parent holds %v", ents)
			}
			if _, err := os.Lstat(filepath.Join(filepath.Dir(root), "evil")); err == nil {
				t.Errorf("file written outside")
			}
		})
	}
}

func TestExtractReportsSeveral(t *testing.T) {
	fsys, root := tempMemFs(t)
	data := buildTestTar(t, testEnt{name: "../a", body: "x"}, testEnt{name: "ok", body: "x"}, testEnt{name: "/b", body: "y"})
	_, err := extractBytes(t, fsys, root, data, 1<<20)
	if err == nil || !strings.Contains(err.Error(), `"../a"`) || !strings.Contains(err.Error(), `"/b"`) {
		t.Fatalf("err = %v, want both bad entries", err)
	}
}

func TestExtractGzipBomb(t *testing.T) {
	fsys, root := tempMemFs(t)
	data := gzipForTest(t, buildTestTar(t, testEnt{name: "zeros", body: strings.Repeat("\x00", 1<<20)}))
	_, err := extractBytes(t, fsys, root, data, int64(len(data))*10)
	if !errors.Is(err, ErrUnsafeArchive) || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("err = %v, want limit error", err)
	}
}

func TestExtractCanceled(t *testing.T) {
	fsys, root := tempMemFs(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fsys.MkdirAll(root, 0o755)
	_, err := extractTar(ctx, fsys, root, "a.tar", bytes.NewReader(buildTestTar(t, testEnt{name: "f", body: "x"})), 1<<20)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

// TestExtractTufupFixture extracts the archives of the tufup-made fixture.
func TestExtractTufupFixture(t *testing.T) {
	dir := filepath.Join("..", "..", "shared", "interop", "tufup-demoapp", "targets")
	if _, err := os.Stat(dir); err != nil {
		dir = "/work/shared/interop/tufup-demoapp/targets"
	}
	f, err := os.Open(filepath.Join(dir, "demoapp-1.1.0.tar.gz"))
	if err != nil {
		t.Skipf("fixture not available: %v", err)
	}
	defer f.Close()
	fsys, root := tempOsFs(t)
	m, err := extractTar(context.Background(), fsys, root, f.Name(), f, 10<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyTree(fsys, root, m); err != nil {
		t.Fatal(err)
	}
	got := treeSnapshot(t, fsys, root)
	if got["lib/libdemo.so"] != "l libdemo.so.1" || got["share/empty"] != "d 0755" || !strings.HasPrefix(got["demoapp"], "f 0755") {
		t.Errorf("tree:\n%s", describeTree(got))
	}
}

func FuzzExtract(f *testing.F) {
	f.Add(buildTestTar(f, testEnt{name: "./", typ: tar.TypeDir}, testEnt{name: "./a", body: "x"}, testEnt{name: "./d/", typ: tar.TypeDir}, testEnt{name: "./d/h", typ: tar.TypeLink, link: "./a"}))
	f.Add(buildTestTar(f, testEnt{name: "../x", body: "x"}))
	f.Add(buildTestTar(f, testEnt{name: "l", typ: tar.TypeSymlink, link: "../x"}))
	f.Add(gzipForTest(f, buildTestTar(f, testEnt{name: "a/b/c", body: "abc"})))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	for _, format := range sparseFormats {
		f.Add(sparseTar(f, format, 1<<20))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := afero.NewMemMapFs()
		if err := fsys.MkdirAll("/p/stage", 0o755); err != nil {
			t.Fatal(err)
		}
		m, err := extractTar(context.Background(), fsys, "/p/stage", "fuzz.tar", bytes.NewReader(data), 1<<16)
		// checkTar (what add and verify run) agrees: it refuses what
		// extraction refuses for the archive's content, and accepts
		// what extraction accepts, with the same entries.
		cm, _, cerr := checkTar(context.Background(), "fuzz.tar", bytes.NewReader(data), 1<<16, clientLimits)
		switch {
		case err == nil && (cerr != nil || cm.count() != m.count() || cm.size != m.size):
			t.Fatalf("extracted %d entries, %d bytes; checkTar: %v", m.count(), m.size, cerr)
		case errors.Is(cerr, ErrUnsafeArchive) && err == nil:
			t.Fatalf("checkTar refuses what extraction accepted: %v", cerr)
		case cerr == nil && errors.Is(err, ErrUnsafeArchive):
			t.Fatalf("extraction refuses what checkTar accepts: %v", err)
		}
		// Whatever happens, nothing is written outside /p/stage.
		names, _ := afero.ReadDir(fsys, "/p")
		if len(names) != 1 {
			t.Fatalf("/p holds %d entries", len(names))
		}
		if all, _ := afero.ReadDir(fsys, "/"); len(all) != 1 {
			t.Fatalf("/ holds %d entries", len(all))
		}
		if err != nil {
			return
		}
		if err := verifyTree(fsys, "/p/stage", m); err != nil {
			t.Fatalf("extracted tree does not match its manifest: %v", err)
		}
		if m.size > 1<<16 {
			t.Fatalf("wrote %d bytes over the limit", m.size)
		}
	})
}

func TestCheckWindowsElement(t *testing.T) {
	for _, el := range []string{"a:b", "x?", "f|g", "tab\there", "trail.", "trail ", "NUL", "nul.txt", "Com1", "lpt9.log", "CON ", "conin$"} {
		if err := checkWindowsElement(el); err == nil {
			t.Errorf("%q accepted", el)
		}
	}
	for _, el := range []string{"a", "nul2", "console", "COM10", "com", ".hidden", "a b", "LPTX"} {
		if err := checkWindowsElement(el); err != nil {
			t.Errorf("%q refused: %v", el, err)
		}
	}
}
