package notsotuf

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// testNow is the clock of every test client; test repositories expire a
// year later.
var testNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// testRepo is an in-memory TUF repository served over loopback HTTP, built
// with go-tuf's metadata API, with hooks to inject faults.
type testRepo struct {
	t          testing.TB
	consistent bool
	expires    time.Time
	seed       byte
	keys       map[string]ed25519.PrivateKey
	root       *metadata.Metadata[metadata.RootType]
	targets    *metadata.Metadata[metadata.TargetsType]
	snapshot   *metadata.Metadata[metadata.SnapshotType]
	timestamp  *metadata.Metadata[metadata.TimestampType]
	blobs      map[string][]byte // target name -> content

	mu       sync.Mutex
	files    map[string][]byte // served path ("metadata/x", "targets/y") -> bytes
	requests []string          // paths requested, in order
	hook     func(w http.ResponseWriter, r *http.Request) bool
	srv      *httptest.Server
}

func newTestRepo(t testing.TB, consistent bool) *testRepo {
	r := &testRepo{
		t: t, consistent: consistent, expires: testNow.AddDate(1, 0, 0),
		keys: map[string]ed25519.PrivateKey{}, blobs: map[string][]byte{}, files: map[string][]byte{},
	}
	r.root = metadata.Root(r.expires)
	r.root.Signed.ConsistentSnapshot = consistent
	for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
		r.setKey(role)
	}
	r.targets = metadata.Targets(r.expires)
	r.snapshot = metadata.Snapshot(r.expires)
	r.timestamp = metadata.Timestamp(r.expires)
	r.signRoot()
	r.publish()
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// setKey gives role a new key (replacing its old one) in r.root.
func (r *testRepo) setKey(role string) ed25519.PrivateKey {
	r.seed++
	seed := bytes.Repeat([]byte{r.seed}, ed25519.SeedSize)
	priv := ed25519.NewKeyFromSeed(seed)
	if old, ok := r.keys[role]; ok {
		k, err := metadata.KeyFromPublicKey(old.Public())
		if err != nil {
			r.t.Fatal(err)
		}
		id, err := k.ID()
		if err != nil {
			r.t.Fatal(err)
		}
		if err := r.root.Signed.RevokeKey(id, role); err != nil {
			r.t.Fatal(err)
		}
	}
	k, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.root.Signed.AddKey(k, role); err != nil {
		r.t.Fatal(err)
	}
	r.keys[role] = priv
	return priv
}

