package notsotuf

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/notsotuf/notsotuf/internal/faultfs"
	"github.com/spf13/afero"
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// chainFixture writes tars[0] as the base and one patch per later tar into
// cache, and returns the steps.
func chainFixture(t testing.TB, fsys afero.Fs, cache string, tars ...[]byte) (base string, steps []patchStep) {
	t.Helper()
	if err := fsys.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	base = filepath.Join(cache, "app-1.tar")
	if err := afero.WriteFile(fsys, base, tars[0], 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(tars); i++ {
		p := diffCached(t, tars[i-1], tars[i])
		name := fmt.Sprintf("app-%d.patch", i+1)
		path := filepath.Join(cache, name)
		if err := afero.WriteFile(fsys, path, p.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		steps = append(steps, patchStep{Name: name, Path: path, Meta: PatchMeta{TarSize: int64(len(tars[i])), TarHash: sha256Hex(tars[i])}})
	}
	return base, steps
}

var diffCache sync.Map // [2]string(old hash, new hash) -> *bytes.Buffer

// diffCached returns the patch from old to new, computed once per test binary.
func diffCached(t testing.TB, old, new []byte) *bytes.Buffer {
	key := [2]string{sha256Hex(old), sha256Hex(new)}
	if p, ok := diffCache.Load(key); ok {
		return p.(*bytes.Buffer)
	}
	var p bytes.Buffer
	if err := Diff(old, new, &p, nil); err != nil {
		t.Fatal(err)
	}
	diffCache.Store(key, &p)
	return &p
}

// chainTars returns n tars, each a small edit of the previous one.
func chainTars(t testing.TB, n int) [][]byte {
	var tars [][]byte
	body := strings.Repeat("the quick brown fox jumps over the lazy dog\n", 400)
	for i := 0; i < n; i++ {
		body = strings.Replace(body, "fox", fmt.Sprintf("cat%d", i), 20)
		tars = append(tars, buildTestTar(t,
			testEnt{name: "./", typ: tar.TypeDir},
			testEnt{name: "./VERSION", body: fmt.Sprint(i)},
			testEnt{name: "./data", body: body},
		))
	}
	return tars
}

func TestApplyPatchChain(t *testing.T) {
	tars := chainTars(t, 4)
	for _, mode := range []string{"os", "mem"} {
		t.Run(mode, func(t *testing.T) {
			fsys, root := tempOsFs(t)
			if mode == "mem" {
				fsys, root = tempMemFs(t)
			}
			cache := filepath.Join(root, "cache")
			base, steps := chainFixture(t, fsys, cache, tars...)
			before := siblingsOf(t, fsys, cache)
			dst := filepath.Join(cache, "app-4.tar")
			var total int64
			err := applyPatchChain(context.Background(), fsys, base, steps, dst, func(n int64) { total += n })
			if err != nil {
				t.Fatal(err)
			}
			got, err := afero.ReadFile(fsys, dst)
			if err != nil || !bytes.Equal(got, tars[3]) {
				t.Fatalf("result differs from the last tar (%v)", err)
			}
			var want int64
			for _, s := range steps {
				want += s.Meta.TarSize
			}
			if total != want {
				t.Errorf("progress total %d, want %d", total, want)
			}
			if after := siblingsOf(t, fsys, cache); len(after) != len(before)+1 {
				t.Errorf("cache holds %q", after)
			}
		})
	}
}

func TestApplyPatchChainRefuses(t *testing.T) {
	tars := chainTars(t, 3)
	tests := []struct {
		name   string
		change func(steps []patchStep)
		want   string
	}{
		{"hash", func(s []patchStep) { s[0].Meta.TarHash = sha256Hex([]byte("x")) }, "app-2.patch"},
		{"short size", func(s []patchStep) { s[1].Meta.TarSize -= 1 }, "exceeds the signed tar_size"},
		{"long size", func(s []patchStep) { s[1].Meta.TarSize += 1 }, "signed tar_size is"},
		{"negative size", func(s []patchStep) { s[0].Meta.TarSize = -1 }, "negative"},
		{"wrong base", func(s []patchStep) { s[0], s[1] = s[1], s[0] }, "app-3.patch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys, root := tempMemFs(t)
			cache := filepath.Join(root, "cache")
			base, steps := chainFixture(t, fsys, cache, tars...)
			before := siblingsOf(t, fsys, cache)
			tt.change(steps)
			err := applyPatchChain(context.Background(), fsys, base, steps, filepath.Join(cache, "out.tar"), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if tt.name != "negative size" && !errors.Is(err, ErrCorruptPatch) {
				t.Errorf("err %v does not wrap ErrCorruptPatch", err)
			}
			if after := siblingsOf(t, fsys, cache); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Errorf("cache holds %q, want %q", after, before)
			}
		})
	}
}

func TestApplyPatchChainCanceled(t *testing.T) {
	fsys, root := tempMemFs(t)
	cache := filepath.Join(root, "cache")
	base, steps := chainFixture(t, fsys, cache, chainTars(t, 3)...)
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := applyPatchChain(ctx, fsys, base, steps, filepath.Join(cache, "out.tar"), func(int64) {
		if calls++; calls == 1 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if s := siblingsOf(t, fsys, cache); len(s) != 3 {
		t.Errorf("cache holds %q", s)
	}
}

// TestApplyPatchChainFaults fails each write of a chain in turn: temporary
// files never survive a transient error, the destination is absent or
// complete, and a rerun succeeds (removing a crash's leftovers).
func TestApplyPatchChainFaults(t *testing.T) {
	tars := chainTars(t, 3) // one intermediate tar
	for _, mode := range []string{"os", "mem"} {
		for _, crash := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/crash=%v", mode, crash), func(t *testing.T) {
				for n := 1; ; n += faultStep() {
					fsys, root := tempOsFs(t)
					if mode == "mem" {
						fsys, root = tempMemFs(t)
					}
					cache := filepath.Join(root, "cache")
					base, steps := chainFixture(t, fsys, cache, tars...)
					before := siblingsOf(t, fsys, cache)
					dst := filepath.Join(cache, "app-3.tar")
					ffs := faultfs.New(fsys, n, crash)
					err := applyPatchChain(context.Background(), ffs, base, steps, dst, nil)
					if !ffs.Failed() {
						if err != nil {
							t.Fatal(err)
						}
						t.Logf("%d write operations", n-1)
						break
					}
					if err == nil {
						t.Fatalf("op %d (%s): no error", n, ffs.Ops()[n-1])
					}
					if got, err := afero.ReadFile(fsys, dst); err == nil && !bytes.Equal(got, tars[2]) {
						t.Fatalf("op %d (%s): destination holds a partial result", n, ffs.Ops()[n-1])
					}
					// Only a failed removal may leave a temporary file.
					after := siblingsOf(t, fsys, cache)
					if op := ffs.Ops()[n-1]; !crash && !strings.HasPrefix(op, "remove ") && strings.Join(after, ",") != strings.Join(before, ",") {
						t.Fatalf("op %d (%s): cache holds %q", n, op, after)
					}
					if err := applyPatchChain(context.Background(), fsys, base, steps, dst, nil); err != nil {
						t.Fatalf("op %d: rerun: %v", n, err)
					}
					if after := siblingsOf(t, fsys, cache); len(after) != len(before)+1 {
						t.Fatalf("op %d: after rerun, cache holds %q", n, after)
					}
				}
			})
		}
	}
}

