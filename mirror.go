package notsotuf

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Mirror is another server of the same repository (ClientConfig.Mirrors):
// the base URLs of its metadata and of its targets. Either may be empty
// when the mirror serves only the other part (a CDN for the targets, say).
// Credentials may be given in each URL (https://user:password@host/...):
// they go to that mirror only and are never printed.
type Mirror struct {
	MetadataURL string
	TargetsURL  string
}

// mirror is one server of the repository: the base URLs of its metadata
// and of its targets, without user info or trailing slash; "" when it
// does not serve that part.
type mirror struct {
	metadata, targets string
}

// mirrorPart says which base URL of a mirror a file is under.
type mirrorPart int

const (
	metadataPart mirrorPart = iota
	targetsPart
)

func (m mirror) base(k mirrorPart) string {
	if k == metadataPart {
		return m.metadata
	}
	return m.targets
}

// source is one place to download a file from: its URL on one mirror.
type source struct {
	base string // the mirror's base URL for the file ("" for a URL given directly)
	url  string
}

// server is the scheme and host of the source's URL: the server that is
// down or up.
func (s source) server() string {
	if u, err := url.Parse(s.url); err == nil {
		return u.Scheme + "://" + u.Host
	}
	return s.url
}

// where names the source in messages: its mirror's base URL.
func (s source) where() string {
	if s.base == "" {
		return s.server()
	}
	return s.base
}

// setMirrors makes ms the servers of the repository, in the order they
// are tried.
func (r *remote) setMirrors(ms []mirror) {
	r.mirrors = ms
	r.down = nil
	r.passed = nil
}

// newRun starts a run (a refresh and what follows it): every mirror is up
// again, and the failures got past are forgotten.
func (r *remote) newRun() {
	r.down = nil
	r.passed = nil
}

// sources returns the URLs of the file name (a path under the base URL of
// kind k) on the mirrors that serve k, in the configured order.
func (r *remote) sources(k mirrorPart, name string) []source {
	var srcs []source
	for _, m := range r.mirrors {
		if b := m.base(k); b != "" {
			srcs = append(srcs, source{base: b, url: b + "/" + name})
		}
	}
	return srcs
}

func (r *remote) setDown(s source, down bool) {
	if r.down == nil {
		r.down = map[string]bool{}
	}
	r.down[s.server()] = down
}

// fromSources runs get on the sources of the file name, one after the
// other, until one succeeds. The rules (docs/client.md, "Mirrors"):
//
//   - Mirrors are tried in the configured order, skipping those whose
//     server (scheme and host) failed with a transient error or sent a bad
//     file earlier in the run ("down": a dead or stale first mirror is not
//     asked again for every file). When no mirror up could answer, those
//     down are tried too.
//   - A transient failure (the mirror unreachable, a 5xx, 408 or 429, too
//     slow) marks the mirror down and the next one is tried at once. When
//     all the mirrors tried failed that way, they are tried again after a
//     backoff, up to r.attempts rounds (with one mirror: the retries of a
//     single server); not when another mirror answered (a 404 for the next
//     root version, asked at every refresh, would otherwise cost the
//     backoffs of a dead mirror each time).
//   - Any other answer from a mirror (an HTTP error such as 404, more bytes
//     than the signed length, a file that fails verification: a
//     *SecurityError) is final for that mirror and this file, and the next
//     mirror is tried: the file is checked against the signed metadata
//     whichever mirror sends it, so a bad copy on one mirror cannot stop
//     the update while another has a good one. The failure is not hidden:
//     it is logged (a security failure as a warning) and kept for
//     Client.MirrorErrors.
//   - An error that is not the mirror's (the context, a local file system
//     error) ends at once.
//
// get reports progress when its attempt made some before it failed (the
// count of rounds starts again). When no source serves the file, the
// error is the only source's error as is, or a *NoMirrorError.
func (r *remote) fromSources(ctx context.Context, name string, srcs []source, get func(source) (progress bool, err error)) error {
	if len(srcs) == 0 {
		return fmt.Errorf("download %s: no configured mirror serves it", name)
	}
	var up, down []source
	for _, s := range srcs {
		if r.down[s.server()] {
			down = append(down, s)
		} else {
			up = append(up, s)
		}
	}
	var (
		failed   []*MirrorError // the last failure of each source tried
		retry    []source       // failed with a transient error in this round
		answered bool           // a mirror gave a final answer
		round    int
	)
	try := func(list []source) (done bool, err error) {
		for _, s := range list {
			progress, err := get(s)
			if err == nil {
				r.setDown(s, false)
				r.gotPast(name, failed)
				return true, nil
			}
			if ctx.Err() != nil || !mirrorFault(err) {
				return true, err
			}
			failed = slices.DeleteFunc(failed, func(m *MirrorError) bool { return m.Mirror == s.where() })
			failed = append(failed, &MirrorError{Mirror: s.where(), Err: err})
			if progress {
				round = 0
			}
			switch {
			case transient(err):
				r.setDown(s, true)
				retry = append(retry, s)
			case suspicious(err):
				r.setDown(s, true) // stale or hostile: ask the others first
				answered = true
			default:
				answered = true
			}
		}
		return false, nil
	}
	if done, err := try(up); done {
		return err
	}
	if !answered {
		// No mirror up could answer: try those down since earlier too.
		if done, err := try(down); done {
			return err
		}
	}
	for len(retry) > 0 && !answered {
		if round++; round >= max1(r.attempts) {
			break
		}
		if err := r.wait(ctx, round); err != nil {
			return err
		}
		list := retry
		retry = nil
		if done, err := try(list); done {
			return err
		}
	}
	if len(srcs) == 1 {
		return failed[0].Err // one server: its error as is
	}
	slices.SortStableFunc(failed, func(a, b *MirrorError) int { return mirrorRank(a.Err) - mirrorRank(b.Err) })
	return &NoMirrorError{File: name, Errs: failed}
}

