package notsotuf

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// DownloadError reports a download that failed for a reason other than a
// security check: the server could not be reached, it answered with an HTTP
// error status, or it sent more bytes than allowed. For an HTTP status, Err
// is a *metadata.ErrDownloadHTTP; for a size cap, a
// *metadata.ErrDownloadLengthMismatch, so callers can use errors.As with
// go-tuf's types.
type DownloadError struct {
	URL        string
	StatusCode int   // the HTTP status when the server answered, else 0
	Err        error // the underlying error
}

func (e *DownloadError) Error() string {
	switch {
	case e.StatusCode == http.StatusNotFound:
		return fmt.Sprintf("download %s: not found on the server (HTTP 404)", e.URL)
	case e.StatusCode != 0:
		return fmt.Sprintf("download %s: server answered HTTP %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	}
	var lm *metadata.ErrDownloadLengthMismatch
	if errors.As(e.Err, &lm) {
		return fmt.Sprintf("download %s: %s", e.URL, lm.Msg)
	}
	var se *SlowError
	if errors.As(e.Err, &se) {
		return fmt.Sprintf("download %s: %v", e.URL, se)
	}
	return fmt.Sprintf("download %s: server unreachable or connection lost: %v", e.URL, e.Err)
}

func (e *DownloadError) Unwrap() error { return e.Err }

// transient reports whether a failed request may succeed when tried again:
// network failures, timeouts of one attempt and 5xx/408/429 answers. A 404 or
// 403, a size cap or a security failure is final.
func transient(err error) bool {
	var de *DownloadError
	if !errors.As(err, &de) {
		return false
	}
	switch {
	case de.StatusCode >= 500, de.StatusCode == http.StatusTooManyRequests, de.StatusCode == http.StatusRequestTimeout:
		return true
	case de.StatusCode != 0:
		return false
	}
	var lm *metadata.ErrDownloadLengthMismatch
	return !errors.As(de.Err, &lm)
}

// SlowError reports a transfer that received less than the minimum rate
// (ClientConfig.MinRate) over one window (ClientConfig.RateWindow); it is
// the Err of a *DownloadError. A transfer that sends nothing at all for a
// window (a server that accepted the connection and went silent) is the
// case Got == 0.
type SlowError struct {
	Got     int64         // bytes received in the window
	Window  time.Duration // the window
	MinRate int64         // the minimum, in bytes per second
}

func (e *SlowError) Error() string {
	if e.Got == 0 {
		return fmt.Sprintf("no data received for %v", e.Window)
	}
	return fmt.Sprintf("too slow: %d bytes received in %v, below the minimum of %d bytes/s", e.Got, e.Window, e.MinRate)
}

// remote performs the client's HTTP requests: every request carries a
// context and the configured extra headers, asks for the bytes as stored
// (no transparent decompression), is held to a minimum transfer rate and is
// retried with exponential backoff on transient errors only.
//
// Every URL the remote is given, and so every URL in its errors, is
// free of credentials: the user:password of a configured base URL is kept
// aside (creds) and put back only on the request sent (net/http then sends
// it as basic authentication and redacts it in its own errors).
type remote struct {
	client   *http.Client
	header   http.Header   // extra request headers (ClientConfig.Header)
	creds    []credential  // user info of the configured base URLs
	attempts int           // tries per request (first one included)
	backoff  time.Duration // wait before the first retry; doubles each time
	// minRate and window: a transfer must receive at least minRate bytes
	// per second over every window (at least one byte), counting from
	// the request; the wait for the response headers counts. A transfer
	// below it is dropped and retried (a target resumes where it
	// stopped); after attempts such drops in a row it fails.
	minRate int64
	window  time.Duration
}

// credential is the user info to send with requests under a base URL.
type credential struct {
	prefix string // base URL without user info, no trailing slash
	user   *url.Userinfo
}

const (
	defaultAttempts = 4
	defaultBackoff  = 500 * time.Millisecond
	maxRedirects    = 10
)

// Defaults of the limits on downloads (see ClientConfig).
const (
	// DefaultMinRate is the default of ClientConfig.MinRate: 1 KiB/s.
	DefaultMinRate = 1024
	// DefaultRateWindow is the default of ClientConfig.RateWindow.
	DefaultRateWindow = 30 * time.Second
	// DefaultTimeout is the default of ClientConfig.Timeout.
	DefaultTimeout = time.Hour
)

// newRemote returns a remote that makes its requests with client (nil: a
// client with Go's default transport settings), adding header to each.
func newRemote(client *http.Client, header http.Header) *remote {
	if client == nil {
		client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	r := &remote{client: client, attempts: defaultAttempts, backoff: defaultBackoff,
		minRate: DefaultMinRate, window: DefaultRateWindow}
	if len(header) > 0 {
		r.header = header.Clone()
		r.client = keepHeaderOnHost(client, r.header)
	}
	return r
}

// keepHeaderOnHost returns a copy of client that drops the extra headers
// (which may hold a secret) from a redirected request to another host or
// scheme: they go only where the configuration says. (net/http itself
// forwards every header but Authorization and cookies to any host.)
func keepHeaderOnHost(client *http.Client, header http.Header) *http.Client {
	c := *client
	next := client.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if first := via[0].URL; req.URL.Host != first.Host || req.URL.Scheme != first.Scheme {
			for k := range header {
				req.Header.Del(k)
			}
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		return nil
	}
	return &c
}

// addCredentials makes requests under base carry user (nil: none).
func (r *remote) addCredentials(base string, user *url.Userinfo) {
	r.creds = slices.DeleteFunc(r.creds, func(c credential) bool { return c.prefix == base })
	if user != nil {
		r.creds = append(r.creds, credential{prefix: base, user: user})
	}
}

// splitUserinfo returns s without its user info, and the user info.
func splitUserinfo(s string) (string, *url.Userinfo) {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s, nil
	}
	user := u.User
	u.User = nil
	return u.String(), user
}

// redactURL returns s with any password replaced (for messages about a
// configured URL). A string that does not parse as a URL with a host loses
// everything up to its last "@".
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		return u.Redacted()
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return "***" + s[i:]
	}
	return s
}

