package notsotuf

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// blobServer serves one blob at /blob through handler, which may misbehave.
type blobServer struct {
	mu     sync.Mutex
	ranges []string // Range header of each request
	srv    *httptest.Server
}

func newBlobServer(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, try int)) *blobServer {
	b := &blobServer{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.ranges = append(b.ranges, r.Header.Get("Range"))
		try := len(b.ranges)
		b.mu.Unlock()
		if ae := r.Header.Get("Accept-Encoding"); ae != "identity" {
			t.Errorf("Accept-Encoding = %q", ae)
		}
		handler(w, r, try)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *blobServer) remote() *remote {
	r := newRemote(b.srv.Client())
	r.backoff = time.Millisecond
	return r
}

// cutAfter writes the first n bytes of data with a 200 and drops the
// connection, as a server that dies mid-transfer.
func cutAfter(w http.ResponseWriter, data []byte, n int) {
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	w.Write(data[:n])
	w.(http.Flusher).Flush()
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

func gzipBytes(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestFetchTargetResume(t *testing.T) {
	data := randomBytes(300_000, 1)
	srv := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, try int) {
		if try == 1 {
			cutAfter(w, data, 100_000)
			return
		}
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(data))
	})
	fsys := afero.NewMemMapFs()
	var last, total int64
	prog := &progress{total: int64(len(data)), fn: func(d, t int64) { last, total = d, t }}
	err := srv.remote().fetchTarget(context.Background(), fsys, srv.srv.URL+"/blob", "/c/blob", int64(len(data)), sha256hex(data), prog)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := afero.ReadFile(fsys, "/c/blob")
	if !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
	if ok, _ := afero.Exists(fsys, "/c/blob.part"); ok {
		t.Error("part left behind")
	}
	if len(srv.ranges) != 2 || srv.ranges[1] != "bytes=100000-" {
		t.Errorf("ranges = %q", srv.ranges)
	}
	if last != int64(len(data)) || total != int64(len(data)) {
		t.Errorf("progress %d/%d", last, total)
	}
}

func TestFetchTargetResumeAcrossRuns(t *testing.T) {
	// A part left by an earlier process is re-hashed and continued; a server
	// that ignores Range (200) restarts the file.
	data := randomBytes(50_000, 2)
	for _, honourRange := range []bool{true, false} {
		srv := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, try int) {
			if !honourRange {
				r.Header.Del("Range")
			}
			http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(data))
		})
		fsys := afero.NewOsFs()
		dst := filepath.Join(t.TempDir(), "blob")
		afero.WriteFile(fsys, dst+".part", data[:20_000], 0o644)
		prog := &progress{total: int64(len(data))}
		if err := srv.remote().fetchTarget(context.Background(), fsys, srv.srv.URL+"/blob", dst, int64(len(data)), sha256hex(data), prog); err != nil {
			t.Fatal(err)
		}
		got, _ := afero.ReadFile(fsys, dst)
		if !bytes.Equal(got, data) || prog.done != int64(len(data)) {
			t.Fatalf("honourRange=%v: content ok=%v, progress %d", honourRange, bytes.Equal(got, data), prog.done)
		}
	}
}

func TestFetchTargetHashMismatch(t *testing.T) {
	data := randomBytes(10_000, 3)
	evil := append([]byte(nil), data...)
	evil[5000] ^= 1
	srv := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, try int) {
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(evil))
	})
	fsys := afero.NewMemMapFs()
	err := srv.remote().fetchTarget(context.Background(), fsys, srv.srv.URL+"/blob", "/c/blob", int64(len(data)), sha256hex(data), &progress{})
	var lh *metadata.ErrLengthOrHashMismatch
	if !errors.Is(err, ErrSecurity) || !errors.As(err, &lh) {
		t.Fatalf("err = %v", err)
	}
	for _, p := range []string{"/c/blob", "/c/blob.part"} {
		if ok, _ := afero.Exists(fsys, p); ok {
			t.Errorf("%s exists", p)
		}
	}
}