// mirrorFault reports whether err is a failure of the mirror: it could
// not be reached, answered with an error, or sent a bad file.
func mirrorFault(err error) bool {
	var de *DownloadError
	var se *SecurityError
	return errors.As(err, &de) || errors.As(err, &se)
}

// suspicious reports whether a mirror's failure is a bad file: one that
// fails verification, or more bytes than the signed length.
func suspicious(err error) bool {
	var lm *metadata.ErrDownloadLengthMismatch
	return errors.Is(err, ErrSecurity) || errors.As(err, &lm)
}

// notThere reports whether err is a server's answer that it does not have
// the file: 404, 410, or 403 (what object stores answer for a missing key
// without list permission). A mirror that lags behind gives it.
func notThere(err error) bool {
	var de *DownloadError
	if !errors.As(err, &de) {
		return false
	}
	switch de.StatusCode {
	case http.StatusNotFound, http.StatusGone, http.StatusForbidden:
		return true
	}
	return false
}

// mirrorRank orders the failures of a *NoMirrorError: bad files first,
// then other answers, then mirrors that could not answer.
func mirrorRank(err error) int {
	switch {
	case suspicious(err):
		return 0
	case !transient(err):
		return 1
	}
	return 2
}

// gotPast records the failures of other mirrors for the file name, which
// a mirror has now served: logged, and kept for Client.MirrorErrors
// unless the file was only missing there.
func (r *remote) gotPast(name string, failed []*MirrorError) {
	for _, m := range failed {
		switch {
		case suspicious(m.Err):
			r.log.Warn("a mirror sent a bad file; another mirror served a good one", "file", name, "mirror", m.Mirror, "err", m.Err)
		case notThere(m.Err):
			r.log.Info("a mirror does not have the file (it may lag behind); another mirror served it", "file", name, "mirror", m.Mirror, "err", m.Err)
			continue
		default:
			r.log.Info("a mirror failed; another mirror served the file", "file", name, "mirror", m.Mirror, "err", m.Err)
		}
		r.passed = append(r.passed, m)
	}
}

// notFoundAnywhere reports whether err, from downloading the file name,
// says that no mirror has it: at least one mirror answered that it does
// not (404 or 403) and none served it. The others' failures (unreachable,
// a bad file) are recorded as got past: they could not tell. This ends
// the root rotation loop (TUF 5.3.3): a mirror that cannot be reached or
// sends a bad N.root.json does not stop the update when another says there
// is no such version.
func (r *remote) notFoundAnywhere(name string, err error) bool {
	var nm *NoMirrorError
	if !errors.As(err, &nm) {
		var he *metadata.ErrDownloadHTTP
		return errors.As(err, &he) && (he.StatusCode == http.StatusNotFound || he.StatusCode == http.StatusForbidden)
	}
	i := slices.IndexFunc(nm.Errs, func(m *MirrorError) bool {
		var he *metadata.ErrDownloadHTTP
		return errors.As(m.Err, &he) && (he.StatusCode == http.StatusNotFound || he.StatusCode == http.StatusForbidden)
	})
	if i < 0 {
		return false
	}
	r.gotPast(name, nm.Errs)
	return true
}

// MirrorError is the failure of one mirror to serve a file. Err is a
// *DownloadError (the mirror could not be reached, answered with an HTTP
// error, was too slow or sent too many bytes) or a *SecurityError (the
// file it sent failed verification).
type MirrorError struct {
	Mirror string // the mirror's base URL for the file (metadata or targets), without credentials
	Err    error
}

func (e *MirrorError) Error() string { return "mirror " + e.Mirror + ": " + e.Err.Error() }

func (e *MirrorError) Unwrap() error { return e.Err }

// NoMirrorError reports a file that no mirror served, when several are
// configured. Errs holds each mirror's failure, the most telling first:
// bad files (errors.Is(err, ErrSecurity)), then other answers (an HTTP
// error such as 404), then mirrors that could not be reached. errors.Is
// and errors.As look through all of them, in that order.
type NoMirrorError struct {
	File string
	Errs []*MirrorError
}

func (e *NoMirrorError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "no mirror could serve %s:", e.File)
	for _, m := range e.Errs {
		b.WriteString("\n")
		b.WriteString(m.Error())
	}
	return b.String()
}

func (e *NoMirrorError) Unwrap() []error {
	errs := make([]error, len(e.Errs))
	for i, m := range e.Errs {
		errs[i] = m
	}
	return errs
}

// Hint gives the advice on the first (most telling) failure.
func (e *NoMirrorError) Hint() string {
	if len(e.Errs) == 0 {
		return ""
	}
	return ErrorHint(e.Errs[0].Err)
}
