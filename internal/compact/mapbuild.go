package compact

import (
	"cmp"
	"encoding/binary"
	"slices"
	"sort"

	"github.com/notsotuf/notsotuf/internal/bsdiff"
	"github.com/notsotuf/notsotuf/internal/exe"
)

// Building a unit's address map. What the rewriting needs is, for every
// reference of new code, the old address of its field (where the matcher
// put the instruction) and the old address of its target (what the old
// instruction there points to). The first comes from the matches: code
// matched with a shift maps with that shift. The second comes from votes:
// each reference of new whose instruction is matched with an old one says
// "this new target was that old target"; the shift most references agree
// on wins. Votes are what keep the map right where bytes alone mislead the
// matcher (look-alike functions and type descriptors).

// vote says that the new address t was the old address t+d.
type vote struct {
	t uint64
	d int64
}

// unitMap returns the segments of u's address map.
func unitMap(u *unit, ops []bsdiff.Op, regions []region, ostar, nstar []byte) []segment {
	srcs := unitSegments(u, ops, regions)
	// Keep the matches' shifts in code only: elsewhere the votes decide.
	var code []segment
	for _, s := range srcs {
		for _, c := range u.nImg.Code {
			lo, hi := max(s.n, c.VA), min(s.n+s.l, c.VA+uint64(c.Size))
			if lo < hi {
				code = append(code, segment{n: lo, o: s.o + (lo - s.n), l: hi - lo})
			}
		}
	}
	code = normalizeSegments(code)

	votes := u.votes(ops, ostar, nstar)
	slices.SortFunc(votes, func(a, b vote) int {
		if c := cmp.Compare(a.t, b.t); c != 0 {
			return c
		}
		return cmp.Compare(a.d, b.d)
	})
	// The winning shift of each target.
	type point struct {
		t uint64
		d int64
	}
	var points []point
	for i := 0; i < len(votes); {
		j := i
		best, bestN := votes[i].d, 0
		for j < len(votes) && votes[j].t == votes[i].t {
			k := j
			for k < len(votes) && votes[k].t == votes[j].t && votes[k].d == votes[j].d {
				k++
			}
			if k-j > bestN {
				best, bestN = votes[j].d, k-j
			}
			j = k
		}
		points = append(points, point{votes[i].t, best})
		i = j
	}
	// A point that the code's shift already maps right costs nothing;
	// the others become segments, runs of equal shift merged.
	shiftAt := func(x uint64) (int64, bool) {
		i := sort.Search(len(code), func(i int) bool { return code[i].n+code[i].l > x })
		if i < len(code) && code[i].n <= x {
			return int64(code[i].o - code[i].n), true
		}
		return 0, false
	}
	var extra []segment
	inCode := func(x uint64) bool {
		_, ok := shiftAt(x)
		return ok
	}
	for i := 0; i < len(points); {
		p := points[i]
		if d, ok := shiftAt(p.t); ok && d == p.d {
			i++
			continue
		}
		// A run of points with the same shift, none of them in code
		// (in code, each stands alone: the bytes between are matched
		// code).
		j := i + 1
		if !inCode(p.t) {
			for j < len(points) && points[j].d == p.d && !inCode(points[j].t) {
				j++
			}
		}
		end := points[j-1].t + 1
		extra = append(extra, segment{n: p.t, o: uint64(int64(p.t) + p.d), l: end - p.t})
		i = j
	}
	return punch(code, extra)
}

// punch returns the segments of base with the segments of over laid on
// top: where they overlap in new, over wins. Overlaps in old are left for
// normalizeSegments.
func punch(base, over []segment) []segment {
	over = normalizeSegments(over)
	var out []segment
	j := 0
	for _, b := range base {
		lo, hi := b.n, b.n+b.l
		for j < len(over) && over[j].n+over[j].l <= lo {
			j++
		}
		for k := j; k < len(over) && over[k].n < hi; k++ {
			o := over[k]
			if o.n > lo {
				out = append(out, segment{n: lo, o: b.o + (lo - b.n), l: o.n - lo})
			}
			lo = max(lo, o.n+o.l)
		}
		if lo < hi {
			out = append(out, segment{n: lo, o: b.o + (lo - b.n), l: hi - lo})
		}
	}
	out = append(out, over...)
	return normalizeSegments(out)
}

// votes lists, for every reference of new code whose instruction the
// matches pair with old bytes, the target of both.
func (u *unit) votes(ops []bsdiff.Op, ostar, nstar []byte) []vote {
	oldAt := func(p, n int64) int64 {
		i := sort.Search(len(ops), func(i int) bool { return ops[i].NewPos+ops[i].AddLen > p })
		if i == len(ops) || ops[i].NewPos > p || p+n > ops[i].NewPos+ops[i].AddLen {
			return -1
		}
		q := p - ops[i].NewPos + ops[i].OldPos
		if q < u.oOff || q+n > u.oOff+u.oLen {
			return -1
		}
		return q
	}
	oldVA := func(q int64) (uint64, bool) {
		va, _, ok := loadAt(u.oImg, q-u.oOff)
		return va, ok
	}
	var vs []vote
	for _, c := range u.nCode {
		sec := nstar[c.off : c.off+c.size]
		switch u.nImg.Arch {
		case exe.AMD64:
			sweepAMD64(sec, func(r ref) {
				q := oldAt(c.off+int64(r.field), 4)
				if q < 0 {
					return
				}
				ova, ok := oldVA(q)
				if !ok {
					return
				}
				e := c.va + uint64(r.end)
				t := uint32(e + uint64(int64(int32(binary.LittleEndian.Uint32(sec[r.field:])))))
				oe := ova + uint64(r.end-r.field)
				ot := uint32(oe + uint64(int64(int32(binary.LittleEndian.Uint32(ostar[q:])))))
				vs = append(vs, vote{t: uint64(t), d: int64(ot) - int64(t)})
			})
		case exe.ARM64:
			sweepARM64(sec, func(kind int, k uint, q0 int) {
				n := int64(4)
				if kind == armPair {
					n = 8
				}
				q := oldAt(c.off+int64(q0), n)
				if q < 0 {
					return
				}
				opc, ok := oldVA(q)
				if !ok {
					return
				}
				okind, ok2, _ := armInsn(ostar[q : q+n])
				if okind != kind || ok2 != k {
					return
				}
				t := armTarget(sec[q0:], kind, k, c.va+uint64(q0))
				ot := armTarget(ostar[q:], kind, k, opc)
				vs = append(vs, vote{t: t, d: int64(ot) - int64(t)})
			})
		}
	}
	return vs
}

// armTarget is the address a reference of kind at b (at address pc)
// points to.
func armTarget(b []byte, kind int, k uint, pc uint64) uint64 {
	switch kind {
	case armBranch:
		x := binary.LittleEndian.Uint32(b)
		imm := int64(int32(x<<6) >> 6)
		return pc + uint64(imm*4)
	default:
		f := armPairField(b, k)
		page := int64(f>>(12-k)) << 43 >> 43 // 21-bit signed
		lo := f & (1<<(12-k) - 1)
		return (pc &^ 0xfff) + uint64(page<<12) + lo<<k
	}
}
