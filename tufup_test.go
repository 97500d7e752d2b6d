package notsotuf

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// The repository in testdata/tufup-demoapp was made by tufup 0.10.0 itself
// (see its README.md): releases 1.0.0, 1.1.0 and 2.0.0a1 of "demoapp",
// with bsdiff4 patches to 1.1.0 and 2.0.0a1.
const tufupDir = "testdata/tufup-demoapp"

var tufupNow = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func tufupServer(t testing.TB) *httptest.Server {
	srv := httptest.NewServer(http.FileServer(http.Dir(tufupDir)))
	t.Cleanup(srv.Close)
	return srv
}

func tufupConfig(t testing.TB, srv *httptest.Server, fsys afero.Fs, root, current string) ClientConfig {
	trusted, err := os.ReadFile(filepath.Join(tufupDir, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return ClientConfig{
		App: "demoapp", CurrentVersion: current,
		InstallDir: filepath.Join(root, "app"), CacheDir: filepath.Join(root, "cache"),
		MetadataURL: srv.URL + "/metadata", TargetsURL: srv.URL + "/targets", TrustedRoot: trusted,
		Fs: fsys, HTTPClient: srv.Client(), Now: func() time.Time { return tufupNow },
	}
}

// copyToFs copies a file of the test data into fsys.
func copyToFs(t testing.TB, fsys afero.Fs, src, dst string) {
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	fsys.MkdirAll(filepath.Dir(dst), 0o755)
	if err := afero.WriteFile(fsys, dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTufupCheck(t *testing.T) {
	srv := tufupServer(t)
	ctx := context.Background()
	fsys := afero.NewMemMapFs()
	cfg := tufupConfig(t, srv, fsys, "/t", "1.0.0")

	// Without a cached 1.0.0 archive there is no verified base (tufup
	// archives carry no tar hash): the full archive.
	u, err := newTestClient(t, cfg).Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u == nil || u.Version.String() != "1.1.0" || !u.Plan.Full || planNames(u.Plan) != "demoapp-1.1.0.tar.gz" {
		t.Fatalf("no base: %+v", u)
	}
	if !strings.Contains(string(u.UserMeta), "release 1.1.0") {
		t.Errorf("user metadata %s", u.UserMeta)
	}

	// With it (how tufup clients keep their base): the patch.
	copyToFs(t, fsys, filepath.Join(tufupDir, "targets/demoapp-1.0.0.tar.gz"), "/t/cache/demoapp-1.0.0.tar.gz")
	u, err = newTestClient(t, cfg).Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u.Plan.Full || planNames(u.Plan) != "demoapp-1.1.0.patch" || u.Plan.Bytes != 596 {
		t.Fatalf("cached base: %+v", u.Plan)
	}

	cfg.Channel = "a"
	u, err = newTestClient(t, cfg).Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u.Version.String() != "2.0.0a1" || planNames(u.Plan) != "demoapp-1.1.0.patch demoapp-2.0.0a1.patch" {
		t.Fatalf("channel a: %s %+v", u.Version, u.Plan)
	}
}

// manifest maps the paths of a tree to a file's sha256 (and " +x" when
// executable), "dir" or "symlink -> target".
type manifest map[string]string

// bundleManifest reads the fixture's SHA256SUMS entries of bundles/<name>,
// with paths relative to the bundle and the executable bit of files (git
// keeps modes; SHA256SUMS does not).
func bundleManifest(t testing.TB, name string) manifest {
	f, err := os.Open(filepath.Join(tufupDir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	prefix := "./bundles/" + name + "/"
	m := manifest{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "dir"):
			p := strings.TrimSpace(strings.TrimPrefix(line, "dir"))
			if rel, ok := strings.CutPrefix(p, prefix); ok {
				m[rel] = "dir"
			}
		case strings.HasPrefix(line, "symlink "):
			p, target, _ := strings.Cut(strings.TrimPrefix(line, "symlink "), " -> ")
			if rel, ok := strings.CutPrefix(p, prefix); ok {
				m[rel] = "symlink -> " + target
			}
		default:
			sum, p, _ := strings.Cut(line, "  ")
			if rel, ok := strings.CutPrefix(p, prefix); ok {
				fi, err := os.Stat(filepath.Join(tufupDir, "bundles", name, rel))
				if err != nil {
					t.Fatal(err)
				}
				m[rel] = sum + execMark(fi.Mode())
			}
		}
	}
	if len(m) == 0 {
		t.Fatalf("no bundle %s in SHA256SUMS", name)
	}
	return m
}

func execMark(mode fs.FileMode) string {
	if mode&0o100 != 0 {
		return " +x"
	}
	return ""
}

// treeManifest describes the tree at dir in fsys like bundleManifest.
func treeManifest(t testing.TB, fsys afero.Fs, dir string) manifest {
	m := manifest{}
	err := afero.Walk(fsys, dir, func(p string, fi fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if l, ok := fsys.(afero.Lstater); ok {
			fi, _, err = l.LstatIfPossible(p)
			if err != nil {
				return err
			}
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := fsys.(afero.LinkReader).ReadlinkIfPossible(p)
			if err != nil {
				return err
			}
			m[rel] = "symlink -> " + target
		case fi.IsDir():
			m[rel] = "dir"
		default:
			f, err := fsys.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			io.Copy(h, f)
			f.Close()
			m[rel] = hex.EncodeToString(h.Sum(nil)) + execMark(fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func diffManifests(t testing.TB, got, want manifest) {
	t.Helper()
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if got[k] != want[k] {
			t.Errorf("%s: installed %q, bundle %q", k, got[k], want[k])
		}
	}
}

// untarByHand extracts a fixture archive into dir with archive/tar, as a
// user unpacking a release would.
func untarByHand(t testing.TB, archive, dir string) {
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeSymlink:
			err = os.Symlink(hdr.Linkname, p)
		case tar.TypeReg:
			var data []byte
			if data, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, data, hdr.FileInfo().Mode().Perm())
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestTufupUpdate(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the fixture has symbolic links")
	}
	srv := tufupServer(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name, channel string
		cachedBase    bool
		want          string
		files         string
	}{
		{"patch", "", true, "1.1.0", "demoapp-1.1.0.patch"},
		{"two patches on channel a", "a", true, "2.0.0a1", "demoapp-1.1.0.patch demoapp-2.0.0a1.patch"},
		{"full archive without base", "", false, "1.1.0", "demoapp-1.1.0.tar.gz"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fsys := afero.NewOsFs()
			cfg := tufupConfig(t, srv, fsys, dir, "1.0.0")
			cfg.Channel = tt.channel
			untarByHand(t, filepath.Join(tufupDir, "targets/demoapp-1.0.0.tar.gz"), cfg.InstallDir)
			diffManifests(t, treeManifest(t, fsys, cfg.InstallDir), bundleManifest(t, "demoapp-1.0.0"))
			if tt.cachedBase {
				copyToFs(t, fsys, filepath.Join(tufupDir, "targets/demoapp-1.0.0.tar.gz"), filepath.Join(cfg.CacheDir, "demoapp-1.0.0.tar.gz"))
			}
			u, err := newTestClient(t, cfg).Update(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if u == nil || u.Version.String() != tt.want || planNames(u.Plan) != tt.files {
				t.Fatalf("update = %+v", u)
			}
			diffManifests(t, treeManifest(t, fsys, cfg.InstallDir), bundleManifest(t, "demoapp-"+tt.want))
			if u, err := newTestClient(t, cfg).Update(ctx); err != nil || u != nil {
				t.Errorf("second update: %+v, %v", u, err)
			}
		})
	}
}

// BenchmarkTufupUpdate measures a whole update of the tufup fixture
// (refresh, download, patch or full archive, install) on a real disk.
func BenchmarkTufupUpdate(b *testing.B) {
	if runtime.GOOS == "windows" {
		b.Skip("the fixture has symbolic links")
	}
	srv := tufupServer(b)
	for _, full := range []bool{false, true} {
		b.Run(map[bool]string{false: "patch", true: "full"}[full], func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				dir := b.TempDir()
				fsys := afero.NewOsFs()
				cfg := tufupConfig(b, srv, fsys, dir, "1.0.0")
				cfg.ForceFull = full
				untarByHand(b, filepath.Join(tufupDir, "targets/demoapp-1.0.0.tar.gz"), cfg.InstallDir)
				copyToFs(b, fsys, filepath.Join(tufupDir, "targets/demoapp-1.0.0.tar.gz"), filepath.Join(cfg.CacheDir, "demoapp-1.0.0.tar.gz"))
				c := newTestClient(b, cfg)
				b.StartTimer()
				u, err := c.Update(context.Background())
				if err != nil || u == nil {
					b.Fatal(u, err)
				}
			}
		})
	}
}
