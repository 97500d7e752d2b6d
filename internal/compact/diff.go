package compact

import (
	"archive/tar"
	"bytes"
	"cmp"
	"compress/zlib"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/notsotuf/notsotuf/internal/bsdiff"
	"github.com/notsotuf/notsotuf/internal/exe"
	"github.com/notsotuf/notsotuf/internal/flate"
)

// Options tunes Diff. The zero value is ready to use.
type Options struct {
	// Workers bounds the goroutines; 0 means GOMAXPROCS.
	Workers int
	// Progress, if set, receives the phases of the BSDIFF40 part between
	// old* and new*, as bsdiff.DiffOptions.Progress describes them.
	Progress func(phase string, done, total int64)
	// Trace, if set, receives a line per executable saying what was
	// rewritten and what it gained (for tests and benchmarks).
	Trace func(format string, args ...any)
}

// unit is an executable of old and new (the same tar member, or both whole
// files) that the differ rewrites.
type unit struct {
	name       string
	oOff, oLen int64 // in old (and old*)
	nOff, nLen int64 // in new
	oImg, nImg *exe.Image
	zlib       []zpair

	nStart, nEnd int64 // the member in new*
	mapIndex     int   // -1 when the code is not rewritten
	oCode, nCode []codeSec
}

// zpair is a compressed section present in both executables.
type zpair struct {
	o, n   exe.Zlib // offsets relative to the member
	oStar  int64    // offset of the decompressed old section in old*; -1 if unusable
	region int      // index of its region in new*; -1 if kept compressed
}

// codeSec is a code section in old* or new*, with the field values that
// neutralize replaced.
type codeSec struct {
	off, size int64
	va        uint64
	saved     []uint32
}

