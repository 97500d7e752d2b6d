package s3deploy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/notsotuf/notsotuf"
	"github.com/notsotuf/notsotuf/internal/s3deploy"
	"github.com/notsotuf/notsotuf/internal/s3test"
	"github.com/spf13/afero"
)

// fakeRepo writes files that look like a published repository to DeployTo
// (it reads names and bytes, not signatures), with a 12 MiB archive that
// goes up in parts.
func fakeRepo(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "repository")
	big := make([]byte, 12<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	for name, data := range map[string][]byte{
		"metadata/1.root.json":    []byte(`{"signed":{"consistent_snapshot":false,"version":1}}`),
		"metadata/root.json":      []byte(`{"signed":{"consistent_snapshot":false,"version":1}}`),
		"metadata/targets.json":   []byte(`{"signed":{"version":1}}`),
		"metadata/snapshot.json":  []byte(`{"signed":{"version":1}}`),
		"metadata/timestamp.json": []byte(`{"signed":{"version":1}}`),
		"targets/app-1.0.tar.gz":  big,
		"targets/app-1.0.patch":   bytes.Repeat([]byte("patch"), 1000),
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, data, 0o644))
	}
	return dir
}

type s3env struct {
	srv *s3test.Server
	rec *recorder
	env map[string]string
}

func newS3Env(t *testing.T) *s3env {
	srv := s3test.StartT(t)
	must(t, srv.CreateBucket(context.Background(), "updates", false))
	e := &s3env{srv: srv, rec: newRecorder(), env: map[string]string{"AWS_EC2_METADATA_DISABLED": "true"}}
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		e.env[k] = v
	}
	return e
}

