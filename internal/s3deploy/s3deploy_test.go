package s3deploy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/notsotuf/notsotuf"
	"github.com/notsotuf/notsotuf/internal/s3deploy"
	"github.com/notsotuf/notsotuf/internal/s3test"
	"github.com/spf13/afero"
)

var testNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct{ in, bucket, prefix, err string }{
		{"s3://updates", "updates", "", ""},
		{"s3://updates/", "updates", "", ""},
		{"s3://updates/myapp", "updates", "myapp", ""},
		{"s3://updates/a/b/", "updates", "a/b", ""},
		{"updates/myapp", "", "", "not an s3://"},
		{"https://updates/myapp", "", "", "not an s3://"},
		{"s3://", "", "", "bucket"},
		{"s3://UP", "", "", "bucket"},
		{"s3://updates/a//b", "", "", "prefix"},
		{"s3://updates/a/../b", "", "", "prefix"},
		{"s3://updates/a?x", "", "", "prefix"},
	} {
		b, p, err := s3deploy.ParseURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || b != tc.bucket || p != tc.prefix {
			t.Errorf("%s: %q %q %v", tc.in, b, p, err)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	env := func(string) string { return "" }
	for _, tc := range []struct{ endpoint, err string }{
		{"127.0.0.1:9000", "want http:// or https://"},
		{"ftp://host", "want http:// or https://"},
		{"http://key:secret@127.0.0.1:9000", "credentials in the URL"},
		{"https://host/path", "without a path"},
		{"https://host/?X-Amz-Signature=secret", "without a path or query"},
	} {
		_, err := s3deploy.New(s3deploy.Config{URL: "s3://updates/app", Endpoint: tc.endpoint, Getenv: env})
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("endpoint %s: %v, want %q", tc.endpoint, err, tc.err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("endpoint %s: the error repeats the secret: %v", tc.endpoint, err)
		}
	}
}

// recorder is a transport that logs the requests that reach the server
// ("PUT updates/app/metadata/timestamp.json") and can inject faults.
type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	log  []string
	// fault, when set, may fail a request instead of sending it.
	fault func(req *http.Request) error
	// delay, when set, is waited before each request.
	delay time.Duration
}

func newRecorder() *recorder { return &recorder{base: http.DefaultTransport.(*http.Transport).Clone()} }

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	r.mu.Lock()
	fault := r.fault
	r.mu.Unlock()
	if fault != nil {
		if err := fault(req); err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, err
		}
	}
	line := req.Method + " " + strings.TrimPrefix(req.URL.Path, "/")
	if req.URL.Query().Has("partNumber") {
		line += " (part)"
	}
	r.mu.Lock()
	r.log = append(r.log, line)
	r.mu.Unlock()
	return r.base.RoundTrip(req)
}

// take returns the requests logged with one of the methods, and forgets
// all.
func (r *recorder) take(methods ...string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.log {
		if m, _, _ := strings.Cut(l, " "); slices.Contains(methods, m) {
			out = append(out, l)
		}
	}
	r.log = nil
	return out
}

func (r *recorder) setFault(f func(req *http.Request) error) {
	r.mu.Lock()
	r.fault = f
	r.mu.Unlock()
}

// world is a versitygw server with a public bucket "updates" and a
// notsotuf repository to deploy to s3://updates/app.
type world struct {
	t    *testing.T
	srv  *s3test.Server
	dir  string
	repo *notsotuf.Repository
	rec  *recorder
	n    int // bundles made
}

