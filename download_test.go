package notsotuf

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
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

// requests returns the number of requests so far.
func (b *blobServer) requests() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.ranges)
}

func (b *blobServer) remote() *remote {
	r := newRemote(b.srv.Client(), nil)
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
	rem.window = 200 * time.Millisecond
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

// trickle answers 200 with the headers of the whole blob, then one byte of
// data every gap until the client goes away.
func trickle(w http.ResponseWriter, r *http.Request, data []byte, gap time.Duration) {
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	for i := 0; i < len(data); i++ {
		if _, err := w.Write(data[i : i+1]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			return
		case <-time.After(gap):
		}
	}
}

// TestFetchTargetTooSlow: a server that trickles (50 B/s, below the
// minimum rate of 1000 B/s) is dropped at the end of each window and, as a
// trickle is not progress, the download fails after the attempts, keeping
// what it received for the next run.
func TestFetchTargetTooSlow(t *testing.T) {
	data := randomBytes(100_000, 6)
	srv := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, try int) {
		trickle(w, r, data, 20*time.Millisecond)
	})
	rem := srv.remote()
	rem.minRate, rem.window = 1000, 200*time.Millisecond
	fsys := afero.NewMemMapFs()
	// Without the rate check the trickle would go on for 2000 s: the
	// test's own deadline ends it and the error says so.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err := rem.fetchTarget(ctx, fsys, srv.srv.URL+"/blob", "/c/blob", int64(len(data)), sha256hex(data), &progress{})
	var de *DownloadError
	var se *SlowError
	if !errors.As(err, &de) || !errors.As(err, &se) || se.MinRate != 1000 || se.Window != rem.window ||
		!strings.Contains(err.Error(), "too slow") || !strings.Contains(ErrorHint(err), "too slow") {
		t.Fatalf("err = %v (after %v), want too slow", err, time.Since(start))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
	if srv.requests() != defaultAttempts {
		t.Errorf("%d requests, want %d", srv.requests(), defaultAttempts)
	}
	// What came is kept: the next run resumes it.
	if part, _ := afero.ReadFile(fsys, "/c/blob.part"); len(part) == 0 || !bytes.Equal(part, data[:len(part)]) {
		t.Errorf("part holds %d bytes", len(part))
	}
}

// TestFetchTargetSlowButMoving: a poor connection is not dropped too
// eagerly. A server above the minimum rate, however slow, is never
// dropped; one that pauses longer than a window after each good burst is
// dropped at every pause but resumed each time, however many times, since
// every attempt made progress at the rate.
func TestFetchTargetSlowButMoving(t *testing.T) {
	data := randomBytes(8_000, 7)
	t.Run("steady", func(t *testing.T) {
		srv := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, try int) {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			for i := 0; i < len(data); i += 100 {
				w.Write(data[i : i+100])
				w.(http.Flusher).Flush()
				time.Sleep(10 * time.Millisecond) // 10 KB/s
			}
		})
		rem := srv.remote()
		rem.minRate, rem.window = 500, 100*time.Millisecond
		if err := rem.fetchTarget(context.Background(), afero.NewMemMapFs(), srv.srv.URL+"/blob", "/c/blob", int64(len(data)), sha256hex(data), &progress{}); err != nil {
			t.Fatal(err)
		}
		if srv.requests() != 1 {
			t.Errorf("%d requests, want 1", srv.requests())
		}
	})
	t.Run("bursts", func(t *testing.T) {
		srv := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, try int) {
			start := int64(0)
			if rg := r.Header.Get("Range"); rg != "" {
				start, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"), 10, 64)
				w.Header().Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.Itoa(len(data)-1)+"/"+strconv.Itoa(len(data)))
				w.Header().Set("Content-Length", strconv.Itoa(len(data)-int(start)))
				w.WriteHeader(http.StatusPartialContent)
			}
			// A burst of 1000 bytes, then silence for two windows.
			end := min(start+1000, int64(len(data)))
			w.Write(data[start:end])
			w.(http.Flusher).Flush()
			if end == int64(len(data)) {
				return
			}
			time.Sleep(150 * time.Millisecond)
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		})
		rem := srv.remote()
		rem.minRate, rem.window = 500, 100*time.Millisecond
		if err := rem.fetchTarget(context.Background(), afero.NewMemMapFs(), srv.srv.URL+"/blob", "/c/blob", int64(len(data)), sha256hex(data), &progress{}); err != nil {
			t.Fatalf("%v after %d requests", err, srv.requests())
		}
		if srv.requests() != len(data)/1000 {
			t.Errorf("%d requests, want %d", srv.requests(), len(data)/1000)
		}
	})
}

// TestFetchBytesTooSlow: metadata requests are held to the same rate: a
// server that trickles, or answers nothing at all, is dropped after one
// window, and the request fails after the attempts.
func TestFetchBytesTooSlow(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 10_000)
	for _, tt := range []struct {
		name, want string
		handler    func(w http.ResponseWriter, r *http.Request, try int)
	}{
		{"trickle", "too slow: ", func(w http.ResponseWriter, r *http.Request, try int) { trickle(w, r, data, 20*time.Millisecond) }},
		{"silent", "no data received for 200ms", func(w http.ResponseWriter, r *http.Request, try int) {
			select { // no headers, nothing
			case <-r.Context().Done():
			case <-time.After(20 * time.Second):
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newBlobServer(t, tt.handler)
			rem := srv.remote()
			rem.minRate, rem.window = 1000, 200*time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_, err := rem.fetchBytes(ctx, srv.srv.URL+"/timestamp.json", 16<<10)
			if !isSlow(err) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "/timestamp.json") {
				t.Fatalf("err = %v", err)
			}
			if srv.requests() != defaultAttempts {
				t.Errorf("%d requests, want %d", srv.requests(), defaultAttempts)
			}
		})
	}
}

// TestFetchTargetTruncatedRepeats: a server that ignores the Range and
// always sends the same truncated file makes no progress: the download
// fails after the attempts (it was retried at once, without end, as long
// as each response brought a byte).
func TestFetchTargetTruncatedRepeats(t *testing.T) {
	data := randomBytes(10_000, 8)
	srv := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, try int) {
		w.Write(data[:100])
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.remote().fetchTarget(ctx, afero.NewMemMapFs(), srv.srv.URL+"/blob", "/c/blob", int64(len(data)), sha256hex(data), &progress{})
	var de *DownloadError
	if !errors.As(err, &de) || ctx.Err() != nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v", err)
	}
	if srv.requests() != 1+defaultAttempts { // the first one made progress
		t.Errorf("%d requests, want %d", srv.requests(), 1+defaultAttempts)
	}
}