// Diff writes a compact patch that turns old (oldSize bytes) into new
// (newSize bytes). Executables found in both (the same member of two tar
// archives, or the two files themselves) have their compressed debug
// sections decompressed and their code references rewritten; everything is
// then matched and encoded as BSDIFF40 is. Old and new are read into memory
// once, with the decompressed sections.
func Diff(old io.ReaderAt, oldSize int64, new io.ReaderAt, newSize int64, w io.Writer, opts *Options) error {
	var o Options
	if opts != nil {
		o = *opts
	}
	trace := o.Trace
	if trace == nil {
		trace = func(string, ...any) {}
	}
	if oldSize < 0 || newSize < 0 || oldSize > maxSize || newSize > maxSize {
		return fmt.Errorf("compact: file sizes %d and %d out of range", oldSize, newSize)
	}
	om, nm := tarMembersAt(old, oldSize), tarMembersAt(new, newSize)
	units := findUnits(old, oldSize, new, newSize, om, nm)

	// old*: old, then the decompressed sections.
	var extra int64
	for _, u := range units {
		for i := range u.zlib {
			extra += u.zlib[i].o.USize
		}
	}
	if oldSize+extra > bsdiff.MaxOldSize {
		// Too big for the suffix array: no decompressed sections.
		for _, u := range units {
			u.zlib = nil
		}
		extra = 0
	}
	ostar := make([]byte, oldSize, oldSize+extra)
	if err := readFull(old, ostar, 0); err != nil {
		return fmt.Errorf("reading old file: %w", err)
	}
	var exps []expansion
	for _, u := range units {
		for i := range u.zlib {
			z := &u.zlib[i]
			z.oStar = -1
			at := int64(len(ostar))
			out, used, err := inflateTo(ostar, ostar[u.oOff+z.o.Off:u.oOff+z.o.Off+z.o.Size], z.o.USize)
			if err != nil {
				trace("%s: old %s does not inflate (%v): kept compressed", u.name, z.o.Name, err)
				continue
			}
			ostar = out
			z.oStar = at
			z.o.Size = used
		}
	}

	// Members equal in both are paired directly, as bsdiff's tar pre-pass
	// does; they are streamed against old, and never loaded.
	var pairing *bsdiff.Pairing
	if om != nil && nm != nil {
		inUnit := map[string]bool{}
		for _, u := range units {
			inUnit[u.name] = true
		}
		var rest []bsdiff.Member
		for _, m := range nm {
			if !inUnit[m.Name] {
				rest = append(rest, m)
			}
		}
		p, err := bsdiff.PairAt(ostar[:oldSize], om, new, rest)
		if err != nil {
			return err
		}
		pairing = &p
	}

	// new*: new with its decompressed sections in place.
	var skip []bsdiff.Span
	if pairing != nil {
		skip = pairing.Spans
	}
	nstar, regions, err := buildNewStar(new, newSize, units, skip, trace)
	if err != nil {
		return err
	}
	if pairing != nil {
		for i := range pairing.Spans {
			s := &pairing.Spans[i]
			p, ok := newStarPos(regions, int64(s.NewPos))
			if !ok {
				return errors.New("compact: internal error: a paired member in a decompressed section")
			}
			s.NewPos = int(p)
		}
	}
	// Drop the old sections whose new one stayed compressed, and list the
	// expansions.
	ostar, exps = compactOldStar(ostar, oldSize, units)

	// Code sections, in old* and new*.
	for _, u := range units {
		u.mapIndex = -1
		for _, c := range u.oImg.Code {
			u.oCode = append(u.oCode, codeSec{off: u.oOff + c.Off, size: c.Size, va: c.VA})
		}
		for _, c := range u.nImg.Code {
			if p, ok := newStarPos(regions, u.nOff+c.Off); ok {
				u.nCode = append(u.nCode, codeSec{off: p, size: c.Size, va: c.VA})
			}
		}
		for i := range u.oCode {
			neutralize(u.oImg.Arch, ostar, &u.oCode[i])
		}
		for i := range u.nCode {
			neutralize(u.nImg.Arch, nstar, &u.nCode[i])
		}
	}

	// Match the neutralized files.
	ops, err := bsdiff.Match(ostar, nstar, &bsdiff.DiffOptions{Workers: o.Workers, Progress: o.Progress, Pairing: pairing})
	if err != nil {
		return err
	}

	// Restore the fields, then rewrite new's where it pays.
	var maps [][]segment
	for _, u := range units {
		for i := range u.oCode {
			restore(u.oImg.Arch, ostar, &u.oCode[i])
		}
		for i := range u.nCode {
			restore(u.nImg.Arch, nstar, &u.nCode[i])
		}
		if len(u.nCode) == 0 || len(u.oCode) == 0 {
			continue
		}
		segs := unitMap(u, ops, regions, ostar, nstar)
		cm := &codeMaps{segs: segs}
		raw, proj, refs := u.evaluate(ostar, nstar, ops, cm)
		gain := proj - raw
		use := 4*gain > 3*len(segs)
		trace("%s: %s %s, %d references, %d segments: %d equal to old as they are, %d rewritten (use %v)",
			u.name, u.nImg.Kind, u.nImg.Arch, refs, len(segs), raw, proj, use)
		if !use {
			continue
		}
		u.mapIndex = len(maps)
		maps = append(maps, segs)
		for _, c := range u.nCode {
			b := nstar[c.off : c.off+c.size]
			switch u.nImg.Arch {
			case exe.AMD64:
				forwardAMD64(b, c.va, cm.amd64())
			case exe.ARM64:
				forwardARM64(b, c.va, cm)
			}
			kind := byte(kindAMD64)
			if u.nImg.Arch == exe.ARM64 {
				kind = kindARM64
			}
			regions = append(regions, region{Kind: kind, Start: c.off, Len: c.size, VA: c.va, Map: u.mapIndex})
		}
	}
	slices.SortFunc(regions, func(a, b region) int { return cmp.Compare(a.Start, b.Start) })

	h := &header{OldSize: oldSize, NewSize: newSize, InnerSize: int64(len(nstar)), Exps: exps, Maps: maps, Regions: regions}
	hb, err := h.encode()
	if err != nil {
		return err
	}
	var fixed [12]byte
	copy(fixed[:], Magic)
	binary.LittleEndian.PutUint32(fixed[8:], uint32(len(hb)))
	if _, err := w.Write(fixed[:]); err != nil {
		return err
	}
	if _, err := w.Write(hb); err != nil {
		return err
	}
	// bzip2 levels: the diff block, mostly zeros, compresses best in small
	// blocks (level 1: gopls 1.92 against 1.97 MB at level 9); the control
	// block as well at level 3 as at 9; the extra block, new bytes, best at
	// 9. Smaller blocks also spare the patcher's memory (its decoders
	// hold about 4 bytes per byte of block: 5.2 MiB instead of 10.8).
	return bsdiff.WriteOps(ostar, nstar, ops, w, &bsdiff.WriteOptions{Workers: o.Workers, Progress: o.Progress, Levels: innerLevels})
}

