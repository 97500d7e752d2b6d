package notsotuf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// appRelease is one release built by a test: its tree, tar and archive.
type appRelease struct {
	version string
	files   map[string]string
	tar     []byte
	archive []byte
}

// releaseFiles is the tree of release n of the test app: mostly the same
// bytes from one release to the next, as in real bundles.
func releaseFiles(n int) map[string]string {
	big := strings.Repeat(fmt.Sprintf("library code line %d\n", 7), 4000)
	return map[string]string{
		"app":                                fmt.Sprintf("#!/bin/sh\necho release %d\n", n),
		"lib/libapp.so":                      big + fmt.Sprintf("release %d\n", n),
		"share/README":                       "readme\n",
		fmt.Sprintf("share/notes-%d.txt", n): fmt.Sprintf("notes %d\n", n),
	}
}

func buildRelease(t testing.TB, version string, files map[string]string) appRelease {
	fsys := afero.NewMemMapFs()
	for name, content := range files {
		p := filepath.Join("/tree", name)
		fsys.MkdirAll(filepath.Dir(p), 0o755)
		if err := afero.WriteFile(fsys, p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var tarBuf, gzBuf bytes.Buffer
	if err := WriteTar(fsys, "/tree", &tarBuf); err != nil {
		t.Fatal(err)
	}
	if _, _, err := WriteArchive(fsys, "/tree", &gzBuf); err != nil {
		t.Fatal(err)
	}
	return appRelease{version: version, files: files, tar: tarBuf.Bytes(), archive: gzBuf.Bytes()}
}

// writeTree writes a release's files under dir.
func writeTree(t testing.TB, fsys afero.Fs, dir string, files map[string]string) {
	for name, content := range files {
		p := filepath.Join(dir, name)
		fsys.MkdirAll(filepath.Dir(p), 0o755)
		if err := afero.WriteFile(fsys, p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// publishRelease adds a release's archive (and, if patch is not nil, its
// patch) to the repository.
func (r *testRepo) publishRelease(app string, rel appRelease, patch []byte, required bool, user string) {
	r.t.Helper()
	v, err := ParseVersion(rel.version)
	if err != nil {
		r.t.Fatal(err)
	}
	am := ArchiveMeta{Required: required, TarSize: int64(len(rel.tar)), TarHash: sha256hex(rel.tar)}
	if user != "" {
		am.User = json.RawMessage(user)
	}
	custom, err := am.Custom()
	if err != nil {
		r.t.Fatal(err)
	}
	r.addTarget(ArchiveName(app, v), rel.archive, json.RawMessage(custom))
	if patch != nil {
		pc, err := PatchMeta{TarSize: int64(len(rel.tar)), TarHash: sha256hex(rel.tar)}.Custom()
		if err != nil {
			r.t.Fatal(err)
		}
		r.addTarget(PatchName(app, v), patch, json.RawMessage(pc))
	}
	r.publish()
}

func (r *testRepo) config(fsys afero.Fs, current string) ClientConfig {
	return ClientConfig{
		App: "app", CurrentVersion: current, InstallDir: "/opt/app", CacheDir: "/cache",
		MetadataURL: r.metadataURL(), TargetsURL: r.targetsURL(), TrustedRoot: r.rootBytes(),
		Fs: fsys, HTTPClient: r.srv.Client(), Now: func() time.Time { return testNow },
	}
}

func newTestClient(t testing.TB, cfg ClientConfig) *Client {
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.remote.backoff = time.Millisecond
	return c
}

func planNames(p Plan) string {
	var names []string
	for _, f := range p.Files {
		names = append(names, f.Name)
	}
	return strings.Join(names, " ")
}

// fakePatch stands in for a patch where only its size matters.
func fakePatch(n int, seed uint64) []byte { return randomBytes(n, seed) }

func TestCheck(t *testing.T) {
	repo := newTestRepo(t, false)
	r10 := buildRelease(t, "1.0", releaseFiles(0))
	r11 := buildRelease(t, "1.1", releaseFiles(1))
	r20a1 := buildRelease(t, "2.0a1", releaseFiles(2))
	repo.publishRelease("app", r10, nil, false, "")
	repo.publishRelease("app", r11, fakePatch(100, 1), false, `{"changes":["one point one"]}`)
	repo.publishRelease("app", r20a1, fakePatch(200, 2), false, "")
	repo.publishRelease("other", r20a1, nil, false, "") // another app in the same repository

	ctx := context.Background()
	fsys := afero.NewMemMapFs()
	writeTree(t, fsys, "/opt/app", r10.files)

	tests := []struct {
		current, channel string
		full             bool
		want, files      string
	}{
		{"1.0", "", false, "1.1", "app-1.1.patch"},
		{"1.0", "a", false, "2.0a1", "app-1.1.patch app-2.0a1.patch"},
		{"1.0", "b", false, "1.1", "app-1.1.patch"},
		{"1.0", "rc", false, "1.1", "app-1.1.patch"},
		{"1.1", "", false, "", ""},
		{"2.0a1", "a", false, "", ""},
		{"1.0.0", "", false, "1.1", "app-1.1.patch"}, // 1.0.0 == 1.0
	}
	for _, tt := range tests {
		cfg := repo.config(fsys, tt.current)
		cfg.Channel = tt.channel
		u, err := newTestClient(t, cfg).Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tt.want == "" {
			if u != nil {
				t.Errorf("%s on %q: got update %s, want none", tt.current, tt.channel, u.Version)
			}
			continue
		}
		if u == nil || u.Version.String() != tt.want || u.Plan.Full != tt.full || planNames(u.Plan) != tt.files {
			t.Errorf("%s on %q: got %+v, want %s by %s", tt.current, tt.channel, u, tt.want, tt.files)
		}
	}

	u, err := newTestClient(t, repo.config(fsys, "1.0")).Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var user bytes.Buffer
	json.Compact(&user, u.UserMeta)
	if user.String() != `{"changes":["one point one"]}` || u.Required || u.Plan.Bytes != 100 {
		t.Errorf("update = %+v", u)
	}
	if u.base.kind != baseInstalled {
		t.Errorf("base = %v, want the install directory", u.base.kind)
	}
}

func TestCheckFullArchive(t *testing.T) {
	repo := newTestRepo(t, false)
	r10 := buildRelease(t, "1.0", releaseFiles(0))
	r11 := buildRelease(t, "1.1", releaseFiles(1))
	r12 := buildRelease(t, "1.2", releaseFiles(2))
	repo.publishRelease("app", r10, nil, false, "")
	repo.publishRelease("app", r11, fakePatch(100, 1), false, "")
	ctx := context.Background()

	check := func(fsys afero.Fs, mod func(*ClientConfig)) *Update {
		t.Helper()
		cfg := repo.config(fsys, "1.0")
		if mod != nil {
			mod(&cfg)
		}
		u, err := newTestClient(t, cfg).Check(ctx)
		if err != nil || u == nil {
			t.Fatalf("Check = %v, %v", u, err)
		}
		return u
	}
	wantFull := func(u *Update, reason string) {
		t.Helper()
		if !u.Plan.Full || planNames(u.Plan) != "app-"+u.Version.String()+".tar.gz" || !strings.Contains(u.Plan.Reason, reason) {
			t.Errorf("plan %+v, want full because %q", u.Plan, reason)
		}
	}

	// No base: the install dir differs from 1.0 and nothing is cached.
	fsys := afero.NewMemMapFs()
	writeTree(t, fsys, "/opt/app", r10.files)
	afero.WriteFile(fsys, "/opt/app/extra.log", []byte("x"), 0o644)
	wantFull(check(fsys, nil), "no verified copy")

	// A cached verified tar or archive is a base.
	afero.WriteFile(fsys, "/cache/app-1.0.tar", r10.tar, 0o644)
	if u := check(fsys, nil); u.Plan.Full || u.base.kind != baseCachedTar {
		t.Errorf("cached tar: plan %+v base %v", u.Plan, u.base.kind)
	}
	fsys.Remove("/cache/app-1.0.tar")
	afero.WriteFile(fsys, "/cache/app-1.0.tar.gz", r10.archive, 0o644)
	if u := check(fsys, nil); u.Plan.Full || u.base.kind != baseCachedArchive {
		t.Errorf("cached archive: plan %+v base %v", u.Plan, u.base.kind)
	}
	// A corrupted cached archive is not.
	bad := bytes.Clone(r10.archive)
	bad[len(bad)/2] ^= 1
	afero.WriteFile(fsys, "/cache/app-1.0.tar.gz", bad, 0o644)
	wantFull(check(fsys, nil), "no verified copy")

	fsys = afero.NewMemMapFs()
	writeTree(t, fsys, "/opt/app", r10.files)
	wantFull(check(fsys, func(c *ClientConfig) { c.ForceFull = true }), "requested")
	wantFull(check(fsys, func(c *ClientConfig) { c.PatchRatio = 0.0001 }), "exceed")
	afero.WriteFile(fsys, "/cache/app-1.1.patch-failed", nil, 0o644)
	wantFull(check(fsys, nil), "failed before")
	fsys.Remove("/cache/app-1.1.patch-failed")

	// A release without patch breaks the chain.
	repo.publishRelease("app", r12, nil, false, "")
	wantFull(check(fsys, nil), "no patch to 1.2")
	// An unknown installed version has no chain.
	u, err := newTestClient(t, repo.config(fsys, "0.9")).Check(ctx)
	if err != nil || !u.Plan.Full || !strings.Contains(u.Plan.Reason, "not in the repository") {
		t.Errorf("0.9: %+v, %v", u, err)
	}
}

func TestCheckRequired(t *testing.T) {
	repo := newTestRepo(t, false)
	repo.publishRelease("app", buildRelease(t, "1.0", releaseFiles(0)), nil, false, "")
	repo.publishRelease("app", buildRelease(t, "1.1", releaseFiles(1)), fakePatch(10, 1), true, "")
	repo.publishRelease("app", buildRelease(t, "1.2", releaseFiles(2)), fakePatch(10, 2), true, "")
	repo.publishRelease("app", buildRelease(t, "1.3", releaseFiles(3)), fakePatch(10, 3), false, "")
	fsys := afero.NewMemMapFs()
	for _, tt := range []struct{ current, want string }{{"1.0", "1.1"}, {"1.1", "1.2"}, {"1.2", "1.3"}} {
		u, err := newTestClient(t, repo.config(fsys, tt.current)).Check(context.Background())
		if err != nil || u == nil || u.Version.String() != tt.want || !u.Required != (tt.want == "1.3") {
			t.Errorf("from %s: %+v, %v; want %s", tt.current, u, err, tt.want)
		}
	}
}

func TestCurrentFromRecord(t *testing.T) {
	repo := newTestRepo(t, false)
	fsys := afero.NewMemMapFs()
	c := newTestClient(t, repo.config(fsys, "1.0"))
	for _, tt := range []struct{ record, want string }{
		{"", "1.0"},
		{`{"app":"app","version":"1.2"}`, "1.2"},
		{`{"app":"app","version":"0.9"}`, "1.0"},
		{`{"app":"other","version":"1.2"}`, "1.0"},
		{`not json`, "1.0"},
	} {
		afero.WriteFile(fsys, "/cache/installed.json", []byte(tt.record), 0o644)
		if got := c.Current().String(); got != tt.want {
			t.Errorf("record %s: Current = %s, want %s", tt.record, got, tt.want)
		}
	}
}

func TestNewClientValidates(t *testing.T) {
	repo := newTestRepo(t, false)
	good := repo.config(afero.NewMemMapFs(), "1.0")
	if _, err := NewClient(good); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		mod  func(*ClientConfig)
		want string
	}{
		{func(c *ClientConfig) { c.App = "a/b" }, "app"},
		{func(c *ClientConfig) { c.CurrentVersion = "x.y" }, "current version"},
		{func(c *ClientConfig) { c.InstallDir = "" }, "install directory"},
		{func(c *ClientConfig) { c.CacheDir = "" }, "cache directory"},
		{func(c *ClientConfig) { c.MetadataURL = "ftp://x" }, "metadata URL"},
		{func(c *ClientConfig) { c.TargetsURL = "" }, "targets URL"},
		{func(c *ClientConfig) { c.TrustedRoot = nil }, "trusted root"},
		{func(c *ClientConfig) { c.TrustedRoot = []byte("{}") }, "trusted root"},
		{func(c *ClientConfig) { c.Channel = "beta" }, "channel"},
		{func(c *ClientConfig) { c.PatchRatio = -1 }, "patch ratio"},
		{func(c *ClientConfig) { c.Timeout = -time.Second }, "config: timeout -1s: want a positive duration"},
		{func(c *ClientConfig) { c.MinRate = -1 }, "minimum rate"},
		{func(c *ClientConfig) { c.RateWindow = -time.Second }, "rate window"},
		{func(c *ClientConfig) { c.Header = http.Header{"Bad Name": {"x"}} }, "header name"},
		{func(c *ClientConfig) { c.Header = http.Header{"Authorization": {"Bearer s3cret\r\nX: y"}} }, "header Authorization: the value holds a line break"},
	} {
		cfg := good
		tt.mod(&cfg)
		if _, err := NewClient(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("err = %v, want it to mention %q", err, tt.want)
		}
	}
}

// makePatch diffs two releases' tars.
func makePatch(t testing.TB, from, to appRelease) []byte {
	var buf bytes.Buffer
	if err := Diff(from.tar, to.tar, &buf, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// osRoot returns an OS filesystem and a fresh temp dir for a test client.
func osClientConfig(t *testing.T, repo *testRepo, current string) (afero.Fs, ClientConfig) {
	fsys := afero.NewOsFs()
	dir := t.TempDir()
	cfg := repo.config(fsys, current)
	cfg.InstallDir = filepath.Join(dir, "app")
	cfg.CacheDir = filepath.Join(dir, "cache")
	return fsys, cfg
}

// wantTree fails unless dir holds exactly files (and their directories).
func wantTree(t *testing.T, fsys afero.Fs, dir string, files map[string]string) {
	t.Helper()
	got := treeManifest(t, fsys, dir)
	want := manifest{}
	for name, content := range files {
		want[name] = sha256hex([]byte(content))
		for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
			want[filepath.ToSlash(d)] = "dir"
		}
	}
	diffManifests(t, got, want)
}

// cacheFiles lists the cache directory's files (not metadata/).
func cacheFiles(t *testing.T, fsys afero.Fs, dir string) string {
	t.Helper()
	infos, err := afero.ReadDir(fsys, dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fi := range infos {
		if !fi.IsDir() {
			names = append(names, fi.Name())
		}
	}
	return strings.Join(names, " ")
}

func targetRequests(repo *testRepo) []string {
	var out []string
	for _, p := range repo.requested() {
		if strings.HasPrefix(p, "targets/") {
			out = append(out, strings.TrimPrefix(p, "targets/"))
		}
	}
	return out
}

// threeReleases publishes 1.0, 1.1 and 1.2 of "app" with real patches.
func threeReleases(t *testing.T, repo *testRepo) []appRelease {
	rels := []appRelease{
		buildRelease(t, "1.0", releaseFiles(0)),
		buildRelease(t, "1.1", releaseFiles(1)),
		buildRelease(t, "1.2", releaseFiles(2)),
	}
	repo.publishRelease("app", rels[0], nil, false, "")
	repo.publishRelease("app", rels[1], makePatch(t, rels[0], rels[1]), false, "")
	repo.publishRelease("app", rels[2], makePatch(t, rels[1], rels[2]), false, `{"changes":["two"]}`)
	return rels
}

func TestUpdatePatchChain(t *testing.T) {
	repo := newTestRepo(t, true)
	rels := threeReleases(t, repo)
	fsys, cfg := osClientConfig(t, repo, "1.0")
	writeTree(t, fsys, cfg.InstallDir, rels[0].files)
	var done, total int64
	cfg.Progress = func(d, tt int64) { done, total = d, tt }
	ctx := context.Background()
	// Temporary files of a crashed run towards a version never retried,
	// and files that are not the app's.
	if err := fsys.MkdirAll(cfg.CacheDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{".app-1.1.tar.step-123", ".app-0.9.tar.tmp-4", ".other-1.0.tar.step-1", ".keep"} {
		if err := afero.WriteFile(fsys, filepath.Join(cfg.CacheDir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	u, err := newTestClient(t, cfg).Update(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u == nil || u.Version.String() != "1.2" || u.Plan.Full || len(u.Plan.Files) != 2 {
		t.Fatalf("update = %+v", u)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[2].files)
	if done != u.Plan.Bytes || total != u.Plan.Bytes {
		t.Errorf("progress %d/%d, plan %d bytes", done, total, u.Plan.Bytes)
	}
	if got := strings.Join(targetRequests(repo), " "); strings.Contains(got, ".tar.gz") {
		t.Errorf("downloaded %s", got)
	}
	// The verified 1.2 tar is the next base; nothing else of the app is left.
	if got := cacheFiles(t, fsys, cfg.CacheDir); got != ".keep .other-1.0.tar.step-1 app-1.2.tar installed.json" {
		t.Errorf("cache holds %q", got)
	}

	// The same process (still configured as 1.0) updating again: a no-op.
	before := len(targetRequests(repo))
	u, err = newTestClient(t, cfg).Update(ctx)
	if err != nil || u != nil {
		t.Fatalf("second update: %+v, %v", u, err)
	}
	if len(targetRequests(repo)) != before {
		t.Error("second update downloaded targets")
	}

	// 1.3 arrives: patched from the cached 1.2 tar.
	r13 := buildRelease(t, "1.3", releaseFiles(3))
	repo.publishRelease("app", r13, makePatch(t, rels[2], r13), false, "")
	cfg.CurrentVersion = "1.2"
	c := newTestClient(t, cfg)
	u, err = c.Check(ctx)
	if err != nil || u == nil || u.Plan.Full || u.base.kind != baseCachedTar {
		t.Fatalf("check 1.3: %+v, %v", u, err)
	}
	if err := c.Install(ctx, u); err != nil {
		t.Fatal(err)
	}
	wantTree(t, fsys, cfg.InstallDir, r13.files)
}

func TestUpdateFullArchive(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	fsys, cfg := osClientConfig(t, repo, "1.0")
	writeTree(t, fsys, cfg.InstallDir, rels[0].files)
	cfg.ForceFull = true
	u, err := newTestClient(t, cfg).Update(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !u.Plan.Full {
		t.Fatalf("plan %+v", u.Plan)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[2].files)
	if got := strings.Join(targetRequests(repo), " "); got != "app-1.2.tar.gz" {
		t.Errorf("downloaded %q", got)
	}
	if got := cacheFiles(t, fsys, cfg.CacheDir); got != "app-1.2.tar installed.json" { // the archive's checked tar, kept while installing
		t.Errorf("cache holds %q", got)
	}
}

func TestUpdateFromEmptyInstallDir(t *testing.T) {
	// No installed tree at all (a first install): the full archive.
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	fsys := afero.NewMemMapFs()
	cfg := repo.config(fsys, "0")
	u, err := newTestClient(t, cfg).Update(context.Background())
	if err != nil || u == nil || !u.Plan.Full {
		t.Fatalf("update = %+v, %v", u, err)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[2].files)
}

func TestUpdateBadPatchFallsBack(t *testing.T) {
	repo := newTestRepo(t, false)
	r10 := buildRelease(t, "1.0", releaseFiles(0))
	r11 := buildRelease(t, "1.1", releaseFiles(1))
	other := buildRelease(t, "1.1", releaseFiles(5))
	repo.publishRelease("app", r10, nil, false, "")
	// A signed patch that does not produce 1.1's tar (a broken publisher).
	repo.publishRelease("app", r11, makePatch(t, r10, other), false, "")
	fsys, cfg := osClientConfig(t, repo, "1.0")
	writeTree(t, fsys, cfg.InstallDir, r10.files)
	ctx := context.Background()

	// First the archive is unreachable: the update fails, the failed patch
	// is remembered.
	repo.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".tar.gz") {
			http.NotFound(w, r)
			return true
		}
		return false
	})
	_, err := newTestClient(t, cfg).Update(ctx)
	var de *DownloadError
	if !errors.As(err, &de) || de.StatusCode != 404 {
		t.Fatalf("err = %v, want a 404 on the archive", err)
	}
	// The patched tar was extracted while it was produced (a valid tar of
	// other files): its staged tree is gone, the swap never happened.
	wantTree(t, fsys, cfg.InstallDir, r10.files)
	staged, _, _ := newTestClient(t, cfg).installer().siblings()
	if ok, _ := afero.Exists(fsys, staged); ok {
		t.Error("the staged tree of the bad patch is left")
	}
	u, err := newTestClient(t, cfg).Check(ctx)
	if err != nil || !u.Plan.Full || !strings.Contains(u.Plan.Reason, "failed before") {
		t.Fatalf("after a failed patch: %+v, %v", u, err)
	}

	// Then it is back: the full archive is installed.
	repo.setHook(nil)
	if _, err := newTestClient(t, cfg).Update(ctx); err != nil {
		t.Fatal(err)
	}
	wantTree(t, fsys, cfg.InstallDir, r11.files)
	if got := cacheFiles(t, fsys, cfg.CacheDir); got != "app-1.1.tar installed.json" {
		t.Errorf("cache holds %q", got)
	}
}

// TestUpdatePatchedTarVerifiedBeforeSwap: the patched tar is extracted
// while it is produced; a patch whose output is a valid tar of exactly the
// signed size, with one byte changed, is extracted completely and must
// still never be swapped in: the install waits for the signed hash.
func TestUpdatePatchedTarVerifiedBeforeSwap(t *testing.T) {
	repo := newTestRepo(t, false)
	r10 := buildRelease(t, "1.0", releaseFiles(0))
	r11 := buildRelease(t, "1.1", releaseFiles(1))
	evilFiles := releaseFiles(1)
	evilFiles["app"] = strings.Replace(evilFiles["app"], "release", "RELEASE", 1)
	evil := buildRelease(t, "1.1", evilFiles)
	if len(evil.tar) != len(r11.tar) {
		t.Fatalf("tar sizes differ: %d, %d", len(evil.tar), len(r11.tar))
	}
	repo.publishRelease("app", r10, nil, false, "")
	repo.publishRelease("app", r11, makePatch(t, r10, evil), false, "")
	fsys, cfg := osClientConfig(t, repo, "1.0")
	writeTree(t, fsys, cfg.InstallDir, r10.files)
	var swapped []string
	c := newTestClient(t, cfg)
	u, err := c.Check(context.Background())
	if err != nil || u == nil || u.Plan.Full {
		t.Fatalf("check: %+v, %v", u, err)
	}
	in := c.installer()
	// Watch the patch path alone: the same pipeline as Install.
	_, patchErr, installErr := c.installPatches(context.Background(), u, &progress{}, in)
	if installErr != nil || !errors.Is(patchErr, ErrCorruptPatch) {
		t.Fatalf("patchErr = %v, installErr = %v; want a corrupt patch", patchErr, installErr)
	}
	wantTree(t, fsys, cfg.InstallDir, r10.files)
	staged, old, journal := in.siblings()
	for _, p := range []string{staged, old, journal} {
		if ok, _ := afero.Exists(fsys, p); ok {
			swapped = append(swapped, p)
		}
	}
	if len(swapped) != 0 {
		t.Errorf("left behind: %v", swapped)
	}
	// Install falls back to the full archive.
	if err := c.Install(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	wantTree(t, fsys, cfg.InstallDir, r11.files)
}

func TestUpdateResumesInterruptedDownload(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	fsys, cfg := osClientConfig(t, repo, "1.0")
	cfg.ForceFull = true
	archive := repo.file("targets/app-1.2.tar.gz")
	cut := true
	repo.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".tar.gz") && cut {
			cut = false
			cutAfter(w, archive, len(archive)/2)
			return true
		}
		return false
	})
	if _, err := newTestClient(t, cfg).Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[2].files)
	var ranges int
	for _, p := range repo.requested() {
		if strings.HasSuffix(p, ".tar.gz") {
			ranges++
		}
	}
	if ranges != 2 {
		t.Errorf("%d archive requests, want 2", ranges)
	}
}

func TestUpdateTamperedArchive(t *testing.T) {
	repo := newTestRepo(t, false)
	threeReleases(t, repo)
	fsys, cfg := osClientConfig(t, repo, "1.0")
	cfg.ForceFull = true
	archive := repo.file("targets/app-1.2.tar.gz")
	evil := bytes.Clone(archive)
	evil[100] ^= 0xff
	repo.setFile("targets/app-1.2.tar.gz", evil)
	_, err := newTestClient(t, cfg).Update(context.Background())
	if !errors.Is(err, ErrSecurity) || !strings.Contains(err.Error(), "app-1.2.tar.gz") {
		t.Fatalf("err = %v", err)
	}
	if ok, _ := afero.Exists(fsys, cfg.InstallDir); ok {
		t.Error("install dir created")
	}
	if got := cacheFiles(t, fsys, cfg.CacheDir); got != "" {
		t.Errorf("cache holds %q", got)
	}
}

func TestUpdateBaseGoneFallsBack(t *testing.T) {
	// The install tree changes between Check and Install: the rebuilt base
	// does not match, the full archive is installed, and the patches are
	// not marked as failed.
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	fsys, cfg := osClientConfig(t, repo, "1.1")
	writeTree(t, fsys, cfg.InstallDir, rels[1].files)
	ctx := context.Background()
	c := newTestClient(t, cfg)
	// As a notsotuf install would have left it: with its install manifest
	// (a changed file does not make it a foreign directory then).
	if err := writeTreeManifest(fsys, cfg.InstallDir, c.installer().manifestPath(), "app", "1.1"); err != nil {
		t.Fatal(err)
	}
	u, err := c.Check(ctx)
	if err != nil || u.Plan.Full || u.base.kind != baseInstalled {
		t.Fatalf("check: %+v, %v", u, err)
	}
	afero.WriteFile(fsys, filepath.Join(cfg.InstallDir, "app"), []byte("changed"), 0o755)
	repo.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".tar.gz") {
			http.NotFound(w, r)
			return true
		}
		return false
	})
	if err := c.Install(ctx, u); err == nil {
		t.Fatal("install without the archive succeeded")
	}
	if ok, _ := afero.Exists(fsys, filepath.Join(cfg.CacheDir, "app-1.2.patch-failed")); ok {
		t.Error("patch marked as failed")
	}
	repo.setHook(nil)
	if err := c.Install(ctx, u); err != nil {
		t.Fatal(err)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[2].files)
	if got := strings.Join(targetRequests(repo), " "); got != "app-1.2.patch app-1.2.tar.gz app-1.2.tar.gz" {
		t.Errorf("downloads %q", got)
	}
}

// fullDiskFs fails every write to the temporary file of the 1.2 tar in the
// cache (".app-1.2.tar.tmp-*", the patched tar and the archive's kept tar)
// as a full disk would.
type fullDiskFs struct{ afero.Fs }

func (f fullDiskFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	file, err := f.Fs.OpenFile(name, flag, perm)
	if err == nil && strings.HasPrefix(filepath.Base(name), ".app-1.2.tar.tmp-") {
		return fullDiskFile{file}, nil
	}
	return file, err
}

type fullDiskFile struct{ afero.File }

func (f fullDiskFile) Write(p []byte) (int, error) {
	return 0, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
}

// TestUpdateLocalErrorNotABadPatch: writing the patched tar fails for a
// local reason (a full disk): the update falls back to the full archive,
// and the patches are not remembered as bad.
func TestUpdateLocalErrorNotABadPatch(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	base, cfg := osClientConfig(t, repo, "1.0")
	writeTree(t, base, cfg.InstallDir, rels[0].files)
	ctx := context.Background()
	full := cfg
	full.Fs = fullDiskFs{base}

	// The archive is unreachable too: the update fails, and the failure of
	// the patch path is not held against the patches.
	repo.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".tar.gz") {
			http.NotFound(w, r)
			return true
		}
		return false
	})
	var de *DownloadError
	if _, err := newTestClient(t, full).Update(ctx); !errors.As(err, &de) {
		t.Fatalf("update: %v, want the archive's 404 after the patch path failed", err)
	}
	wantTree(t, base, cfg.InstallDir, rels[0].files)
	if u, err := newTestClient(t, cfg).Check(ctx); err != nil || u == nil || u.Plan.Full {
		t.Fatalf("after a full disk: %+v, %v; want patches again", u, err)
	}

	// The archive is back: with the disk still full, the update falls
	// back to it and installs without keeping its tar.
	repo.setHook(nil)
	u, err := newTestClient(t, full).Update(ctx)
	if err != nil || u == nil {
		t.Fatalf("update: %+v, %v", u, err)
	}
	wantTree(t, base, cfg.InstallDir, rels[2].files)
	if got := cacheFiles(t, base, cfg.CacheDir); got != "app-1.2.tar.gz installed.json" {
		t.Errorf("cache holds %q", got)
	}
}

