package notsotuf

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// Phase names a step of a client call, as reported to
// ClientConfig.OnProgress.
type Phase string

// The phases, in the order they come. Check (and Decide) has the refresh
// only; Install has the others, patch only on the patch path; Update has
// them all.
const (
	// PhaseRefresh downloads the repository's metadata. Done and Total
	// count metadata bytes; Total grows as the files come, since the
	// lengths of timestamp.json and of new root versions are signed
	// nowhere (snapshot.json and targets.json count from the start of
	// their download when the parent role signs their length).
	PhaseRefresh Phase = "refresh"
	// PhaseDownload downloads the patches or the archive (and, for the
	// install directory check, the installed version's archive): bytes
	// received, or found already downloaded (a resumed part, a cached
	// file), of the bytes of the files to download. When downloaded
	// bytes must be fetched again (a part that turned out not to be the
	// signed file), Total grows by them rather than Done going back.
	PhaseDownload Phase = "download"
	// PhasePatch applies the patches: bytes of tar written, the installed
	// version's tar first when it has to be rebuilt (from the install
	// directory or a cached archive), then the output of each patch. The
	// last patch's output is extracted while it is produced: the
	// extraction runs during this phase (see PhaseExtract).
	PhasePatch Phase = "patch"
	// PhaseExtract writes the new version into the staged tree (or the
	// staged executable): bytes of tar read, of the signed tar size (for
	// an archive whose tar size is not signed, a tufup archive: bytes of
	// the archive). After a patch it is what is left when the patch is
	// done: the last bytes, and flushing the files to disk.
	PhaseExtract Phase = "extract"
	// PhaseVerify checks the staged tree against the archive's listing,
	// and waits for the whole tar to match its signed hash: bytes of the
	// tree's files (of the executable in single-executable mode).
	PhaseVerify Phase = "verify"
	// PhaseInstall swaps the new version in, removes the previous tree and
	// records the version: one step (Total 1).
	PhaseInstall Phase = "install"
)

var phaseOrder = [...]Phase{PhaseRefresh, PhaseDownload, PhasePatch, PhaseExtract, PhaseVerify, PhaseInstall}

const numPhases = len(phaseOrder)

func phaseIndex(p Phase) int {
	for i, q := range phaseOrder {
		if q == p {
			return i
		}
	}
	panic("notsotuf: unknown phase " + string(p)) // a programming error
}

// Progress reports how far a Check, Install or Update has come (see
// ClientConfig.OnProgress).
//
// Done and Total count the current phase's work in its own unit (bytes,
// see the Phase constants; the install phase is one step). Within a
// phase Done never decreases, and the last report of a phase has Done ==
// Total (but for a phase given up for a fallback, see below).
//
// OverallDone and OverallTotal cover the whole call: OverallDone /
// OverallTotal is the fraction done. OverallTotal is the work of the
// call, weighted in bytes: the downloads by their sizes, patch and
// extract by the tar size (patch: every tar it writes), verify by the
// tar size too, and the install step as much as verify. It is known once
// the call knows what it installs: while the refresh of an Update runs,
// OverallTotal is 0 (draw an indeterminate bar); from then on it stays
// the same. When the work grows during the call (the patches fail and
// the full archive follows: the phases go back to download; a download
// starts again), the work left is spread over what is left of the bar:
// OverallDone never decreases, and the last report of a successful call
// has OverallDone == OverallTotal. A failed call stops reporting where
// it failed.
type Progress struct {
	Phase       Phase
	Done, Total int64
	// OverallDone and OverallTotal cover the whole call (see above).
	OverallDone, OverallTotal int64
}

// maxWork bounds the work a tracker counts, so that sizes from signed
// metadata, however large, never overflow an int64.
const maxWork = 1 << 60

// addWork is a + b, at most maxWork.
func addWork(a, b int64) int64 {
	return min(max(a, 0)+min(max(b, 0), maxWork), maxWork)
}

// progressStep is how much of a phase's work passes between two reports
// (the phase changing, or ending, always reports).
const progressStep = 256 << 10

