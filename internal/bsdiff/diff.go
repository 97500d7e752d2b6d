// Package bsdiff reads and writes BSDIFF40 patches, the format of bsdiff 4.x
// and Python's bsdiff4.
//
// A patch is the 8 bytes "BSDIFF40", three int64 in sign-magnitude little
// endian (length of the compressed control block, length of the compressed
// diff block, size of the new file), then three bzip2 streams: the control
// block (triples add, copy, seek), the diff block (bytes added to old bytes)
// and the extra block (bytes copied verbatim). Applying a triple adds add
// bytes of the diff block to the old file at the current old position, copies
// copy bytes of the extra block, then moves the old position by seek.
package bsdiff

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"runtime"
	"sort"
	"sync"

	"github.com/notsotuf/notsotuf/internal/bsdiff/bzip2"
	"github.com/notsotuf/notsotuf/internal/bsdiff/sais"
)

// Magic starts every BSDIFF40 patch.
const Magic = "BSDIFF40"

// MaxOldSize is the largest old file Diff accepts (its suffix array uses
// 32-bit offsets).
const MaxOldSize = sais.MaxLen

// DiffOptions tunes Diff. The zero value is ready to use.
type DiffOptions struct {
	// Workers is the number of goroutines; 0 means runtime.GOMAXPROCS(0).
	Workers int
	// Progress, if set, is called as Diff goes through its phases, with
	// the phase and the bytes of it done so far and in all: "index"
	// (indexing old: called at its start and its end only), "match"
	// (matching new against old, every chunk) and "compress" (new bytes
	// fed to the compressor, every 4 MiB and at the end). Calls come from
	// one goroutine at a time; each phase ends with done == total.
	Progress func(phase string, done, total int64)

	// Pairing, when not nil, replaces the tar pre-pass: its spans are
	// matched directly and the old bytes it claims stay out of the suffix
	// array (see PairMembers).
	Pairing *Pairing

	chunkSize int // unit of parallel matching; 0 means defaultChunk
}

// Op is one control triple in absolute positions: add AddLen bytes of the
// diff block to old[OldPos:], at new[NewPos:], then copy CopyLen bytes.
type Op struct {
	NewPos, OldPos  int64
	AddLen, CopyLen int64
	// Same says that new equals old over the add: its diff bytes are
	// zeros, written without reading either file.
	Same bool
}

type op = Op