// TestUpdatePatchDownloadFallsBack: the fallback rules for a patch whose
// download fails (docs/client.md). A copy that does not match its signed
// length or hash, or that is missing on the server, gives way to the full
// archive in the same run, and Result says so; a bad copy is not tried
// again. A failure of the server or the network does not fall back: the
// archive would meet it too.
func TestUpdatePatchDownloadFallsBack(t *testing.T) {
	for _, tt := range []struct {
		name     string
		serve    func(w http.ResponseWriter, r *http.Request, patch []byte)
		fallback string // "" for no fallback
		distrust bool
	}{
		{"tampered", func(w http.ResponseWriter, r *http.Request, patch []byte) {
			evil := bytes.Clone(patch)
			evil[len(evil)/2] ^= 1
			w.Write(evil)
		}, "does not match its signed length or hash", true},
		{"longer", func(w http.ResponseWriter, r *http.Request, patch []byte) {
			w.Write(append(bytes.Clone(patch), "more"...))
		}, "more than the allowed", true},
		{"404", func(w http.ResponseWriter, r *http.Request, patch []byte) { http.NotFound(w, r) }, "HTTP 404", false},
		{"410", func(w http.ResponseWriter, r *http.Request, patch []byte) { http.Error(w, "gone", http.StatusGone) }, "HTTP 410", false},
		{"403", func(w http.ResponseWriter, r *http.Request, patch []byte) { http.Error(w, "no", http.StatusForbidden) }, "HTTP 403", false},
		{"502", func(w http.ResponseWriter, r *http.Request, patch []byte) {
			http.Error(w, "down", http.StatusBadGateway)
		}, "", false},
		{"401", func(w http.ResponseWriter, r *http.Request, patch []byte) {
			http.Error(w, "who", http.StatusUnauthorized)
		}, "", false},
		{"cut", func(w http.ResponseWriter, r *http.Request, patch []byte) {
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close()
		}, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			repo := newTestRepo(t, false)
			rels := threeReleases(t, repo)
			fsys, cfg := osClientConfig(t, repo, "1.0")
			writeTree(t, fsys, cfg.InstallDir, rels[0].files)
			var logBuf bytes.Buffer
			cfg.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
			patch := repo.file("targets/app-1.2.patch")
			var archiveDown atomic.Bool
			archiveDown.Store(true) // first the archive is missing too
			repo.setHook(func(w http.ResponseWriter, r *http.Request) bool {
				switch {
				case strings.HasSuffix(r.URL.Path, "/app-1.2.patch"):
					tt.serve(w, r, patch)
					return true
				case strings.HasSuffix(r.URL.Path, ".tar.gz") && archiveDown.Load():
					http.NotFound(w, r)
					return true
				}
				return false
			})
			ctx := context.Background()
			_, err := newTestClient(t, cfg).Update(ctx)
			wantTree(t, fsys, cfg.InstallDir, rels[0].files)
			archiveAsked := strings.Contains(strings.Join(targetRequests(repo), " "), "app-1.2.tar.gz")
			if tt.fallback == "" {
				// No fallback: the patch's own error, no archive request.
				var de *DownloadError
				if !errors.As(err, &de) || !strings.Contains(err.Error(), "app-1.2.patch") || archiveAsked {
					t.Fatalf("err = %v, archive requested: %v; want the patch's error and no fallback", err, archiveAsked)
				}
				if u, err := newTestClient(t, cfg).Check(ctx); err != nil || u.Plan.Full {
					t.Fatalf("after a network failure: %+v, %v; want patches again", u, err)
				}
				return
			}
			// The fallback was tried in the same run; the archive was
			// missing too: the error names both.
			if !archiveAsked || !strings.Contains(err.Error(), "app-1.2.tar.gz: not found") ||
				!strings.Contains(err.Error(), "fallback after the patches failed") || !strings.Contains(err.Error(), tt.fallback) {
				t.Fatalf("err = %v, archive requested: %v", err, archiveAsked)
			}
			u, err := newTestClient(t, cfg).Check(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if u.Plan.Full != tt.distrust || (tt.distrust && u.Plan.Reason != "the patch app-1.2.patch failed before") {
				t.Fatalf("next plan %+v; want full: %v", u.Plan, tt.distrust)
			}
			// The archive is back.
			archiveDown.Store(false)
			before := len(targetRequests(repo))
			u, err = newTestClient(t, cfg).Update(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wantTree(t, fsys, cfg.InstallDir, rels[2].files)
			r := u.Result
			if r == nil || !r.Full || planNames(Plan{Files: r.Files}) != "app-1.2.tar.gz" {
				t.Fatalf("result %+v", r)
			}
			archive := int64(len(repo.file("targets/app-1.2.tar.gz")))
			if tt.distrust {
				// Planned full: no patch requested again, no fallback.
				if got := strings.Join(targetRequests(repo)[before:], " "); got != "app-1.2.tar.gz" {
					t.Errorf("downloads %q", got)
				}
				if r.Fallback != "" || r.Downloaded != archive {
					t.Errorf("result %+v, want %d bytes downloaded, no fallback", r, archive)
				}
			} else if r.BadPatch != "app-1.2.patch" || !strings.Contains(r.Fallback, tt.fallback) || r.Downloaded != archive {
				// The patch 1.1 is cached from the first run.
				t.Errorf("result %+v, want a fallback from app-1.2.patch and %d bytes", r, archive)
			}
			if !strings.Contains(logBuf.String(), `msg="the patches failed, installing the full archive instead" version=1.2 patch=app-1.2.patch`) {
				t.Errorf("log:\n%s", logBuf.String())
			}
			if got := cacheFiles(t, fsys, cfg.CacheDir); got != "app-1.2.tar installed.json" {
				t.Errorf("cache holds %q", got)
			}
		})
	}
}

// TestUpdateResult: Update's result and log say what was installed: the
// patches or the full archive (a notsotuf archive keeps its tar as the
// next base: the log said full=false), and the bytes downloaded.
func TestUpdateResult(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	for _, full := range []bool{false, true} {
		fsys, cfg := osClientConfig(t, repo, "1.0")
		writeTree(t, fsys, cfg.InstallDir, rels[0].files)
		cfg.ForceFull = full
		var logBuf bytes.Buffer
		cfg.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
		u, err := newTestClient(t, cfg).Update(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		r := u.Result
		if r == nil || r.Full != full || planNames(Plan{Files: r.Files}) != planNames(u.Plan) || r.Downloaded != u.Plan.Bytes || r.Fallback != "" || r.BadPatch != "" {
			t.Errorf("full=%v: result %+v, plan %+v", full, r, u.Plan)
		}
		if want := fmt.Sprintf("msg=installed version=1.2 from=1.0 full=%v downloaded=%d fallback=false", full, u.Plan.Bytes); !strings.Contains(logBuf.String(), want) {
			t.Errorf("log:\n%s\nwant %s", logBuf.String(), want)
		}
	}
	// A download resumed from an earlier run counts only what came.
	fsys, cfg := osClientConfig(t, repo, "1.0")
	cfg.ForceFull = true
	archive := repo.file("targets/app-1.2.tar.gz")
	fsys.MkdirAll(cfg.CacheDir, 0o755)
	afero.WriteFile(fsys, filepath.Join(cfg.CacheDir, "app-1.2.tar.gz.part"), archive[:200], 0o644)
	u, err := newTestClient(t, cfg).Update(context.Background())
	if err != nil || u.Result.Downloaded != int64(len(archive)-200) {
		t.Fatalf("resumed: %+v, %v", u, err)
	}
}

// TestUpdateTimeLimit: ClientConfig.Timeout bounds a whole Update, so a
// server that keeps a download just alive cannot hold the client; the
// error says which limit ran out. A deadline of the caller's stays the
// caller's error.
func TestUpdateTimeLimit(t *testing.T) {
	repo := newTestRepo(t, false)
	threeReleases(t, repo)
	archive := repo.file("targets/app-1.2.tar.gz")
	repo.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".tar.gz") {
			trickle(w, r, archive, 5*time.Millisecond) // 200 B/s: above the minimum rate set below
			return true
		}
		return false
	})
	_, cfg := osClientConfig(t, repo, "1.0")
	cfg.ForceFull = true
	cfg.MinRate = 10
	cfg.Timeout = 500 * time.Millisecond
	start := time.Now()
	_, err := newTestClient(t, cfg).Update(context.Background())
	var te *TimeoutError
	if !errors.As(err, &te) || te.Limit != cfg.Timeout || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.HasPrefix(err.Error(), "gave up after 500ms, the time limit: download ") || !strings.Contains(ErrorHint(err), "--timeout") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	// The caller's shorter deadline is not the client's limit.
	cfg.Timeout = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = newTestClient(t, cfg).Update(ctx)
	if errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("caller's deadline: err = %v", err)
	}
	// The default.
	c := newTestClient(t, repo.config(afero.NewMemMapFs(), "1.0"))
	if c.timeout != DefaultTimeout || c.remote.minRate != DefaultMinRate || c.remote.window != DefaultRateWindow {
		t.Errorf("defaults: %v %d %v", c.timeout, c.remote.minRate, c.remote.window)
	}
}