// phaseState is the work of one phase of a tracked call.
type phaseState struct {
	done, total int64 // in the phase's unit
	weight      int64 // its share of the call's work; 0: total (a phase counted in bytes)
	last, lastT int64 // done and total at the last report (-1: none yet)
	closed      bool  // ended: later work is not counted
}

// w is the phase's weight in the overall work.
func (s *phaseState) w() int64 {
	if s.weight > 0 {
		return s.weight
	}
	return s.total
}

// wdone is the part of w done.
func (s *phaseState) wdone() float64 {
	switch {
	case s.total <= 0:
		if s.closed {
			return float64(s.w())
		}
		return 0
	case s.done >= s.total:
		return float64(s.w())
	}
	return float64(s.w()) * float64(s.done) / float64(s.total)
}

// tracker follows the phases of one client call and reports them to the
// OnProgress callback (see Progress). Its methods may be called from
// several goroutines (the patch pipeline's); the callback is called with
// the tracker's lock held, so never twice at once and in order. A nil
// tracker (no callback) does nothing.
type tracker struct {
	mu  sync.Mutex
	fn  func(Progress)
	cur int // index in phaseOrder of the current phase; -1 before the first
	ph  [numPhases]phaseState

	known bool    // the call's work is known: the overall is reported
	base  float64 // fraction done when the work last changed
	d0    float64 // weighted work done then
	frac  float64 // last fraction reported
	total int64   // OverallTotal: the call's work when first reported

	calling atomic.Bool // the callback runs (see Client.track)
	whole   bool        // the last report had OverallDone == OverallTotal > 0
}

func newTracker(fn func(Progress)) *tracker {
	if fn == nil {
		return nil
	}
	t := &tracker{fn: fn, cur: -1}
	for i := range t.ph {
		t.ph[i].last, t.ph[i].lastT = -1, -1
	}
	return t
}

// sums returns the weighted work done and the work of the call.
func (t *tracker) sums() (done, total float64) {
	for i := range t.ph {
		done += t.ph[i].wdone()
		total += float64(t.ph[i].w())
	}
	return done, total
}

// fraction is the fraction of the call done: the fraction reached when
// the work last changed, plus the share of the rest done since.
func (t *tracker) fraction() float64 {
	if !t.known {
		return 0
	}
	d, w := t.sums()
	f := 1.0
	if d < w {
		f = t.base
		if w > t.d0 {
			f += (1 - t.base) * (d - t.d0) / (w - t.d0)
		}
	}
	return min(max(f, t.frac), 1)
}

// change applies fn, which changes the work of the call (not only the
// work done), keeping the fraction reported where it is.
func (t *tracker) change(fn func()) {
	f := t.fraction()
	fn()
	if t.known {
		t.base = f
		t.d0, _ = t.sums()
	}
}

// report calls the callback with the state of phase i.
func (t *tracker) report(i int) {
	s := &t.ph[i]
	p := Progress{Phase: phaseOrder[i], Done: min(s.done, s.total), Total: s.total}
	if t.known {
		t.frac = t.fraction()
		if t.total == 0 {
			_, w := t.sums()
			t.total = int64(min(w, maxWork))
		}
		p.OverallTotal = t.total
		p.OverallDone = int64(t.frac * float64(t.total))
		if t.frac >= 1 {
			p.OverallDone = t.total
		}
	}
	s.last, s.lastT = p.Done, p.Total
	t.whole = p.OverallTotal > 0 && p.OverallDone == p.OverallTotal
	t.calling.Store(true)
	defer t.calling.Store(false)
	t.fn(p)
}