func newWorld(t *testing.T, consistent bool) *world {
	srv := s3test.StartT(t)
	if err := srv.CreateBucket(context.Background(), "updates", true); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := notsotuf.DefaultConfig("demo")
	cfg.RepoDir = filepath.Join(dir, "repository")
	cfg.KeysDir = filepath.Join(dir, "keystore")
	cfg.ConsistentSnapshot = consistent
	w := &world{t: t, srv: srv, dir: dir, rec: newRecorder(),
		repo: &notsotuf.Repository{Fs: afero.NewOsFs(), Config: cfg, Now: func() time.Time { return testNow }}}
	if err := w.repo.Init(); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) dest(retries int) *s3deploy.Destination {
	env := map[string]string{}
	for _, kv := range w.srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	d, err := s3deploy.New(s3deploy.Config{
		URL: "s3://updates/app", Endpoint: w.srv.Endpoint, PathStyle: true,
		Getenv: func(k string) string { return env[k] }, Transport: w.rec, MaxRetries: retries, PartSize: 5 << 20,
	})
	if err != nil {
		w.t.Fatal(err)
	}
	if err := d.Check(context.Background()); err != nil {
		w.t.Fatal(err)
	}
	return d
}

func (w *world) deploy(repoDir string, opts notsotuf.DeployOptions) (*notsotuf.DeployReport, error) {
	return notsotuf.DeployTo(context.Background(), afero.NewOsFs(), repoDir, w.dest(0), opts)
}

// bundle makes an application bundle whose content depends on its number.
func (w *world) bundle() string {
	w.n++
	b := filepath.Join(w.dir, "bundles", fmt.Sprint(w.n))
	data := make([]byte, 100<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for i := range 16 {
		data[(w.n*7919+i*613)%len(data)] = byte(w.n)
	}
	must(w.t, os.MkdirAll(filepath.Join(b, "lib"), 0o755))
	must(w.t, os.WriteFile(filepath.Join(b, "app"), fmt.Appendf(nil, "#!/bin/sh\necho %d\n", w.n), 0o755))
	must(w.t, os.WriteFile(filepath.Join(b, "lib", "data.bin"), data, 0o644))
	return b
}

func (w *world) add(version string) string {
	b := w.bundle()
	if _, err := w.repo.Add(context.Background(), notsotuf.AddOptions{Version: version, BundleDir: b}); err != nil {
		w.t.Fatal(err)
	}
	return b
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// repoState maps every file of a repository to its sha256.
func repoState(t testing.TB, repoDir string) map[string]string {
	t.Helper()
	st := map[string]string{}
	for _, sub := range []string{"metadata", "targets"} {
		entries, err := os.ReadDir(filepath.Join(repoDir, sub))
		must(t, err)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(repoDir, sub, e.Name()))
			must(t, err)
			sum := sha256.Sum256(data)
			st[sub+"/"+e.Name()] = hex.EncodeToString(sum[:])
		}
	}
	return st
}

// changed returns the names that are new or different in b, and those
// gone from a.
func changed(a, b map[string]string) (written, gone []string) {
	for n, h := range b {
		if a[n] != h {
			written = append(written, n)
		}
	}
	for n := range a {
		if _, ok := b[n]; !ok {
			gone = append(gone, n)
		}
	}
	slices.Sort(written)
	slices.Sort(gone)
	return written, gone
}

// bucketState maps every object below updates/app to its sha256.
func (w *world) bucketState() map[string]string {
	w.t.Helper()
	c, err := w.srv.Client()
	must(w.t, err)
	st := map[string]string{}
	ctx := context.Background()
	for obj := range c.ListObjects(ctx, "updates", minio.ListObjectsOptions{Prefix: "app/", Recursive: true}) {
		must(w.t, obj.Err)
		r, err := c.GetObject(ctx, "updates", obj.Key, minio.GetObjectOptions{})
		must(w.t, err)
		h := sha256.New()
		_, err = io.Copy(h, r)
		r.Close()
		must(w.t, err)
		st[strings.TrimPrefix(obj.Key, "app/")] = hex.EncodeToString(h.Sum(nil))
	}
	return st
}