// innerLevels are the bzip2 levels of the control, diff and extra blocks
// of the BSDIFF40 part.
var innerLevels = [3]int{3, 1, 9}

func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// inflateTo appends to dst the zlib stream at the start of z, which must
// inflate to exactly usize bytes; it returns the stream's length in z
// (sections may be padded after it).
func inflateTo(dst, z []byte, usize int64) ([]byte, int64, error) {
	br := bytes.NewReader(z)
	zr, err := zlib.NewReader(br)
	if err != nil {
		return dst, 0, err
	}
	if int64(cap(dst)-len(dst)) < usize {
		return dst, 0, errors.New("no room")
	}
	out := dst[len(dst) : len(dst)+int(usize)]
	if _, err := io.ReadFull(zr, out); err != nil {
		return dst, 0, err
	}
	var one [1]byte
	if n, err := zr.Read(one[:]); n != 0 || err != io.EOF {
		return dst, 0, errors.New("longer than its header says")
	}
	// bytes.Reader is an io.ByteReader: the decoder read no further than
	// the stream's checksum.
	return dst[:len(dst)+int(usize)], int64(len(z) - br.Len()), nil
}

// tarMembersAt lists the regular files of a tar archive read through r, or
// returns nil when it is not one.
func tarMembersAt(r io.ReaderAt, size int64) []bsdiff.Member {
	if size < 1024 {
		return nil
	}
	sr := io.NewSectionReader(r, 0, size)
	tr := tar.NewReader(sr)
	var ms []bsdiff.Member
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return ms
		}
		if err != nil {
			return ms
		}
		if h.Typeflag == tar.TypeGNUSparse {
			return nil
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		off, err := sr.Seek(0, io.SeekCurrent)
		if err != nil || h.Size > size-off {
			return ms
		}
		ms = append(ms, bsdiff.Member{Name: h.Name, Off: int(off), Size: int(h.Size)})
	}
}

