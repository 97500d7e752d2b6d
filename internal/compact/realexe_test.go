package compact

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notsotuf/notsotuf/internal/bsdiff"
	"github.com/notsotuf/notsotuf/internal/exe"
)

// A small Go program in two versions, as a real release would differ: a
// new function and a changed constant shift the code and data after them.
const progV1 = `package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
)

const greeting = "hello"

type item struct {
	Name  string ` + "`json:\"name\"`" + `
	Count int    ` + "`json:\"count\"`" + `
}

func count(words []string) []item {
	m := map[string]int{}
	for _, w := range words {
		m[strings.ToLower(w)]++
	}
	var out []item
	for k, v := range m {
		out = append(out, item{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Count > out[j].Count || out[i].Count == out[j].Count && out[i].Name < out[j].Name })
	return out
}

//EXTRA

func main() {
	u, _ := url.Parse("https://example.com/a?b=c")
	items := count(append(os.Args[1:], u.Host, greeting))
	b, _ := json.Marshal(items)
	fmt.Println(greeting, string(b))
}
`

func progSource(version int) string {
	if version == 1 {
		return progV1
	}
	s := strings.Replace(progV1, `const greeting = "hello"`, `const greeting = "hello, world"`, 1)
	return strings.Replace(s, "//EXTRA", `func init() {
	if len(os.Args) > 5 {
		fmt.Fprintln(os.Stderr, "many arguments:", strings.Join(os.Args[1:], ","))
	}
}`, 1)
}

type builtPair struct {
	old, new []byte
	err      error
}

var (
	buildMu sync.Mutex
	builds  = map[string]*builtPair{}
)

