package notsotuf

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/notsotuf/notsotuf/internal/exe"
)

// wholeFormat is a patch format of a program's own, for the tests of the
// plug-in seam: its patches are "WHOLEv01" followed by the new file.
var wholeFormat = PatchFormat{Name: "whole", Magic: "WHOLEv01", Differ: wholeDiffer{}, Patcher: wholePatcher{}}

type wholeDiffer struct{}

func (wholeDiffer) Diff(old io.ReaderAt, oldSize int64, new io.ReaderAt, newSize int64, w io.Writer, opts *PatchOptions) error {
	if _, err := io.WriteString(w, "WHOLEv01"); err != nil {
		return err
	}
	_, err := io.Copy(w, io.NewSectionReader(new, 0, newSize))
	return err
}

type wholePatcher struct{}

func (wholePatcher) Apply(old io.ReaderAt, oldSize int64, patch io.Reader, w io.Writer, opts *PatchOptions) (int64, error) {
	var magic [8]byte
	if _, err := io.ReadFull(patch, magic[:]); err != nil || string(magic[:]) != "WHOLEv01" {
		return 0, fmt.Errorf("%w: not a whole patch", ErrCorruptPatch)
	}
	return io.Copy(w, patch)
}

func TestPatchFormatLookupAndDetect(t *testing.T) {
	for _, name := range []string{"", "bsdiff"} {
		if f, err := LookupPatchFormat(name); err != nil || f.Name != PatchFormatBSDiff || !f.Tufup {
			t.Errorf("LookupPatchFormat(%q) = %q, %v", name, f.Name, err)
		}
	}
	if _, err := LookupPatchFormat("whole"); !errors.Is(err, ErrUnknownPatchFormat) || !strings.Contains(err.Error(), "known: bsdiff") {
		t.Errorf("LookupPatchFormat(whole) without it: %v", err)
	}
	if f, err := LookupPatchFormat("whole", wholeFormat); err != nil || f.Name != "whole" {
		t.Errorf("LookupPatchFormat(whole, whole) = %q, %v", f.Name, err)
	}

	old := bytes.Repeat([]byte("some old content of a file\n"), 100)
	new := append(bytes.Repeat([]byte("some new content of a file\n"), 100), "and more"...)
	var bs, wh bytes.Buffer
	if err := bsdiffFormat.Diff(bytes.NewReader(old), int64(len(old)), bytes.NewReader(new), int64(len(new)), &bs, nil); err != nil {
		t.Fatal(err)
	}
	if err := wholeFormat.Diff(bytes.NewReader(old), int64(len(old)), bytes.NewReader(new), int64(len(new)), &wh, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		patch []byte
		want  string
	}{{bs.Bytes(), "bsdiff"}, {wh.Bytes(), "whole"}} {
		if f, err := DetectPatchFormat(tc.patch, wholeFormat); err != nil || f.Name != tc.want {
			t.Errorf("DetectPatchFormat = %q, %v; want %s", f.Name, err, tc.want)
		}
		// ApplyPatch recognises the format from a seekable reader and from
		// a plain one.
		for _, r := range []io.Reader{bytes.NewReader(tc.patch), struct{ io.Reader }{bytes.NewReader(tc.patch)}} {
			var out bytes.Buffer
			n, f, err := ApplyPatch(bytes.NewReader(old), int64(len(old)), r, &out, nil, wholeFormat)
			if err != nil || f.Name != tc.want || n != int64(len(new)) || !bytes.Equal(out.Bytes(), new) {
				t.Errorf("ApplyPatch(%s, %T) = %d, %q, %v", tc.want, r, n, f.Name, err)
			}
		}
	}
	// The whole format is unknown without it, and garbage is no format.
	for _, p := range [][]byte{wh.Bytes(), []byte("NOTAPATCH"), nil} {
		_, _, err := ApplyPatch(bytes.NewReader(old), int64(len(old)), bytes.NewReader(p), io.Discard, nil)
		if !errors.Is(err, ErrCorruptPatch) || !errors.Is(err, ErrUnknownPatchFormat) {
			t.Errorf("ApplyPatch(%.8q) = %v, want ErrCorruptPatch and ErrUnknownPatchFormat", p, err)
		}
	}
}