func signWith[T metadata.Roles](t testing.TB, m *metadata.Metadata[T], keys ...ed25519.PrivateKey) []byte {
	m.ClearSignatures()
	for _, k := range keys {
		s, err := signature.LoadSigner(k, crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
	data, err := m.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (r *testRepo) signRoot(extra ...ed25519.PrivateKey) {
	data := signWith(r.t, r.root, append([]ed25519.PrivateKey{r.keys["root"]}, extra...)...)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files["metadata/"+strconv.FormatInt(r.root.Signed.Version, 10)+".root.json"] = data
	r.files["metadata/root.json"] = data
}

// rotate gives role a new key and publishes root version+1, signed by the
// old and the new root keys, then republishes the other roles.
func (r *testRepo) rotate(role string) {
	oldRoot := r.keys["root"]
	r.setKey(role)
	r.root.Signed.Version++
	if role == "root" {
		r.signRoot(oldRoot)
	} else {
		r.signRoot()
	}
	r.publish()
}

func (r *testRepo) addTarget(name string, data []byte, custom any) {
	tf, err := metadata.TargetFile().FromBytes(name, data, "sha256")
	if err != nil {
		r.t.Fatal(err)
	}
	if custom != nil {
		raw, err := json.Marshal(custom)
		if err != nil {
			r.t.Fatal(err)
		}
		msg := json.RawMessage(raw)
		tf.Custom = &msg
	}
	r.targets.Signed.Targets[name] = tf
	r.blobs[name] = data
}

// publish signs new versions of targets, snapshot and timestamp.
func (r *testRepo) publish() {
	r.targets.Signed.Version++
	r.targets.Signed.Expires = r.expires
	tdata := signWith(r.t, r.targets, r.keys["targets"])
	r.snapshot.Signed.Version++
	r.snapshot.Signed.Expires = r.expires
	r.snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(r.targets.Signed.Version)
	sdata := signWith(r.t, r.snapshot, r.keys["snapshot"])
	r.timestamp.Signed.Version++
	r.timestamp.Signed.Expires = r.expires
	r.timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(r.snapshot.Signed.Version)
	tsdata := signWith(r.t, r.timestamp, r.keys["timestamp"])

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.consistent {
		r.files[fmt.Sprintf("metadata/%d.targets.json", r.targets.Signed.Version)] = tdata
		r.files[fmt.Sprintf("metadata/%d.snapshot.json", r.snapshot.Signed.Version)] = sdata
	} else {
		r.files["metadata/targets.json"] = tdata
		r.files["metadata/snapshot.json"] = sdata
	}
	r.files["metadata/timestamp.json"] = tsdata
	for name, data := range r.blobs {
		if r.consistent {
			sum := sha256.Sum256(data)
			dir, file := path.Split(name)
			r.files["targets/"+dir+hex.EncodeToString(sum[:])+"."+file] = data
		} else {
			r.files["targets/"+name] = data
		}
	}
}

func (r *testRepo) file(p string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.files[p]
}

func (r *testRepo) setFile(p string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files[p] = data
}

func (r *testRepo) setHook(h func(w http.ResponseWriter, req *http.Request) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hook = h
}

func (r *testRepo) requested() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...)
}

func (r *testRepo) serve(w http.ResponseWriter, req *http.Request) {
	p := strings.TrimPrefix(req.URL.Path, "/")
	r.mu.Lock()
	r.requests = append(r.requests, p)
	hook := r.hook
	data, ok := r.files[p]
	r.mu.Unlock()
	if hook != nil && hook(w, req) {
		return
	}
	if !ok {
		http.NotFound(w, req)
		return
	}
	http.ServeContent(w, req, path.Base(p), time.Time{}, bytes.NewReader(data))
}

func (r *testRepo) rootBytes() []byte { return r.file("metadata/1.root.json") }

func (r *testRepo) metadataURL() string { return r.srv.URL + "/metadata" }
func (r *testRepo) targetsURL() string  { return r.srv.URL + "/targets" }

func (r *testRepo) tufClient(fsys afero.Fs) *tufClient {
	rem := newRemote(r.srv.Client(), nil)
	rem.backoff = time.Millisecond
	return &tufClient{
		fs: fsys, dir: "/cache/metadata", metadataURL: r.metadataURL(), remote: rem,
		now: func() time.Time { return testNow }, log: discardLogger(), bootstrap: r.rootBytes(),
	}
}

func TestRefresh(t *testing.T) {
	for _, consistent := range []bool{false, true} {
		t.Run(fmt.Sprintf("consistent=%v", consistent), func(t *testing.T) {
			repo := newTestRepo(t, consistent)
			repo.addTarget("app-1.0.tar.gz", []byte("hello"), nil)
			repo.publish()
			fsys := afero.NewMemMapFs()
			c := repo.tufClient(fsys)
			if err := c.refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			tf := c.targets()["app-1.0.tar.gz"]
			if tf == nil || tf.Length != 5 {
				t.Fatalf("target app-1.0.tar.gz = %+v", tf)
			}
			for _, role := range []string{"root", "timestamp", "snapshot", "targets"} {
				if ok, _ := afero.Exists(fsys, "/cache/metadata/"+role+".json"); !ok {
					t.Errorf("%s.json not persisted", role)
				}
			}
			sum := sha256.Sum256([]byte("hello"))
			want := repo.targetsURL() + "/app-1.0.tar.gz"
			if consistent {
				want = repo.targetsURL() + "/" + hex.EncodeToString(sum[:]) + ".app-1.0.tar.gz"
				reqs := strings.Join(repo.requested(), " ")
				if !strings.Contains(reqs, fmt.Sprintf("metadata/%d.snapshot.json", repo.snapshot.Signed.Version)) ||
					!strings.Contains(reqs, fmt.Sprintf("metadata/%d.targets.json", repo.targets.Signed.Version)) {
					t.Errorf("consistent snapshot: requests %s", reqs)
				}
			}
			if got := c.targetURL(repo.targetsURL(), tf); got != want {
				t.Errorf("targetURL = %s, want %s", got, want)
			}

			// A second refresh with nothing new downloads no snapshot or targets.
			before := len(repo.requested())
			if err := repo.tufClient(fsys).refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, p := range repo.requested()[before:] {
				if strings.Contains(p, "snapshot") || strings.Contains(p, "targets") {
					t.Errorf("second refresh fetched %s", p)
				}
			}
		})
	}
}

func TestRefreshRootRotation(t *testing.T) {
	repo := newTestRepo(t, false)
	fsys := afero.NewMemMapFs()
	if err := repo.tufClient(fsys).refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	repo.rotate("root")
	repo.rotate("timestamp")
	c := repo.tufClient(fsys)
	if err := c.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := c.trusted.Root.Signed.Version; v != 3 {
		t.Errorf("root version %d, want 3", v)
	}
	data, _ := afero.ReadFile(fsys, "/cache/metadata/root.json")
	if !bytes.Equal(data, repo.file("metadata/3.root.json")) {
		t.Error("persisted root.json is not root v3")
	}
	// A root v4 signed only by the new key (not by the old threshold) is refused.
	repo.root.Signed.Version++
	repo.setFile("metadata/4.root.json", signWith(t, repo.root, repo.setKey("root")))
	err := repo.tufClient(fsys).refresh(context.Background())
	var unsigned *metadata.ErrUnsignedMetadata
	if !errors.Is(err, ErrSecurity) || !errors.As(err, &unsigned) {
		t.Fatalf("bad root v4: err = %v, want a security error with ErrUnsignedMetadata", err)
	}
	t.Log(err)
}

// TestRefreshManyRootRotations: a client 40 root versions behind catches
// up in one refresh (up to maxRootRotations); one 300 behind stops after
// maxRootRotations and carries on from there at the next refresh.
func TestRefreshManyRootRotations(t *testing.T) {
	repo := newTestRepo(t, false)
	fsys := afero.NewMemMapFs()
	if err := repo.tufClient(fsys).refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	bump := func(n int) {
		for range n {
			repo.root.Signed.Version++
			repo.signRoot()
		}
		repo.publish()
	}
	bump(40)
	c := repo.tufClient(fsys)
	if err := c.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := c.trusted.Root.Signed.Version; v != 41 {
		t.Fatalf("root version %d after 40 rotations, want 41", v)
	}
	bump(maxRootRotations + 44)
	for _, want := range []int64{41 + maxRootRotations, 41 + maxRootRotations + 44} {
		c = repo.tufClient(fsys)
		if err := c.refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		if v := c.trusted.Root.Signed.Version; v != want {
			t.Fatalf("root version %d, want %d", v, want)
		}
	}
}

func TestRefreshRollback(t *testing.T) {
	repo := newTestRepo(t, false)
	oldTimestamp := repo.file("metadata/timestamp.json")
	repo.publish()
	fsys := afero.NewMemMapFs()
	if err := repo.tufClient(fsys).refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Replay of the old timestamp to a restarted client.
	repo.setFile("metadata/timestamp.json", oldTimestamp)
	err := repo.tufClient(fsys).refresh(context.Background())
	var bad *metadata.ErrBadVersionNumber
	if !errors.Is(err, ErrSecurity) || !errors.As(err, &bad) || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("err = %v, want a rollback security error", err)
	}
	t.Log(err)
}

