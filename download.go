package notsotuf

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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

// remote performs the client's HTTP requests: every request carries a
// context, asks for the bytes as stored (no transparent decompression) and
// is retried with exponential backoff on transient errors only.
type remote struct {
	client   *http.Client
	attempts int           // tries per request (first one included)
	backoff  time.Duration // wait before the first retry; doubles each time
	timeout  time.Duration // limit of one metadata request
	stall    time.Duration // a target download receiving nothing this long is retried
}

const (
	defaultAttempts = 4
	defaultBackoff  = 500 * time.Millisecond
	defaultTimeout  = 30 * time.Second
	defaultStall    = 60 * time.Second
)

func newRemote(client *http.Client) *remote {
	if client == nil {
		client = defaultHTTPClient()
	}
	return &remote{client: client, attempts: defaultAttempts, backoff: defaultBackoff, timeout: defaultTimeout, stall: defaultStall}
}

// defaultHTTPClient is used when ClientConfig.HTTPClient is nil: Go's default
// transport settings with a bound on the wait for response headers.
func defaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = defaultTimeout
	return &http.Client{Transport: t}
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
	// Setting Accept-Encoding ourselves stops net/http from asking for gzip
	// and from decompressing the body: we must hash the bytes as stored.
	req.Header.Set("Accept-Encoding", "identity")
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

func (r *remote) fetchOnce(ctx context.Context, url string, max int64) ([]byte, error) {
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	resp, err := r.get(ctx, url, 0)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > max {
		return nil, tooLong(url, max)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
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
	total int64
	done  int64
	fn    func(done, total int64)
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
			next, wrote, err := r.fetchRange(ctx, url, f, h, have, length, prog)
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
			if wrote {
				fails = 0 // the connection was cut after progress: resume at once
				continue
			}
			fails++
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
// whether any byte was written. When the server ignores the Range and sends
// the whole file, the part is emptied and filled from the start.
func (r *remote) fetchRange(ctx context.Context, url string, f afero.File, h hash.Hash, have, length int64, prog *progress) (int64, bool, error) {
	// A transfer that stalls (no byte for r.stall) is canceled and counts
	// as a transient error, so the caller resumes it.
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	stalled := false
	var mu sync.Mutex
	timer := time.AfterFunc(r.stall, func() {
		mu.Lock()
		stalled = true
		mu.Unlock()
		cancel()
	})
	defer timer.Stop()
	have, wrote, err := r.copyRange(actx, url, f, h, have, length, prog, func() { timer.Reset(r.stall) })
	mu.Lock()
	defer mu.Unlock()
	if err != nil && stalled && ctx.Err() == nil {
		err = &DownloadError{URL: url, Err: fmt.Errorf("no data received for %v", r.stall)}
	}
	return have, wrote, err
}

func (r *remote) copyRange(ctx context.Context, url string, f afero.File, h hash.Hash, have, length int64, prog *progress, alive func()) (int64, bool, error) {
	resp, err := r.get(ctx, url, have)
	if err != nil {
		return have, false, err
	}
	defer resp.Body.Close()
	alive()
	if have > 0 && resp.StatusCode == http.StatusOK {
		if _, err := restart(f, h); err != nil {
			return have, false, fmt.Errorf("download %s: %w", url, err)
		}
		prog.add(-have)
		have = 0
	} else if resp.StatusCode == http.StatusPartialContent {
		if start, ok := contentRangeStart(resp.Header.Get("Content-Range")); !ok || start != have {
			return have, false, &DownloadError{URL: url, Err: fmt.Errorf("server sent range %q, asked for bytes=%d-",
				resp.Header.Get("Content-Range"), have)}
		}
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return have, false, fmt.Errorf("download %s: %w", url, err)
	}
	w := &progressWriter{w: io.MultiWriter(f, h), prog: prog, alive: alive}
	n, err := io.Copy(w, io.LimitReader(resp.Body, length-have+1))
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
	return have, n > 0, err
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
	w     io.Writer
	prog  *progress
	alive func() // called on every write: the transfer is not stalled
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.alive()
	n, err := p.w.Write(b)
	p.prog.add(int64(n))
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
	case e.StatusCode == 0:
		var lm *metadata.ErrDownloadLengthMismatch
		if errors.As(e.Err, &lm) {
			return "the server sends more than the signed size: a broken or hostile server"
		}
		return "check the network connection and the repository URL; run the update again to resume"
	}
	return ""
}