// findUnits pairs the executables of old and new: members of the same name
// (or the files themselves) that differ, parse, and share an architecture.
func findUnits(old io.ReaderAt, oldSize int64, new io.ReaderAt, newSize int64, om, nm []bsdiff.Member) []*unit {
	type cand struct {
		name       string
		oOff, oLen int64
		nOff, nLen int64
	}
	var cands []cand
	if om != nil && nm != nil {
		byName := map[string]bsdiff.Member{}
		for _, m := range om {
			byName[m.Name] = m
		}
		for _, m := range nm {
			if o, ok := byName[m.Name]; ok {
				cands = append(cands, cand{m.Name, int64(o.Off), int64(o.Size), int64(m.Off), int64(m.Size)})
			}
		}
	} else {
		cands = append(cands, cand{"file", 0, oldSize, 0, newSize})
	}
	var units []*unit
	for _, c := range cands {
		var oh, nh [4]byte
		old.ReadAt(oh[:], c.oOff)
		new.ReadAt(nh[:], c.nOff)
		if k := exe.Detect(nh[:]); k == exe.KindUnknown || exe.Detect(oh[:]) != k {
			continue
		}
		if c.oLen == c.nLen && sameBytes(old, c.oOff, new, c.nOff, c.nLen) {
			continue
		}
		oImg, err := exe.Parse(io.NewSectionReader(old, c.oOff, c.oLen), c.oLen)
		if err != nil {
			continue
		}
		nImg, err := exe.Parse(io.NewSectionReader(new, c.nOff, c.nLen), c.nLen)
		if err != nil || nImg.Arch != oImg.Arch || nImg.Kind != oImg.Kind {
			continue
		}
		u := &unit{name: c.name, oOff: c.oOff, oLen: c.oLen, nOff: c.nOff, nLen: c.nLen, oImg: oImg, nImg: nImg}
		for _, nz := range nImg.Zlib {
			for _, oz := range oImg.Zlib {
				if oz.Name == nz.Name && nz.USize <= 64*nz.Size+1<<20 && oz.USize <= 64*oz.Size+1<<20 {
					u.zlib = append(u.zlib, zpair{o: oz, n: nz, oStar: -1, region: -1})
				}
			}
		}
		units = append(units, u)
	}
	return units
}

func sameBytes(a io.ReaderAt, aOff int64, b io.ReaderAt, bOff, n int64) bool {
	ha, hb := sha256.New(), sha256.New()
	if _, err := io.Copy(ha, io.NewSectionReader(a, aOff, n)); err != nil {
		return false
	}
	if _, err := io.Copy(hb, io.NewSectionReader(b, bOff, n)); err != nil {
		return false
	}
	return bytes.Equal(ha.Sum(nil), hb.Sum(nil))
}

// buildNewStar reads new with each compressed section that the pinned
// encoder reproduces (and whose old section inflated) replaced by its
// decompressed bytes. It returns new* and its zlib regions.
func buildNewStar(new io.ReaderAt, newSize int64, units []*unit, skip []bsdiff.Span, trace func(string, ...any)) ([]byte, []region, error) {
	type cand struct {
		u *unit
		z *zpair
	}
	var cands []cand
	grow := int64(0)
	for _, u := range units {
		for i := range u.zlib {
			z := &u.zlib[i]
			if z.oStar >= 0 {
				cands = append(cands, cand{u, z})
				grow += z.n.USize // an upper bound: the stream may be shorter than its section
			}
		}
	}
	slices.SortFunc(cands, func(a, b cand) int { return cmp.Compare(a.u.nOff+a.z.n.Off, b.u.nOff+b.z.n.Off) })
	nstar := make([]byte, 0, newSize+grow)
	var regions []region
	var pos int64
	// copyRaw reads new up to end, but for the paired spans (to skip),
	// whose pages stay untouched.
	copyRaw := func(end int64) error {
		at := int64(len(nstar))
		nstar = nstar[:at+end-pos]
		for pos < end {
			for len(skip) > 0 && int64(skip[0].NewPos+skip[0].N) <= pos {
				skip = skip[1:]
			}
			next := end
			if len(skip) > 0 && int64(skip[0].NewPos) < end {
				next = max(pos, int64(skip[0].NewPos))
			}
			if next > pos {
				if err := readFull(new, nstar[at:at+next-pos], pos); err != nil {
					return fmt.Errorf("reading new file: %w", err)
				}
				at += next - pos
				pos = next
			}
			if len(skip) > 0 && int64(skip[0].NewPos) <= pos && pos < end {
				k := min(end, int64(skip[0].NewPos+skip[0].N)) - pos
				at += k
				pos += k
			}
		}
		return nil
	}
	for _, c := range cands {
		off := c.u.nOff + c.z.n.Off
		if off < pos {
			continue
		}
		if err := copyRaw(off); err != nil {
			return nil, nil, err
		}
		comp := make([]byte, c.z.n.Size)
		if err := readFull(new, comp, off); err != nil {
			return nil, nil, fmt.Errorf("reading new file: %w", err)
		}
		at := int64(len(nstar))
		out, used, err := inflateTo(nstar, comp, c.z.n.USize)
		if err == nil && !reproduces(out[at:], comp[:used]) {
			err = errors.New("the pinned deflate encoder does not reproduce it")
		}
		if err != nil {
			trace("%s: new %s kept compressed: %v", c.u.name, c.z.n.Name, err)
			if err := copyRaw(off + c.z.n.Size); err != nil {
				return nil, nil, err
			}
			continue
		}
		nstar = out
		c.z.n.Size = used // what follows the stream in the section stays as it is
		pos = off + used
		c.z.region = len(regions)
		regions = append(regions, region{Kind: kindZlib, Start: at, Len: c.z.n.USize, CLen: used})
	}
	if err := copyRaw(newSize); err != nil {
		return nil, nil, err
	}
	for _, u := range units {
		var ok bool
		if u.nStart, ok = newStarPos(regions, u.nOff); !ok {
			return nil, nil, errors.New("compact: internal error: member start in a region")
		}
		u.nEnd = u.nStart + u.nLen
		for _, z := range u.zlib {
			if z.region >= 0 {
				u.nEnd += z.n.USize - z.n.Size
			}
		}
	}
	return nstar, regions, nil
}