func TestFetchTargetTooLong(t *testing.T) {
	data := randomBytes(10_000, 4)
	srv := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, try int) {
		w.Write(data)
		w.Write([]byte("more"))
	})
	fsys := afero.NewMemMapFs()
	err := srv.remote().fetchTarget(context.Background(), fsys, srv.srv.URL+"/blob", "/c/blob", int64(len(data)), sha256hex(data), &progress{})
	var lm *metadata.ErrDownloadLengthMismatch
	if !errors.As(err, &lm) {
		t.Fatalf("err = %v", err)
	}
	if ok, _ := afero.Exists(fsys, "/c/blob.part"); ok {
		t.Error("part kept")
	}
	if len(srv.ranges) != 1 {
		t.Errorf("%d requests, want 1 (a size cap is not retried)", len(srv.ranges))
	}
}

func TestFetchTargetErrors(t *testing.T) {
	data := []byte("content")
	t.Run("404", func(t *testing.T) {
		srv := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, try int) { http.NotFound(w, r) })
		err := srv.remote().fetchTarget(context.Background(), afero.NewMemMapFs(), srv.srv.URL+"/blob", "/c/blob", 7, sha256hex(data), &progress{})
		var he *metadata.ErrDownloadHTTP
		if !errors.As(err, &he) || he.StatusCode != 404 || len(srv.ranges) != 1 {
			t.Fatalf("err = %v after %d requests", err, len(srv.ranges))
		}
	})
	t.Run("5xx retried", func(t *testing.T) {
		srv := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, try int) {
			if try < 3 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			w.Write(data)
		})
		fsys := afero.NewMemMapFs()
		if err := srv.remote().fetchTarget(context.Background(), fsys, srv.srv.URL+"/blob", "/c/blob", 7, sha256hex(data), &progress{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("gzip encoding kept", func(t *testing.T) {
		// A server that labels a .tar.gz as gzip-encoded: the bytes must be
		// stored as sent, not decompressed.
		gz := gzipBytes(t, data)
		srv := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, try int) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(gz)
		})
		fsys := afero.NewMemMapFs()
		if err := srv.remote().fetchTarget(context.Background(), fsys, srv.srv.URL+"/blob", "/c/blob", int64(len(gz)), sha256hex(gz), &progress{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("already there", func(t *testing.T) {
		srv := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, try int) { t.Error("requested") })
		fsys := afero.NewMemMapFs()
		afero.WriteFile(fsys, "/c/blob", data, 0o644)
		prog := &progress{}
		if err := srv.remote().fetchTarget(context.Background(), fsys, srv.srv.URL+"/blob", "/c/blob", 7, sha256hex(data), prog); err != nil || prog.done != 7 {
			t.Fatal(err, prog.done)
		}
	})
}

func FuzzContentRangeStart(f *testing.F) {
	for _, s := range []string{"bytes 100-199/200", "bytes */200", "bytes -1-2/3", "", "bytes 9223372036854775807-1/2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := contentRangeStart(s)
		if ok && !strings.HasPrefix(s, "bytes ") {
			t.Fatalf("%q accepted", s)
		}
		if ok && n < 0 {
			// A negative start must never be used as an offset.
			t.Fatalf("%q: negative start %d", s, n)
		}
	})
}

func TestFetchTargetStalled(t *testing.T) {
	// The server sends half, then nothing: the client gives up on that
	// connection after the stall limit and resumes.
	data := randomBytes(100_000, 5)
	srv := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, try int) {
		if try == 1 {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:50_000])
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		}
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(data))
	})
	rem := srv.remote()
	rem.stall = 200 * time.Millisecond
	fsys := afero.NewMemMapFs()
	start := time.Now()
	if err := rem.fetchTarget(context.Background(), fsys, srv.srv.URL+"/blob", "/c/blob", int64(len(data)), sha256hex(data), &progress{}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if len(srv.ranges) != 2 || srv.ranges[1] != "bytes=50000-" {
		t.Errorf("ranges = %q", srv.ranges)
	}
}
