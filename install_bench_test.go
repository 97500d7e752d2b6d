package notsotuf

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// corpusTar returns a tar of the benchmark corpus (bench/, ../shared/bench),
// from $CORPUS or /work/corpus, or skips.
func corpusTar(b *testing.B, row, name string) string {
	dir := os.Getenv("CORPUS")
	if dir == "" {
		dir = "/work/corpus"
	}
	p := filepath.Join(dir, row, name)
	if _, err := os.Stat(p); err != nil {
		b.Skipf("corpus tar %s not available (set CORPUS)", p)
	}
	return p
}

// BenchmarkInstallTar installs the pybundle corpus's new.tar (77 MiB, 3608
// members) over its old.tar on a real disk: extraction with a sync per
// file, verification, journal and swap.
func BenchmarkInstallTar(b *testing.B) {
	oldTar, newTar := corpusTar(b, "pybundle", "old.tar"), corpusTar(b, "pybundle", "new.tar")
	fsys := afero.NewOsFs()
	in := &installer{fs: fsys, dir: filepath.Join(b.TempDir(), "app")}
	install := func(p string) {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		fi, _ := f.Stat()
		if err := in.installTar(context.Background(), f, fi.Size()); err != nil {
			b.Fatal(err)
		}
	}
	install(oldTar)
	fi, _ := os.Stat(newTar)
	b.SetBytes(fi.Size())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		install(newTar)
	}
}

// pybundleChain makes a one-patch chain from the pybundle corpus's old.tar
// to its new.tar in a cache directory on a real disk; size is new.tar's.
func pybundleChain(b *testing.B) (fsys afero.Fs, cache, base string, steps []patchStep, size int64) {
	oldData, err := os.ReadFile(corpusTar(b, "pybundle", "old.tar"))
	if err != nil {
		b.Fatal(err)
	}
	newData, err := os.ReadFile(corpusTar(b, "pybundle", "new.tar"))
	if err != nil {
		b.Fatal(err)
	}
	fsys, cache = afero.NewOsFs(), b.TempDir()
	base, steps = chainFixture(b, fsys, cache, oldData, newData)
	return fsys, cache, base, steps, int64(len(newData))
}

// BenchmarkApplyPatchChain applies a patch from the pybundle corpus's
// old.tar to its new.tar on a real disk, checking the signed size and hash.
func BenchmarkApplyPatchChain(b *testing.B) {
	fsys, cache, base, steps, size := pybundleChain(b)
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := applyPatchChain(context.Background(), fsys, base, steps, filepath.Join(cache, "out.tar"), nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPatchInstall updates an install of the pybundle corpus's old.tar
// to its new.tar by patch on a real disk, as the client does: sequential
// (apply the patch to a cached tar, then install that tar) against the
// pipeline the client runs (install while the patch is applied; commit
// once the output matched its signed hash).
func BenchmarkPatchInstall(b *testing.B) {
	fsys, cache, base, steps, size := pybundleChain(b)
	for _, mode := range []string{"sequential", "pipeline"} {
		b.Run(mode, func(b *testing.B) {
			in := &installer{fs: fsys, dir: filepath.Join(b.TempDir(), "app")}
			dst := filepath.Join(cache, "out.tar")
			b.SetBytes(size)
			for i := 0; i < b.N; i++ {
				var err error
				if mode == "sequential" {
					if err = applyPatchChain(context.Background(), fsys, base, steps, dst, nil); err == nil {
						var f afero.File
						if f, err = fsys.Open(dst); err == nil {
							err = in.installTar(context.Background(), f, size)
							f.Close()
						}
					}
				} else {
					var ierr error
					if err, ierr = patchAndInstall(context.Background(), fsys, base, steps, dst, in, size); err == nil {
						err = ierr
					}
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInstallManifestCost installs the gobin corpus's new.tar (40 MiB)
// on a real disk alternately without and with the install manifest (a walk
// of the staged tree hashing every file) and reports the time with it as
// a ratio of the time without it, measured in the same run.
func BenchmarkInstallManifestCost(b *testing.B) {
	data, err := os.ReadFile(corpusTar(b, "gobin", "new.tar"))
	if err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(b.TempDir(), "app")
	var plain, withManifest time.Duration
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, app := range []string{"", "app"} {
			in := &installer{fs: afero.NewOsFs(), dir: dir, app: app}
			start := time.Now()
			if err := in.installTar(context.Background(), bytes.NewReader(data), int64(len(data))); err != nil {
				b.Fatal(err)
			}
			if app == "" {
				plain += time.Since(start)
			} else {
				withManifest += time.Since(start)
			}
		}
	}
	b.ReportMetric(float64(withManifest)/float64(plain), "manifest/plain")
}