// plan sets the work of an install: bytes to download, of tar to write
// by patching, of tar to extract (extract), and the size of the tree
// (the weight of verify and of the install step). From then on the
// overall is reported.
func (t *tracker) plan(download, patch, extract, tree int64) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.change(func() {
		set := func(p Phase, total, weight int64) {
			s := &t.ph[phaseIndex(p)]
			s.total, s.weight = addWork(s.total, total), min(weight, maxWork)
		}
		set(PhaseDownload, download, 0)
		set(PhasePatch, patch, 0)
		set(PhaseExtract, extract, 0)
		set(PhaseVerify, tree, max(tree, 1))
		set(PhaseInstall, 1, max(tree, 1))
	})
	if !t.known {
		t.known, t.base, t.d0 = true, 0, 0
	}
}

// enter makes p the current phase: the current one ends, and so does
// every phase between it and p with work planned (each with a last
// report), then p reports its start. A phase before the current one is
// not entered again (the patch pipeline's goroutines may finish in
// either order): only fallback goes back.
func (t *tracker) enter(p Phase) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.enterLocked(phaseIndex(p))
}

func (t *tracker) enterLocked(i int) {
	if i <= t.cur {
		return
	}
	for j := max(t.cur, 0); j < i; j++ {
		s := &t.ph[j]
		if s.closed || (j != t.cur && s.w() == 0) {
			continue
		}
		t.closeLocked(j)
	}
	t.cur = i
	t.report(i)
}

// begin enters p with total as its own Total (its weight in the call's
// work stays the planned one).
func (t *tracker) begin(p Phase, total int64) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	i := phaseIndex(p)
	if i <= t.cur {
		return
	}
	t.change(func() {
		s := &t.ph[i]
		if s.weight == 0 {
			s.weight = max(s.total, 1)
		}
		s.total = total
	})
	t.enterLocked(i)
}

// add counts n units of work done in phase p; the current phase reports
// every progressStep and at its end. A negative n is work done that must
// be done again (a download restarting): p's Total grows by it instead.
func (t *tracker) add(p Phase, n int64) {
	if t == nil || n == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	i := phaseIndex(p)
	s := &t.ph[i]
	if s.closed {
		return
	}
	if n < 0 {
		t.change(func() { s.total = addWork(s.total, -n) })
		return
	}
	if s.done+n > s.total && (p == PhaseRefresh || p == PhaseDownload) {
		t.change(func() { s.total = addWork(s.done, n) }) // more than planned: never more than 100%
	}
	s.done = addWork(s.done, n)
	if i == t.cur && (s.done-s.last >= progressStep || s.done >= s.total && (s.done != s.last || s.total != s.lastT)) {
		t.report(i)
	}
}

// grow adds n units to the work of phase p.
func (t *tracker) grow(p Phase, n int64) {
	if t == nil || n == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &t.ph[phaseIndex(p)]
	t.change(func() { s.total = addWork(s.total, n) })
}

// fallback goes back to the download phase when the patches failed and
// the full archive follows: archive more bytes to download, extract
// units of it to extract (the extraction starts over; verify and install
// are still to do), and the patch phase ends where it stopped.
func (t *tracker) fallback(archive, extract int64) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.change(func() {
		dl := &t.ph[phaseIndex(PhaseDownload)]
		dl.total = addWork(dl.total, archive)
		dl.closed = false
		pt := &t.ph[phaseIndex(PhasePatch)]
		pt.total, pt.closed = min(pt.done, pt.total), true
		for _, p := range []Phase{PhaseExtract, PhaseVerify, PhaseInstall} {
			s := &t.ph[phaseIndex(p)]
			s.done, s.last, s.lastT, s.closed = 0, -1, -1, false
		}
		t.ph[phaseIndex(PhaseExtract)].total = extract
		t.ph[phaseIndex(PhaseInstall)].total = 1
	})
	t.cur = phaseIndex(PhaseDownload)
	t.report(t.cur)
}

// finish ends a successful call: the current phase and every phase after
// it with work planned end, each with a last report; the last one has
// OverallDone == OverallTotal.
func (t *tracker) finish() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.known {
		t.known, t.base, t.d0 = true, 0, 0
	}
	if t.cur < 0 {
		return
	}
	last := t.cur
	for j := t.cur + 1; j < numPhases; j++ {
		if !t.ph[j].closed && t.ph[j].w() > 0 {
			last = j
		}
	}
	if last > t.cur {
		t.enterLocked(last)
	}
	t.closeLocked(last)
	if _, w := t.sums(); !t.whole && w > 0 {
		t.report(last) // the overall, known only now (Check)
	}
}