// TestCredentialsNeverPrinted: credentials in the repository URLs
// (user:password@) and in ClientConfig.Header are sent, but appear in no
// error, hint or log line, whatever fails; the extra headers do not follow
// a redirect to another host; a 401 says how to pass credentials.
func TestCredentialsNeverPrinted(t *testing.T) {
	const password, token = "pw-S3CRET-1", "tok-S3CRET-2"
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	// Another host, where a redirect may send the client.
	var mu sync.Mutex
	var elsewhere []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		elsewhere = append(elsewhere, r.Header.Get("X-Api-Key")+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Write(repo.file("targets/app-1.2.tar.gz"))
	}))
	defer other.Close()
	var faultMode atomic.Value
	faultMode.Store("")
	repo.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		user, pw, ok := r.BasicAuth()
		if !ok || user != "user" || pw != password || r.Header.Get("X-Api-Key") != token {
			http.Error(w, "credentials please", http.StatusUnauthorized)
			return true
		}
		if !strings.HasSuffix(r.URL.Path, ".tar.gz") {
			return false
		}
		switch faultMode.Load().(string) {
		case "404":
			http.NotFound(w, r)
		case "tampered":
			w.Write([]byte("not the archive"))
		case "401":
			http.Error(w, "no", http.StatusUnauthorized)
		case "redirect":
			http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
		default:
			return false
		}
		return true
	})
	withCreds := func(u string) string { return strings.Replace(u, "http://", "http://user:"+password+"@", 1) }
	run := func(t *testing.T, mod func(*ClientConfig)) (*Update, error) {
		t.Helper()
		fsys, cfg := osClientConfig(t, repo, "1.0")
		writeTree(t, fsys, cfg.InstallDir, rels[0].files)
		cfg.MetadataURL, cfg.TargetsURL = withCreds(cfg.MetadataURL), withCreds(cfg.TargetsURL)
		cfg.Header = http.Header{"X-Api-Key": {token}}
		cfg.ForceFull = true
		var logBuf bytes.Buffer
		cfg.Logger = slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		if mod != nil {
			mod(&cfg)
		}
		c, err := NewClient(cfg)
		var u *Update
		if err == nil {
			c.remote.backoff = time.Millisecond
			u, err = c.Update(context.Background())
		}
		out := logBuf.String()
		if err != nil {
			out += err.Error() + "\n" + ErrorHint(err)
		}
		if strings.Contains(out, password) || strings.Contains(out, token) {
			t.Errorf("a secret is printed:\n%s", out)
		}
		return u, err
	}
	t.Run("ok", func(t *testing.T) {
		faultMode.Store("")
		if u, err := run(t, nil); err != nil || u == nil {
			t.Fatalf("%+v, %v", u, err)
		}
	})
	for _, f := range []string{"404", "tampered", "401"} {
		t.Run(f, func(t *testing.T) {
			faultMode.Store(f)
			_, err := run(t, nil)
			if err == nil {
				t.Fatal("no error")
			}
			if f == "401" && !strings.Contains(ErrorHint(err), "--header 'Authorization: ...'") {
				t.Errorf("hint %q", ErrorHint(err))
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		faultMode.Store("")
		_, err := run(t, func(cfg *ClientConfig) {
			cfg.MetadataURL = "http://user:" + password + "@127.0.0.1:1/metadata"
		})
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		for _, mod := range []func(*ClientConfig){
			func(cfg *ClientConfig) { cfg.MetadataURL = "ftp://user:" + password + "@host/metadata" },
			func(cfg *ClientConfig) { cfg.MetadataURL = "http://user:" + password + "@host:port/metadata" },
			func(cfg *ClientConfig) { cfg.MetadataURL = "user:" + password + "@host/metadata" },
			func(cfg *ClientConfig) { cfg.Header = http.Header{"X-Api-Key": {token + "\n"}} },
		} {
			if _, err := run(t, mod); err == nil || !strings.HasPrefix(err.Error(), "config: ") {
				t.Errorf("err = %v", err)
			}
		}
	})
	t.Run("redirect", func(t *testing.T) {
		faultMode.Store("redirect")
		if _, err := run(t, nil); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(elsewhere) != 1 || elsewhere[0] != "" {
			t.Errorf("the other host got %q", elsewhere)
		}
	})
}

// TestBadPatchRememberedInLaterChains: a patch whose copy failed its hash
// is remembered by itself, not only as a failed route to the release the
// update aimed at: when a newer release appears before the fallback could
// install anything, the chain to it (which holds the same patch) is not
// tried either.
func TestBadPatchRememberedInLaterChains(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	fsys, cfg := osClientConfig(t, repo, "1.0")
	writeTree(t, fsys, cfg.InstallDir, rels[0].files)
	patch := repo.file("targets/app-1.1.patch")
	evil := bytes.Clone(patch)
	evil[len(evil)/2] ^= 1
	repo.setFile("targets/app-1.1.patch", evil)
	repo.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".tar.gz") {
			http.NotFound(w, r)
			return true
		}
		return false
	})
	ctx := context.Background()
	if _, err := newTestClient(t, cfg).Update(ctx); err == nil || !strings.Contains(err.Error(), "app-1.1.patch does not match") {
		t.Fatalf("err = %v", err)
	}
	r13 := buildRelease(t, "1.3", releaseFiles(3))
	repo.publishRelease("app", r13, makePatch(t, rels[2], r13), false, "")
	u, err := newTestClient(t, cfg).Check(ctx)
	if err != nil || u.Version.String() != "1.3" || !u.Plan.Full || u.Plan.Reason != "the patch app-1.1.patch failed before" {
		t.Fatalf("check: %+v, %v", u, err)
	}
}
