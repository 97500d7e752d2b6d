package notsotuf

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// loggedFileServer serves dir and records the paths requested.
type loggedFileServer struct {
	*httptest.Server
	mu    sync.Mutex
	paths []string
}

func newLoggedFileServer(t *testing.T, dir string) *loggedFileServer {
	s := &loggedFileServer{}
	fs := http.FileServer(http.Dir(dir))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.paths = append(s.paths, r.URL.Path)
		s.mu.Unlock()
		fs.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *loggedFileServer) requested() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.paths)
	s.paths = nil
	return out
}

// repoFiles lists the file names in dir.
func repoFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// consistentClient makes a client of the demo app with version current
// installed from bundle.
func consistentClient(t *testing.T, r *Repository, srv *loggedFileServer, dir, current, bundle string) *Client {
	t.Helper()
	fsys := afero.NewOsFs()
	install := filepath.Join(dir, "install")
	if err := copyTree(fsys, bundle, fsys, install); err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(filepath.Join(r.Config.RepoDir, "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ClientConfig{
		App: "demo", CurrentVersion: current, InstallDir: install, CacheDir: filepath.Join(dir, "cache"),
		MetadataURL: srv.URL + "/metadata", TargetsURL: srv.URL + "/targets", TrustedRoot: root,
		Fs: fsys, HTTPClient: srv.Client(), Now: func() time.Time { return repoTestNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantInstalled(t *testing.T, c *Client, u *Update, version, bundle string) {
	t.Helper()
	if u == nil || u.Version.String() != version {
		t.Fatalf("update: got %+v, want %s", u, version)
	}
	fsys := afero.NewOsFs()
	if want, got := treeManifest(t, fsys, bundle), treeManifest(t, fsys, c.installDir); !maps.Equal(want, got) {
		t.Fatalf("installed tree differs from the %s bundle", version)
	}
}

var hashPrefixedName = regexp.MustCompile(`^[0-9a-f]{64}\.demo-[0-9a-z.]+(\.tar\.gz|\.patch)$`)

// TestConsistentSnapshotRepository: a repository created with consistent
// snapshots stores every target under its hash-prefixed name and every
// version of targets and snapshot metadata; the client reads those (never
// the unversioned snapshot.json or targets.json) and updates by patch,
// also after a release in the middle was removed.
func TestConsistentSnapshotRepository(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	fsys := afero.NewOsFs()
	r := newTestRepository(fsys, base)
	r.Config.ConsistentSnapshot = true
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	meta := filepath.Join(r.Config.RepoDir, "metadata")
	targets := filepath.Join(r.Config.RepoDir, "targets")
	if got, want := repoFiles(t, meta), []string{"1.root.json", "1.snapshot.json", "1.targets.json", "root.json", "snapshot.json", "targets.json", "timestamp.json"}; !slices.Equal(got, want) {
		t.Fatalf("metadata after init: %v, want %v", got, want)
	}
	bundles := map[string]string{}
	for i, v := range []string{"1.0", "1.1", "1.2"} {
		bundles[v] = filepath.Join(base, "b", v)
		makeTestBundle(t, fsys, bundles[v], uint64(i+1))
		if _, err := r.Add(ctx, AddOptions{Version: v, BundleDir: bundles[v]}); err != nil {
			t.Fatal(err)
		}
	}
	names := repoFiles(t, targets)
	if len(names) != 5 {
		t.Fatalf("targets: %v", names)
	}
	for _, n := range names {
		if !hashPrefixedName.MatchString(n) {
			t.Errorf("target file %s is not hash-prefixed", n)
		}
	}
	for _, n := range []string{"4.targets.json", "4.snapshot.json", "2.targets.json", "3.snapshot.json"} {
		if _, err := os.Stat(filepath.Join(meta, n)); err != nil {
			t.Errorf("metadata %s: %v", n, err)
		}
	}
	rep, err := r.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Targets != 5 || rep.Patches != 2 || len(rep.Warnings) != 0 {
		t.Fatalf("verify: %+v", rep)
	}
	st, err := r.Status()
	if err != nil || !st.ConsistentSnapshot {
		t.Fatalf("status: %+v, %v", st, err)
	}

	srv := newLoggedFileServer(t, r.Config.RepoDir)
	c := consistentClient(t, r, srv, filepath.Join(base, "c1"), "1.0", bundles["1.0"])
	u, err := c.Update(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantInstalled(t, c, u, "1.2", bundles["1.2"])
	reqs := srv.requested()
	for _, want := range []string{"/metadata/timestamp.json", "/metadata/4.snapshot.json", "/metadata/4.targets.json"} {
		if !slices.Contains(reqs, want) {
			t.Errorf("client did not fetch %s: %v", want, reqs)
		}
	}
	patches := 0
	for _, p := range reqs {
		switch {
		case p == "/metadata/snapshot.json" || p == "/metadata/targets.json":
			t.Errorf("client fetched unversioned %s", p)
		case strings.HasPrefix(p, "/targets/"):
			if !hashPrefixedName.MatchString(strings.TrimPrefix(p, "/targets/")) {
				t.Errorf("client fetched %s", p)
			}
			if strings.HasSuffix(p, ".patch") {
				patches++
			}
		}
	}
	if patches != 2 {
		t.Errorf("client fetched %d patches: %v", patches, reqs)
	}

	// Removing 1.1 rebuilds 1.2's patch, under another hash-prefixed name;
	// the old files go.
	before := repoFiles(t, targets)
	if err := r.Remove(ctx, "1.1"); err != nil {
		t.Fatal(err)
	}
	after := repoFiles(t, targets)
	if len(after) != 3 {
		t.Fatalf("targets after remove: %v", after)
	}
	kept := 0
	for _, n := range after {
		if slices.Contains(before, n) {
			kept++
		}
	}
	if kept != 2 { // the two archives; the patch is new
		t.Fatalf("targets before %v, after %v", before, after)
	}
	if _, err := r.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	c2 := consistentClient(t, r, srv, filepath.Join(base, "c2"), "1.0", bundles["1.0"])
	u, err = c2.Update(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantInstalled(t, c2, u, "1.2", bundles["1.2"])
	if u.Plan.Full {
		t.Errorf("update after remove: full archive, want the rebuilt patch")
	}

	// The cron refresh writes the versioned snapshot too.
	r.Now = func() time.Time { return repoTestNow.Add(6 * 24 * time.Hour) }
	res, err := r.Refresh(0)
	if err != nil || !slices.Contains(res.Resigned, RoleSnapshot) {
		t.Fatalf("refresh: %+v, %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(meta, "6.snapshot.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTurnOnConsistentSnapshot: an existing repository gets consistent
// snapshots from a new root version; a client that trusts the old root
// follows it and updates; a failure on the way changes nothing.
func TestTurnOnConsistentSnapshot(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	fsys := afero.NewOsFs()
	r := newTestRepository(fsys, base)
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	bundles := map[string]string{}
	add := func(i int, v string) {
		bundles[v] = filepath.Join(base, "b", v)
		makeTestBundle(t, fsys, bundles[v], uint64(i))
		if _, err := r.Add(ctx, AddOptions{Version: v, BundleDir: bundles[v]}); err != nil {
			t.Fatal(err)
		}
	}
	add(1, "1.0")
	add(2, "1.1")
	meta := filepath.Join(r.Config.RepoDir, "metadata")
	targets := filepath.Join(r.Config.RepoDir, "targets")
	if got := repoFiles(t, targets); !slices.Equal(got, []string{"demo-1.0.tar.gz", "demo-1.1.patch", "demo-1.1.tar.gz"}) {
		t.Fatalf("targets without consistent snapshots: %v", got)
	}
	if got := repoFiles(t, meta); !slices.Equal(got, []string{"1.root.json", "root.json", "snapshot.json", "targets.json", "timestamp.json"}) {
		t.Fatalf("metadata without consistent snapshots: %v", got)
	}
	srv := newLoggedFileServer(t, r.Config.RepoDir)
	c := consistentClient(t, r, srv, filepath.Join(base, "c"), "1.0", bundles["1.0"])
	if _, err := c.Check(ctx); err != nil { // trusts root 1 (no consistent snapshots) from now on
		t.Fatal(err)
	}

	// A target file that does not match its metadata stops the change,
	// which leaves the repository as it was.
	good, err := os.ReadFile(filepath.Join(targets, "demo-1.1.patch"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(targets, "demo-1.1.patch"), append(slices.Clone(good[:len(good)-1]), good[len(good)-1]^1), 0o644); err != nil {
		t.Fatal(err)
	}
	state := repoTreeState(t, fsys, r.Config.RepoDir)
	if _, err := r.Sign(SignOptions{Role: RoleRoot, ConsistentSnapshot: true}); err == nil || !strings.Contains(err.Error(), "demo-1.1.patch") {
		t.Fatalf("turning on with a corrupt target: %v", err)
	}
	if got := repoTreeState(t, fsys, r.Config.RepoDir); got != state {
		t.Fatalf("a failed change left the repository changed:\n%s\nwas\n%s", got, state)
	}
	if err := os.WriteFile(filepath.Join(targets, "demo-1.1.patch"), good, 0o644); err != nil {
		t.Fatal(err)
	}

	res, err := r.Sign(SignOptions{Role: RoleRoot, ConsistentSnapshot: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != 2 || !r.Config.ConsistentSnapshot {
		t.Fatalf("sign: %+v, config %v", res, r.Config.ConsistentSnapshot)
	}
	for _, n := range repoFiles(t, targets) {
		if !hashPrefixedName.MatchString(n) {
			t.Errorf("target file %s is not hash-prefixed", n)
		}
	}
	if got, want := repoFiles(t, meta), []string{"1.root.json", "2.root.json", "3.snapshot.json", "3.targets.json", "root.json", "snapshot.json", "targets.json", "timestamp.json"}; !slices.Equal(got, want) {
		t.Fatalf("metadata after turning on: %v, want %v", got, want)
	}
	if _, err := r.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sign(SignOptions{Role: RoleRoot, ConsistentSnapshot: true}); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("turning on twice: %v", err)
	}
	if _, err := r.Sign(SignOptions{Role: RoleTargets, ConsistentSnapshot: true}); err == nil || !strings.Contains(err.Error(), "sign root") {
		t.Errorf("consistent snapshots on targets: %v", err)
	}

	// The client follows the new root and reads the new layout.
	srv.requested()
	u, err := c.Update(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantInstalled(t, c, u, "1.1", bundles["1.1"])
	reqs := srv.requested()
	if !slices.Contains(reqs, "/metadata/2.root.json") || !slices.ContainsFunc(reqs, func(p string) bool {
		return strings.HasPrefix(p, "/targets/") && hashPrefixedName.MatchString(strings.TrimPrefix(p, "/targets/"))
	}) {
		t.Errorf("requests after turning on: %v", reqs)
	}

	// New releases go in the new layout.
	add(3, "1.2")
	if _, err := r.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	u, err = c.Update(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantInstalled(t, c, u, "1.2", bundles["1.2"])
}
