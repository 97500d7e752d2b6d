package notsotuf

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// testMirror serves a test repository's files over loopback HTTP: the
// repository's current ones (live), or a copy taken when it was made (a
// mirror that lags behind). fault, when set, answers instead for the
// requests it returns true for.
type testMirror struct {
	mu       sync.Mutex
	repo     *testRepo
	files    map[string][]byte // nil: live
	fault    func(w http.ResponseWriter, r *http.Request) bool
	requests []string // "path" or "path Range"
	srv      *httptest.Server
}

func newTestMirror(t *testing.T, repo *testRepo, live bool) *testMirror {
	m := &testMirror{repo: repo}
	if !live {
		repo.mu.Lock()
		m.files = maps.Clone(repo.files)
		repo.mu.Unlock()
	}
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *testMirror) serve(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/")
	m.mu.Lock()
	entry := p
	if rg := r.Header.Get("Range"); rg != "" {
		entry += " " + rg
	}
	m.requests = append(m.requests, entry)
	fault := m.fault
	data, ok := m.files[p]
	m.mu.Unlock()
	if m.files == nil {
		data = m.repo.file(p)
		ok = data != nil
	}
	if fault != nil && fault(w, r) {
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, path.Base(p), time.Time{}, bytes.NewReader(data))
}

func (m *testMirror) setFault(f func(w http.ResponseWriter, r *http.Request) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fault = f
}

// requested returns the requests since the last call.
func (m *testMirror) requested() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.requests
	m.requests = nil
	return r
}

func (m *testMirror) config() Mirror {
	return Mirror{MetadataURL: m.srv.URL + "/metadata", TargetsURL: m.srv.URL + "/targets"}
}

// deadURL returns the URL of a loopback port where nothing listens.
func deadURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

// mirrorsConfig is a client configuration (on a real temp dir, with 1.0
// installed) whose first mirror is first and the others after.
func mirrorsConfig(t *testing.T, repo *testRepo, rels []appRelease, first Mirror, others ...Mirror) (afero.Fs, ClientConfig) {
	fsys, cfg := osClientConfig(t, repo, "1.0")
	writeTree(t, fsys, cfg.InstallDir, rels[0].files)
	cfg.MetadataURL, cfg.TargetsURL = first.MetadataURL, first.TargetsURL
	cfg.Mirrors = others
	return fsys, cfg
}

func joinErrs(errs []*MirrorError) string {
	var s []string
	for _, e := range errs {
		s = append(s, e.Error())
	}
	return strings.Join(s, "\n")
}

func hasPrefix(reqs []string, prefix string) bool {
	for _, r := range reqs {
		if strings.HasPrefix(r, prefix) {
			return true
		}
	}
	return false
}

// TestMirrorsDeadFirst: the first mirror cannot be reached: the client
// updates from the second, asks the dead one once in the run (not for
// every file) and reports it; the repository's own server is never used.
func TestMirrorsDeadFirst(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	b := newTestMirror(t, repo, true)
	dead := deadURL(t)
	fsys, cfg := mirrorsConfig(t, repo, rels, Mirror{dead + "/metadata", dead + "/targets"}, b.config())
	c := newTestClient(t, cfg)
	u, err := c.Update(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if u == nil || u.Plan.Full {
		t.Fatalf("update %+v", u)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[2].files)
	errs := c.MirrorErrors()
	var de *DownloadError
	if len(errs) != 1 || errs[0].Mirror != dead+"/metadata" || !errors.As(errs[0], &de) || de.StatusCode != 0 {
		t.Errorf("MirrorErrors:\n%s\nwant the dead mirror once, unreachable", joinErrs(errs))
	}
	if reqs := b.requested(); !hasPrefix(reqs, "targets/app-1.1.patch") || !hasPrefix(reqs, "targets/app-1.2.patch") {
		t.Errorf("second mirror served %q", reqs)
	}
	if reqs := repo.requested(); len(reqs) > 0 {
		t.Errorf("the repository's own server was asked %q", reqs)
	}
}

// TestMirrorsServerError: a first mirror that answers 503 is asked once in
// a run, and again in the next run; the second serves everything.
func TestMirrorsServerError(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	a := newTestMirror(t, repo, true)
	a.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
		return true
	})
	b := newTestMirror(t, repo, true)
	fsys, cfg := mirrorsConfig(t, repo, rels, a.config(), b.config())
	c := newTestClient(t, cfg)
	if _, err := c.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[2].files)
	if reqs := a.requested(); len(reqs) != 1 {
		t.Errorf("the failing mirror got %d requests in one run, want 1: %q", len(reqs), reqs)
	}
	errs := c.MirrorErrors()
	var de *DownloadError
	if len(errs) != 1 || !errors.As(errs[0], &de) || de.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("MirrorErrors:\n%s", joinErrs(errs))
	}
	// A new run asks it again (it may be back), once.
	if u, err := c.Check(context.Background()); err != nil || u != nil {
		t.Fatalf("check: %+v, %v", u, err)
	}
	if reqs := a.requested(); len(reqs) != 1 {
		t.Errorf("the failing mirror got %q in the next run, want 1 request", reqs)
	}
	if len(c.MirrorErrors()) != 1 {
		t.Errorf("MirrorErrors of the second run:\n%s", joinErrs(c.MirrorErrors()))
	}
}

