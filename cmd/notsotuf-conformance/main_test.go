package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// sim is a minimal TUF repository served over loopback HTTP, built with
// go-tuf's metadata package, one ed25519 key per role.
type sim struct {
	t       *testing.T
	mu      sync.Mutex
	files   map[string][]byte
	srv     *httptest.Server
	signers map[string]signature.Signer
	root    *metadata.Metadata[metadata.RootType]
	targets *metadata.Metadata[metadata.TargetsType]
	snap    *metadata.Metadata[metadata.SnapshotType]
	ts      *metadata.Metadata[metadata.TimestampType]
}

func newSim(t *testing.T, now time.Time) *sim {
	s := &sim{t: t, files: map[string][]byte{}, signers: map[string]signature.Signer{}}
	exp := now.Add(7 * 24 * time.Hour).Truncate(time.Second)
	s.root = metadata.Root(exp)
	s.targets = metadata.Targets(exp)
	s.snap = metadata.Snapshot(exp)
	s.ts = metadata.Timestamp(exp)
	for _, role := range []string{"root", "targets", "snapshot", "timestamp"} {
		s.rotate(role)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		b, ok := s.files[strings.TrimPrefix(r.URL.Path, "/")]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(s.srv.Close)
	s.publishRoot()
	s.publish()
	return s
}

// rotate gives role a new key (replacing its old ones) in root.
func (s *sim) rotate(role string) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	key, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		s.t.Fatal(err)
	}
	for _, id := range s.root.Signed.Roles[role].KeyIDs {
		if err := s.root.Signed.RevokeKey(id, role); err != nil {
			s.t.Fatal(err)
		}
	}
	if err := s.root.Signed.AddKey(key, role); err != nil {
		s.t.Fatal(err)
	}
	sg, err := signature.LoadSigner(priv, 0)
	if err != nil {
		s.t.Fatal(err)
	}
	s.signers[role] = sg
}

func (s *sim) put(name string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[name] = b
}