// The format of a patch other than bsdiff is signed in its custom metadata
// under "notsotuf"; a bsdiff patch's custom keeps exactly tufup's keys.
func TestPatchMetaFormat(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	c, err := PatchMeta{TarSize: 5, TarHash: hash}.Custom()
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(c, &keys); err != nil || len(keys) != 2 || keys["user"] == nil || keys["tufup"] == nil {
		t.Errorf("bsdiff patch custom = %s: want only the keys user and tufup (tufup reads other objects as legacy metadata)", c)
	}
	for _, f := range []string{"", "bsdiff"} {
		if c2, _ := (PatchMeta{TarSize: 5, TarHash: hash, Format: f}).Custom(); !bytes.Equal(c2, c) {
			t.Errorf("format %q: custom %s, want %s", f, c2, c)
		}
	}
	c, err = PatchMeta{TarSize: 5, TarHash: hash, Format: "compact"}.Custom()
	if err != nil || !strings.Contains(string(c), `"notsotuf":{"patch_format":"compact"}`) {
		t.Fatalf("compact patch custom = %s, %v", c, err)
	}
	if m, err := ParsePatchMeta(&c); err != nil || m.Format != "compact" || m.TarSize != 5 {
		t.Errorf("ParsePatchMeta(%s) = %+v, %v", c, m, err)
	}
	for _, bad := range []string{
		`{"user": null, "tufup": {"tar_size": 5, "tar_hash": "` + hash + `"}, "notsotuf": {"patch_format": "Compact!"}}`,
		`{"user": null, "tufup": {"tar_size": 5, "tar_hash": "` + hash + `"}, "notsotuf": {"patch_format": 3}}`,
		`{"user": null, "tufup": {"tar_size": 5, "tar_hash": "` + hash + `"}, "notsotuf": []}`,
	} {
		raw := json.RawMessage(bad)
		if m, err := ParsePatchMeta(&raw); err == nil {
			t.Errorf("ParsePatchMeta(%s) = %+v, want an error", bad, m)
		}
	}
	if _, err := (PatchMeta{TarSize: 5, TarHash: hash, Format: "no good"}).Custom(); err == nil {
		t.Error("Custom with a bad format name succeeded")
	}
}

func TestConfigPatchFormat(t *testing.T) {
	fsys := afero.NewMemMapFs()
	c := DefaultConfig("demo")
	c.PatchFormat = "compact"
	if err := c.Save(fsys, "c.json"); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadConfig(fsys, "c.json"); err != nil || got.PatchFormat != "compact" {
		t.Errorf("LoadConfig = %q, %v", got.PatchFormat, err)
	}
	c.PatchFormat = "BS DIFF"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "patch_format") {
		t.Errorf("Validate with a bad patch_format: %v", err)
	}
	// A configuration without the key (every older one) means bsdiff.
	c = DefaultConfig("demo")
	data, _ := json.Marshal(c)
	if strings.Contains(string(data), "patch_format") {
		t.Errorf("default config mentions patch_format: %s", data)
	}
}

