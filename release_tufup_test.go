package notsotuf

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// tufupUpdate plays tufup 0.10's client (client.py, _check_updates and
// Patcher.patch_and_verify) on a repository's signed targets: the targets
// named <app>-<version> newer than current, the newest archive on the
// pre-release channel (or the first "required" one), every patch between
// current and it applied in version order to current's tar, and the result
// checked against the last patch's tufup tar fields. It returns the
// version installed and whether the patches gave it ("" when none).
func tufupUpdate(t *testing.T, fsys afero.Fs, repoDir string, targets map[string]*metadata.TargetFiles, app, current, pre string) (string, bool) {
	t.Helper()
	cur := mustVersion(t, current)
	type meta struct {
		name     string
		v        Version
		internal map[string]any
	}
	var archives, patches []meta
	for name, tf := range targets {
		tn, err := ParseTargetName(name)
		if err != nil || tn.App != app || tn.Version.Compare(cur) <= 0 {
			continue
		}
		raw, _ := json.Marshal(tf.Custom)
		_, internal := tufupView(t, raw)
		m := meta{name, tn.Version, internal}
		if tn.Kind == KindArchive {
			// tufup: "not pre or pre[0] in prereleases" (dev releases pass)
			allowed := map[string]string{"a": "abrc", "b": "brc", "rc": "rc"}[pre]
			if tn.Version.preL == "" || strings.Contains(allowed, tn.Version.preL) {
				archives = append(archives, m)
			}
		} else {
			patches = append(patches, m)
		}
	}
	if len(archives) == 0 {
		return "", false
	}
	byV := func(a, b meta) int { return a.v.Compare(b.v) }
	slices.SortFunc(archives, byV)
	var target meta
	for _, a := range archives {
		target = a
		if req, _ := a.internal["required"].(bool); req {
			break
		}
	}
	var chain []meta
	for _, p := range patches {
		if p.v.Compare(target.v) <= 0 {
			chain = append(chain, p)
		}
	}
	slices.SortFunc(chain, byV)
	if len(chain) == 0 {
		return target.v.String(), false
	}
	tarOf := func(name string) []byte {
		f, err := fsys.Open(filepath.Join(repoDir, "targets", name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tarBytes := tarOf(ArchiveName(app, cur))
	for _, p := range chain {
		patch, err := afero.ReadFile(fsys, filepath.Join(repoDir, "targets", p.name))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if _, err := Apply(bytes.NewReader(tarBytes), int64(len(tarBytes)), bytes.NewReader(patch), &out, nil); err != nil {
			t.Fatalf("tufup applying %s: %v", p.name, err)
		}
		tarBytes = out.Bytes()
	}
	last := chain[len(chain)-1].internal
	sum := sha256.Sum256(tarBytes)
	if last["tar_hash"] != hex.EncodeToString(sum[:]) || last["tar_size"] != float64(len(tarBytes)) || last["tar_hash_algorithm"] != "sha256" {
		t.Fatalf("tufup from %s to %s: the patched tar does not match %v", current, target.v, last)
	}
	if !bytes.Equal(tarBytes, tarOf(target.name)) {
		t.Fatalf("tufup from %s to %s: the patches verify but do not give the archive's tar", current, target.v)
	}
	return target.v.String(), true
}

func loadTargets(t *testing.T, r *Repository) map[string]*metadata.TargetFiles {
	t.Helper()
	st, err := r.load()
	if err != nil {
		t.Fatal(err)
	}
	return st.targets.Signed.Targets
}

// TestTufupClientOnReleaseFeatures: what a tufup 0.10 client does on a
// repository where notsotuf published hotfixes, yanked a release and added
// platform builds. In the tufup fixture's own repository, a hotfix below
// 2.0.0a1 keeps tufup's patch chains working on every channel, and a
// required release stays required for tufup; builds for a platform are
// another app to a tufup client of the app (and a tufup client named
// <app>-<platform> follows them); a yanked release's patch is dropped, so
// tufup's chain over the remaining releases still applies.
func TestTufupClientOnReleaseFeatures(t *testing.T) {
	ctx := context.Background()

	// The tufup fixture, taken over, then a hotfix and a required release.
	fsys := afero.NewCopyOnWriteFs(afero.NewReadOnlyFs(afero.NewOsFs()), afero.NewMemMapFs())
	res, err := ImportTufup(fsys, TufupImport{
		Config: filepath.Join(tufupDir, "tufup-repo-config.json"), RepoDir: tufupDir, KeysDir: filepath.Join(tufupDir, "keys"),
	})
	if err != nil {
		t.Fatal(err)
	}
	repo := &Repository{Fs: fsys, Config: res.Config, Now: func() time.Time { return tufupNow }}
	makeTestBundle(t, fsys, "/b/1.1.1", 11)
	if _, err := repo.Add(ctx, AddOptions{Version: "1.1.1", BundleDir: "/b/1.1.1"}); err != nil {
		t.Fatal(err)
	}
	dir := res.Config.RepoDir
	for _, tt := range []struct{ current, pre, want string }{
		{"1.0.0", "", "1.1.1"},
		{"1.1.0", "", "1.1.1"},
		{"1.0.0", "a", "2.0.0a1"},
		{"1.1.1", "a", "2.0.0a1"},
	} {
		if got, patched := tufupUpdate(t, fsys, dir, loadTargets(t, repo), "demoapp", tt.current, tt.pre); got != tt.want || !patched {
			t.Errorf("tufup from %s on %q: %s (patched %v), want %s by patch", tt.current, tt.pre, got, patched, tt.want)
		}
	}
	makeTestBundle(t, fsys, "/b/1.2", 12)
	makeTestBundle(t, fsys, "/b/1.3", 13)
	if _, err := repo.Add(ctx, AddOptions{Version: "1.2", BundleDir: "/b/1.2", Required: true, UserMeta: json.RawMessage(`{"changes": ["x"]}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Add(ctx, AddOptions{Version: "1.3", BundleDir: "/b/1.3"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := tufupUpdate(t, fsys, dir, loadTargets(t, repo), "demoapp", "1.1.1", ""); got != "1.2" {
		t.Errorf("tufup skipped the required 1.2: %s", got)
	}

	// Platform builds beside builds for every platform.
	mem := afero.NewMemMapFs()
	r := newTestRepository(mem, "/w")
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	for i, b := range []struct{ v, platform string }{
		{"1.0", ""}, {"1.0", "linux-amd64"}, {"1.1", "linux-amd64"}, {"1.1", "windows-amd64"}, {"1.2", "linux-amd64"},
	} {
		bundle := filepath.Join("/b", b.v+b.platform)
		makeTestBundle(t, mem, bundle, uint64(i+1))
		if _, err := r.Add(ctx, AddOptions{Version: b.v, BundleDir: bundle, Platform: b.platform}); err != nil {
			t.Fatal(err)
		}
	}
	targets := loadTargets(t, r)
	if got, _ := tufupUpdate(t, mem, r.Config.RepoDir, targets, "demo", "1.0", ""); got != "" {
		t.Errorf("a tufup client of demo is offered a platform build: %s", got)
	}
	if got, patched := tufupUpdate(t, mem, r.Config.RepoDir, targets, "demo-linux-amd64", "1.0", ""); got != "1.2" || !patched {
		t.Errorf("a tufup client of demo-linux-amd64: %s (patched %v), want 1.2 by patch", got, patched)
	}

	// A yanked release in the middle: tufup's chain skips it.
	mem = afero.NewMemMapFs()
	r = newTestRepository(mem, "/w")
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"1.0", "1.1", "1.2"} {
		bundle := filepath.Join("/b", v)
		makeTestBundle(t, mem, bundle, uint64(i+1))
		if _, err := r.Add(ctx, AddOptions{Version: v, BundleDir: bundle}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Yank(ctx, "1.1", "", "bad"); err != nil {
		t.Fatal(err)
	}
	if got, patched := tufupUpdate(t, mem, r.Config.RepoDir, loadTargets(t, r), "demo", "1.0", ""); got != "1.2" || !patched {
		t.Errorf("tufup over a yanked 1.1: %s (patched %v), want 1.2 by patch", got, patched)
	}
	// The fix for a yanked newest release, 1.2.1, patches from 1.1 (1.2
	// has no patch any more): tufup applies 1.2.1's alone.
	makeTestBundle(t, mem, "/b/1.2.1", 9)
	if _, err := r.Unyank(ctx, "1.1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Yank(ctx, "1.2", "", "bad"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add(ctx, AddOptions{Version: "1.2.1", BundleDir: "/b/1.2.1"}); err != nil {
		t.Fatal(err)
	}
	if got, patched := tufupUpdate(t, mem, r.Config.RepoDir, loadTargets(t, r), "demo", "1.1", ""); got != "1.2.1" || !patched {
		t.Errorf("tufup to the fix of a yanked release: %s (patched %v), want 1.2.1 by patch", got, patched)
	}
	if _, err := r.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}