func sign[T metadata.Roles](t *testing.T, md *metadata.Metadata[T], sg signature.Signer) []byte {
	md.ClearSignatures()
	if _, err := md.Sign(sg); err != nil {
		t.Fatal(err)
	}
	b, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// publishRoot signs root with the current root key (and oldSigner, for a
// rotation) and publishes it as N.root.json.
func (s *sim) publishRoot(extra ...signature.Signer) {
	s.root.ClearSignatures()
	for _, sg := range append(extra, s.signers["root"]) {
		if _, err := s.root.Sign(sg); err != nil {
			s.t.Fatal(err)
		}
	}
	b, err := s.root.ToBytes(true)
	if err != nil {
		s.t.Fatal(err)
	}
	s.put("metadata/"+itoa(s.root.Signed.Version)+".root.json", b)
}

// publish signs targets, snapshot and timestamp (bumping versions after the
// first call) and publishes them unversioned.
func (s *sim) publish() {
	tb := sign(s.t, s.targets, s.signers["targets"])
	s.put("metadata/targets.json", tb)
	s.put("metadata/"+itoa(s.targets.Signed.Version)+".targets.json", tb)
	s.snap.Signed.Meta["targets.json"] = metadata.MetaFile(s.targets.Signed.Version)
	sb := sign(s.t, s.snap, s.signers["snapshot"])
	s.put("metadata/snapshot.json", sb)
	s.put("metadata/"+itoa(s.snap.Signed.Version)+".snapshot.json", sb)
	s.ts.Signed.Meta["snapshot.json"] = metadata.MetaFile(s.snap.Signed.Version)
	s.put("metadata/timestamp.json", sign(s.t, s.ts, s.signers["timestamp"]))
}

func (s *sim) bump() {
	s.targets.Signed.Version++
	s.snap.Signed.Version++
	s.ts.Signed.Version++
}

func (s *sim) addTarget(name string, content []byte) {
	tf, err := metadata.TargetFile().FromBytes(name, content, "sha256")
	if err != nil {
		s.t.Fatal(err)
	}
	s.targets.Signed.Targets[name] = tf
	// consistent_snapshot (go-tuf's default): served as dir/<sha256>.<file>.
	dir, file := path.Split(name)
	s.put("targets/"+dir+tf.Hashes["sha256"].String()+"."+file, content)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

type cli struct {
	t       *testing.T
	s       *sim
	metaDir string
	tgtDir  string
	now     time.Time
}

func (c *cli) run(faketime string, args ...string) (int, string) {
	var out, errb bytes.Buffer
	code := run(args, faketime, func() time.Time { return c.now }, &out, &errb)
	return code, out.String() + errb.String()
}

func (c *cli) refresh(faketime string) (int, string) {
	return c.run(faketime, "--metadata-url", c.s.srv.URL+"/metadata", "--metadata-dir", c.metaDir, "refresh")
}

func (c *cli) download(name string) (int, string) {
	return c.run("", "--metadata-url", c.s.srv.URL+"/metadata", "--metadata-dir", c.metaDir,
		"--target-name", name, "--target-dir", c.tgtDir, "--target-base-url", c.s.srv.URL+"/targets", "download")
}

func (c *cli) version(role string) int64 {
	b, err := os.ReadFile(filepath.Join(c.metaDir, role+".json"))
	if err != nil {
		c.t.Fatalf("read trusted %s.json: %v", role, err)
	}
	md, err := metadata.Root().FromBytes(b)
	if err == nil {
		return md.Signed.Version
	}
	ts, err := metadata.Timestamp().FromBytes(b)
	if err == nil {
		return ts.Signed.Version
	}
	sn, err := metadata.Snapshot().FromBytes(b)
	if err == nil {
		return sn.Signed.Version
	}
	tg, err := metadata.Targets().FromBytes(b)
	if err != nil {
		c.t.Fatal(err)
	}
	return tg.Signed.Version
}

func setup(t *testing.T) *cli {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSim(t, now)
	dir := t.TempDir()
	c := &cli{t: t, s: s, metaDir: filepath.Join(dir, "metadata"), tgtDir: filepath.Join(dir, "targets"), now: now}
	root := filepath.Join(dir, "initial_root.json")
	if err := os.WriteFile(root, s.files["metadata/1.root.json"], 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := c.run("", "--metadata-dir", c.metaDir, "init", root); code != 0 {
		t.Fatalf("init: %s", out)
	}
	return c
}

func TestRefreshDownloadAndCache(t *testing.T) {
	c := setup(t)
	c.s.addTarget("dir/file one.txt", []byte("hello"))
	c.s.bump()
	c.s.publish()
	if code, out := c.refresh(""); code != 0 {
		t.Fatalf("refresh: %s", out)
	}
	for _, role := range []string{"root", "timestamp", "snapshot", "targets"} {
		if _, err := os.Stat(filepath.Join(c.metaDir, role+".json")); err != nil {
			t.Errorf("trusted %s.json not stored: %v", role, err)
		}
	}
	if code, out := c.download("dir/file one.txt"); code != 0 {
		t.Fatalf("download: %s", out)
	}
	files, _ := filepath.Glob(filepath.Join(c.tgtDir, "*"))
	if len(files) != 1 {
		t.Fatalf("target dir holds %v", files)
	}
	if b, _ := os.ReadFile(files[0]); string(b) != "hello" {
		t.Fatalf("downloaded %q", b)
	}
	// Cached: a second download works even with the target gone from the server.
	c.s.mu.Lock()
	for k := range c.s.files {
		if strings.HasPrefix(k, "targets/") {
			delete(c.s.files, k)
		}
	}
	c.s.mu.Unlock()
	if code, out := c.download("dir/file one.txt"); code != 0 {
		t.Fatalf("cached download: %s", out)
	}
	if code, _ := c.download("missing.txt"); code != 1 {
		t.Error("download of an unlisted target succeeded")
	}
}

func TestTamperedTargetRefused(t *testing.T) {
	c := setup(t)
	c.s.addTarget("a.txt", []byte("good"))
	c.s.bump()
	c.s.publish()
	for k := range c.s.files {
		if strings.HasPrefix(k, "targets/") {
			c.s.files[k] = []byte("evil")
		}
	}
	if code, out := c.download("a.txt"); code != 1 || !strings.Contains(out, "a.txt") {
		t.Fatalf("tampered target: exit %d, %s", code, out)
	}
	if files, _ := filepath.Glob(filepath.Join(c.tgtDir, "*")); len(files) != 0 {
		t.Fatalf("tampered target stored: %v", files)
	}
}

func TestExpiryWithFaketime(t *testing.T) {
	c := setup(t)
	if code, out := c.refresh(""); code != 0 {
		t.Fatalf("refresh: %s", out)
	}
	if code, out := c.refresh("+8d"); code != 1 || !strings.Contains(out, "expired") {
		t.Fatalf("refresh 8 days later: exit %d, %s", code, out)
	}
	if code, out := c.refresh("@2026-01-03 00:00:00"); code != 0 {
		t.Fatalf("refresh at an absolute time: %s", out)
	}
	if code, _ := c.refresh("tomorrow"); code != 1 {
		t.Fatal("a bad FAKETIME was accepted")
	}
}

func TestRootRotationAndRollback(t *testing.T) {
	c := setup(t)
	if code, out := c.refresh(""); code != 0 {
		t.Fatalf("refresh: %s", out)
	}
	// Rotate the root and timestamp keys: 2.root.json signed by old and new root keys.
	old := c.s.signers["root"]
	c.s.rotate("root")
	c.s.rotate("timestamp")
	c.s.root.Signed.Version++
	c.s.publishRoot(old)
	c.s.bump()
	c.s.publish()
	if code, out := c.refresh(""); code != 0 {
		t.Fatalf("refresh after rotation: %s", out)
	}
	if v := c.version("root"); v != 2 {
		t.Fatalf("trusted root version %d, want 2", v)
	}
	// A root 3 signed only by a new key the client never saw is refused.
	c.s.rotate("root")
	c.s.root.Signed.Version++
	c.s.publishRoot()
	if code, out := c.refresh(""); code != 1 || !strings.Contains(strings.ToLower(out), "root") {
		t.Fatalf("badly signed root 3: exit %d, %s", code, out)
	}
	if v := c.version("root"); v != 2 {
		t.Fatalf("trusted root version %d after a refused rotation, want 2", v)
	}
	delete(c.s.files, "metadata/3.root.json")

	// Rollback: serve an older timestamp than the trusted one.
	tsOld := c.s.files["metadata/timestamp.json"]
	c.s.bump()
	c.s.publish()
	if code, out := c.refresh(""); code != 0 {
		t.Fatalf("refresh: %s", out)
	}
	want := c.version("timestamp")
	c.s.put("metadata/timestamp.json", tsOld)
	if code, out := c.refresh(""); code != 1 {
		t.Fatalf("rolled-back timestamp accepted: %s", out)
	}
	if got := c.version("timestamp"); got != want {
		t.Fatalf("trusted timestamp version %d after a rollback, want %d", got, want)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"refresh"}, {"--metadata-dir", "x", "frobnicate"}, {"--metadata-dir", "x", "init"}, {"--bogus"}} {
		if code := run(args, "", time.Now, &bytes.Buffer{}, &bytes.Buffer{}); code != 1 {
			t.Errorf("run(%q) = %d, want 1", args, code)
		}
	}
}

// TestHelp: -h, --help and help list the commands on stdout and exit 0;
// a bad flag is an error on stderr that points at -h, not the whole help.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"--metadata-dir", "x", "help"}} {
		var out, errb bytes.Buffer
		code := run(args, "", time.Now, &out, &errb)
		for _, cmd := range []string{"init TRUSTED_ROOT", "refresh", "download", "-target-name"} {
			if !strings.Contains(out.String(), cmd) {
				t.Errorf("run(%q): stdout does not mention %q:\n%s", args, cmd, out.String())
			}
		}
		if code != 0 || errb.Len() > 0 {
			t.Errorf("run(%q) = %d, stderr %q; want 0 and nothing on stderr", args, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"--bogus"}, "", time.Now, &out, &errb); code != 1 || out.Len() > 0 ||
		!strings.Contains(errb.String(), "-bogus") || !strings.Contains(errb.String(), "notsotuf-conformance -h") {
		t.Errorf("run(--bogus) = %d, stdout %q, stderr %q; want 1, an error naming the flag and a hint", code, out.String(), errb.String())
	}
}