// A program plugs in a format of its own: the repository publishes with it
// (signed in the patch's custom metadata, checked by Verify, shown by
// Status), a client that knows it updates by patch, and one that does not
// downloads the full archive instead.
func TestPatchFormatPlugIn(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	fsys := afero.NewOsFs()
	repo := newTestRepository(fsys, base)
	repo.PatchFormats = []PatchFormat{wholeFormat}
	if err := repo.Init(); err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"1.0", "1.1"} {
		makeTestBundle(t, fsys, filepath.Join(base, "b"+v), uint64(i+1))
	}
	if _, err := repo.Add(ctx, AddOptions{Version: "1.0", BundleDir: filepath.Join(base, "b1.0")}); err != nil {
		t.Fatal(err)
	}
	// An unknown format is refused before any work.
	if _, err := repo.Add(ctx, AddOptions{Version: "1.1", BundleDir: filepath.Join(base, "b1.1"), PatchFormat: "nope"}); !errors.Is(err, ErrUnknownPatchFormat) {
		t.Fatalf("Add with an unknown format: %v", err)
	}
	res, err := repo.Add(ctx, AddOptions{Version: "1.1", BundleDir: filepath.Join(base, "b1.1"), PatchFormat: "whole"})
	if err != nil {
		t.Fatal(err)
	}
	if res.PatchFormat != "whole" || res.Patch == nil {
		t.Fatalf("Add = %+v", res)
	}
	patch, err := afero.ReadFile(fsys, filepath.Join(repo.targetsDir(), res.Patch.Name))
	if err != nil || !bytes.HasPrefix(patch, []byte("WHOLEv01")) {
		t.Fatalf("patch file starts %.8q (%v)", patch, err)
	}
	st, err := repo.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.PatchFormat != "bsdiff" || st.TufupReadable || st.Releases[1].PatchFormat != "whole" {
		t.Errorf("Status: format %q, tufup %v, release 1.1 patch format %q", st.PatchFormat, st.TufupReadable, st.Releases[1].PatchFormat)
	}
	if rep, err := repo.Verify(ctx); err != nil || rep.Patches != 1 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	// Without the format, the repository cannot check the patch.
	plain := newTestRepository(fsys, base)
	if _, err := plain.Verify(ctx); err == nil || !strings.Contains(err.Error(), `patch format "whole"`) {
		t.Errorf("Verify without the format: %v", err)
	}

	srv := httptest.NewServer(http.FileServer(http.Dir(repo.Config.RepoDir)))
	defer srv.Close()
	root, err := afero.ReadFile(fsys, filepath.Join(repo.metaDir(), "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	update := func(name string, formats []PatchFormat) *Update {
		t.Helper()
		dir := filepath.Join(base, name)
		makeTestBundle(t, fsys, filepath.Join(dir, "app"), 1) // 1.0 is installed
		c, err := NewClient(ClientConfig{
			App: "demo", CurrentVersion: "1.0", InstallDir: filepath.Join(dir, "app"), CacheDir: filepath.Join(dir, "cache"),
			MetadataURL: srv.URL + "/metadata", TargetsURL: srv.URL + "/targets", TrustedRoot: root, Fs: fsys,
			Now: func() time.Time { return repoTestNow }, PatchFormats: formats,
			PatchRatio: 10, // the whole format's patches are as big as the archive
		})
		if err != nil {
			t.Fatal(err)
		}
		u, err := c.Update(ctx)
		if err != nil || u == nil {
			t.Fatalf("update: %+v, %v", u, err)
		}
		want := repoTreeState(t, fsys, filepath.Join(base, "b1.1"))
		got := repoTreeState(t, fsys, filepath.Join(dir, "app"))
		if strings.ReplaceAll(got, filepath.Join(dir, "app"), "") != strings.ReplaceAll(want, filepath.Join(base, "b1.1"), "") {
			t.Errorf("installed tree:\n%s\nwant:\n%s", got, want)
		}
		return u
	}
	if u := update("knows", []PatchFormat{wholeFormat}); u.Plan.Full {
		t.Errorf("a client that knows the format downloaded the full archive: %s", u.Plan.Reason)
	}
	if u := update("plain", nil); !u.Plan.Full || !strings.Contains(u.Plan.Reason, "whole format, which this client does not know") {
		t.Errorf("a client without the format: plan %+v", u.Plan)
	}
}