// wait sleeps before retry number try (1-based), or returns early with the
// context's error.
func (r *remote) wait(ctx context.Context, try int) error {
	d := r.backoff << (try - 1)
	if d <= 0 || d > 30*time.Second {
		d = 30 * time.Second
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// get sends a GET for url, from byte offset when offset > 0. It returns the
// response for 200 and 206 and a *DownloadError otherwise.
func (r *remote) get(ctx context.Context, url string, offset int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", url, err)
	}
	for k, vs := range r.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	for _, c := range r.creds {
		if strings.HasPrefix(url, c.prefix+"/") {
			req.URL.User = c.user
			break
		}
	}
	// Setting Accept-Encoding ourselves stops net/http from asking for gzip
	// and from decompressing the body: we must hash the bytes as stored.
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Del("Range")
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, &DownloadError{URL: url, Err: err}
	}
	if resp.StatusCode == http.StatusOK || (offset > 0 && resp.StatusCode == http.StatusPartialContent) {
		return resp, nil
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return nil, &DownloadError{URL: url, StatusCode: resp.StatusCode,
		Err: &metadata.ErrDownloadHTTP{StatusCode: resp.StatusCode, URL: url}}
}

// meter holds one request to the minimum transfer rate: at the end of
// every window it checks that enough bytes arrived during it and cancels
// the request otherwise. It is the only timer on a transfer: a silent
// server (no headers, or no byte) is the case of zero bytes.
type meter struct {
	n    atomic.Int64 // bytes received since the last check
	good atomic.Bool  // a whole window met the rate

	mu    sync.Mutex
	timer *time.Timer
	done  bool
}

// watch starts a meter for a request to url; its context is canceled with
// a *DownloadError wrapping a *SlowError when a window falls short. stop
// must be called when the request is over.
func (r *remote) watch(ctx context.Context, url string) (_ context.Context, _ *meter, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	m := &meter{}
	var need int64
	if f := float64(r.minRate) * r.window.Seconds(); f >= math.MaxInt64 {
		need = math.MaxInt64
	} else {
		need = max(int64(f), 1)
	}
	m.mu.Lock()
	m.timer = time.AfterFunc(r.window, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.done {
			return
		}
		if got := m.n.Swap(0); got < need {
			cancel(&DownloadError{URL: url, Err: &SlowError{Got: got, Window: r.window, MinRate: r.minRate}})
			return
		}
		m.good.Store(true)
		m.timer.Reset(r.window)
	})
	m.mu.Unlock()
	return ctx, m, func() {
		m.mu.Lock()
		m.done = true
		m.timer.Stop()
		m.mu.Unlock()
		cancel(nil)
	}
}

// slowCause returns the meter's error when it canceled the request
// (and the caller's context is still live), else err.
func slowCause(parent, actx context.Context, err error) error {
	if err == nil || parent.Err() != nil {
		return err
	}
	var se *SlowError
	if cause := context.Cause(actx); errors.As(cause, &se) {
		return cause
	}
	return err
}

func isSlow(err error) bool {
	var se *SlowError
	return errors.As(err, &se)
}

// meteredReader counts what it reads on a meter.
type meteredReader struct {
	r io.Reader
	m *meter
}

func (mr meteredReader) Read(p []byte) (int, error) {
	n, err := mr.r.Read(p)
	mr.m.n.Add(int64(n))
	return n, err
}