// reproduces reports whether the pinned encoder compresses data to want.
func reproduces(data, want []byte) bool {
	cw := &compareWriter{want: want}
	zw := flate.NewZlibWriter(cw)
	if _, err := zw.Write(data); err != nil {
		return false
	}
	return zw.Close() == nil && cw.ok() && len(cw.want) == 0
}

// compareWriter checks that what is written to it is want.
type compareWriter struct {
	want []byte
	bad  bool
}

func (c *compareWriter) Write(p []byte) (int, error) {
	if c.bad || len(p) > len(c.want) || !bytes.Equal(p, c.want[:len(p)]) {
		c.bad = true
		return 0, errors.New("differs")
	}
	c.want = c.want[len(p):]
	return len(p), nil
}

func (c *compareWriter) ok() bool { return !c.bad }

// compactOldStar drops from old* the decompressed sections whose new
// section stayed compressed, puts the others in the order of their old
// offsets, and returns old* and its expansions.
func compactOldStar(ostar []byte, oldSize int64, units []*unit) ([]byte, []expansion) {
	type slot struct {
		u *unit
		z *zpair
	}
	var slots []slot
	for _, u := range units {
		for i := range u.zlib {
			if z := &u.zlib[i]; z.oStar >= 0 && z.region >= 0 {
				slots = append(slots, slot{u, z})
			} else {
				z.oStar = -1
			}
		}
	}
	slices.SortFunc(slots, func(a, b slot) int { return cmp.Compare(a.u.oOff+a.z.o.Off, b.u.oOff+b.z.o.Off) })
	tail := bytes.Clone(ostar[oldSize:])
	at := oldSize
	var exps []expansion
	var end int64
	for _, s := range slots {
		z := s.z
		if s.u.oOff+z.o.Off < end {
			z.oStar = -1 // the same old section twice
			continue
		}
		end = s.u.oOff + z.o.Off + z.o.Size
		from := z.oStar - oldSize
		copy(ostar[at:], tail[from:from+z.o.USize])
		z.oStar = at
		at += z.o.USize
		exps = append(exps, expansion{Off: s.u.oOff + z.o.Off, CLen: z.o.Size, ULen: z.o.USize})
	}
	return ostar[:at], exps
}

// newStarPos maps an offset of new that lies outside every zlib region to
// its offset in new*.
func newStarPos(regions []region, off int64) (int64, bool) {
	shift := int64(0)
	for _, r := range regions {
		if r.Kind != kindZlib {
			continue
		}
		newStart := r.Start - shift
		if off < newStart {
			break
		}
		if off < newStart+r.CLen {
			return 0, false
		}
		shift += r.Len - r.CLen
	}
	return off + shift, true
}