// compactTars returns three tars holding an executable built from a small
// Go program whose code changes from one release to the next, with its
// compressed DWARF (so the patches decompress debug sections and the
// patcher needs its scratch file).
func compactTars(t *testing.T) [][]byte {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	dir := t.TempDir()
	var tars [][]byte
	for i := range 3 {
		src := filepath.Join(dir, fmt.Sprint("v", i))
		extra := strings.Repeat("func init() { if len(os.Args) > 7 { fmt.Println(\"more\", len(os.Args)) } }\n", i)
		prog := "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n\t\"strings\"\n)\n\n" + extra +
			fmt.Sprintf("func main() { fmt.Println(%q, strings.Join(os.Args, \" \")) }\n", strings.Repeat("v", i+1))
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(src, "go.mod"), []byte("module example.com/p\n\ngo 1.26\n"), 0o644)
		os.WriteFile(filepath.Join(src, "main.go"), []byte(prog), 0o644)
		cmd := exec.Command(goTool, "build", "-trimpath", "-o", "app", ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOTOOLCHAIN=local")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		e, err := os.ReadFile(filepath.Join(src, "app"))
		if err != nil {
			t.Fatal(err)
		}
		if img, err := exe.Parse(bytes.NewReader(e), int64(len(e))); err != nil || (runtime.GOOS == "linux" && len(img.Zlib) == 0) {
			t.Fatalf("the build has no compressed debug sections (%v)", err)
		}
		tars = append(tars, buildTestTar(t,
			testEnt{name: "./", typ: tar.TypeDir},
			testEnt{name: "./VERSION", body: fmt.Sprint(i)},
			testEnt{name: "./app", body: string(e)},
		))
	}
	return tars
}

// A chain of compact patches applies like a chain of bsdiff ones, on a
// real disk and in memory, and the scratch file of the decompressed old
// sections is gone afterwards.
func TestApplyPatchChainCompact(t *testing.T) {
	if testing.Short() {
		t.Skip("diffs a test binary twice")
	}
	tars := compactTars(t)
	var patches [][]byte
	for i := 1; i < len(tars); i++ {
		var p bytes.Buffer
		if err := compactFormat.Diff(bytes.NewReader(tars[i-1]), int64(len(tars[i-1])), bytes.NewReader(tars[i]), int64(len(tars[i])), &p, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(p.Bytes(), []byte(compactFormat.Magic)) {
			t.Fatalf("patch starts %.8q", p.Bytes())
		}
		patches = append(patches, p.Bytes())
	}
	for _, mode := range []string{"os", "mem"} {
		t.Run(mode, func(t *testing.T) {
			fsys, root := tempOsFs(t)
			if mode == "mem" {
				fsys, root = tempMemFs(t)
			}
			cache := filepath.Join(root, "cache")
			if err := fsys.MkdirAll(cache, 0o755); err != nil {
				t.Fatal(err)
			}
			base := filepath.Join(cache, "app-1.tar")
			if err := afero.WriteFile(fsys, base, tars[0], 0o644); err != nil {
				t.Fatal(err)
			}
			var steps []patchStep
			for i, p := range patches {
				name := fmt.Sprintf("app-%d.patch", i+2)
				path := filepath.Join(cache, name)
				if err := afero.WriteFile(fsys, path, p, 0o644); err != nil {
					t.Fatal(err)
				}
				steps = append(steps, patchStep{Name: name, Path: path, Meta: PatchMeta{TarSize: int64(len(tars[i+1])), TarHash: sha256Hex(tars[i+1]), Format: PatchFormatCompact}})
			}
			before := siblingsOf(t, fsys, cache)
			dst := filepath.Join(cache, "app-3.tar")
			if err := applyPatchChain(context.Background(), fsys, base, steps, dst, nil); err != nil {
				t.Fatal(err)
			}
			got, err := afero.ReadFile(fsys, dst)
			if err != nil || !bytes.Equal(got, tars[2]) {
				t.Fatalf("result differs from the last tar (%v)", err)
			}
			if after := siblingsOf(t, fsys, cache); len(after) != len(before)+1 {
				t.Errorf("cache holds %q, want what it held and app-3.tar", after)
			}
			// The same patch declared as bsdiff in the signed metadata is
			// refused (its magic is not BSDIFF40), not applied.
			steps[0].Meta.Format = ""
			err = applyPatchChain(context.Background(), fsys, base, steps[:1], filepath.Join(cache, "app-2.tar"), nil)
			if !errors.Is(err, ErrCorruptPatch) {
				t.Errorf("compact patch signed as bsdiff: %v", err)
			}
		})
	}
}
