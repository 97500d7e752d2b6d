package notsotuf

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/afero"
)

// renameLog records the final names of atomic writes, in order.
type renameLog struct {
	afero.Fs
	names []string
}

func (r *renameLog) Rename(oldname, newname string) error {
	r.names = append(r.names, filepath.ToSlash(newname))
	return r.Fs.Rename(oldname, newname)
}

func TestDeployOrderAndIdempotence(t *testing.T) {
	src := afero.NewMemMapFs()
	files := map[string]string{
		"repo/metadata/1.root.json":     "r1",
		"repo/metadata/2.root.json":     "r2",
		"repo/metadata/root.json":       "r2",
		"repo/metadata/targets.json":    "t",
		"repo/metadata/snapshot.json":   "s",
		"repo/metadata/timestamp.json":  "ts",
		"repo/targets/app-1.0.tar.gz":   strings.Repeat("a", 100000),
		"repo/targets/app-1.1.tar.gz":   "b",
		"repo/targets/app-1.1.patch":    "p",
		"repo/targets/.app-1.2.tmp-123": "half-written",
	}
	for name, content := range files {
		if err := afero.WriteFile(src, name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, dst := range map[string]afero.Fs{"mem": afero.NewMemMapFs(), "os": afero.NewBasePathFs(afero.NewOsFs(), t.TempDir())} {
		t.Run(name, func(t *testing.T) {
			dst.MkdirAll("site/targets", 0o755)
			afero.WriteFile(dst, "site/targets/app-0.9.tar.gz", []byte("old"), 0o644)
			afero.WriteFile(dst, "site/targets/app-1.0.tar.gz", []byte(strings.Repeat("a", 99999)+"x"), 0o644)
			afero.WriteFile(dst, "site/index.html", []byte("hello"), 0o644)
			log := &renameLog{Fs: dst}
			rep, err := Deploy(src, "repo", log, "site")
			if err != nil {
				t.Fatal(err)
			}
			want := []string{
				"site/targets/app-1.0.tar.gz", "site/targets/app-1.1.patch", "site/targets/app-1.1.tar.gz",
				"site/metadata/1.root.json", "site/metadata/2.root.json", "site/metadata/root.json",
				"site/metadata/targets.json", "site/metadata/snapshot.json", "site/metadata/timestamp.json",
			}
			if !slices.Equal(log.names, want) {
				t.Errorf("write order:\n got %v\nwant %v", log.names, want)
			}
			if !slices.Equal(rep.Removed, []string{"targets/app-0.9.tar.gz"}) {
				t.Errorf("removed %v", rep.Removed)
			}
			for name, content := range files {
				got, err := afero.ReadFile(dst, strings.Replace(name, "repo/", "site/", 1))
				if strings.Contains(name, ".tmp-") {
					if !os.IsNotExist(err) {
						t.Errorf("temporary file %s deployed", name)
					}
					continue
				}
				if string(got) != content {
					t.Errorf("%s: content differs (%v)", name, err)
				}
			}
			if b, _ := afero.ReadFile(dst, "site/index.html"); string(b) != "hello" {
				t.Error("a file outside metadata/ and targets/ was touched")
			}
			log.names = nil
			rep, err = Deploy(src, "repo", log, "site")
			if err != nil {
				t.Fatal(err)
			}
			if len(log.names) != 0 || len(rep.Copied) != 0 || len(rep.Removed) != 0 || rep.Unchanged != 9 {
				t.Errorf("second deploy was not a no-op: %+v, writes %v", rep, log.names)
			}
		})
	}
	if _, err := Deploy(src, "nowhere", afero.NewMemMapFs(), "site"); err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("missing source: %v", err)
	}
	empty := afero.NewMemMapFs()
	empty.MkdirAll("r/metadata", 0o755)
	empty.MkdirAll("r/targets", 0o755)
	if _, err := Deploy(empty, "r", afero.NewMemMapFs(), "site"); err == nil || !strings.Contains(err.Error(), "not a published repository") {
		t.Errorf("unpublished source: %v", err)
	}
}

// TestRootPackageHasNoS3SDK: an application that imports notsotuf for its
// client must not build an S3 SDK; the S3 destination lives in
// internal/s3deploy, used by cmd/notsotuf only.
func TestRootPackageHasNoS3SDK(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/notsotuf/notsotuf").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/spf13/afero") {
		t.Fatalf("go list -deps does not list afero: %v", deps)
	}
	for _, d := range deps {
		if strings.Contains(d, "minio") || strings.Contains(d, "aws-sdk") || strings.Contains(d, "/s3deploy") || strings.Contains(d, "ini.v1") {
			t.Errorf("the root package depends on %s", d)
		}
	}
}

// memDest is a DeployDestination in memory that records what it is given.
type memDest struct {
	files   map[string][]byte
	headers map[string][2]string // name -> Content-Type, Cache-Control
}

func (m *memDest) List(ctx context.Context) ([]string, error) {
	return slices.Sorted(maps.Keys(m.files)), nil
}

func (m *memDest) Unchanged(ctx context.Context, f *DeployFile) (bool, error) {
	in, err := f.Open()
	if err != nil {
		return false, err
	}
	defer in.Close()
	data, err := io.ReadAll(in)
	return err == nil && string(data) == string(m.files[f.Name]) && m.headers[f.Name] == [2]string{f.ContentType, f.CacheControl}, err
}