// checkOrder checks that the object writes went out in publishing order:
// targets first, timestamp.json last, deletions after it.
func checkOrder(t *testing.T, reqs []string, rep *notsotuf.DeployReport) {
	t.Helper()
	var puts, order []string
	lastPut, firstDelete := -1, len(reqs)
	for i, r := range reqs {
		method, key, _ := strings.Cut(r, " ")
		key = strings.TrimSuffix(key, " (part)")
		name := strings.TrimPrefix(key, "updates/app/")
		switch method {
		case "PUT":
			lastPut = i
			if len(puts) == 0 || puts[len(puts)-1] != name {
				puts = append(puts, name)
			}
		case "DELETE":
			firstDelete = min(firstDelete, i)
		}
	}
	for _, n := range puts {
		if !slices.Contains(order, n) {
			order = append(order, n)
		}
	}
	if !slices.Equal(order, rep.Copied) {
		t.Errorf("objects written %v, report says %v", order, rep.Copied)
	}
	seenMeta := false
	for _, n := range order {
		if strings.HasPrefix(n, "metadata/") {
			seenMeta = true
		} else if seenMeta {
			t.Errorf("target %s written after metadata: %v", n, order)
		}
	}
	if len(order) > 0 && slices.Contains(order, "metadata/timestamp.json") && order[len(order)-1] != "metadata/timestamp.json" {
		t.Errorf("timestamp.json not written last: %v", order)
	}
	if firstDelete < lastPut {
		t.Errorf("an object was deleted before the last write: %v", reqs)
	}
}

// client is a fresh client of the bucket, served read-only by anonymous
// HTTP GETs (the bucket is public), with version current installed from
// bundle.
func (w *world) client(name, current, bundle string, opts ...func(*notsotuf.ClientConfig)) *notsotuf.Client {
	w.t.Helper()
	install := filepath.Join(w.dir, "clients", name, "app")
	copyDir(w.t, bundle, install)
	root, err := os.ReadFile(filepath.Join(w.repo.Config.RepoDir, "metadata", "1.root.json"))
	must(w.t, err)
	base := w.srv.Endpoint + "/updates/app"
	cfg := notsotuf.ClientConfig{
		App: "demo", CurrentVersion: current, InstallDir: install, CacheDir: filepath.Join(w.dir, "clients", name, "cache"),
		MetadataURL: base + "/metadata", TargetsURL: base + "/targets", TrustedRoot: root,
		Now: func() time.Time { return testNow },
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := notsotuf.NewClient(cfg)
	must(w.t, err)
	return c
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	must(t, os.CopyFS(to, os.DirFS(from)))
}

func sameTree(t testing.TB, a, b string) bool {
	t.Helper()
	read := func(dir string) map[string]string {
		m := map[string]string{}
		must(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			m[filepath.ToSlash(rel)] = string(data)
			return err
		}))
		return m
	}
	ma, mb := read(a), read(b)
	if len(ma) != len(mb) {
		return false
	}
	for k, v := range ma {
		if mb[k] != v {
			return false
		}
	}
	return true
}