func TestRefreshExpired(t *testing.T) {
	repo := newTestRepo(t, false)
	repo.expires = testNow.Add(-time.Hour)
	repo.publish()
	err := repo.tufClient(afero.NewMemMapFs()).refresh(context.Background())
	var exp *metadata.ErrExpiredMetadata
	if !errors.As(err, &exp) || !errors.Is(err, ErrSecurity) || !strings.Contains(err.Error(), "timestamp.json has expired") {
		t.Fatalf("err = %v, want an expired timestamp security error", err)
	}
	if !errors.Is(err, &metadata.ErrRepository{}) {
		t.Error("not in go-tuf's ErrRepository family")
	}
	t.Log(err)
}

func TestRefreshTampered(t *testing.T) {
	repo := newTestRepo(t, false)
	data := repo.file("metadata/targets.json")
	repo.setFile("metadata/targets.json", bytes.Replace(data, []byte(`"version": 2`), []byte(`"version": 2 `), 1))
	// Same content, different signature: sign targets with the snapshot key.
	repo.targets.Signed.Version = 2
	repo.setFile("metadata/targets.json", signWith(t, repo.targets, repo.keys["snapshot"]))
	err := repo.tufClient(afero.NewMemMapFs()).refresh(context.Background())
	var unsigned *metadata.ErrUnsignedMetadata
	if !errors.As(err, &unsigned) || !strings.Contains(err.Error(), "targets.json is not signed") {
		t.Fatalf("err = %v, want targets.json unsigned", err)
	}
}

func TestRefreshNetworkErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("404", func(t *testing.T) {
		repo := newTestRepo(t, false)
		repo.setFile("metadata/timestamp.json", nil)
		repo.setHook(func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasSuffix(r.URL.Path, "timestamp.json") {
				http.NotFound(w, r)
				return true
			}
			return false
		})
		err := repo.tufClient(afero.NewMemMapFs()).refresh(ctx)
		var he *metadata.ErrDownloadHTTP
		if !errors.As(err, &he) || he.StatusCode != 404 || errors.Is(err, ErrSecurity) || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("err = %v, want a 404 download error", err)
		}
		n := 0
		for _, p := range repo.requested() {
			if p == "metadata/timestamp.json" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("404 requested %d times, want 1 (no retry)", n)
		}
	})
	t.Run("5xx retried", func(t *testing.T) {
		repo := newTestRepo(t, false)
		fails := 2
		repo.setHook(func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasSuffix(r.URL.Path, "timestamp.json") && fails > 0 {
				fails--
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return true
			}
			return false
		})
		if err := repo.tufClient(afero.NewMemMapFs()).refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if fails != 0 {
			t.Errorf("fails left %d", fails)
		}
	})
	t.Run("5xx gives up", func(t *testing.T) {
		repo := newTestRepo(t, false)
		repo.setHook(func(w http.ResponseWriter, r *http.Request) bool {
			http.Error(w, "down", http.StatusBadGateway)
			return true
		})
		err := repo.tufClient(afero.NewMemMapFs()).refresh(ctx)
		var de *DownloadError
		if !errors.As(err, &de) || de.StatusCode != 502 || len(repo.requested()) != defaultAttempts {
			t.Fatalf("err = %v after %d requests", err, len(repo.requested()))
		}
	})
	t.Run("size cap", func(t *testing.T) {
		repo := newTestRepo(t, false)
		repo.setHook(func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasSuffix(r.URL.Path, "timestamp.json") {
				w.Write(bytes.Repeat([]byte(" "), maxTimestampLength+1))
				return true
			}
			return false
		})
		err := repo.tufClient(afero.NewMemMapFs()).refresh(ctx)
		var lm *metadata.ErrDownloadLengthMismatch
		if !errors.As(err, &lm) {
			t.Fatalf("err = %v, want a length error", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		repo := newTestRepo(t, false)
		c := repo.tufClient(afero.NewMemMapFs())
		repo.srv.Close()
		err := c.refresh(ctx)
		var de *DownloadError
		if !errors.As(err, &de) || de.StatusCode != 0 || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("err = %v, want unreachable", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		repo := newTestRepo(t, false)
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		err := repo.tufClient(afero.NewMemMapFs()).refresh(ctx)
		if !errors.Is(err, context.Canceled) || len(repo.requested()) != 0 {
			t.Fatalf("err = %v, requests %v", err, repo.requested())
		}
	})
}

func TestRefreshOnDisk(t *testing.T) {
	repo := newTestRepo(t, true)
	dir := t.TempDir()
	c := repo.tufClient(afero.NewOsFs())
	c.dir = filepath.Join(dir, "metadata")
	if err := c.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	repo.rotate("snapshot")
	c2 := repo.tufClient(afero.NewOsFs())
	c2.dir = c.dir
	if err := c2.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c2.trusted.Snapshot.Signed.Version != repo.snapshot.Signed.Version {
		t.Errorf("snapshot version %d", c2.trusted.Snapshot.Signed.Version)
	}
}

func TestTargetInfoDelegation(t *testing.T) {
	repo := newTestRepo(t, false)
	repo.addTarget("top.txt", []byte("top"), nil)
	// Delegate "deleg/*" to role "deleg".
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{99}, 32))
	key, _ := metadata.KeyFromPublicKey(priv.Public())
	id, _ := key.ID()
	repo.targets.Signed.Delegations = &metadata.Delegations{
		Keys:  map[string]*metadata.Key{id: key},
		Roles: []metadata.DelegatedRole{{Name: "deleg", KeyIDs: []string{id}, Threshold: 1, Paths: []string{"deleg/*"}}},
	}
	deleg := metadata.Targets(repo.expires)
	tf, _ := metadata.TargetFile().FromBytes("deleg/x.txt", []byte("x"), "sha256")
	deleg.Signed.Targets["deleg/x.txt"] = tf
	repo.setFile("metadata/deleg.json", signWith(t, deleg, priv))
	repo.snapshot.Signed.Meta["deleg.json"] = metadata.MetaFile(1)
	repo.publish()

	c := repo.tufClient(afero.NewMemMapFs())
	ctx := context.Background()
	if err := c.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := c.targetInfo(ctx, "deleg/x.txt")
	if err != nil || got == nil || got.Length != 1 {
		t.Fatalf("targetInfo(deleg/x.txt) = %+v, %v", got, err)
	}
	if got, err := c.targetInfo(ctx, "top.txt"); err != nil || got == nil {
		t.Fatalf("targetInfo(top.txt) = %+v, %v", got, err)
	}
	if got, err := c.targetInfo(ctx, "nope"); err != nil || got != nil {
		t.Fatalf("targetInfo(nope) = %+v, %v", got, err)
	}
}