// closeLocked ends phase i with its work done, reporting it unless its
// last report said so already.
func (t *tracker) closeLocked(i int) {
	s := &t.ph[i]
	if s.closed {
		return
	}
	s.closed = true
	s.done = max(s.done, s.total)
	s.total = s.done
	if s.last != s.done || s.lastT != s.total {
		t.report(i)
	}
}

// counter returns a function that counts work done in phase p, telling
// the tracker every 64 KiB (so that a caller with many small writes
// takes its lock rarely); nil when t is nil. It is for one goroutine.
func (t *tracker) counter(p Phase) func(n int64) {
	if t == nil {
		return nil
	}
	var pending int64
	return func(n int64) {
		pending += n
		if pending >= 64<<10 {
			t.add(p, pending)
			pending = 0
		}
	}
}

// reader returns r, counting the bytes read as work of phase p.
func (t *tracker) reader(p Phase, r io.Reader) io.Reader {
	if t == nil {
		return r
	}
	return &countingReader{r: r, count: t.counter(p)}
}

type countingReader struct {
	r     io.Reader
	count func(int64)
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.count(int64(n))
	return n, err
}

// writer returns a writer that counts the bytes written to it as work of
// phase p (io.Discard when t is nil).
func (t *tracker) writer(p Phase) io.Writer {
	if t == nil {
		return io.Discard
	}
	return countingWriter(t.counter(p))
}

type countingWriter func(int64)

func (c countingWriter) Write(b []byte) (int, error) {
	c(int64(len(b)))
	return len(b), nil
}

// treeBytes is the size of the files of the tree m describes.
func treeBytes(m *tarManifest) int64 {
	var n int64
	for i := int32(1); i < m.n; i++ {
		if m.ent(i).kind() == kindReg {
			n += m.fileSize(i)
		}
	}
	return n
}

// patchWork is the tar u's patch plan writes (the PhasePatch work): the
// installed version's tar when it is rebuilt, then each patch's output.
func patchWork(u *Update) int64 {
	if u.Plan.Full {
		return 0
	}
	var n int64
	if u.base.kind != baseCachedTar {
		n += u.base.tarSize
	}
	for _, r := range u.chain {
		n = addWork(n, r.patchMeta.TarSize)
	}
	return n
}

// extractWork is the PhaseExtract work of installing u from its patches
// or, full, from its archive: the bytes of its tar, or of the archive
// when its tar is not signed (the extraction then reads the archive).
func extractWork(u *Update, full bool) int64 {
	size, hash := u.target.tarHash()
	if full && hash == "" {
		return u.archive.Length
	}
	return size
}

// treeWork is the weight of verifying and of installing u in the call's
// work: its tar size (the archive's when unknown).
func treeWork(u *Update) int64 {
	if size, _ := u.target.tarHash(); size > 0 {
		return size
	}
	return u.archive.Length
}

// track returns the progress tracker of the client call under way (nil
// without OnProgress), starting one when none is: Update's covers the
// Check and the Install it makes. Call end when the call is over, with
// whether it succeeded: the call that started the tracker finishes it.
// A call from the OnProgress callback is an error (it would wait for
// itself forever).
func (c *Client) track() (t *tracker, end func(ok bool), err error) {
	if c.prog != nil {
		if c.prog.calling.Load() {
			return nil, nil, errFromProgress
		}
		return c.prog, func(bool) {}, nil
	}
	t = newTracker(c.onProgress)
	c.prog = t
	return t, func(ok bool) {
		if ok {
			t.finish()
		}
		c.prog = nil
	}, nil
}

var errFromProgress = errors.New("a Client method was called from ClientConfig.OnProgress, which must not call the Client: hand the report to another goroutine")
