package bsdiff

import (
	"fmt"
	"io"
	"runtime"
)

// The building blocks of Diff, for a caller that matches on one version of
// the bytes (the compact format: references rewritten) and encodes the
// patch with another of the same length.

// Span says that new[NewPos:NewPos+N] equals old[OldPos:OldPos+N].
type Span struct {
	NewPos, OldPos, N int
}

// Pairing is what the tar pre-pass found: Spans, sorted by NewPos, are
// matched directly; Claimed, sorted by OldPos and disjoint, are the old
// bytes they cover, left out of the suffix array.
type Pairing struct {
	Spans, Claimed []Span
}

// Member is the data of a regular file of a tar archive: Size bytes at Off.
type Member struct {
	Name      string
	Off, Size int
}

// TarMembers lists the regular files of the tar archive held in b (nil if
// b is not one).
func TarMembers(b []byte) []Member {
	ms := tarMembers(b)
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = Member{Name: m.name, Off: m.off, Size: m.size}
	}
	return out
}

// PairMembers pairs the members nm of new with the members om of old, as
// the tar pre-pass does: a new member whose data equals an old member's
// (same name, or same content) is matched to it. Members of at most 512
// bytes are left to the suffix array.
func PairMembers(old, new []byte, om, nm []Member) Pairing {
	conv := func(ms []Member) []member {
		var out []member
		for _, m := range ms {
			if m.Size >= minMember && m.Off >= 0 && m.Size >= 0 {
				out = append(out, member{name: m.Name, off: m.Off, size: m.Size})
			}
		}
		return out
	}
	var p Pairing
	spans, claimed := pairLists(old, new, conv(om), conv(nm))
	for _, s := range spans {
		p.Spans = append(p.Spans, Span{NewPos: s.newPos, OldPos: s.oldPos, N: s.n})
	}
	for _, c := range claimed {
		p.Claimed = append(p.Claimed, Span{OldPos: c.oldPos, N: c.n})
	}
	return p
}

// Match computes the control triples of a patch from old to new, as Diff
// does (opts.Pairing replaces the tar pre-pass when set).
func Match(old, new []byte, opts *DiffOptions) ([]Op, error) {
	var o DiffOptions
	if opts != nil {
		o = *opts
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if len(old) > MaxOldSize {
		return nil, fmt.Errorf("bsdiff: old file is %d bytes, more than the %d supported", len(old), MaxOldSize)
	}
	return match(old, new, &o), nil
}

// WriteOptions tunes WriteOps. The zero value is ready to use.
type WriteOptions struct {
	Workers int // 0 means GOMAXPROCS
	// Progress, if set, receives the "compress" phase as
	// DiffOptions.Progress describes it.
	Progress func(phase string, done, total int64)
	// Levels are the bzip2 levels (1-9; 0 means 9) of the control, diff
	// and extra blocks. A patcher's decoder needs about 4 bytes per byte
	// of block (level*100,000 bytes) for each.
	Levels [3]int
}

// WriteOps encodes ops, which must cover new from its start in order (as
// Match returns them, possibly for other bytes of the same lengths), as a
// BSDIFF40 patch from old to new.
func WriteOps(old, new []byte, ops []Op, w io.Writer, opts *WriteOptions) error {
	var o WriteOptions
	if opts != nil {
		o = *opts
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	for i, l := range o.Levels {
		if l == 0 {
			o.Levels[i] = 9
		}
	}
	var at int64
	for i, op := range ops {
		if op.NewPos != at || op.AddLen < 0 || op.CopyLen < 0 || op.OldPos < 0 || op.OldPos+op.AddLen > int64(len(old)) {
			return fmt.Errorf("bsdiff: op %d (%+v) does not fit", i, op)
		}
		at += op.AddLen + op.CopyLen
	}
	if at != int64(len(new)) {
		return fmt.Errorf("bsdiff: ops cover %d of %d new bytes", at, len(new))
	}
	return writePatch(old, new, ops, w, o.Workers, o.Progress, o.Levels)
}

// PairAt is PairMembers for a new tar read through r: new members are
// streamed, never held in memory.
func PairAt(old []byte, om []Member, r io.ReaderAt, nm []Member) (Pairing, error) {
	conv := func(ms []Member) []member {
		var out []member
		for _, m := range ms {
			if m.Size >= minMember && m.Off >= 0 && m.Size >= 0 {
				out = append(out, member{name: m.Name, off: m.Off, size: m.Size})
			}
		}
		return out
	}
	var p Pairing
	spans, claimed, err := pairAt(old, conv(om), r, conv(nm))
	if err != nil {
		return p, err
	}
	for _, s := range spans {
		p.Spans = append(p.Spans, Span{NewPos: s.newPos, OldPos: s.oldPos, N: s.n})
	}
	for _, c := range claimed {
		p.Claimed = append(p.Claimed, Span{OldPos: c.oldPos, N: c.n})
	}
	return p, nil
}
