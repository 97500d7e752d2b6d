package notsotuf

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
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
	} {
		cfg := good
		tt.mod(&cfg)
		if _, err := NewClient(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("err = %v, want it to mention %q", err, tt.want)
		}
	}
}