// TestTargetInfoPathHashPrefixes: a path_hash_prefixes delegation matches
// the hex SHA-256 of the target path (TUF specification, "path_hash_prefixes").
// go-tuf v2.4.2 compares the prefixes with the base64 form instead, so a
// delegation whose prefix only matches the base64 form would provide the
// target and the one the repository meant would never be asked.
func TestTargetInfoPathHashPrefixes(t *testing.T) {
	var name, hexSum, b64Sum string
	for i := 0; ; i++ {
		name = fmt.Sprintf("bins/file-%d.bin", i)
		sum := sha256.Sum256([]byte(name))
		hexSum, b64Sum = hex.EncodeToString(sum[:]), base64.URLEncoding.EncodeToString(sum[:])
		if !strings.HasPrefix(hexSum, b64Sum[:2]) && !strings.HasPrefix(b64Sum, hexSum[:2]) {
			break
		}
	}
	repo := newTestRepo(t, false)
	dk := map[string]*metadata.Key{}
	var roles []metadata.DelegatedRole
	for i, r := range []struct{ name, prefix, content string }{
		{"wrong", b64Sum[:2], "from the wrong bin"},
		{"right", hexSum[:2], "right"},
	} {
		priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(90 + i)}, 32))
		key, _ := metadata.KeyFromPublicKey(priv.Public())
		id, _ := key.ID()
		dk[id] = key
		roles = append(roles, metadata.DelegatedRole{Name: r.name, KeyIDs: []string{id}, Threshold: 1, PathHashPrefixes: []string{r.prefix}})
		md := metadata.Targets(repo.expires)
		tf, _ := metadata.TargetFile().FromBytes(name, []byte(r.content), "sha256")
		md.Signed.Targets[name] = tf
		repo.setFile("metadata/"+r.name+".json", signWith(t, md, priv))
		repo.snapshot.Signed.Meta[r.name+".json"] = metadata.MetaFile(1)
	}
	repo.targets.Signed.Delegations = &metadata.Delegations{Keys: dk, Roles: roles}
	repo.publish()

	c := repo.tufClient(afero.NewMemMapFs())
	ctx := context.Background()
	if err := c.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := c.targetInfo(ctx, name)
	if err != nil || got == nil || got.Length != int64(len("right")) {
		t.Fatalf("targetInfo(%s) = %+v, %v; want the target of role right", name, got, err)
	}
	for _, p := range repo.requested() {
		if p == "metadata/wrong.json" {
			t.Errorf("fetched %s, whose prefix %q does not match %s", p, b64Sum[:2], hexSum)
		}
	}
}

