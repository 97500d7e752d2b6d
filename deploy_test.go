package notsotuf

import (
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