// TestMirrorsLagging: a mirror that lags behind misses the newest files
// (404): the next mirror serves them, and that is not reported as a
// failure. One whose metadata is older than what the client already
// trusts is refused as a rollback, reported, and the next one serves the
// current metadata.
func TestMirrorsLagging(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	// Mirror a has the metadata of 1.2 but not its patch yet.
	a := newTestMirror(t, repo, true)
	a.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "app-1.2.patch") {
			http.NotFound(w, r)
			return true
		}
		return false
	})
	b := newTestMirror(t, repo, true)
	fsys, cfg := mirrorsConfig(t, repo, rels, a.config(), b.config())
	c := newTestClient(t, cfg)
	if _, err := c.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[2].files)
	if errs := c.MirrorErrors(); len(errs) != 0 {
		t.Errorf("MirrorErrors:\n%s", joinErrs(errs))
	}
	if reqs := a.requested(); !hasPrefix(reqs, "targets/app-1.1.patch") || !hasPrefix(reqs, "targets/app-1.2.patch") {
		t.Errorf("first mirror: %q", reqs)
	}
	if reqs := b.requested(); hasPrefix(reqs, "targets/app-1.1.patch") || !hasPrefix(reqs, "targets/app-1.2.patch") {
		t.Errorf("second mirror: %q, want only the missing patch", reqs)
	}

	// A mirror frozen now, then the repository publishes 1.3: the client
	// learns of it from b; a, first, then serves a timestamp older than
	// the trusted one.
	stale := newTestMirror(t, repo, false)
	r13 := buildRelease(t, "1.3", releaseFiles(3))
	repo.publishRelease("app", r13, makePatch(t, rels[2], r13), false, "")
	cfg.Mirrors = []Mirror{b.config()}
	c = newTestClient(t, cfg)
	if u, err := c.Check(context.Background()); err != nil || u == nil || u.Version.String() != "1.3" {
		t.Fatalf("check from b: %+v, %v", u, err)
	}
	cfg.MetadataURL, cfg.TargetsURL = stale.config().MetadataURL, stale.config().TargetsURL
	var logBuf bytes.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
	c = newTestClient(t, cfg)
	if _, err := c.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantTree(t, fsys, cfg.InstallDir, r13.files)
	errs := c.MirrorErrors()
	var bad *metadata.ErrBadVersionNumber
	if len(errs) != 1 || !errors.Is(errs[0], ErrSecurity) || !errors.As(errs[0], &bad) ||
		!strings.Contains(errs[0].Error(), "mirror "+stale.srv.URL+"/metadata: security: timestamp.json was rolled back") {
		t.Errorf("MirrorErrors:\n%s\nwant the stale timestamp refused as a rollback", joinErrs(errs))
	}
	if !strings.Contains(logBuf.String(), `level=WARN msg="a mirror sent a bad file; another mirror served a good one" file=timestamp.json mirror=`+stale.srv.URL+"/metadata") {
		t.Errorf("log:\n%s", logBuf.String())
	}
}