func (e *s3env) dest(t *testing.T, url string, retries int) (*s3deploy.Destination, error) {
	d, err := s3deploy.New(s3deploy.Config{
		URL: url, Endpoint: e.srv.Endpoint, Getenv: func(k string) string { return e.env[k] },
		Transport: e.rec, MaxRetries: retries, PartSize: 5 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d, d.Check(context.Background())
}

func (e *s3env) deploy(t *testing.T, dir string) (*notsotuf.DeployReport, error) {
	d, err := e.dest(t, "s3://updates/app", 0)
	must(t, err)
	return notsotuf.DeployTo(context.Background(), afero.NewOsFs(), dir, d, notsotuf.DeployOptions{})
}

// TestS3MultipartAndRetries: a large archive goes up in parts, every
// other write request fails on the way (a flaky network) and is retried,
// and the objects end up whole; the next deploy finds them unchanged
// (a multipart ETag is no MD5: the sha256 in the object's metadata says).
func TestS3MultipartAndRetries(t *testing.T) {
	e := newS3Env(t)
	dir := fakeRepo(t)
	var mu sync.Mutex
	writes, failed := 0, 0
	e.rec.setFault(func(req *http.Request) error {
		if req.Method != http.MethodPut && req.Method != http.MethodPost {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		writes++
		if writes%2 == 1 {
			failed++
			return errors.New("connection reset by the test")
		}
		return nil
	})
	d, err := e.dest(t, "s3://updates/app", 0)
	must(t, err)
	var calls int
	var last, total int64
	rep, err := notsotuf.DeployTo(context.Background(), afero.NewOsFs(), dir, d, notsotuf.DeployOptions{Progress: func(done, all int64) {
		calls++
		last, total = done, all
	}})
	must(t, err)
	e.rec.setFault(nil)
	if last != total || total != rep.Bytes || calls < 10 {
		t.Errorf("progress ended at %d of %d (%d bytes written) after %d calls", last, total, rep.Bytes, calls)
	}
	if len(rep.Copied) != 7 || failed < 7 {
		t.Fatalf("deploy: %+v after %d failed requests", rep, failed)
	}
	parts := 0
	for _, l := range e.rec.take("PUT") {
		if strings.HasSuffix(l, "(part)") {
			parts++
		}
	}
	if parts != 3 {
		t.Errorf("the 12 MiB archive went up in %d parts, want 3", parts)
	}
	c, err := e.srv.Client()
	must(t, err)
	obj, err := c.GetObject(context.Background(), "updates", "app/targets/app-1.0.tar.gz", minio.GetObjectOptions{})
	must(t, err)
	got, err := io.ReadAll(obj)
	must(t, err)
	want, err := os.ReadFile(filepath.Join(dir, "targets", "app-1.0.tar.gz"))
	must(t, err)
	if !bytes.Equal(got, want) {
		t.Fatal("the archive in the bucket differs")
	}
	rep, err = e.deploy(t, dir)
	must(t, err)
	if len(rep.Copied) != 0 || rep.Unchanged != 7 {
		t.Fatalf("second deploy: %+v", rep)
	}
}

// TestS3Unchanged: what makes an object count as already there.
func TestS3Unchanged(t *testing.T) {
	e := newS3Env(t)
	dir := fakeRepo(t)
	_, err := e.deploy(t, dir)
	must(t, err)
	c, err := e.srv.Client()
	must(t, err)
	ctx := context.Background()
	put := func(name string, data []byte, opts minio.PutObjectOptions) {
		t.Helper()
		opts.DisableContentSha256, opts.SendContentMd5 = true, true
		_, err := c.PutObject(ctx, "updates", "app/"+name, bytes.NewReader(data), int64(len(data)), opts)
		must(t, err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		must(t, err)
		return b
	}
	const short = "no-cache"
	// Uploaded again by another tool with the right headers but no
	// sha256: a single-part ETag is the MD5, which matches.
	put("metadata/targets.json", read("metadata/targets.json"), minio.PutObjectOptions{ContentType: "application/json", CacheControl: short})
	// Same size, other bytes, no sha256: the MD5 differs.
	snap := read("metadata/snapshot.json")
	put("metadata/snapshot.json", bytes.ToUpper(snap), minio.PutObjectOptions{ContentType: "application/json", CacheControl: short})
	// The right bytes with Content-Encoding: gzip (tufup clients would
	// decompress it and fail the hash).
	patch := read("targets/app-1.0.patch")
	put("targets/app-1.0.patch", patch, minio.PutObjectOptions{ContentType: "application/octet-stream", CacheControl: short, ContentEncoding: "gzip"})
	// The right bytes, another Cache-Control.
	put("metadata/timestamp.json", read("metadata/timestamp.json"), minio.PutObjectOptions{ContentType: "application/json", CacheControl: "max-age=86400"})
	// An object below targets/ that the repository does not have, and one
	// in a "subdirectory", which deploy leaves alone.
	put("targets/app-0.9.tar.gz", []byte("old"), minio.PutObjectOptions{})
	put("targets/sub/keep.txt", []byte("keep"), minio.PutObjectOptions{})
	e.rec.take()

	rep, err := e.deploy(t, dir)
	must(t, err)
	want := []string{"targets/app-1.0.patch", "metadata/snapshot.json", "metadata/timestamp.json"}
	if !slices.Equal(rep.Copied, want) || !slices.Equal(rep.Removed, []string{"targets/app-0.9.tar.gz"}) || rep.Unchanged != 4 {
		t.Fatalf("deploy: %+v, want copied %v", rep, want)
	}
	if _, err := c.StatObject(ctx, "updates", "app/targets/sub/keep.txt", minio.StatObjectOptions{}); err != nil {
		t.Errorf("an object below targets/sub was touched: %v", err)
	}
	st, err := c.StatObject(ctx, "updates", "app/targets/app-1.0.patch", minio.StatObjectOptions{})
	must(t, err)
	if st.Metadata.Get("Content-Encoding") != "" {
		t.Errorf("Content-Encoding still %q", st.Metadata.Get("Content-Encoding"))
	}
}

// TestS3Errors: what a user sees when something is wrong.
func TestS3Errors(t *testing.T) {
	e := newS3Env(t)
	dir := fakeRepo(t)

	_, err := e.dest(t, "s3://missing-bucket/app", 1)
	if err == nil || !strings.Contains(err.Error(), "bucket missing-bucket does not exist") {
		t.Errorf("missing bucket: %v", err)
	}

	e.env["AWS_SECRET_ACCESS_KEY"] = "wrong-secret"
	_, err = e.dest(t, "s3://updates/app", 1)
	if err == nil || !strings.Contains(err.Error(), "check the credentials") || strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("wrong secret: %v", err)
	}
	e.env["AWS_SECRET_ACCESS_KEY"] = s3test.SecretKey

	// No credentials anywhere (no environment, no files, no instance role).
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(home, "none"))
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(home, "none"))
	t.Setenv("AWS_PROFILE", "")
	saved := e.env
	e.env = map[string]string{"AWS_EC2_METADATA_DISABLED": "true"}
	_, err = e.dest(t, "s3://updates/app", 1)
	if err == nil || !strings.Contains(err.Error(), "no S3 credentials found: set AWS_ACCESS_KEY_ID") {
		t.Errorf("no credentials: %v", err)
	}
	e.env = saved

	// A profile in a shared credentials file.
	must(t, os.WriteFile(filepath.Join(home, "creds"), []byte("[publisher]\naws_access_key_id = "+s3test.AccessKey+"\naws_secret_access_key = "+s3test.SecretKey+"\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(home, "config"), []byte("[profile publisher]\nregion = "+s3test.Region+"\n"), 0o600))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(home, "creds"))
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(home, "config"))
	t.Setenv("AWS_PROFILE", "publisher")
	e.env = map[string]string{"AWS_EC2_METADATA_DISABLED": "true", "AWS_PROFILE": "publisher", "AWS_CONFIG_FILE": filepath.Join(home, "config")}
	if _, err := e.dest(t, "s3://updates/app", 1); err != nil {
		t.Errorf("credentials from a profile: %v", err)
	}
	e.env = saved

	// The store refuses one object: the error names it, and nothing after
	// it (the metadata) is written.
	e.rec.setFault(nil)
	refuse := &refusingTransport{base: e.rec, key: "/updates/app/targets/app-1.0.patch"}
	d, err := s3deploy.New(s3deploy.Config{URL: "s3://updates/app", Endpoint: e.srv.Endpoint,
		Getenv: func(k string) string { return e.env[k] }, Transport: refuse, MaxRetries: 1})
	must(t, err)
	e.rec.take()
	rep, err := notsotuf.DeployTo(context.Background(), afero.NewOsFs(), dir, d, notsotuf.DeployOptions{})
	if err == nil || !strings.Contains(err.Error(), "deploy: targets/app-1.0.patch: upload to s3://updates/app/targets/app-1.0.patch: AccessDenied") {
		t.Fatalf("refused upload: %v", err)
	}
	for _, l := range e.rec.take("PUT") {
		if strings.Contains(l, "metadata/") {
			t.Errorf("metadata written after a failed target: %s", l)
		}
	}
	if rep == nil || len(rep.Copied) != 0 {
		t.Errorf("report after the failure: %+v", rep)
	}
}

// refusingTransport answers 403 AccessDenied to writes of one key.
type refusingTransport struct {
	base http.RoundTripper
	key  string
}

func (r *refusingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.URL.Path == r.key {
		if req.Body != nil {
			req.Body.Close()
		}
		body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>`
		return &http.Response{StatusCode: 403, Status: "403 Forbidden", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"application/xml"}}, Body: io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)), Request: req}, nil
	}
	return r.base.RoundTrip(req)
}