func (m *memDest) Put(ctx context.Context, f *DeployFile) error {
	in, err := f.Open()
	if err != nil {
		return err
	}
	defer in.Close()
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	for i := 0; i < len(data); i += 7 {
		f.Written(int64(min(7, len(data)-i)))
	}
	m.files[f.Name] = data
	m.headers[f.Name] = [2]string{f.ContentType, f.CacheControl}
	return nil
}

func (m *memDest) Remove(ctx context.Context, name string) error {
	delete(m.files, name)
	return nil
}

// TestDeployHeaders: the Content-Type and Cache-Control of every kind of
// file, with and without consistent snapshots, and with another short
// Cache-Control; the progress reported; a dry run.
func TestDeployHeaders(t *testing.T) {
	const long, hash = "public, max-age=31536000, immutable", "9bdf2b72851bd6d337f0f398709a44d80f92ba699017327227772509cfa76d16"
	for _, tc := range []struct {
		consistent bool
		short      string // DeployOptions.CacheControlShort
		want       map[string][2]string
	}{
		{false, "", map[string][2]string{
			"metadata/1.root.json":                {"application/json", long},
			"metadata/root.json":                  {"application/json", "no-cache"},
			"metadata/targets.json":               {"application/json", "no-cache"},
			"metadata/timestamp.json":             {"application/json", "no-cache"},
			"targets/app-1.0.tar.gz":              {"application/gzip", "no-cache"},
			"targets/app-1.1.patch":               {"application/octet-stream", "no-cache"},
			"targets/" + hash + ".app-1.1.tar.gz": {"application/gzip", "no-cache"}, // not a hash name without consistent snapshots
		}},
		{true, "", map[string][2]string{
			"metadata/1.root.json":                {"application/json", long},
			"metadata/3.targets.json":             {"application/json", long},
			"metadata/3.snapshot.json":            {"application/json", long},
			"metadata/root.json":                  {"application/json", "public, max-age=60"},
			"metadata/snapshot.json":              {"application/json", "public, max-age=60"},
			"metadata/timestamp.json":             {"application/json", "public, max-age=60"},
			"targets/" + hash + ".app-1.1.tar.gz": {"application/gzip", long},
			"targets/" + hash + ".app-1.1.patch":  {"application/octet-stream", long},
			"targets/app-1.0.tar.gz":              {"application/gzip", "public, max-age=60"},
		}},
		{true, "public, max-age=300", map[string][2]string{
			"metadata/2.root.json":    {"application/json", long},
			"metadata/root.json":      {"application/json", "public, max-age=300"},
			"metadata/timestamp.json": {"application/json", "public, max-age=300"},
		}},
	} {
		src := afero.NewMemMapFs()
		src.MkdirAll("repo/targets", 0o755)
		root := fmt.Sprintf(`{"signed": {"_type": "root", "consistent_snapshot": %v}}`, tc.consistent)
		afero.WriteFile(src, "repo/metadata/root.json", []byte(root), 0o644)
		afero.WriteFile(src, "repo/metadata/timestamp.json", []byte("ts"), 0o644)
		var total int64
		for name := range tc.want {
			if name != "metadata/root.json" {
				afero.WriteFile(src, "repo/"+name, []byte(strings.Repeat(name, 3)), 0o644)
			}
		}
		for _, name := range []string{"metadata/root.json", "metadata/timestamp.json"} {
			fi, _ := src.Stat("repo/" + name)
			total += fi.Size()
		}
		for name := range tc.want {
			if name != "metadata/root.json" && name != "metadata/timestamp.json" {
				total += int64(3 * len(name))
			}
		}
		dst := &memDest{files: map[string][]byte{"targets/stale.patch": []byte("x")}, headers: map[string][2]string{}}
		dry, err := DeployTo(context.Background(), src, "repo", dst, DeployOptions{CacheControlShort: tc.short, DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(dst.files) != 1 || len(dry.Copied) != len(tc.want) || !slices.Equal(dry.Removed, []string{"targets/stale.patch"}) || dry.Bytes != total {
			t.Fatalf("dry run: %+v, destination %v", dry, slices.Collect(maps.Keys(dst.files)))
		}
		var calls, last int64
		rep, err := DeployTo(context.Background(), src, "repo", dst, DeployOptions{CacheControlShort: tc.short, Progress: func(done, all int64) {
			if done < last || all != total {
				t.Errorf("progress %d/%d after %d", done, all, last)
			}
			calls++
			last = done
		}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rep.Copied, dry.Copied) || rep.Bytes != total || last != total || calls < int64(len(tc.want)) {
			t.Errorf("deploy %+v after dry run %+v; progress ended at %d of %d after %d calls", rep, dry, last, total, calls)
		}
		for name, want := range tc.want {
			if got := dst.headers[name]; got != want {
				t.Errorf("consistent=%v short=%q: %s: %v, want %v", tc.consistent, tc.short, name, got, want)
			}
		}
		if _, ok := dst.files["targets/stale.patch"]; ok {
			t.Error("a stale file was not removed")
		}
		rep, err = DeployTo(context.Background(), src, "repo", dst, DeployOptions{CacheControlShort: tc.short})
		if err != nil || len(rep.Copied) != 0 || rep.Unchanged != len(tc.want) {
			t.Errorf("second deploy: %+v, %v", rep, err)
		}
	}
}