// TestMirrorsTampered: a mirror that sends a tampered file (or more bytes
// than signed) is reported as a security failure, not hidden, and the
// next mirror serves a good copy. When no mirror has a good copy, the
// error is a security error that names every mirror, and nothing is left
// in the cache or the install directory.
func TestMirrorsTampered(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	archive := repo.file("targets/app-1.2.tar.gz")
	tampered := bytes.Clone(archive)
	tampered[len(tampered)/2] ^= 1
	serveBad := func(how string) func(w http.ResponseWriter, r *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool {
			switch {
			case how == "archive" && strings.HasSuffix(r.URL.Path, ".tar.gz"):
				http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(tampered))
			case how == "long" && strings.HasSuffix(r.URL.Path, ".tar.gz"):
				w.Write(append(bytes.Clone(archive), "more"...))
			case how == "timestamp" && strings.HasSuffix(r.URL.Path, "/timestamp.json"):
				w.Write(mutateSigned(t, repo.file("metadata/timestamp.json"), "version", "9999"))
			default:
				return false
			}
			return true
		}
	}
	for _, how := range []string{"archive", "long", "timestamp"} {
		a := newTestMirror(t, repo, true)
		a.setFault(serveBad(how))
		b := newTestMirror(t, repo, true)
		fsys, cfg := mirrorsConfig(t, repo, rels, a.config(), b.config())
		cfg.ForceFull = true
		var logBuf bytes.Buffer
		cfg.Logger = slog.New(slog.NewTextHandler(&logBuf, nil))
		c := newTestClient(t, cfg)
		if _, err := c.Update(context.Background()); err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		wantTree(t, fsys, cfg.InstallDir, rels[2].files)
		errs := c.MirrorErrors()
		if len(errs) != 1 || !strings.HasPrefix(errs[0].Mirror, a.srv.URL) || !suspicious(errs[0].Err) {
			t.Errorf("%s: MirrorErrors:\n%s", how, joinErrs(errs))
		}
		if how != "long" && !errors.Is(errs[0], ErrSecurity) {
			t.Errorf("%s: %v is not a security error", how, errs[0])
		}
		if !strings.Contains(logBuf.String(), `level=WARN msg="a mirror sent a bad file; another mirror served a good one"`) {
			t.Errorf("%s: no warning logged:\n%s", how, logBuf.String())
		}
	}

	// Every mirror sends the tampered archive.
	a, b := newTestMirror(t, repo, true), newTestMirror(t, repo, true)
	a.setFault(serveBad("archive"))
	b.setFault(serveBad("archive"))
	fsys, cfg := mirrorsConfig(t, repo, rels, a.config(), b.config())
	cfg.ForceFull = true
	c := newTestClient(t, cfg)
	_, err := c.Update(context.Background())
	var nm *NoMirrorError
	if !errors.Is(err, ErrSecurity) || !errors.As(err, &nm) || len(nm.Errs) != 2 || nm.File != "app-1.2.tar.gz" {
		t.Fatalf("err = %v, want a *NoMirrorError of two security errors", err)
	}
	msg := err.Error()
	for _, want := range []string{"no mirror could serve app-1.2.tar.gz:\nmirror " + a.srv.URL + "/targets: security: app-1.2.tar.gz does not match",
		"\nmirror " + b.srv.URL + "/targets: security: app-1.2.tar.gz does not match"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error:\n%s\nwant %q", msg, want)
		}
	}
	if hint := ErrorHint(err); !strings.Contains(hint, "notsotuf verify") {
		t.Errorf("hint %q", hint)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[0].files)
	if got := cacheFiles(t, fsys, cfg.CacheDir); got != "" {
		t.Errorf("cache holds %q", got)
	}
}

// TestMirrorsSecurityErrorFirst: when no mirror serves a file, a bad copy
// on one is the error callers see first (errors.As), before another's
// 404 or a dead one.
func TestMirrorsSecurityErrorFirst(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	a, b := newTestMirror(t, repo, true), newTestMirror(t, repo, true)
	a.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".tar.gz") {
			http.NotFound(w, r)
			return true
		}
		return false
	})
	archive := repo.file("targets/app-1.2.tar.gz")
	b.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".tar.gz") {
			w.Write(bytes.Repeat([]byte{'x'}, len(archive)))
			return true
		}
		return false
	})
	dead := deadURL(t)
	_, cfg := mirrorsConfig(t, repo, rels, a.config(), Mirror{TargetsURL: dead + "/targets"}, b.config())
	cfg.ForceFull = true
	_, err := newTestClient(t, cfg).Update(context.Background())
	var nm *NoMirrorError
	if !errors.As(err, &nm) || len(nm.Errs) != 3 {
		t.Fatalf("err = %v", err)
	}
	var de *DownloadError
	if !errors.Is(nm.Errs[0], ErrSecurity) || nm.Errs[0].Mirror != b.srv.URL+"/targets" ||
		!errors.As(nm.Errs[1], &de) || de.StatusCode != 404 || nm.Errs[2].Mirror != dead+"/targets" {
		t.Errorf("order:\n%s", joinErrs(nm.Errs))
	}
	var se *SecurityError
	if !errors.As(err, &se) || se.File != "app-1.2.tar.gz" {
		t.Errorf("errors.As(err, *SecurityError) = %v", se)
	}
}