// TestDeployS3 runs the publishing cycle against a real S3 server, for a
// repository with and without consistent snapshots: deploy, deploy again
// (nothing written), add a release (only its objects and the changed
// metadata), a client updates from the bucket, remove a release (its
// objects deleted after the metadata), and the headers every object gets.
func TestDeployS3(t *testing.T) {
	for _, consistent := range []bool{false, true} {
		t.Run(fmt.Sprintf("consistent=%v", consistent), func(t *testing.T) {
			w := newWorld(t, consistent)
			repoDir := w.repo.Config.RepoDir
			b10 := w.add("1.0")

			// First deploy: everything, in order.
			st0 := repoState(t, repoDir)
			rep, err := w.deploy(repoDir, notsotuf.DeployOptions{})
			must(t, err)
			reqs := w.rec.take("PUT", "DELETE")
			checkOrder(t, reqs, rep)
			if len(rep.Copied) != len(st0) || rep.Unchanged != 0 || len(rep.Removed) != 0 {
				t.Fatalf("first deploy: %+v", rep)
			}
			if got := w.bucketState(); !mapsEqual(got, st0) {
				t.Fatalf("bucket differs from the repository:\n%v\n%v", got, st0)
			}

			// Again: nothing written, not one request that writes.
			rep, err = w.deploy(repoDir, notsotuf.DeployOptions{})
			must(t, err)
			if reqs := w.rec.take("PUT", "POST", "DELETE"); len(rep.Copied) != 0 || len(rep.Removed) != 0 || rep.Unchanged != len(st0) || len(reqs) != 0 {
				t.Fatalf("second deploy wrote: %+v, requests %v", rep, reqs)
			}

			// A new release: its archive and patch and the metadata that
			// changed, nothing else.
			b11 := w.add("1.1")
			st1 := repoState(t, repoDir)
			written, gone := changed(st0, st1)
			dry, err := w.deploy(repoDir, notsotuf.DeployOptions{DryRun: true})
			must(t, err)
			if reqs := w.rec.take("PUT", "POST", "DELETE"); len(reqs) != 0 {
				t.Fatalf("dry run wrote: %v", reqs)
			}
			rep, err = w.deploy(repoDir, notsotuf.DeployOptions{})
			must(t, err)
			checkOrder(t, w.rec.take("PUT", "DELETE"), rep)
			if got := slices.Sorted(slices.Values(rep.Copied)); !slices.Equal(got, written) || len(gone) != 0 || len(rep.Removed) != 0 {
				t.Fatalf("deploy after add wrote %v, want %v", got, written)
			}
			if !slices.Equal(dry.Copied, rep.Copied) || rep.Unchanged != len(st1)-len(written) {
				t.Errorf("dry run said %+v, deploy did %+v", dry, rep)
			}
			if n := len(written); consistent && n != 7 || !consistent && n != 5 {
				// archive, patch, targets, snapshot, timestamp (+ the versioned targets and snapshot)
				t.Errorf("%d objects written after add: %v", n, written)
			}
			w.checkHeaders(consistent)

			// A client updates from the bucket's objects.
			c := w.client("a", "1.0", b10)
			u, err := c.Update(context.Background())
			must(t, err)
			if u == nil || u.Version.String() != "1.1" || u.Plan.Full || !sameTree(t, b11, filepath.Join(w.dir, "clients", "a", "app")) {
				t.Fatalf("client update: %+v", u)
			}

			// Removing a release: its objects go, after the metadata.
			must(t, w.repo.Remove(context.Background(), "1.0"))
			st2 := repoState(t, repoDir)
			written, gone = changed(st1, st2)
			rep, err = w.deploy(repoDir, notsotuf.DeployOptions{})
			must(t, err)
			reqs = w.rec.take("PUT", "DELETE")
			checkOrder(t, reqs, rep)
			if got := slices.Sorted(slices.Values(rep.Copied)); !slices.Equal(got, written) || !slices.Equal(rep.Removed, gone) || len(gone) != 2 {
				t.Fatalf("deploy after remove: %+v, want written %v, removed %v", rep, written, gone)
			}
			if got := w.bucketState(); !mapsEqual(got, st2) {
				t.Fatalf("bucket differs from the repository after remove")
			}
			// 1.0 is gone from the repository, so nothing signed shows
			// that the copied tree is 1.0: the client must be told (Adopt).
			c2 := w.client("b", "1.0", b10, func(c *notsotuf.ClientConfig) { c.Adopt = true })
			u, err = c2.Update(context.Background())
			must(t, err)
			if u == nil || u.Version.String() != "1.1" || !u.Plan.Full {
				t.Fatalf("client update after remove: %+v", u)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkHeaders fetches objects anonymously, as a CDN or a client does, and
// checks the headers the store sends.
func (w *world) checkHeaders(consistent bool) {
	w.t.Helper()
	short := "no-cache"
	if consistent {
		short = "public, max-age=60"
	}
	const long = "public, max-age=31536000, immutable"
	c, err := w.srv.Client()
	must(w.t, err)
	checked := 0
	for obj := range c.ListObjects(context.Background(), "updates", minio.ListObjectsOptions{Prefix: "app/", Recursive: true}) {
		name := strings.TrimPrefix(obj.Key, "app/")
		wantCC, wantCT := short, "application/octet-stream"
		switch {
		case strings.HasSuffix(name, ".json"):
			wantCT = "application/json"
		case strings.HasSuffix(name, ".tar.gz"):
			wantCT = "application/gzip"
		}
		base := strings.TrimPrefix(strings.TrimPrefix(name, "metadata/"), "targets/")
		if strings.HasSuffix(name, ".root.json") && base != "root.json" ||
			consistent && base != "timestamp.json" && base != "root.json" && base != "snapshot.json" && base != "targets.json" {
			wantCC = long
		}
		resp, err := http.Get(w.srv.Endpoint + "/updates/" + obj.Key)
		must(w.t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != wantCC || resp.Header.Get("Content-Type") != wantCT || resp.Header.Get("Content-Encoding") != "" {
			w.t.Errorf("GET %s: %s, Cache-Control %q (want %q), Content-Type %q (want %q), Content-Encoding %q",
				name, resp.Status, resp.Header.Get("Cache-Control"), wantCC, resp.Header.Get("Content-Type"), wantCT, resp.Header.Get("Content-Encoding"))
		}
		checked++
	}
	if checked < 8 {
		w.t.Errorf("only %d objects", checked)
	}
}

var errCut = errors.New("connection cut by the test")

// TestDeployS3Interrupted cuts the connection after each number of object
// writes of a deploy (and retries cannot get through), then asks a fresh
// client to update from what the bucket holds. With consistent snapshots
// every cut leaves a repository the client accepts: the old release or
// the new one. Without, a cut between targets.json and timestamp.json
// leaves metadata of two versions, which the client refuses without
// installing anything; the next complete deploy repairs it.
func TestDeployS3Interrupted(t *testing.T) {
	for _, consistent := range []bool{false, true} {
		t.Run(fmt.Sprintf("consistent=%v", consistent), func(t *testing.T) {
			w := newWorld(t, consistent)
			repoDir := w.repo.Config.RepoDir
			w.add("1.0")
			b11 := w.add("1.1")
			prev := filepath.Join(w.dir, "prev")
			copyDir(t, repoDir, prev)
			_, err := w.deploy(prev, notsotuf.DeployOptions{})
			must(t, err)
			b12 := w.add("1.2")
			full, err := w.deploy(repoDir, notsotuf.DeployOptions{DryRun: true})
			must(t, err)
			outcomes := map[string]int{}
			for cut := 0; cut <= len(full.Copied); cut++ {
				// Back to the old repository, then a deploy cut after
				// `cut` objects.
				_, err := w.deploy(prev, notsotuf.DeployOptions{})
				must(t, err)
				w.rec.take()
				var puts int
				var mu sync.Mutex
				w.rec.setFault(func(req *http.Request) error {
					if req.Method == http.MethodGet || req.Method == http.MethodHead {
						return nil // reads go through: the cut is in the writes
					}
					mu.Lock()
					defer mu.Unlock()
					if puts >= cut {
						return errCut
					}
					if req.Method == http.MethodPut {
						puts++
					}
					return nil
				})
				rep, err := notsotuf.DeployTo(context.Background(), afero.NewOsFs(), repoDir, w.dest(1), notsotuf.DeployOptions{})
				w.rec.setFault(nil)
				if cut < len(full.Copied) {
					if !errors.Is(err, errCut) || !strings.Contains(err.Error(), full.Copied[cut]) {
						t.Fatalf("cut %d: error %v, want one naming %s", cut, err, full.Copied[cut])
					}
				} else if err != nil {
					t.Fatalf("uncut deploy: %v", err)
				}
				if len(rep.Copied) != cut {
					t.Fatalf("cut %d: report %+v", cut, rep)
				}
				written := full.Copied[:cut]
				newMeta := slices.ContainsFunc(written, func(n string) bool { return n == "metadata/targets.json" || n == "metadata/snapshot.json" })
				done := slices.Contains(written, "metadata/timestamp.json")

				name := fmt.Sprintf("c%d", cut)
				c := w.client(name, "1.1", b11)
				u, err := c.Update(context.Background())
				install := filepath.Join(w.dir, "clients", name, "app")
				switch {
				case done:
					outcomes["new"]++
					if err != nil || u == nil || u.Version.String() != "1.2" || !sameTree(t, b12, install) {
						t.Fatalf("cut %d (after timestamp.json): %+v, %v", cut, u, err)
					}
				case newMeta && !consistent:
					outcomes["refused"]++
					if !errors.Is(err, notsotuf.ErrSecurity) || !sameTree(t, b11, install) {
						t.Fatalf("cut %d (mixed unversioned metadata): %+v, %v", cut, u, err)
					}
				default:
					outcomes["old"]++
					if err != nil || u != nil || !sameTree(t, b11, install) {
						t.Fatalf("cut %d (%v written): %+v, %v; want the old repository", cut, written, u, err)
					}
				}
			}
			if outcomes["old"] < 2 || outcomes["new"] != 1 || consistent != (outcomes["refused"] == 0) {
				t.Errorf("outcomes over %d cuts: %v", len(full.Copied)+1, outcomes)
			}
			// A complete deploy repairs whatever a cut left.
			_, err = w.deploy(repoDir, notsotuf.DeployOptions{})
			must(t, err)
			if !mapsEqual(w.bucketState(), repoState(t, repoDir)) {
				t.Fatal("bucket differs from the repository")
			}
		})
	}
}

func TestMain(m *testing.M) {
	if os.Getenv("S3DEPLOY_TEST_CHILD") == "1" {
		os.Exit(childDeploy())
	}
	os.Exit(m.Run())
}

// childDeploy is the deploy that TestDeployS3Killed kills: a real process,
// its requests slowed down so that the kill lands in the middle.
func childDeploy() int {
	rec := newRecorder()
	rec.delay = 20 * time.Millisecond
	d, err := s3deploy.New(s3deploy.Config{URL: "s3://updates/app", Endpoint: os.Getenv("S3DEPLOY_ENDPOINT"), Transport: rec})
	if err == nil {
		_, err = notsotuf.DeployTo(context.Background(), afero.NewOsFs(), os.Getenv("S3DEPLOY_REPO"), d, notsotuf.DeployOptions{})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestDeployS3Killed kills a real `deploy` process (SIGKILL on Unix) at
// different moments; with consistent snapshots a fresh client then finds
// the old release or the new one, complete.
func TestDeployS3Killed(t *testing.T) {
	w := newWorld(t, true)
	repoDir := w.repo.Config.RepoDir
	w.add("1.0")
	b11 := w.add("1.1")
	prev := filepath.Join(w.dir, "prev")
	copyDir(t, repoDir, prev)
	b12 := w.add("1.2")
	seen := map[string]int{}
	for i, delay := range []time.Duration{0, 60, 120, 180, 240, 300, 5000} {
		_, err := w.deploy(prev, notsotuf.DeployOptions{})
		must(t, err)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), append(w.srv.Env(), "S3DEPLOY_TEST_CHILD=1", "AWS_EC2_METADATA_DISABLED=true",
			"S3DEPLOY_ENDPOINT="+w.srv.Endpoint, "S3DEPLOY_REPO="+repoDir)...)
		var out strings.Builder
		cmd.Stderr = &out
		must(t, cmd.Start())
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("deploy process: %v\n%s", err, out.String())
			}
		case <-time.After(delay * time.Millisecond):
			cmd.Process.Kill()
			<-exited
		}
		name := fmt.Sprintf("k%d", i)
		c := w.client(name, "1.1", b11)
		u, err := c.Update(context.Background())
		install := filepath.Join(w.dir, "clients", name, "app")
		switch {
		case err != nil:
			t.Fatalf("killed after %v: the client refuses the bucket: %v", delay, err)
		case u == nil && sameTree(t, b11, install):
			seen["old"]++
		case u != nil && u.Version.String() == "1.2" && sameTree(t, b12, install):
			seen["new"]++
		default:
			t.Fatalf("killed after %v: %+v", delay, u)
		}
	}
	if seen["old"] == 0 || seen["new"] == 0 {
		t.Errorf("the kills did not land on both sides of timestamp.json: %v", seen)
	}
}