// TestInstallPatchPathFaults runs the whole patch path (apply the chain
// into the cache, install the resulting tar) with a failure at each write:
// after recover the app is v1 or v2, complete, and the next update works.
func TestInstallPatchPathFaults(t *testing.T) {
	for _, mode := range []string{"os", "mem"} {
		for _, crash := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/crash=%v", mode, crash), func(t *testing.T) {
				v1, v2 := installVersions(t, mode == "os")
				update := func(fsys afero.Fs, dir, base string, steps []patchStep) error {
					dst := filepath.Join(filepath.Dir(base), "app-2.tar")
					if err := applyPatchChain(context.Background(), fsys, base, steps, dst, nil); err != nil {
						return err
					}
					f, err := fsys.Open(dst)
					if err != nil {
						return err
					}
					defer f.Close()
					return (&installer{fs: fsys, dir: dir}).installTar(context.Background(), f, steps[len(steps)-1].Meta.TarSize)
				}
				var want2 map[string]string
				for n := 1; ; n += faultStep() {
					fsys, root := tempOsFs(t)
					if mode == "mem" {
						fsys, root = tempMemFs(t)
					}
					dir, want1 := installFixture(t, fsys, filepath.Join(root, "apps"), v1)
					base, steps := chainFixture(t, fsys, filepath.Join(root, "cache"), v1, v2)
					ffs := faultfs.New(fsys, n, crash)
					err := update(ffs, dir, base, steps)
					if !ffs.Failed() {
						if err != nil {
							t.Fatal(err)
						}
						t.Logf("%d write operations", n-1)
						break
					}
					if err := (&installer{fs: fsys, dir: dir}).recover(); err != nil {
						t.Fatalf("op %d (%s): recover: %v", n, ffs.Ops()[n-1], err)
					}
					got := treeSnapshot(t, fsys, dir)
					if !maps.Equal(got, want1) && (want2 == nil || !maps.Equal(got, want2)) {
						t.Fatalf("op %d (%s): tree is neither v1 nor v2:\n%s", n, ffs.Ops()[n-1], describeTree(got))
					}
					checkSiblings(t, fsys, filepath.Join(root, "apps"))
					if err := update(fsys, dir, base, steps); err != nil {
						t.Fatalf("op %d: next update: %v", n, err)
					}
					got = treeSnapshot(t, fsys, dir)
					if want2 == nil {
						want2 = got
					} else if !maps.Equal(got, want2) {
						t.Fatalf("op %d: next update gave\n%s", n, describeTree(got))
					}
				}
			})
		}
	}
}