// mapTransport serves files from a map without a network.
type mapTransport map[string][]byte

func (m mapTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	data, ok := m[strings.TrimPrefix(req.URL.Path, "/")]
	rec := httptest.NewRecorder()
	if !ok {
		http.NotFound(rec, req)
	} else {
		rec.Write(data)
	}
	return rec.Result(), nil
}

// FuzzRefresh feeds arbitrary bytes as one of the metadata files: refresh
// must fail cleanly (never panic, never accept them) unless they are the
// genuine file.
func FuzzRefresh(f *testing.F) {
	repo := newTestRepo(f, false)
	repo.addTarget("app-1.0.tar.gz", []byte("x"), map[string]any{"user": nil, "tufup": map[string]any{"required": false}})
	repo.publish()
	roles := []string{"metadata/2.root.json", "metadata/timestamp.json", "metadata/snapshot.json", "metadata/targets.json"}
	for i, r := range roles[1:] {
		f.Add(uint8(i+1), repo.file(r))
	}
	f.Add(uint8(0), repo.file("metadata/1.root.json"))
	f.Add(uint8(1), []byte(`{"signed":{"_type":"timestamp","version":99,"expires":"2099-01-01T00:00:00Z","meta":{"snapshot.json":{"version":1}},"spec_version":"1.0.31"},"signatures":[]}`))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		role := roles[int(which)%len(roles)]
		files := mapTransport{}
		repo.mu.Lock()
		for k, v := range repo.files {
			files[k] = v
		}
		repo.mu.Unlock()
		genuine := sameSigned(role, files[role], data)
		files[role] = data
		rem := newRemote(&http.Client{Transport: files}, nil)
		rem.attempts = 1
		c := &tufClient{
			fs: afero.NewMemMapFs(), dir: "/m", metadataURL: "http://repo.test/metadata", remote: rem,
			now: func() time.Time { return testNow }, log: discardLogger(), bootstrap: repo.rootBytes(),
		}
		err := c.refresh(context.Background())
		if err == nil && !genuine && role != "metadata/2.root.json" {
			t.Fatalf("refresh accepted a forged %s", role)
		}
		if err == nil && role == "metadata/2.root.json" {
			t.Fatalf("refresh accepted a forged root version 2")
		}
	})
}

