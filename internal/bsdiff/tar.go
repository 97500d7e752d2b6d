package bsdiff

import (
	"archive/tar"
	"bytes"
	"hash/maphash"
	"io"
	"sort"
)

// A tar-aware pre-pass: when old and new are both tar archives, the data of
// a new member that is byte-identical to an old member (same path, or same
// content under another path) is matched directly, and only the rest of old
// goes into the suffix array. The patch stays a plain BSDIFF40 patch; the
// pre-pass only decides where the matcher looks.

// span maps new[newPos:newPos+n] to old[oldPos:oldPos+n].
type span struct {
	newPos, oldPos, n int
}

// member is the data of one regular file in a tar archive.
type member struct {
	name      string
	off, size int
}

// minMember is the smallest member worth pairing: below it, the suffix array
// finds the match anyway.
const minMember = 512

// tarMembers lists the regular files of a tar archive held in b, or returns
// nil if b is not a tar archive (or uses sparse files).
func tarMembers(b []byte) []member {
	if len(b) < 1024 {
		return nil
	}
	r := bytes.NewReader(b)
	tr := tar.NewReader(r)
	var ms []member
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return ms
		}
		if err != nil {
			return ms // keep what parsed: trailing garbage is harmless here
		}
		if h.Typeflag == tar.TypeGNUSparse {
			return nil
		}
		if h.Typeflag != tar.TypeReg || h.Size < minMember {
			continue
		}
		off := len(b) - r.Len()
		if h.Size > int64(r.Len()) {
			return ms
		}
		ms = append(ms, member{name: h.Name, off: off, size: int(h.Size)})
	}
}

// pairMembers finds the new members whose data equals an old member's and
// returns the spans (sorted by newPos) and which old bytes they cover.
func pairMembers(old, new []byte) (spans []span, claimed []span) {
	om := tarMembers(old)
	if len(om) == 0 {
		return nil, nil
	}
	nm := tarMembers(new)
	if len(nm) == 0 {
		return nil, nil
	}
	return pairLists(old, new, om, nm)
}

// contentKey finds an old member by its size and content hash.
type contentKey struct {
	size int
	sum  uint64
}

// indexMembers indexes the members om of old by name and by content (with
// the hash seed the lookups must use).
func indexMembers(old []byte, om []member) (byName map[string]member, byContent map[contentKey]member, seed maphash.Seed) {
	byName = make(map[string]member, len(om))
	byContent = make(map[contentKey]member, len(om))
	seed = maphash.MakeSeed()
	for _, m := range om {
		byName[m.name] = m
		byContent[contentKey{m.size, maphash.Bytes(seed, old[m.off:m.off+m.size])}] = m
	}
	return byName, byContent, seed
}

// pairLists pairs the members nm of new with the members om of old.
func pairLists(old, new []byte, om, nm []member) (spans []span, claimed []span) {
	byName, byContent, seed := indexMembers(old, om)
	used := make(map[int]bool)
	for _, m := range nm {
		data := new[m.off : m.off+m.size]
		o, ok := byName[m.name]
		if !ok || o.size != m.size || !bytes.Equal(old[o.off:o.off+o.size], data) {
			o, ok = byContent[contentKey{m.size, maphash.Bytes(seed, data)}]
			if !ok || !bytes.Equal(old[o.off:o.off+o.size], data) {
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
	return spans, claimed
}