// Diff writes a BSDIFF40 patch that turns old into new.
//
// The matcher is bsdiff's greedy one over a suffix array of old, run on
// chunks of new in parallel. When old and new are both tar archives, a new
// member whose data equals an old member's (same path, or same content) is
// matched to it directly and that old member is left out of the suffix
// array, which then covers only what changed.
func Diff(old, new []byte, w io.Writer, opts *DiffOptions) error {
	var o DiffOptions
	if opts != nil {
		o = *opts
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if len(old) > MaxOldSize {
		return fmt.Errorf("bsdiff: old file is %d bytes, more than the %d supported", len(old), MaxOldSize)
	}
	ops := match(old, new, &o)
	return writePatch(old, new, ops, w, o.Workers, o.Progress, levels9)
}

// levels9 is bzip2 level 9 for the control, diff and extra blocks, as
// bsdiff and bsdiff4 write them.
var levels9 = [3]int{9, 9, 9}

// defaultChunk is the unit of parallel matching in new.
const defaultChunk = 4 << 20

// match computes the control triples covering all of new. The spans that
// the tar pre-pass paired become triples of their own, whose diff is all
// zeros (Op.Same): the matcher runs only on the rest, in chunks, and never
// reads new inside a span, which therefore need not be loaded (see DiffAt).
func match(old, new []byte, o *DiffOptions) []op {
	if len(new) == 0 {
		return nil
	}
	if o.Progress != nil {
		o.Progress("index", 0, int64(len(old)))
	}
	m := newMatcher(old, new, o.Pairing)
	if o.Progress != nil {
		o.Progress("index", int64(len(old)), int64(len(old)))
		o.Progress("match", 0, int64(len(new)))
	}
	chunkSize := o.chunkSize
	if chunkSize <= 0 {
		chunkSize = defaultChunk
	}
	// The pieces of new, in order: spans, and chunks of what lies between.
	type piece struct {
		start, end int
		span       bool
		oldPos     int
	}
	var pieces []piece
	addRange := func(start, end int) {
		for ; start < end; start += chunkSize {
			pieces = append(pieces, piece{start: start, end: min(start+chunkSize, end)})
		}
	}
	at := 0
	for _, sp := range m.spans {
		if sp.newPos < at || sp.n <= 0 {
			continue
		}
		addRange(at, sp.newPos)
		pieces = append(pieces, piece{start: sp.newPos, end: sp.newPos + sp.n, span: true, oldPos: sp.oldPos})
		at = sp.newPos + sp.n
	}
	addRange(at, len(new))
	results := make([][]op, len(pieces))
	next := make(chan int, len(pieces))
	for i := range pieces {
		next <- i
	}
	close(next)
	var mu sync.Mutex
	var done int64
	var wg sync.WaitGroup
	for range min(o.Workers, len(pieces)) {
		wg.Go(func() {
			for i := range next {
				p := pieces[i]
				if p.span {
					results[i] = []op{{NewPos: int64(p.start), OldPos: int64(p.oldPos), AddLen: int64(p.end - p.start), Same: true}}
				} else {
					results[i] = m.diffRange(new, p.start, p.end)
				}
				if o.Progress != nil {
					mu.Lock()
					done += int64(p.end - p.start)
					o.Progress("match", done, int64(len(new)))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	n := 0
	for _, r := range results {
		n += len(r)
	}
	ops := make([]op, 0, n)
	for _, r := range results {
		ops = append(ops, r...)
	}
	return ops
}

// matcher finds long matches of new in old through a suffix array of old,
// or of the part of old that the tar pre-pass did not pair.
type matcher struct {
	old  []byte
	text []byte // what the suffix array indexes: old, or old minus claimed members
	sa   []int32
	// bucket[k] is the first index of sa whose suffix begins with the two
	// bytes k>>8, k&0xff or sorts after them; bucket[65536] = len(sa).
	bucket []int32
	pieces []piece // text to old offsets; nil when text is old
	spans  []span  // direct matches from the tar pre-pass, by newPos
}

// piece says that text[textPos:] continues old[oldPos:] up to the next piece.
type piece struct{ textPos, oldPos int }

func newMatcher(old, new []byte, p *Pairing) *matcher {
	m := &matcher{old: old, text: old}
	var claimed []span
	if p != nil {
		for _, s := range p.Spans {
			m.spans = append(m.spans, span{newPos: s.NewPos, oldPos: s.OldPos, n: s.N})
		}
		for _, c := range p.Claimed {
			claimed = append(claimed, span{newPos: c.NewPos, oldPos: c.OldPos, n: c.N})
		}
	} else {
		m.spans, claimed = pairMembers(old, new)
	}
	if len(claimed) > 0 {
		free := len(old)
		for _, c := range claimed {
			free -= c.n
		}
		m.text = make([]byte, 0, free)
		at := 0
		for _, c := range append(claimed, span{oldPos: len(old)}) {
			if c.oldPos > at {
				m.pieces = append(m.pieces, piece{textPos: len(m.text), oldPos: at})
				m.text = append(m.text, old[at:c.oldPos]...)
			}
			at = c.oldPos + c.n
		}
	}
	text := m.text
	m.sa = make([]int32, len(text))
	sais.Build(text, m.sa)
	m.bucket = make([]int32, 65537)
	// Count suffixes by their first two bytes; a one-byte suffix sorts
	// first among those starting with its byte.
	cnt := make([]int32, 65536)
	for i := 0; i+1 < len(text); i++ {
		cnt[int(text[i])<<8|int(text[i+1])]++
	}
	if len(text) > 0 {
		cnt[int(text[len(text)-1])<<8]++
	}
	var sum int32
	for k := range cnt {
		m.bucket[k] = sum
		sum += cnt[k]
	}
	m.bucket[65536] = sum
	return m
}

// oldPos maps an offset of text to old.
func (m *matcher) oldPos(t int) int {
	if m.pieces == nil {
		return t
	}
	i := sort.Search(len(m.pieces), func(i int) bool { return m.pieces[i].textPos > t }) - 1
	return m.pieces[i].oldPos + t - m.pieces[i].textPos
}

// find returns a long match of new[scan:end] in old: the pre-pass's pairing
// if scan lies in a paired member, else search's.
func (m *matcher) find(new []byte, scan, end int) (pos, n int) {
	if len(m.spans) > 0 {
		i := sort.Search(len(m.spans), func(i int) bool { return m.spans[i].newPos > scan }) - 1
		if i >= 0 && scan < m.spans[i].newPos+m.spans[i].n {
			p := m.spans[i].oldPos + scan - m.spans[i].newPos
			return p, matchLen(m.old[p:], new[scan:end])
		}
	}
	pos, n = m.search(new[scan:end])
	if m.pieces != nil {
		pos = m.oldPos(pos)
		n = matchLen(m.old[pos:], new[scan:end])
	}
	return pos, n
}

// matchLen is the length of the common prefix of a and b.
func matchLen(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+8 <= n; i += 8 {
		x := binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:])
		if x != 0 {
			return i + bits.TrailingZeros64(x)/8
		}
	}
	for ; i < n && a[i] == b[i]; i++ {
	}
	return i
}

// search returns the position and length of a longest match of target in
// old, by binary search over the suffix array. Unlike bsdiff's search, a
// suffix that is a proper prefix of target sorts before it, and the common
// prefix of both bounds is skipped at each step, so long runs of equal
// bytes cost O(log n + match length) instead of a quadratic scan.
func (m *matcher) search(target []byte) (pos, n int) {
	old, sa := m.text, m.sa
	if len(sa) == 0 || len(target) == 0 {
		return 0, 0
	}
	st, en := 0, len(sa)-1
	if len(target) >= 2 {
		k := int(target[0])<<8 | int(target[1])
		lo, hi := int(m.bucket[k]), int(m.bucket[k+1])
		if lo < hi {
			st, en = lo, hi-1
		}
	}
	// cmp returns the common prefix length of suffix i and target, knowing
	// the first skip bytes are equal, and whether suffix i < target.
	cmp := func(i, skip int) (int, bool) {
		a := old[sa[i]:]
		k := skip + matchLen(a[skip:], target[skip:])
		if k == len(target) {
			return k, false
		}
		return k, k == len(a) || a[k] < target[k]
	}
	lSt, less := cmp(st, 0)
	if !less {
		return int(sa[st]), lSt
	}
	lEn, less := cmp(en, 0)
	if less {
		return int(sa[en]), lEn
	}
	for en-st > 1 {
		x := st + (en-st)/2
		l, less := cmp(x, min(lSt, lEn))
		if less {
			st, lSt = x, l
		} else {
			en, lEn = x, l
		}
	}
	if lSt > lEn {
		return int(sa[st]), lSt
	}
	return int(sa[en]), lEn
}

// diffRange runs bsdiff's greedy matcher over new[start:end].
func (m *matcher) diffRange(new []byte, start, end int) []op {
	old := m.old
	oldSize := len(old)
	var ops []op
	scan, n, pos := start, 0, 0
	lastScan, lastPos, lastOffset := start, min(start, oldSize), 0
	lastOffset = lastPos - lastScan
	at := func(i int) bool { // old[i+lastOffset] == new[i]
		j := i + lastOffset
		return j >= 0 && j < oldSize && old[j] == new[i]
	}
	for scan < end {
		oldScore := 0
		scan += n
		scsc := scan
		for ; scan < end; scan++ {
			pos, n = m.find(new, scan, end)
			for ; scsc < scan+n; scsc++ {
				if at(scsc) {
					oldScore++
				}
			}
			if (n == oldScore && n != 0) || n > oldScore+8 {
				break
			}
			if at(scan) {
				oldScore--
			}
		}
		if n == oldScore && scan != end {
			continue
		}
		// Extend the previous match forward and this one backward.
		s, sf, lenf := 0, 0, 0
		for i := 0; lastScan+i < scan && lastPos+i < oldSize; {
			if old[lastPos+i] == new[lastScan+i] {
				s++
			}
			i++
			if s*2-i > sf*2-lenf {
				sf, lenf = s, i
			}
		}
		lenb := 0
		if scan < end {
			s, sb := 0, 0
			for i := 1; scan >= lastScan+i && pos >= i; i++ {
				if old[pos-i] == new[scan-i] {
					s++
				}
				if s*2-i > sb*2-lenb {
					sb, lenb = s, i
				}
			}
		}
		if lastScan+lenf > scan-lenb {
			overlap := (lastScan + lenf) - (scan - lenb)
			s, ss, lens := 0, 0, 0
			for i := range overlap {
				if new[lastScan+lenf-overlap+i] == old[lastPos+lenf-overlap+i] {
					s++
				}
				if new[scan-lenb+i] == old[pos-lenb+i] {
					s--
				}
				if s > ss {
					ss, lens = s, i+1
				}
			}
			lenf += lens - overlap
			lenb -= lens
		}
		ops = append(ops, op{
			NewPos:  int64(lastScan),
			OldPos:  int64(lastPos),
			AddLen:  int64(lenf),
			CopyLen: int64((scan - lenb) - (lastScan + lenf)),
		})
		lastScan = scan - lenb
		lastPos = pos - lenb
		lastOffset = pos - scan
	}
	return ops
}

// writePatch encodes ops as a BSDIFF40 patch.
func writePatch(old, new []byte, ops []op, w io.Writer, workers int, progress func(string, int64, int64), levels [3]int) error {
	// One block after the other, each on all workers: at most workers
	// block encoders (about 13 MB each) are alive at a time.
	var ctrl, diff, extra buffer
	fed := &feedProgress{fn: progress, total: int64(len(new))}
	fed.report()
	if err := writeCtrl(&ctrl, ops, workers, levels[0]); err != nil {
		return err
	}
	if err := writeDiff(&diff, old, new, ops, workers, fed, levels[1]); err != nil {
		return err
	}
	if err := writeExtra(&extra, new, ops, workers, fed, levels[2]); err != nil {
		return err
	}
	fed.end()
	var hdr [32]byte
	copy(hdr[:], Magic)
	putInt(hdr[8:], int64(len(ctrl.b)))
	putInt(hdr[16:], int64(len(diff.b)))
	putInt(hdr[24:], int64(len(new)))
	for _, b := range [][]byte{hdr[:], ctrl.b, diff.b, extra.b} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// feedProgress reports the "compress" phase: the bytes of the diff and
// extra blocks (together, the size of new) given to the compressor, every
// 4 MiB. Its methods do nothing when fn is nil.
type feedProgress struct {
	fn                func(phase string, done, total int64)
	done, last, total int64
}

func (p *feedProgress) add(n int64) {
	p.done += n
	if p.done-p.last >= 4<<20 {
		p.report()
	}
}

func (p *feedProgress) report() {
	if p.fn != nil {
		p.last = p.done
		p.fn("compress", p.done, p.total)
	}
}

func (p *feedProgress) end() {
	p.done = p.total
	p.report()
}

// buffer collects a compressed block: the header needs the lengths of the
// control and diff blocks before they are written.
type buffer struct{ b []byte }

func (c *buffer) Write(p []byte) (int, error) {
	c.b = append(c.b, p...)
	return len(p), nil
}

func writeCtrl(w io.Writer, ops []op, workers, level int) error {
	zw := bzip2.NewWriterLevel(w, workers, level)
	buf := make([]byte, 0, 24*1024)
	for i, o := range ops {
		seek := int64(0)
		if i+1 < len(ops) {
			seek = ops[i+1].OldPos - (o.OldPos + o.AddLen)
		}
		var t [24]byte
		putInt(t[0:], o.AddLen)
		putInt(t[8:], o.CopyLen)
		putInt(t[16:], seek)
		buf = append(buf, t[:]...)
		if len(buf) == cap(buf) {
			if _, err := zw.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	if _, err := zw.Write(buf); err != nil {
		return err
	}
	return zw.Close()
}

func writeDiff(w io.Writer, old, new []byte, ops []op, workers int, fed *feedProgress, level int) error {
	zw := bzip2.NewWriterLevel(w, workers, level)
	buf := make([]byte, 64*1024)
	for _, o := range ops {
		np, op, n := o.NewPos, o.OldPos, o.AddLen
		if o.Same {
			clear(buf)
			for n > 0 {
				k := min(n, int64(len(buf)))
				if _, err := zw.Write(buf[:k]); err != nil {
					return err
				}
				fed.add(k)
				n -= k
			}
			continue
		}
		for n > 0 {
			k := min(n, int64(len(buf)))
			b := buf[:k]
			nb := new[np : np+k]
			ob := old[op : op+k]
			for i := range b {
				b[i] = nb[i] - ob[i]
			}
			if _, err := zw.Write(b); err != nil {
				return err
			}
			fed.add(k)
			np += k
			op += k
			n -= k
		}
	}
	return zw.Close()
}

func writeExtra(w io.Writer, new []byte, ops []op, workers int, fed *feedProgress, level int) error {
	zw := bzip2.NewWriterLevel(w, workers, level)
	for _, o := range ops {
		s := o.NewPos + o.AddLen
		if _, err := zw.Write(new[s : s+o.CopyLen]); err != nil {
			return err
		}
		fed.add(o.CopyLen)
	}
	return zw.Close()
}

// putInt writes x as bsdiff's sign-magnitude little-endian int64.
func putInt(b []byte, x int64) {
	u := uint64(x)
	if x < 0 {
		u = uint64(-x) | 1<<63
	}
	binary.LittleEndian.PutUint64(b, u)
}

// getInt reads bsdiff's sign-magnitude little-endian int64 (-0 reads as 0).
func getInt(b []byte) int64 {
	u := binary.LittleEndian.Uint64(b)
	x := int64(u &^ (1 << 63))
	if u&(1<<63) != 0 {
		x = -x
	}
	return x
}