// TestMirrorsApart: metadata from one mirror, targets from another
// (either URL of a mirror may be left out).
func TestMirrorsApart(t *testing.T) {
	repo := newTestRepo(t, true)
	rels := threeReleases(t, repo)
	a, b := newTestMirror(t, repo, true), newTestMirror(t, repo, true)
	dead := deadURL(t)
	for _, tt := range []struct {
		name          string
		first         Mirror
		others        []Mirror
		wantA, wantB  string // the only prefix of the requests each served
		errsFromFirst int
	}{
		{"targets elsewhere", Mirror{a.config().MetadataURL, dead + "/targets"}, []Mirror{{TargetsURL: b.config().TargetsURL}}, "metadata/", "targets/", 1},
		{"metadata elsewhere", Mirror{dead + "/metadata", a.config().TargetsURL}, []Mirror{{MetadataURL: b.config().MetadataURL}}, "targets/", "metadata/", 1},
	} {
		fsys, cfg := mirrorsConfig(t, repo, rels, tt.first, tt.others...)
		c := newTestClient(t, cfg)
		if _, err := c.Update(context.Background()); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		wantTree(t, fsys, cfg.InstallDir, rels[2].files)
		for _, m := range []struct {
			reqs []string
			want string
		}{{a.requested(), tt.wantA}, {b.requested(), tt.wantB}} {
			if len(m.reqs) == 0 {
				t.Errorf("%s: a mirror served nothing", tt.name)
			}
			for _, r := range m.reqs {
				if !strings.HasPrefix(r, m.want) {
					t.Errorf("%s: request %s, want only %s*", tt.name, r, m.want)
				}
			}
		}
		if errs := c.MirrorErrors(); len(errs) != tt.errsFromFirst || !strings.HasPrefix(errs[0].Mirror, dead) {
			t.Errorf("%s: MirrorErrors:\n%s", tt.name, joinErrs(errs))
		}
	}
}

// TestMirrorsRootRotation: the root rotation loop (TUF 5.3) with mirrors.
// A first mirror that lags behind does not hide a new root that the next
// one has; the loop ends when a mirror says there is no next version and
// none serves it, even if another cannot be reached or sends a forged one
// (reported); it fails when no mirror can say.
func TestMirrorsRootRotation(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	stale := newTestMirror(t, repo, false) // before the rotation
	repo.rotate("root")
	repo.rotate("timestamp")
	live := newTestMirror(t, repo, true)

	_, cfg := mirrorsConfig(t, repo, rels, stale.config(), live.config())
	c := newTestClient(t, cfg)
	if _, err := c.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := c.tuf.trusted.Root.Signed.Version; v != 3 {
		t.Errorf("root version %d, want 3", v)
	}
	reqs := stale.requested()
	if !hasPrefix(reqs, "metadata/2.root.json") || !hasPrefix(reqs, "metadata/timestamp.json") {
		t.Errorf("stale mirror asked %q", reqs)
	}
	// Its timestamp, signed by the old timestamp key, is refused.
	errs := c.MirrorErrors()
	var unsigned *metadata.ErrUnsignedMetadata
	if len(errs) != 1 || errs[0].Mirror != stale.srv.URL+"/metadata" || !errors.As(errs[0], &unsigned) {
		t.Errorf("MirrorErrors:\n%s", joinErrs(errs))
	}

	// A forged 4.root.json on the first mirror, the second has none: the
	// loop ends at 3, the forgery is reported.
	forger := newTestMirror(t, repo, true)
	repo.root.Signed.Version = 4
	forged := signWith(t, repo.root, repo.setKey("root"))
	forger.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/4.root.json") {
			w.Write(forged)
			return true
		}
		return false
	})
	dead := deadURL(t)
	_, cfg = mirrorsConfig(t, repo, rels, Mirror{dead + "/metadata", dead + "/targets"}, forger.config(), live.config())
	c = newTestClient(t, cfg)
	if _, err := c.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := c.tuf.trusted.Root.Signed.Version; v != 3 {
		t.Errorf("root version %d, want 3", v)
	}
	errs = c.MirrorErrors()
	if len(errs) != 2 || errs[0].Mirror != dead+"/metadata" || errs[1].Mirror != forger.srv.URL+"/metadata" ||
		!errors.Is(errs[1], ErrSecurity) || !strings.Contains(errs[1].Error(), "4.root.json") {
		t.Errorf("MirrorErrors:\n%s\nwant the dead mirror, then the forged root", joinErrs(errs))
	}

	// No mirror can say whether 4.root.json exists: the refresh fails.
	forger.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/4.root.json") {
			http.Error(w, "oops", http.StatusBadGateway)
			return true
		}
		return false
	})
	_, cfg = mirrorsConfig(t, repo, rels, Mirror{dead + "/metadata", dead + "/targets"}, forger.config())
	_, err := newTestClient(t, cfg).Check(context.Background())
	var nm *NoMirrorError
	if !errors.As(err, &nm) || !strings.HasPrefix(err.Error(), "update root: no mirror could serve 4.root.json:\n") {
		t.Errorf("err = %v", err)
	}
}