// neutralize saves the reference fields of a code section and zeroes them,
// so that matching sees the code without its addresses.
func neutralize(arch exe.Arch, b []byte, c *codeSec) {
	sec := b[c.off : c.off+c.size]
	switch arch {
	case exe.AMD64:
		sweepAMD64(sec, func(r ref) {
			c.saved = append(c.saved, binary.LittleEndian.Uint32(sec[r.field:]))
			binary.LittleEndian.PutUint32(sec[r.field:], 0)
		})
	case exe.ARM64:
		sweepARM64(sec, func(kind int, k uint, q int) {
			x := binary.LittleEndian.Uint32(sec[q:])
			c.saved = append(c.saved, x)
			switch kind {
			case armBranch:
				binary.LittleEndian.PutUint32(sec[q:], x&^(1<<26-1))
			case armPair:
				c.saved = append(c.saved, binary.LittleEndian.Uint32(sec[q+4:]))
				armSetPairField(sec[q:], k, 0)
			}
		})
	}
}

// restore puts back what neutralize saved.
func restore(arch exe.Arch, b []byte, c *codeSec) {
	sec := b[c.off : c.off+c.size]
	i := 0
	switch arch {
	case exe.AMD64:
		sweepAMD64(sec, func(r ref) {
			binary.LittleEndian.PutUint32(sec[r.field:], c.saved[i])
			i++
		})
	case exe.ARM64:
		sweepARM64(sec, func(kind int, k uint, q int) {
			binary.LittleEndian.PutUint32(sec[q:], c.saved[i])
			i++
			if kind == armPair {
				binary.LittleEndian.PutUint32(sec[q+4:], c.saved[i])
				i++
			}
		})
	}
	c.saved = nil
}

// unitSegments lists what the matches say of a unit's addresses: every
// match between the two executables' loaded bytes says where the new
// addresses were in old (unitMap keeps this for code).
func unitSegments(u *unit, ops []bsdiff.Op, regions []region) []segment {
	var segs []segment
	// new* offsets of the unit's zlib regions, to skip them.
	var zr []region
	for _, r := range regions {
		if r.Kind == kindZlib && r.Start >= u.nStart && r.Start < u.nEnd {
			zr = append(zr, r)
		}
	}
	starToFile := func(p int64) (int64, bool) {
		f := p - u.nStart
		for _, r := range zr {
			if p < r.Start {
				break
			}
			if p < r.Start+r.Len {
				return 0, false
			}
			f -= r.Len - r.CLen
		}
		return f, true
	}
	i := sort.Search(len(ops), func(i int) bool { return ops[i].NewPos+ops[i].AddLen > u.nStart })
	for ; i < len(ops) && ops[i].NewPos < u.nEnd; i++ {
		op := ops[i]
		if op.AddLen == 0 {
			continue
		}
		lo := max(op.NewPos, u.nStart, op.NewPos+(u.oOff-op.OldPos))
		hi := min(op.NewPos+op.AddLen, u.nEnd, op.NewPos+(u.oOff+u.oLen-op.OldPos))
		for lo < hi {
			// Cut at zlib regions and load ranges of both sides.
			nf, ok := starToFile(lo)
			if !ok {
				// Inside a zlib region: skip to its end.
				for _, r := range zr {
					if lo >= r.Start && lo < r.Start+r.Len {
						lo = r.Start + r.Len
					}
				}
				continue
			}
			of := lo - op.NewPos + op.OldPos - u.oOff
			n := hi - lo
			for _, r := range zr {
				if r.Start > lo {
					n = min(n, r.Start-lo)
					break
				}
			}
			nva, nrest, ok1 := loadAt(u.nImg, nf)
			ova, orest, ok2 := loadAt(u.oImg, of)
			if ok1 && ok2 {
				n = min(n, nrest, orest)
				segs = append(segs, segment{n: nva, o: ova, l: uint64(n)})
			} else {
				n = min(n, max(nrest, 1), max(orest, 1))
			}
			lo += n
		}
	}
	return normalizeSegments(segs)
}

