package notsotuf

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/notsotuf/notsotuf/internal/faultfs"
	"github.com/spf13/afero"
)

var repoTestNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestRepository(fsys afero.Fs, base string) *Repository {
	cfg := DefaultConfig("demo")
	cfg.RepoDir = filepath.Join(base, "repository")
	cfg.KeysDir = filepath.Join(base, "keystore")
	return &Repository{Fs: fsys, Config: cfg, Now: func() time.Time { return repoTestNow }}
}

// makeTestBundle writes a small bundle whose content depends on seed.
func makeTestBundle(t testing.TB, fsys afero.Fs, dir string, seed uint64) {
	t.Helper()
	data := make([]byte, 20000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for i := range 8 {
		data[(int(seed)*997+i*131)%len(data)] = byte(seed)
	}
	files := map[string][]byte{
		"app":             fmt.Appendf(nil, "#!/bin/sh\necho %d\n", seed),
		"lib/data.bin":    data,
		"share/conf.json": fmt.Appendf(nil, "{\"v\": %d}\n", seed),
	}
	for name, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := fsys.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := afero.WriteFile(fsys, p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// repoTreeState describes every file under the given roots (name and content
// hash), to compare a repository before and after a failed operation.
func repoTreeState(t testing.TB, fsys afero.Fs, roots ...string) string {
	t.Helper()
	var lines []string
	for _, root := range roots {
		err := afero.Walk(fsys, root, func(p string, fi fs.FileInfo, err error) error {
			if err != nil {
				if errors.Is(err, os.ErrNotExist) && p == root {
					return nil
				}
				return err
			}
			if fi.IsDir() {
				lines = append(lines, p+"/")
				return nil
			}
			data, err := afero.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			lines = append(lines, fmt.Sprintf("%s %o %x", p, fi.Mode().Perm(), sha256.Sum256(data)))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func repoReleaseNames(t testing.TB, r *Repository) []string {
	t.Helper()
	st, err := r.Status()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rel := range st.Releases {
		s := rel.Version
		if rel.Patch != "" {
			s += "+patch"
		}
		out = append(out, s)
	}
	return out
}

func TestRepositoryLifecycle(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		fs   func(t *testing.T) (afero.Fs, string)
	}{
		{"mem", func(t *testing.T) (afero.Fs, string) { return afero.NewMemMapFs(), "/w" }},
		{"os", func(t *testing.T) (afero.Fs, string) { return afero.NewOsFs(), t.TempDir() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys, base := tc.fs(t)
			r := newTestRepository(fsys, base)
			if err := r.Init(); err != nil {
				t.Fatal(err)
			}
			if err := r.Init(); err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Fatalf("second Init: %v", err)
			}
			for i, v := range []string{"1.0", "1.1", "1.2rc1", "1.2"} {
				b := filepath.Join(base, "b", v)
				makeTestBundle(t, fsys, b, uint64(i+1))
				res, err := r.Add(ctx, AddOptions{Version: v, BundleDir: b, UserMeta: []byte(`{"n": 1}`)})
				if err != nil {
					t.Fatalf("Add %s: %v", v, err)
				}
				if (res.Patch != nil) != (i > 0) {
					t.Fatalf("Add %s: patch %v", v, res.Patch)
				}
			}
			rep, err := r.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Targets != 7 || rep.Patches != 3 || len(rep.Warnings) != 0 {
				t.Fatalf("verify report %+v", rep)
			}
			if err := r.Remove(ctx, "1.1"); err != nil {
				t.Fatal(err)
			}
			if got, want := repoReleaseNames(t, r), []string{"1.0", "1.2rc1+patch", "1.2+patch"}; !slices.Equal(got, want) {
				t.Fatalf("releases after remove: %v, want %v", got, want)
			}
			if _, err := r.Verify(ctx); err != nil {
				t.Fatal(err)
			}
			st, err := r.Status()
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Warnings) != 0 || st.Roles[1].Version != 6 || !st.Roles[3].Expires.Equal(repoTestNow.Add(24*time.Hour)) {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

type repoSnapFile struct {
	rel  string
	dir  bool
	data []byte
	mode fs.FileMode
}

// takeRepoSnapshot records every file under base.
func takeRepoSnapshot(t testing.TB, fsys afero.Fs, base string) []repoSnapFile {
	t.Helper()
	var out []repoSnapFile
	err := afero.Walk(fsys, base, func(p string, fi fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		if fi.IsDir() {
			out = append(out, repoSnapFile{rel: rel, dir: true})
			return nil
		}
		data, err := afero.ReadFile(fsys, p)
		out = append(out, repoSnapFile{rel: rel, data: data, mode: fi.Mode().Perm()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func materializeRepoSnapshot(t testing.TB, fsys afero.Fs, base string, snap []repoSnapFile) {
	t.Helper()
	for _, f := range snap {
		p := filepath.Join(base, f.rel)
		if f.dir {
			if err := fsys.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := afero.WriteFile(fsys, p, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := fsys.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAddFailsCleanly injects a failure at every file system operation of
// Add and Remove: whenever the operation reports an error, the repository
// must be exactly as it was; after a crash (every operation failing from the
// Nth on) the repository must still verify, with the old or the new
// releases.
func TestAddFailsCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("injects a failure at every step")
	}
	ctx := context.Background()
	// The starting repository: releases 1.0 and 1.1, bundle for 1.2.
	mem := afero.NewMemMapFs()
	setup := newTestRepository(mem, "/w")
	if err := setup.Init(); err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"1.0", "1.1", "1.2"} {
		b := filepath.Join("/w", "b", v)
		makeTestBundle(t, mem, b, uint64(i+1))
		if v == "1.2" {
			break
		}
		if _, err := setup.Add(ctx, AddOptions{Version: v, BundleDir: b}); err != nil {
			t.Fatal(err)
		}
	}
	snap := takeRepoSnapshot(t, mem, "/w")
	ops := map[string]func(r *Repository, base string) error{
		"add": func(r *Repository, base string) error {
			_, err := r.Add(ctx, AddOptions{Version: "1.2", BundleDir: filepath.Join(base, "b", "1.2")})
			return err
		},
		"remove": func(r *Repository, _ string) error { return r.Remove(ctx, "1.0") },
		// A hotfix below 1.1: 1.1's patch is rebuilt from it.
		"hotfix": func(r *Repository, base string) error {
			_, err := r.Add(ctx, AddOptions{Version: "1.0.5", BundleDir: filepath.Join(base, "b", "1.2")})
			return err
		},
		// Yanking 1.0 drops 1.1's patch (nothing below to patch from).
		"yank": func(r *Repository, _ string) error {
			_, err := r.Yank(ctx, "1.0", "", "bad")
			return err
		},
		"remove-middle": func(r *Repository, _ string) error {
			return r.Remove(ctx, "1.1")
		},
		"sign": func(r *Repository, _ string) error {
			_, err := r.Sign(SignOptions{Role: RoleRoot, ExpiresDays: 10})
			return err
		},
		"keys": func(r *Repository, _ string) error { return r.ReplaceKey(RoleTargets, "targets", "newtargets", false) },
	}
	for _, kind := range []string{"mem", "os"} {
		for name, do := range ops {
			if kind == "os" && name != "add" && name != "remove-middle" && name != "hotfix" {
				continue // the real disk run covers the two operations with target files
			}
			t.Run(kind+"/"+name, func(t *testing.T) {
				fresh := func() (afero.Fs, string) {
					if kind == "mem" {
						fsys := afero.NewMemMapFs()
						materializeRepoSnapshot(t, fsys, "/w", snap)
						return fsys, "/w"
					}
					dir := t.TempDir()
					materializeRepoSnapshot(t, afero.NewOsFs(), dir, snap)
					return afero.NewOsFs(), dir
				}
				// Count the operations of a successful run.
				base, dir := fresh()
				probe := faultfs.New(base, 0, false)
				pr := newTestRepository(probe, dir)
				beforeReleases := repoReleaseNames(t, pr)
				if err := do(pr, dir); err != nil {
					t.Fatal(err)
				}
				total := probe.Count()
				afterReleases := repoReleaseNames(t, pr)
				for n := 1; n <= total; n++ {
					for _, crash := range []bool{false, true} {
						base, dir := fresh()
						r := newTestRepository(base, dir)
						roots := []string{r.Config.RepoDir, r.Config.KeysDir}
						before := repoTreeState(t, base, roots...)
						ffs := faultfs.New(base, n, crash)
						r.Fs = ffs
						err := do(r, dir)
						r.Fs = base
						if err != nil && !crash {
							if got := repoTreeState(t, base, roots...); got != before {
								t.Fatalf("op %d (%s) failed with %v and changed the repository:\n%s\nwas:\n%s", n, ffs.Ops()[n-1], err, got, before)
							}
							continue
						}
						// Success (the failure hit a cleanup step) or a crash:
						// the next command completes or drops the change, and
						// the repository verifies, with the old or new releases.
						if _, serr := r.Status(); serr != nil {
							t.Fatalf("op %d (%s), crash=%v, err=%v: next command: %v", n, ffs.Ops()[n-1], crash, err, serr)
						}
						if _, verr := r.Verify(ctx); verr != nil {
							t.Fatalf("op %d (%s), crash=%v, err=%v: repository does not verify: %v", n, ffs.Ops()[n-1], crash, err, verr)
						}
						got := repoReleaseNames(t, r)
						if !slices.Equal(got, beforeReleases) && !slices.Equal(got, afterReleases) {
							t.Fatalf("op %d: releases %v, want %v or %v", n, got, beforeReleases, afterReleases)
						}
					}
				}
			})
		}
	}
}

// hookFs calls hook once, when a file whose name contains match is created.
type hookFs struct {
	afero.Fs
	match string
	hook  func()
}

func (h *hookFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	if h.hook != nil && flag&os.O_CREATE != 0 && strings.Contains(name, h.match) {
		hook := h.hook
		h.hook = nil
		hook()
	}
	return h.Fs.OpenFile(name, flag, perm)
}

// Two notsotuf processes at once (an add and a cron refresh): the one that
// commits second sees that the metadata changed under it and publishes
// nothing, instead of reusing version numbers.
func TestConcurrentChangeRefused(t *testing.T) {
	ctx := context.Background()
	mem := afero.NewMemMapFs()
	r := newTestRepository(mem, "/w")
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	makeTestBundle(t, mem, "/w/b1", 1)
	if _, err := r.Add(ctx, AddOptions{Version: "1.0", BundleDir: "/w/b1"}); err != nil {
		t.Fatal(err)
	}
	makeTestBundle(t, mem, "/w/b2", 2)
	other := newTestRepository(mem, "/w")
	other.Now = func() time.Time { return repoTestNow.Add(20 * time.Hour) }
	hooked := newTestRepository(&hookFs{Fs: mem, match: "demo-1.1.tar.gz", hook: func() {
		if res, err := other.Refresh(0); err != nil || len(res.Resigned) != 1 {
			t.Errorf("concurrent refresh: %+v, %v", res, err)
		}
	}}, "/w")
	before := repoTreeState(t, mem, "/w/repository/targets")
	_, err := hooked.Add(ctx, AddOptions{Version: "1.1", BundleDir: "/w/b2"})
	if err == nil || !strings.Contains(err.Error(), "changed while this command ran") || ErrorHint(err) == "" {
		t.Fatalf("Add during a refresh: %v", err)
	}
	if got := repoTreeState(t, mem, "/w/repository/targets"); got != before {
		t.Fatalf("targets changed:\n%s\nwas\n%s", got, before)
	}
	if _, err := other.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	// Run again: it goes through.
	if _, err := r.Add(ctx, AddOptions{Version: "1.1", BundleDir: "/w/b2"}); err != nil {
		t.Fatal(err)
	}
}