// TestMirrorsResume: a download cut on one mirror continues on the next
// from where it stopped (the part is verified by its signed hash anyway).
func TestMirrorsResume(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	archive := repo.file("targets/app-1.2.tar.gz")
	a, b := newTestMirror(t, repo, true), newTestMirror(t, repo, true)
	a.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".tar.gz") {
			a.setFault(func(w http.ResponseWriter, r *http.Request) bool {
				http.Error(w, "gone", http.StatusServiceUnavailable)
				return true
			})
			cutAfter(w, archive, len(archive)/2)
			return true
		}
		return false
	})
	fsys, cfg := mirrorsConfig(t, repo, rels, a.config(), b.config())
	cfg.ForceFull = true
	c := newTestClient(t, cfg)
	u, err := c.Update(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[2].files)
	want := "targets/app-1.2.tar.gz bytes=" + strconv.Itoa(len(archive)/2) + "-"
	if reqs := b.requested(); !slices.Contains(reqs, want) {
		t.Errorf("second mirror: %q, want %q", reqs, want)
	}
	if got := u.Result.Downloaded; got != int64(len(archive)) {
		t.Errorf("downloaded %d bytes, want %d", got, len(archive))
	}

	// The first half came from a hostile mirror: the pieced file does not
	// match, the next mirror's whole copy is downloaded and installed.
	poisoned := bytes.Clone(archive)
	for i := range len(poisoned) / 2 {
		poisoned[i] = '{'
	}
	a.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".tar.gz") {
			a.setFault(func(w http.ResponseWriter, r *http.Request) bool {
				http.Error(w, "gone", http.StatusServiceUnavailable)
				return true
			})
			cutAfter(w, poisoned, len(poisoned)/2)
			return true
		}
		return false
	})
	fsys, cfg = mirrorsConfig(t, repo, rels, a.config(), b.config())
	cfg.ForceFull = true
	if _, err := newTestClient(t, cfg).Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[2].files)
	if reqs := b.requested(); !slices.Contains(reqs, want) || !slices.Contains(reqs, "targets/app-1.2.tar.gz") {
		t.Errorf("second mirror: %q, want the rest, then the whole file", reqs)
	}
}

// TestMirrorsCredentials: the user info of each mirror's URL goes to that
// mirror only, the extra headers to every mirror, and no password shows
// in errors, MirrorErrors or the log.
func TestMirrorsCredentials(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	type seen struct{ user, pass, token string }
	var mu sync.Mutex
	got := map[string][]seen{}
	record := func(name string, m *testMirror, fail bool) {
		m.setFault(func(w http.ResponseWriter, r *http.Request) bool {
			u, p, _ := r.BasicAuth()
			mu.Lock()
			got[name] = append(got[name], seen{u, p, r.Header.Get("X-Token")})
			mu.Unlock()
			if fail && strings.HasPrefix(r.URL.Path, "/targets/") {
				http.Error(w, "no", http.StatusInternalServerError)
				return true
			}
			return false
		})
	}
	a, b := newTestMirror(t, repo, true), newTestMirror(t, repo, true)
	record("a", a, true)
	record("b", b, false)
	withUser := func(m Mirror, user string) Mirror {
		return Mirror{strings.Replace(m.MetadataURL, "http://", "http://"+user+"@", 1), strings.Replace(m.TargetsURL, "http://", "http://"+user+"@", 1)}
	}
	_, cfg := mirrorsConfig(t, repo, rels, withUser(a.config(), "ua:pw-A-S3CRET"), withUser(b.config(), "ub:pw-B-S3CRET"))
	cfg.Header = http.Header{"X-Token": {"tok"}}
	var logBuf bytes.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := newTestClient(t, cfg)
	if _, err := c.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]seen{"a": {"ua", "pw-A-S3CRET", "tok"}, "b": {"ub", "pw-B-S3CRET", "tok"}} {
		if len(got[name]) == 0 {
			t.Errorf("mirror %s got no request", name)
		}
		for _, s := range got[name] {
			if s != want {
				t.Errorf("mirror %s got %+v, want %+v", name, s, want)
			}
		}
	}
	out := logBuf.String() + joinErrs(c.MirrorErrors())
	if len(c.MirrorErrors()) != 1 || strings.Contains(out, "S3CRET") {
		t.Errorf("MirrorErrors and log:\n%s", out)
	}
	// Both fail: the error names both mirrors, without their passwords.
	b.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "no", http.StatusUnauthorized)
		return true
	})
	_, cfg = mirrorsConfig(t, repo, rels, withUser(a.config(), "ua:pw-A-S3CRET"), withUser(b.config(), "ub:pw-B-S3CRET"))
	cfg.ForceFull = true
	_, err := newTestClient(t, cfg).Update(context.Background())
	if err == nil || strings.Contains(err.Error(), "S3CRET") || !strings.Contains(err.Error(), b.srv.URL+"/targets") {
		t.Errorf("err = %v", err)
	}
}

