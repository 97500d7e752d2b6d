// Package s3test runs a real S3 server for tests: versitygw (a Go S3
// gateway) with its posix backend on a temporary directory, listening on
// loopback only, stopped when the test ends.
//
// The binary is $NOTSOTUF_VERSITYGW when set (.ci/run installs it up
// front), else a copy built once with `go install` into the user cache
// directory (about three minutes the first time). When neither works the
// tests that need it are skipped with a message saying how to get it,
// unless NOTSOTUF_REQUIRE_S3=1 (CI), which makes that a failure.
package s3test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// The versitygw the tests use.
const (
	Package = "github.com/versity/versitygw/cmd/versitygw"
	Version = "v1.8.0"
)

// Credentials of the test server's single account.
const (
	AccessKey = "notsotuf-test-key"
	SecretKey = "notsotuf-test-secret-key-0123456789"
	Region    = "us-east-1"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of the versitygw binary, building it if needed.
func Binary() (string, error) {
	binOnce.Do(func() { binPath, binErr = findOrBuild() })
	return binPath, binErr
}

func findOrBuild() (string, error) {
	if p := os.Getenv("NOTSOTUF_VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("NOTSOTUF_VERSITYGW: %w", err)
		}
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "notsotuf-test")
	exe := "versitygw-" + Version
	if runtime.GOOS == "windows" {
		exe += ".exe"
	}
	final := filepath.Join(dir, exe)
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// One build at a time across test processes (go test runs packages
	// in parallel): the others wait for its result.
	lock := final + ".building"
	for start := time.Now(); ; {
		f, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			f.Close()
			break
		}
		if _, err := os.Stat(final); err == nil {
			return final, nil
		}
		if fi, err := os.Stat(lock); err == nil && time.Since(fi.ModTime()) > 20*time.Minute {
			os.Remove(lock) // a build that died
			continue
		}
		if time.Since(start) > 20*time.Minute {
			return "", errors.New("timed out waiting for another process building versitygw")
		}
		time.Sleep(time.Second)
	}
	defer os.Remove(lock)
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(goBin, "install", Package+"@"+Version)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=-buildvcs=false", "GOWORK=off", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go install %s@%s: %v\n%s", Package, Version, err, lastLines(out, 10))
	}
	built := filepath.Join(tmp, filepath.Base(Package))
	if runtime.GOOS == "windows" {
		built += ".exe"
	}
	if err := os.Rename(built, final); err != nil {
		return "", err
	}
	return final, nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Require returns the versitygw binary, or skips t (fails it with
// NOTSOTUF_REQUIRE_S3=1) when there is none.
func Require(t testing.TB) string {
	t.Helper()
	p, err := Binary()
	if err != nil {
		msg := fmt.Sprintf("no versitygw %s for the S3 tests (%v); `go install %s@%s` and set NOTSOTUF_VERSITYGW to its path", Version, err, Package, Version)
		if os.Getenv("NOTSOTUF_REQUIRE_S3") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// Server is a running versitygw.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	Dir      string // the posix backend: DIR/BUCKET/KEY
	cmd      *exec.Cmd
	done     chan struct{}
	out      bytes.Buffer
}

// Start runs versitygw with the posix backend on dir (created if needed)
// on a free loopback port, and waits until it answers.
func Start(bin, dir string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // the free port may be taken by someone else meanwhile
		s, err := start(bin, dir)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func start(bin, dir string) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &Server{Endpoint: "http://" + addr, Dir: dir, done: make(chan struct{})}
	s.cmd = exec.Command(bin, "--quiet", "--access", AccessKey, "--secret", SecretKey, "--region", Region, "--port", addr, "posix", dir)
	s.cmd.Stdout, s.cmd.Stderr = &lockedWriter{w: &s.out}, &lockedWriter{w: &s.out}
	setProcAttr(s.cmd)
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("versitygw exited: %s", s.Output())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Close()
			return nil, fmt.Errorf("versitygw did not listen on %s within 30s: %s", addr, s.Output())
		}
	}
}

// StartT starts a server for the life of t.
func StartT(t testing.TB) *Server {
	t.Helper()
	bin := Require(t)
	s, err := Start(bin, filepath.Join(t.TempDir(), "s3"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Close stops the server.
func (s *Server) Close() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	s.cmd.Process.Kill()
	<-s.done
	return nil
}

// Output is what the server printed.
func (s *Server) Output() string {
	mu.Lock()
	defer mu.Unlock()
	return s.out.String()
}

var mu sync.Mutex

type lockedWriter struct{ w *bytes.Buffer }

func (l *lockedWriter) Write(p []byte) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	return l.w.Write(p)
}

// Client is an S3 client of the server with its credentials.
func (s *Server) Client() (*minio.Client, error) {
	return minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""), Region: Region, BucketLookup: minio.BucketLookupPath,
	})
}

// CreateBucket creates a bucket; public makes its objects readable by
// anyone over plain HTTP GET (as a public bucket or a CDN origin is).
func (s *Server) CreateBucket(ctx context.Context, name string, public bool) error {
	c, err := s.Client()
	if err != nil {
		return err
	}
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: Region}); err != nil {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	if !public {
		return nil
	}
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::%s/*"]}]}`, name)
	if err := c.SetBucketPolicy(ctx, name, policy); err != nil {
		return fmt.Errorf("make bucket %s public: %w", name, err)
	}
	return nil
}

// Env is the environment of a deploy to this server: credentials and
// region, as the AWS chain reads them.
func (s *Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + AccessKey, "AWS_SECRET_ACCESS_KEY=" + SecretKey, "AWS_REGION=" + Region}
}
