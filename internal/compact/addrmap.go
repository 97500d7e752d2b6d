package compact

import (
	"slices"
)

// An address map is how the compact format rewrites the references of the
// new executable into the address space of the old one: a bijection of the
// addresses of a ring Z/2^bits (in units of unit bytes), built from a list
// of segments. A segment maps the new addresses [n, n+l) to the old
// addresses [o, o+l); every other new address maps, in order, onto the old
// addresses that no segment covers (the k-th uncovered new address to the
// k-th uncovered old address). Being a bijection whatever the segments,
// it lets the patcher undo the rewriting without knowing anything but the
// rewritten value.

// segment maps new byte addresses [n, n+l) to old ones [o, o+l).
type segment struct {
	n, o, l uint64
}

// seg is a segment in ring units.
type seg struct {
	n, o, l uint64
}

// side is the segments of a map sorted by their address in one space, as
// parallel arrays: start, length, the addresses no segment covers below
// the start (uncov; the total length of the segments before is start -
// uncov), and the segment's start in the other space.
type side struct {
	start, l, uncov, other []uint64
}

func newSide(ss []seg, key func(seg) uint64, other func(seg) uint64) side {
	n := len(ss)
	s := side{start: make([]uint64, n), l: make([]uint64, n), uncov: make([]uint64, n), other: make([]uint64, n)}
	var cum uint64
	for i, g := range ss {
		k := key(g)
		s.start[i], s.l[i], s.uncov[i], s.other[i] = k, g.l, k-cum, other(g)
		cum += g.l
	}
	return s
}

// ringMap is the bijection of Z/2^bits built from segments.
type ringMap struct {
	mask  uint64
	byNew side
	byOld side
	lastN int // cache: the segment the last fwd hit
	lastO int
}

// segments returns the kept segments, sorted by new address.
func (m *ringMap) segments() []seg {
	out := make([]seg, len(m.byNew.start))
	for i := range out {
		out[i] = seg{n: m.byNew.start[i], o: m.byNew.other[i], l: m.byNew.l[i]}
	}
	return out
}

// newRingMap builds the map of segs (byte addresses) in the ring of 2^bits
// units of unit bytes (unit a power of two). A segment whose old and new
// addresses differ by other than a multiple of unit is left out, as is the
// part of a segment that is not whole units, or that wraps around the ring;
// segments that overlap an earlier one (in new, then in old) are left out
// too. The result depends only on segs, bits and unit.
func newRingMap(segs []segment, bits uint, unit uint64) *ringMap {
	m := &ringMap{mask: 1<<bits - 1}
	size := uint64(1) << bits
	ss := make([]seg, 0, len(segs))
	for _, s := range segs {
		if s.l == 0 || (s.o-s.n)%unit != 0 {
			continue
		}
		n := (s.n + unit - 1) / unit
		end := (s.n + s.l) / unit
		if end <= n || s.n+s.l < s.n {
			continue
		}
		o := n + (s.o-s.n)/unit
		l := end - n
		n, o = n&m.mask, o&m.mask
		l = min(l, size-n, size-o)
		ss = append(ss, seg{n: n, o: o, l: l})
	}
	slices.SortStableFunc(ss, func(a, b seg) int { return cmpU64(a.n, b.n) })
	keep := ss[:0]
	var end uint64
	for _, s := range ss {
		if len(keep) > 0 && s.n < end {
			continue
		}
		keep = append(keep, s)
		end = s.n + s.l
	}
	byOld := slices.Clone(keep)
	slices.SortStableFunc(byOld, func(a, b seg) int { return cmpU64(a.o, b.o) })
	kept := byOld[:0]
	end = 0
	for _, s := range byOld {
		if len(kept) > 0 && s.o < end {
			continue
		}
		kept = append(kept, s)
		end = s.o + s.l
	}
	slices.SortFunc(kept, func(a, b seg) int { return cmpU64(a.n, b.n) })
	m.byNew = newSide(kept, func(g seg) uint64 { return g.n }, func(g seg) uint64 { return g.o })
	byOld = slices.Clone(kept)
	slices.SortFunc(byOld, func(a, b seg) int { return cmpU64(a.o, b.o) })
	m.byOld = newSide(byOld, func(g seg) uint64 { return g.o }, func(g seg) uint64 { return g.n })
	return m
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// upper returns the number of elements of a (sorted) that are <= x.
func upper(a []uint64, x uint64) int {
	lo, hi := 0, len(a)
	for lo < hi {
		h := int(uint(lo+hi) >> 1)
		if a[h] <= x {
			lo = h + 1
		} else {
			hi = h
		}
	}
	return lo
}

// apply maps x of the space of from to the space of to; last caches the
// segment of the previous call.
func apply(x uint64, from, to *side, last *int) uint64 {
	if i := *last; i < len(from.start) && x-from.start[i] < from.l[i] {
		return from.other[i] + (x - from.start[i])
	}
	i := upper(from.start, x) - 1
	r := x
	if i >= 0 {
		if x-from.start[i] < from.l[i] {
			*last = i
			return from.other[i] + (x - from.start[i])
		}
		// Rank of x among the addresses no segment covers.
		r = x - (from.start[i] - from.uncov[i] + from.l[i])
	}
	// The r-th uncovered address of the other space: past every segment
	// with at most r uncovered addresses below it.
	j := upper(to.uncov, r)
	if j == 0 {
		return r
	}
	return r + (to.start[j-1] - to.uncov[j-1]) + to.l[j-1]
}

// fwd maps a new address (in units) to the old space.
func (m *ringMap) fwd(x uint64) uint64 {
	return apply(x&m.mask, &m.byNew, &m.byOld, &m.lastN)
}

// inv maps an old address (in units) back to the new space.
func (m *ringMap) inv(y uint64) uint64 {
	return apply(y&m.mask, &m.byOld, &m.byNew, &m.lastO)
}