// TestNewClientMirrors: mirrors are checked like the first one, and their
// passwords never quoted.
func TestNewClientMirrors(t *testing.T) {
	repo := newTestRepo(t, false)
	for _, tt := range []struct {
		m    Mirror
		want string
	}{
		{Mirror{}, "config: mirror 1: neither a metadata nor a targets URL"},
		{Mirror{MetadataURL: "ftp://h/metadata"}, `config: mirror 1 metadata URL "ftp://h/metadata": want an http or https URL`},
		{Mirror{TargetsURL: "http://u:pw-S3CRET@h:port/targets"}, `config: mirror 1 targets URL "***@h:port/targets": not a valid URL`},
	} {
		cfg := repo.config(afero.NewMemMapFs(), "1.0")
		cfg.Mirrors = []Mirror{tt.m}
		_, err := NewClient(cfg)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%+v: err = %v, want %s", tt.m, err, tt.want)
		}
	}
}

// TestDefaultClientProxyFromEnvironment: with no HTTPClient configured,
// requests go through the proxies of the environment (HTTPS_PROXY,
// HTTP_PROXY, NO_PROXY). testdata/script/client_proxy.txtar shows it end
// to end through a proxy (in a child process: Go reads the environment's
// proxies once per process).
func TestDefaultClientProxyFromEnvironment(t *testing.T) {
	tr, ok := newRemote(nil, nil).client.Transport.(*http.Transport)
	if !ok || tr.Proxy == nil || reflect.ValueOf(tr.Proxy).Pointer() != reflect.ValueOf(http.ProxyFromEnvironment).Pointer() {
		t.Fatalf("default transport %#v: want Proxy = http.ProxyFromEnvironment", tr)
	}
	// The same with extra headers (the client is wrapped then).
	tr, ok = newRemote(nil, http.Header{"X-A": {"b"}}).client.Transport.(*http.Transport)
	if !ok || reflect.ValueOf(tr.Proxy).Pointer() != reflect.ValueOf(http.ProxyFromEnvironment).Pointer() {
		t.Fatal("with headers: no proxy from the environment")
	}
}

// TestFetchTargetProgressAfterBadPart: a part left by an earlier run that
// is not a prefix of the signed file is started over without the progress
// going below zero or past the total.
func TestFetchTargetProgressAfterBadPart(t *testing.T) {
	data := randomBytes(50_000, 7)
	b := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, try int) {
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(data))
	})
	fsys := afero.NewMemMapFs()
	afero.WriteFile(fsys, "/c/blob.part", randomBytes(len(data), 8), 0o644)
	var seen []int64
	prog := &progress{total: int64(len(data)), fn: func(done, total int64) { seen = append(seen, done) }}
	if err := b.remote().fetchTarget(context.Background(), fsys, b.srv.URL+"/blob", "/c/blob", int64(len(data)), sha256hex(data), prog); err != nil {
		t.Fatal(err)
	}
	for _, d := range seen {
		if d < 0 || d > int64(len(data)) {
			t.Fatalf("progress went to %d of %d: %v", d, len(data), seen)
		}
	}
	if prog.done != int64(len(data)) {
		t.Errorf("progress ends at %d, want %d", prog.done, len(data))
	}
}