// fetchBytes downloads a small file (metadata) into memory, refusing more
// than max bytes.
func (r *remote) fetchBytes(ctx context.Context, url string, max int64) ([]byte, error) {
	var err error
	for try := 0; try < max1(r.attempts); try++ {
		if try > 0 {
			if werr := r.wait(ctx, try); werr != nil {
				return nil, werr
			}
		}
		var data []byte
		data, err = r.fetchOnce(ctx, url, max)
		if err == nil {
			return data, nil
		}
		if ctx.Err() != nil || !transient(err) {
			return nil, err
		}
	}
	return nil, err
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

func (r *remote) fetchOnce(ctx context.Context, url string, max int64) (_ []byte, err error) {
	actx, m, stop := r.watch(ctx, url)
	defer stop()
	defer func() { err = slowCause(ctx, actx, err) }()
	resp, err := r.get(actx, url, 0)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > max {
		return nil, tooLong(url, max)
	}
	data, err := io.ReadAll(io.LimitReader(meteredReader{resp.Body, m}, max+1))
	if err != nil {
		return nil, &DownloadError{URL: url, Err: err}
	}
	if int64(len(data)) > max {
		return nil, tooLong(url, max)
	}
	return data, nil
}

func tooLong(url string, max int64) error {
	return &DownloadError{URL: url, Err: &metadata.ErrDownloadLengthMismatch{
		Msg: fmt.Sprintf("more than the allowed %d bytes", max)}}
}

// progress adds up the bytes of all files of one update.
type progress struct {
	total    int64
	done     int64
	received int64 // bytes that came from the server (done also counts resumed parts and cached files)
	fn       func(done, total int64)
}

// recv counts n bytes received from the server.
func (p *progress) recv(n int64) {
	if p != nil {
		p.received += n
	}
}

func (p *progress) add(n int64) {
	if p == nil || n == 0 {
		return
	}
	p.done += n
	if p.fn != nil {
		p.fn(p.done, p.total)
	}
}

// fetchTarget downloads url into dst, which must end up holding exactly
// length bytes with the given sha256. The bytes go to dst+".part", hashed
// while they stream in; an existing part (an interrupted download) is
// re-hashed and continued with an HTTP Range request. dst appears only once
// length and hash match. On a hash mismatch the part is removed and a
// *SecurityError is returned; a resumed download (whose first bytes may
// come from an earlier, broken or hostile connection) is first retried once
// from the start. A dst that already matches is kept as is.
func (r *remote) fetchTarget(ctx context.Context, fsys afero.Fs, url, dst string, length int64, sha256hex string, prog *progress) error {
	if size, sum, err := hashFileLimit(fsys, dst, length); err == nil && size == length && sum == sha256hex {
		prog.add(length)
		return nil
	}
	part := dst + ".part"
	f, err := openNoFollow(fsys, part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	h := sha256.New()
	have, err := io.Copy(h, io.LimitReader(f, length+1))
	if err != nil {
		return fmt.Errorf("download %s: read %s: %w", url, part, err)
	}
	if have > length || (have == length && hex.EncodeToString(h.Sum(nil)) != sha256hex) {
		// Not a prefix of the signed file: start over.
		if have, err = restart(f, h); err != nil {
			return fmt.Errorf("download %s: %s: %w", url, part, err)
		}
	}
	prog.add(have)

	// pieced: the part holds bytes of more than one response (a resumed
	// download). Its prefix may come from an earlier, hostile or broken
	// connection, so a hash mismatch of a pieced file is first retried once
	// from the start before it counts as a security failure.
	for retried := false; ; retried = true {
		pieced := false
		fails := 0
		for have < length {
			pieced = pieced || have > 0
			next, good, err := r.fetchRange(ctx, url, f, h, have, length, prog)
			// Progress is a part that grew: a server that ignores the
			// Range and sends the same truncated file again made none.
			grew := next > have
			have = next
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return err
			}
			if !transient(err) {
				var lm *metadata.ErrDownloadLengthMismatch
				if errors.As(err, &lm) {
					f.Close()
					f = nil
					fsys.Remove(part)
				}
				return err
			}
			switch {
			case isSlow(err) && good:
				fails = 1 // the first window below the rate after good ones
			case isSlow(err):
				fails++ // slow from the start: a trickle is not progress
			case grew:
				fails = 0 // the connection was cut after progress: resume at once
				continue
			default:
				fails++
			}
			if fails >= max1(r.attempts) {
				return err
			}
			if werr := r.wait(ctx, fails); werr != nil {
				return werr
			}
		}
		sum := hex.EncodeToString(h.Sum(nil))
		if have == length && sum == sha256hex {
			break
		}
		if pieced && !retried {
			prog.add(-have)
			if have, err = restart(f, h); err != nil {
				return fmt.Errorf("download %s: %s: %w", url, part, err)
			}
			continue
		}
		f.Close()
		f = nil
		fsys.Remove(part)
		return &SecurityError{File: filepath.Base(dst), Err: &metadata.ErrLengthOrHashMismatch{
			Msg: fmt.Sprintf("downloaded %s: got %d bytes with sha256 %s, signed metadata says %d bytes with sha256 %s",
				url, have, sum, length, sha256hex)}}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("download %s: sync %s: %w", url, part, err)
	}
	if err := f.Close(); err != nil {
		f = nil
		return fmt.Errorf("download %s: %s: %w", url, part, err)
	}
	f = nil
	if err := fsys.Rename(part, dst); err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	return nil
}

// restart empties the part file and the running hash.
func restart(f afero.File, h hash.Hash) (int64, error) {
	h.Reset()
	if err := f.Truncate(0); err != nil {
		return 0, err
	}
	_, err := f.Seek(0, io.SeekStart)
	return 0, err
}

// fetchRange requests url from offset have and appends what comes to f and
// h, never going past length. It returns the new size of the part and
// whether a whole window met the minimum rate.
// When the server ignores the Range and sends the whole file, the part is
// emptied and filled from the start. A transfer below the minimum rate is
// canceled with a *DownloadError wrapping a *SlowError (transient: the
// caller resumes it).
func (r *remote) fetchRange(ctx context.Context, url string, f afero.File, h hash.Hash, have, length int64, prog *progress) (int64, bool, error) {
	actx, m, stop := r.watch(ctx, url)
	defer stop()
	have, err := r.copyRange(actx, url, f, h, have, length, prog, m)
	return have, m.good.Load(), slowCause(ctx, actx, err)
}

func (r *remote) copyRange(ctx context.Context, url string, f afero.File, h hash.Hash, have, length int64, prog *progress, m *meter) (int64, error) {
	resp, err := r.get(ctx, url, have)
	if err != nil {
		return have, err
	}
	defer resp.Body.Close()
	if have > 0 && resp.StatusCode == http.StatusOK {
		if _, err := restart(f, h); err != nil {
			return have, fmt.Errorf("download %s: %w", url, err)
		}
		prog.add(-have)
		have = 0
	} else if resp.StatusCode == http.StatusPartialContent {
		if start, ok := contentRangeStart(resp.Header.Get("Content-Range")); !ok || start != have {
			return have, &DownloadError{URL: url, Err: fmt.Errorf("server sent range %q, asked for bytes=%d-",
				resp.Header.Get("Content-Range"), have)}
		}
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return have, fmt.Errorf("download %s: %w", url, err)
	}
	w := &progressWriter{w: io.MultiWriter(f, h), prog: prog}
	n, err := io.Copy(w, io.LimitReader(meteredReader{resp.Body, m}, length-have+1))
	have += n
	switch {
	case err == nil && have > length:
		err = tooLong(url, length)
	case err != nil:
		var werr *writeError
		if errors.As(err, &werr) {
			err = fmt.Errorf("download %s: %w", url, werr.err)
		} else {
			err = &DownloadError{URL: url, Err: err}
		}
	case have < length:
		err = &DownloadError{URL: url, Err: io.ErrUnexpectedEOF}
	}
	return have, err
}

// contentRangeStart parses the first byte position of "bytes a-b/c".
func contentRangeStart(v string) (int64, bool) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, false
	}
	a, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(a, 10, 64)
	return n, err == nil
}

type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

// progressWriter reports bytes written and tags write failures so they are
// not mistaken for network errors.
type progressWriter struct {
	w    io.Writer
	prog *progress
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.prog.add(int64(n))
	p.prog.recv(int64(n))
	if err != nil {
		return n, &writeError{err}
	}
	return n, nil
}

// Hint gives advice on a download error (the CLI prints it).
func (e *DownloadError) Hint() string {
	switch {
	case e.StatusCode == http.StatusNotFound:
		return "check the repository URLs (metadata and targets)"
	case e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden:
		return "the server wants credentials, or other ones: pass them with --header 'Authorization: ...' " +
			"(ClientConfig.Header) or in the URL (https://user:password@host/...); a 403 can also mean a wrong repository URL"
	case e.StatusCode == 0:
		var lm *metadata.ErrDownloadLengthMismatch
		if errors.As(e.Err, &lm) {
			return "the server sends more than the signed size: a broken or hostile server"
		}
		if isSlow(e.Err) {
			return "the server or the network is too slow: run the update again later to resume, " +
				"or lower the minimum rate (--min-rate, ClientConfig.MinRate)"
		}
		return "check the network connection and the repository URL; run the update again to resume"
	}
	return ""
}