// loadAt returns the address of file offset off and how many bytes from
// there stay in its load range; when no range holds it, the bytes up to
// the next range.
func loadAt(img *exe.Image, off int64) (va uint64, rest int64, ok bool) {
	for _, r := range img.Loads {
		if off < r.Off {
			return 0, r.Off - off, false
		}
		if off < r.Off+r.Size {
			return r.VA + uint64(off-r.Off), r.Off + r.Size - off, true
		}
	}
	return 0, 1 << 62, false
}

// normalizeSegments sorts segments by new address, merges the contiguous
// ones that move by the same amount, and drops overlaps the way
// newRingMap does, so that nothing is encoded that the patcher would drop.
func normalizeSegments(segs []segment) []segment {
	slices.SortStableFunc(segs, func(a, b segment) int { return cmp.Compare(a.n, b.n) })
	var out []segment
	for _, s := range segs {
		if s.l == 0 {
			continue
		}
		if k := len(out) - 1; k >= 0 {
			p := &out[k]
			if s.n < p.n+p.l {
				continue // overlaps in new
			}
			if s.n == p.n+p.l && s.o == p.o+p.l {
				p.l += s.l
				continue
			}
		}
		out = append(out, s)
	}
	byOld := slices.Clone(out)
	slices.SortStableFunc(byOld, func(a, b segment) int { return cmp.Compare(a.o, b.o) })
	drop := map[segment]bool{}
	var end uint64
	for i, s := range byOld {
		if i > 0 && s.o < end {
			drop[s] = true
			continue
		}
		end = s.o + s.l
	}
	keep := out[:0]
	for _, s := range out {
		if !drop[s] {
			keep = append(keep, s)
		}
	}
	return keep
}

// evaluate counts the references of new whose bytes equal the old bytes
// they are matched with, as they are (raw) and rewritten (proj).
func (u *unit) evaluate(ostar, nstar []byte, ops []bsdiff.Op, cm *codeMaps) (raw, proj, refs int) {
	oldAt := func(p int64, n int64) []byte {
		i := sort.Search(len(ops), func(i int) bool { return ops[i].NewPos+ops[i].AddLen > p })
		if i == len(ops) || ops[i].NewPos > p || p+n > ops[i].NewPos+ops[i].AddLen {
			return nil
		}
		q := p - ops[i].NewPos + ops[i].OldPos
		return ostar[q : q+n]
	}
	for _, c := range u.nCode {
		sec := nstar[c.off : c.off+c.size]
		switch u.nImg.Arch {
		case exe.AMD64:
			m := cm.amd64()
			sweepAMD64(sec, func(r ref) {
				refs++
				ob := oldAt(c.off+int64(r.field), 4)
				if ob == nil {
					return
				}
				v := binary.LittleEndian.Uint32(sec[r.field:])
				ov := binary.LittleEndian.Uint32(ob)
				if v == ov {
					raw++
				}
				if amd64Fwd(m, v, c.va+uint64(r.field), c.va+uint64(r.end)) == ov {
					proj++
				}
			})
		case exe.ARM64:
			sweepARM64(sec, func(kind int, k uint, q int) {
				refs++
				n := 4
				if kind == armPair {
					n = 8
				}
				ob := oldAt(c.off+int64(q), int64(n))
				if ob == nil {
					return
				}
				var tmp [8]byte
				copy(tmp[:], sec[q:q+n])
				if bytes.Equal(tmp[:n], ob) {
					raw++
				}
				armRewrite(cm, tmp[:n], kind, k, c.va+uint64(q), false)
				if bytes.Equal(tmp[:n], ob) {
					proj++
				}
			})
		}
	}
	return raw, proj, refs
}