// buildPair builds both versions of the program for goos/goarch (with its
// DWARF, which Go's linker compresses) and returns the two executables.
func buildPair(t *testing.T, goos, goarch string) (old, new []byte) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds Go programs")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	key := goos + "/" + goarch
	if p := builds[key]; p != nil {
		if p.err != nil {
			t.Fatal(p.err)
		}
		return p.old, p.new
	}
	p := &builtPair{}
	builds[key] = p
	dir, err := os.MkdirTemp("", "compact-prog-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	for v := 1; v <= 2; v++ {
		src := filepath.Join(dir, fmt.Sprintf("v%d", v))
		os.MkdirAll(src, 0o755)
		os.WriteFile(filepath.Join(src, "go.mod"), []byte("module example.com/prog\n\ngo 1.26\n"), 0o644)
		os.WriteFile(filepath.Join(src, "main.go"), []byte(progSource(v)), 0o644)
		out := filepath.Join(dir, fmt.Sprintf("prog%d", v))
		cmd := exec.Command(goTool, "build", "-trimpath", "-o", out, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOTOOLCHAIN=local")
		if b, err := cmd.CombinedOutput(); err != nil {
			p.err = fmt.Errorf("go build %s: %v\n%s", key, err, b)
			t.Fatal(p.err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if v == 1 {
			p.old = b
		} else {
			p.new = b
		}
	}
	return p.old, p.new
}

func diffCompact(t testing.TB, old, new []byte) ([]byte, []string) {
	t.Helper()
	var patch bytes.Buffer
	var trace []string
	opts := &Options{Trace: func(f string, a ...any) { trace = append(trace, fmt.Sprintf(f, a...)) }}
	if err := Diff(bytes.NewReader(old), int64(len(old)), bytes.NewReader(new), int64(len(new)), &patch, opts); err != nil {
		t.Fatal(err)
	}
	return patch.Bytes(), trace
}

func applyCompact(t testing.TB, old, patch []byte) ([]byte, error) {
	t.Helper()
	var out bytes.Buffer
	n, err := Apply(bytes.NewReader(old), int64(len(old)), bytes.NewReader(patch), &out, nil)
	if err == nil && n != int64(out.Len()) {
		t.Fatalf("Apply returned %d, wrote %d", n, out.Len())
	}
	return out.Bytes(), err
}

func diffBSDiff(t testing.TB, old, new []byte) []byte {
	t.Helper()
	var patch bytes.Buffer
	if err := bsdiff.Diff(old, new, &patch, nil); err != nil {
		t.Fatal(err)
	}
	return patch.Bytes()
}

// Real executables of every kind the format knows: the compact patch
// round-trips, decompresses the debug sections, rewrites the code, and is
// much smaller than BSDIFF40's.
func TestRealExecutables(t *testing.T) {
	for _, target := range []struct {
		goos, goarch string
		kind         exe.Kind
		arch         exe.Arch
	}{
		{"linux", "amd64", exe.ELF, exe.AMD64},
		{"linux", "arm64", exe.ELF, exe.ARM64},
		{"windows", "amd64", exe.PE, exe.AMD64},
		{"windows", "arm64", exe.PE, exe.ARM64},
		{"darwin", "arm64", exe.MachO, exe.ARM64},
		{"darwin", "amd64", exe.MachO, exe.AMD64},
	} {
		t.Run(target.goos+"_"+target.goarch, func(t *testing.T) {
			old, new := buildPair(t, target.goos, target.goarch)
			img, err := exe.Parse(bytes.NewReader(new), int64(len(new)))
			if err != nil {
				t.Fatal(err)
			}
			if img.Kind != target.kind || img.Arch != target.arch || len(img.Code) == 0 || len(img.Zlib) == 0 {
				t.Fatalf("parsed as %v %v with %d code and %d compressed sections", img.Kind, img.Arch, len(img.Code), len(img.Zlib))
			}
			start := time.Now()
			patch, trace := diffCompact(t, old, new)
			took := time.Since(start)
			got, err := applyCompact(t, old, patch)
			if err != nil || !bytes.Equal(got, new) {
				t.Fatalf("round trip: %v (equal %v)", err, bytes.Equal(got, new))
			}
			plain := diffBSDiff(t, old, new)
			t.Logf("%d -> %d bytes: compact %d, bsdiff %d (%.2fx) in %v; %s", len(old), len(new), len(patch), len(plain), float64(len(patch))/float64(len(plain)), took, strings.Join(trace, "; "))
			joined := strings.Join(trace, "\n")
			if !strings.Contains(joined, "(use true)") {
				t.Errorf("code not rewritten: %s", joined)
			}
			if strings.Contains(joined, "kept compressed") {
				t.Errorf("a debug section stayed compressed: %s", joined)
			}
			if len(patch)*2 > len(plain) {
				t.Errorf("compact patch is %d bytes, more than half of bsdiff's %d", len(patch), len(plain))
			}
		})
	}
}

func makeTar(t testing.TB, files map[string][]byte, order []string, mtime int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range order {
		b, ok := files[name]
		if !ok {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(b)), ModTime: time.Unix(mtime, 0), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	tw.Close()
	return buf.Bytes()
}

// Executables as tar members, among other files: each is rewritten, the
// rest is paired and diffed as bsdiff does.
func TestRealExecutablesInTar(t *testing.T) {
	o1, n1 := buildPair(t, "linux", "amd64")
	o2, n2 := buildPair(t, "linux", "arm64")
	doc := bytes.Repeat([]byte("documentation that does not change\n"), 3000)
	order := []string{"./bin/app", "./bin/app-arm64", "./doc.txt", "./same-app", "./version"}
	old := makeTar(t, map[string][]byte{"./bin/app": o1, "./bin/app-arm64": o2, "./doc.txt": doc, "./same-app": o1, "./version": []byte("1\n")}, order, 1700000000)
	new := makeTar(t, map[string][]byte{"./bin/app": n1, "./bin/app-arm64": n2, "./doc.txt": doc, "./same-app": o1, "./version": []byte("2\n")}, order, 1701950000)
	patch, trace := diffCompact(t, old, new)
	got, err := applyCompact(t, old, patch)
	if err != nil || !bytes.Equal(got, new) {
		t.Fatalf("round trip: %v", err)
	}
	// The same inputs give the same patch.
	if again, _ := diffCompact(t, old, new); !bytes.Equal(again, patch) {
		t.Error("two diffs of the same files differ")
	}
	plain := diffBSDiff(t, old, new)
	t.Logf("tar %d bytes: compact %d, bsdiff %d; %s", len(new), len(patch), len(plain), strings.Join(trace, "; "))
	if n := strings.Count(strings.Join(trace, "\n"), "(use true)"); n != 2 {
		t.Errorf("%d executables rewritten, want 2 (the unchanged one is paired as is): %v", n, trace)
	}
	if len(patch)*2 > len(plain) {
		t.Errorf("compact patch is %d bytes, more than half of bsdiff's %d", len(patch), len(plain))
	}
}
