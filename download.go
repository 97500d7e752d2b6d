package notsotuf

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
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
// retried with exponential backoff on transient errors only. A file of the
// repository is downloaded from its mirrors in turn (see fromSources).
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

	// mirrors are the configured servers of the repository, in order
	// (ClientConfig.MetadataURL and TargetsURL first); down marks the
	// servers (scheme://host) that failed in this run (see fromSources);
	// passed holds the failures the client got past by another mirror in
	// this run (Client.MirrorErrors).
	mirrors []mirror
	down    map[string]bool
	passed  []*MirrorError
	log     *slog.Logger
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

// newRemote returns a remote that makes its requests with client, adding
// header to each. A nil client means one with Go's default transport
// settings, proxies included: http.ProxyFromEnvironment (HTTPS_PROXY,
// HTTP_PROXY, NO_PROXY; never for localhost and loopback addresses).
func newRemote(client *http.Client, header http.Header) *remote {
	if client == nil {
		client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	r := &remote{client: client, attempts: defaultAttempts, backoff: defaultBackoff,
		minRate: DefaultMinRate, window: DefaultRateWindow, log: discardLogger()}
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

// fetchBytes downloads a small file from url into memory, refusing more
// than max bytes.
func (r *remote) fetchBytes(ctx context.Context, url string, max int64) ([]byte, error) {
	return r.fetchBytesFrom(ctx, url, []source{{url: url}}, max, nil)
}

// fetchMetadata downloads the metadata file name (a path under the
// metadata base URL) from the mirrors into memory, refusing more than max
// bytes. check, when set, verifies what a mirror sent: a mirror whose
// file fails it has failed (see fromSources).
func (r *remote) fetchMetadata(ctx context.Context, name string, max int64, check func([]byte) error) ([]byte, error) {
	return r.fetchBytesFrom(ctx, name, r.sources(metadataPart, name), max, check)
}

func (r *remote) fetchBytesFrom(ctx context.Context, name string, srcs []source, max int64, check func([]byte) error) ([]byte, error) {
	var data []byte
	err := r.fromSources(ctx, name, srcs, func(s source) (bool, error) {
		d, err := r.fetchOnce(ctx, s.url, max)
		if err == nil && check != nil {
			err = check(d)
		}
		data = d
		return false, err
	})
	if err != nil {
		return nil, err
	}
	return data, nil
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
	t        *tracker // the call's progress (PhaseDownload); nil: none
}

// grow adds n bytes to download to the update's total.
func (p *progress) grow(n int64) {
	p.total += n
	p.t.grow(PhaseDownload, n)
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
	if p.t != nil {
		p.t.enter(PhaseDownload)
		p.t.add(PhaseDownload, n)
	}
}

// fetchTarget downloads url into dst (see fetchTargetFrom).
func (r *remote) fetchTarget(ctx context.Context, fsys afero.Fs, url, dst string, length int64, sha256hex string, prog *progress) error {
	return r.fetchTargetFrom(ctx, fsys, url, []source{{url: url}}, dst, length, sha256hex, prog)
}

// fetchTargetFile downloads the target file name (a path under the
// targets base URL) from the mirrors into dst (see fetchTargetFrom).
func (r *remote) fetchTargetFile(ctx context.Context, fsys afero.Fs, name, dst string, length int64, sha256hex string, prog *progress) error {
	return r.fetchTargetFrom(ctx, fsys, name, r.sources(targetsPart, name), dst, length, sha256hex, prog)
}

// fetchTargetFrom downloads a target from srcs (one URL per mirror) into
// dst, which must end up holding exactly length bytes with the given
// sha256. The bytes go to dst+".part", hashed while they stream in; an
// existing part (an interrupted download, maybe from another mirror) is
// re-hashed and continued with an HTTP Range request. dst appears only
// once length and hash match. A dst that already matches is kept as is.
// A mirror whose file does not match fails with a *SecurityError and the
// part is emptied (see fetchFrom); the part is removed when the download
// fails with nothing worth resuming in it.
func (r *remote) fetchTargetFrom(ctx context.Context, fsys afero.Fs, name string, srcs []source, dst string, length int64, sha256hex string, prog *progress) error {
	if size, sum, err := hashFileLimit(fsys, dst, length); err == nil && size == length && sum == sha256hex {
		prog.add(length)
		return nil
	}
	where := name
	if len(srcs) == 1 {
		where = srcs[0].url
	}
	part := dst + ".part"
	f, err := openNoFollow(fsys, part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("download %s: %w", where, err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	t := &partFile{file: filepath.Base(dst), f: f, h: sha256.New(), length: length, sha256hex: sha256hex, prog: prog}
	t.have, err = io.Copy(t.h, io.LimitReader(f, length+1))
	if err != nil {
		return fmt.Errorf("download %s: read %s: %w", where, part, err)
	}
	if t.have > length || (t.have == length && hex.EncodeToString(t.h.Sum(nil)) != sha256hex) {
		// Not a prefix of the signed file: start over.
		if t.have, err = restart(f, t.h); err != nil {
			return fmt.Errorf("download %s: %s: %w", where, part, err)
		}
	}
	prog.add(t.have)

	err = r.fromSources(ctx, name, srcs, func(s source) (bool, error) {
		return r.fetchFrom(ctx, s.url, t)
	})
	if err != nil {
		if t.have == 0 {
			f.Close()
			f = nil
			fsys.Remove(part)
		}
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("download %s: sync %s: %w", where, part, err)
	}
	if err := f.Close(); err != nil {
		f = nil
		return fmt.Errorf("download %s: %s: %w", where, part, err)
	}
	f = nil
	if err := fsys.Rename(part, dst); err != nil {
		return fmt.Errorf("download %s: %w", where, err)
	}
	return nil
}

// partFile is a target download in progress: the part file, the hash of
// its have bytes, and the signed length and sha256 it must reach.
type partFile struct {
	file      string // the target's file name, for errors
	f         afero.File
	h         hash.Hash
	have      int64
	length    int64
	sha256hex string
	prog      *progress
}

// restart empties the part file and its hash.
func (t *partFile) restart() error {
	t.prog.add(-t.have)
	t.have = 0
	_, err := restart(t.f, t.h)
	return err
}

// fetchFrom completes the part from url (one mirror) and checks it. A
// connection cut after some progress resumes at once; any other failure
// is returned (progress: a whole window met the minimum rate before the
// transfer fell below it). On a hash mismatch the part is emptied and a
// *SecurityError is returned; a part pieced together from more than one
// response (whose first bytes may come from an earlier, broken or hostile
// connection or mirror) is first downloaded again once from the start. A
// server that sends more than the signed length also empties the part.
func (r *remote) fetchFrom(ctx context.Context, url string, t *partFile) (progress bool, err error) {
	for retried := false; ; retried = true {
		pieced := false
		for t.have < t.length {
			pieced = pieced || t.have > 0
			next, good, err := r.fetchRange(ctx, url, t.f, t.h, t.have, t.length, t.prog)
			// Progress is a part that grew: a server that ignores the
			// Range and sends the same truncated file again made none.
			grew := next > t.have
			t.have = next
			if err == nil {
				break
			}
			if ctx.Err() == nil && transient(err) && !isSlow(err) && grew {
				continue // the connection was cut after progress: resume at once
			}
			var lm *metadata.ErrDownloadLengthMismatch
			if errors.As(err, &lm) {
				if rerr := t.restart(); rerr != nil {
					return false, fmt.Errorf("download %s: %w", url, rerr)
				}
			}
			return isSlow(err) && good, err
		}
		sum := hex.EncodeToString(t.h.Sum(nil))
		if t.have == t.length && sum == t.sha256hex {
			return false, nil
		}
		have := t.have
		if err := t.restart(); err != nil {
			return false, fmt.Errorf("download %s: %w", url, err)
		}
		if pieced && !retried {
			continue
		}
		return false, &SecurityError{File: t.file, Err: &metadata.ErrLengthOrHashMismatch{
			Msg: fmt.Sprintf("downloaded %s: got %d bytes with sha256 %s, signed metadata says %d bytes with sha256 %s",
				url, have, sum, t.length, t.sha256hex)}}
	}
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
