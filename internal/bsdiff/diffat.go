package bsdiff

import (
	"archive/tar"
	"bytes"
	"fmt"
	"hash/maphash"
	"io"
	"runtime"
	"sort"
)

// DiffAt is Diff for files read through io.ReaderAt. Old is read into
// memory; of new, only what the tar pre-pass does not pair with old: a new
// member equal to an old one (found by streaming it against old) is never
// loaded, nor read again, since its diff is zeros. On a bundle whose
// members mostly did not change, that saves nearly all of new's size.
func DiffAt(old io.ReaderAt, oldSize int64, new io.ReaderAt, newSize int64, w io.Writer, opts *DiffOptions) error {
	var o DiffOptions
	if opts != nil {
		o = *opts
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if oldSize > MaxOldSize {
		return fmt.Errorf("bsdiff: old file is %d bytes, more than the %d supported", oldSize, MaxOldSize)
	}
	if oldSize < 0 || newSize < 0 {
		return fmt.Errorf("bsdiff: negative file size")
	}
	ob := make([]byte, oldSize)
	if err := readAt(old, ob, 0); err != nil {
		return fmt.Errorf("reading old file: %w", err)
	}
	var spans []span
	if om := tarMembers(ob); len(om) > 0 {
		if nm := tarMembersAt(new, newSize); len(nm) > 0 {
			var claimed []span
			var err error
			spans, claimed, err = pairAt(ob, om, new, nm)
			if err != nil {
				return err
			}
			p := &Pairing{}
			for _, s := range spans {
				p.Spans = append(p.Spans, Span{NewPos: s.newPos, OldPos: s.oldPos, N: s.n})
			}
			for _, c := range claimed {
				p.Claimed = append(p.Claimed, Span{OldPos: c.oldPos, N: c.n})
			}
			o.Pairing = p
		}
	}
	nb, err := loadNew(new, newSize, spans)
	if err != nil {
		return err
	}
	ops := match(ob, nb, &o)
	return writePatch(ob, nb, ops, w, o.Workers, o.Progress, levels9)
}

// loadNew reads new into memory but for the spans (sorted by newPos),
// which stay zeros. The buffer is a fresh allocation, so the pages of the
// spans, which nothing reads, are never touched and take no memory.
func loadNew(new io.ReaderAt, newSize int64, spans []span) ([]byte, error) {
	nb := make([]byte, newSize)
	at := 0
	for _, s := range append(spans, span{newPos: int(newSize)}) {
		if s.newPos > at {
			if err := readAt(new, nb[at:s.newPos], int64(at)); err != nil {
				return nil, fmt.Errorf("reading new file: %w", err)
			}
		}
		at = max(at, s.newPos+s.n)
	}
	return nb, nil
}

func readAt(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// tarMembersAt is tarMembers for a tar read through r.
func tarMembersAt(r io.ReaderAt, size int64) []member {
	if size < 1024 {
		return nil
	}
	sr := io.NewSectionReader(r, 0, size)
	tr := tar.NewReader(sr)
	var ms []member
	for {
		h, err := tr.Next()
		if err != nil {
			return ms // io.EOF, or trailing garbage: keep what parsed
		}
		if h.Typeflag == tar.TypeGNUSparse {
			return nil
		}
		if h.Typeflag != tar.TypeReg || h.Size < minMember {
			continue
		}
		off, err := sr.Seek(0, io.SeekCurrent)
		if err != nil || h.Size > size-off {
			return ms
		}
		ms = append(ms, member{name: h.Name, off: int(off), size: int(h.Size)})
	}
}

// pairAt is pairLists for a new tar read through r: each new member is
// streamed once, hashed and compared with the old member of its name, and
// once more to confirm a match by content under another name.
func pairAt(old []byte, om []member, r io.ReaderAt, nm []member) (spans, claimed []span, err error) {
	byName, byContent, seed := indexMembers(old, om)
	buf := make([]byte, 256<<10)
	used := make(map[int]bool)
	for _, m := range nm {
		same, hasName := byName[m.name]
		hasName = hasName && same.size == m.size
		var h maphash.Hash
		h.SetSeed(seed)
		for at := 0; at < m.size; {
			k := min(len(buf), m.size-at)
			if err := readAt(r, buf[:k], int64(m.off+at)); err != nil {
				return nil, nil, fmt.Errorf("reading new file: %w", err)
			}
			h.Write(buf[:k])
			if hasName && !bytes.Equal(buf[:k], old[same.off+at:same.off+at+k]) {
				hasName = false
			}
			at += k
		}
		o := same
		if !hasName {
			var ok bool
			o, ok = byContent[contentKey{m.size, h.Sum64()}]
			if !ok {
				continue
			}
			// Confirm, byte for byte.
			equal := true
			for at := 0; at < m.size && equal; {
				k := min(len(buf), m.size-at)
				if err := readAt(r, buf[:k], int64(m.off+at)); err != nil {
					return nil, nil, fmt.Errorf("reading new file: %w", err)
				}
				equal = bytes.Equal(buf[:k], old[o.off+at:o.off+at+k])
				at += k
			}
			if !equal {
				continue
			}
		}
		spans = append(spans, span{newPos: m.off, oldPos: o.off, n: m.size})
		if !used[o.off] {
			used[o.off] = true
			claimed = append(claimed, span{oldPos: o.off, n: o.size})
		}
	}
	sort.Slice(claimed, func(i, j int) bool { return claimed[i].oldPos < claimed[j].oldPos })
	return spans, claimed, nil
}