// sameSigned reports whether data is the genuine metadata file as far as
// TUF is concerned: signatures cover the canonical JSON of "signed", so a
// file that only differs in whitespace, key order, string escapes or extra
// (ignored) signatures carries the same signed content and may be accepted.
// Anything that changes what go-tuf parses out of "signed" must not be.
func sameSigned(role string, genuine, data []byte) bool {
	if bytes.Equal(genuine, data) {
		return true
	}
	canon := func(b []byte) ([]byte, error) {
		switch {
		case strings.HasSuffix(role, "root.json"):
			return canonSigned(metadata.Root().FromBytes(b))
		case strings.HasSuffix(role, "timestamp.json"):
			return canonSigned(metadata.Timestamp().FromBytes(b))
		case strings.HasSuffix(role, "snapshot.json"):
			return canonSigned(metadata.Snapshot().FromBytes(b))
		default:
			return canonSigned(metadata.Targets().FromBytes(b))
		}
	}
	a, err1 := canon(genuine)
	b, err2 := canon(data)
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}

// TestRefreshAcceptsReformattedMetadata pins down what FuzzRefresh found:
// a metadata file re-serialised without touching its signed content still
// verifies (TUF signs canonical JSON), and refresh accepts it; sameSigned,
// FuzzRefresh's oracle, counts it as the genuine file and nothing else.
// canonSigned is the canonical JSON of md's signed part.
func canonSigned[T metadata.Roles](md *metadata.Metadata[T], err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	return cjson.EncodeCanonical(md.Signed)
}

func TestRefreshAcceptsReformattedMetadata(t *testing.T) {
	repo := newTestRepo(t, false)
	repo.publish()
	snap := repo.file("metadata/snapshot.json")
	var v map[string]any
	if err := json.Unmarshal(snap, &v); err != nil {
		t.Fatal(err)
	}
	reformatted, _ := json.MarshalIndent(v, "", "   ")
	if !sameSigned("metadata/snapshot.json", snap, reformatted) {
		t.Error("a reindented snapshot is not the same signed content")
	}
	repo.mu.Lock()
	repo.files["metadata/snapshot.json"] = reformatted
	repo.mu.Unlock()
	if err := repo.tufClient(afero.NewMemMapFs()).refresh(context.Background()); err != nil {
		t.Fatalf("reformatted snapshot refused: %v", err)
	}
	v["signed"].(map[string]any)["version"] = 7
	changed, _ := json.Marshal(v)
	if sameSigned("metadata/snapshot.json", snap, changed) {
		t.Error("a snapshot with another version counts as the same")
	}
}

func TestRefreshExpiredAfterPersist(t *testing.T) {
	// The repository stops re-signing: the client's persisted timestamp
	// (the same version as the server's) expires.
	repo := newTestRepo(t, false)
	repo.root.Signed.Expires = repo.expires.AddDate(1, 0, 0)
	repo.root.Signed.Version++
	repo.signRoot()
	fsys := afero.NewMemMapFs()
	if err := repo.tufClient(fsys).refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := repo.tufClient(fsys)
	c.now = func() time.Time { return repo.expires.Add(time.Hour) }
	err := c.refresh(context.Background())
	var exp *metadata.ErrExpiredMetadata
	if !errors.As(err, &exp) || !strings.HasPrefix(err.Error(), "security: timestamp.json has expired") {
		t.Fatalf("err = %v", err)
	}
	// An expired root is named as such.
	repo.root.Signed.Expires = testNow.Add(time.Hour)
	repo.root.Signed.Version++
	repo.signRoot()
	c = repo.tufClient(fsys)
	c.now = func() time.Time { return testNow.Add(2 * time.Hour) }
	err = c.refresh(context.Background())
	if !errors.As(err, &exp) || !strings.HasPrefix(err.Error(), "security: root.json has expired") {
		t.Fatalf("err = %v", err)
	}
}
