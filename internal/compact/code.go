package compact

import (
	"encoding/binary"
)

// Rewriting the references of code. The differ rewrites each reference of
// the new executable so that it holds what the old executable would hold if
// the reference pointed to the old place of its target (the address map
// gives it); unchanged code then has the old bytes exactly. The rewriting is
// a bijection of the field's values for a given position, so the patcher
// undoes it from the rewritten bytes alone.

// ref is a reference found in a code section: a 32-bit field at offset
// field of the section, relative to the end of its instruction at offset
// end.
type ref struct {
	field, end int
}

// sweepAMD64 calls fn for every reference of the x86-64 code in b, in
// order, by a linear sweep from b's start.
func sweepAMD64(b []byte, fn func(r ref)) {
	for p := 0; p < len(b); {
		n, f := x86Insn(b[p:])
		if n == 0 {
			return
		}
		if f >= 0 {
			fn(ref{field: p + f, end: p + n})
		}
		p += n
	}
}

// amd64Fwd rewrites the rel32 value v of a reference whose field starts at
// the virtual address fva and whose instruction ends at e: the target
// e+v, mapped to the old space, relative to where the old field would be.
func amd64Fwd(m *ringMap, v uint32, fva, e uint64) uint32 {
	t := e + uint64(int64(int32(v)))
	return uint32(m.fwd(t) - m.fwd(fva) - (e - fva))
}

// amd64Inv undoes amd64Fwd.
func amd64Inv(m *ringMap, w uint32, fva, e uint64) uint32 {
	t := m.inv(uint64(w) + m.fwd(fva) + (e - fva))
	return uint32(t - e)
}

// codeMaps holds the ring maps an address map needs, built on first use.
type codeMaps struct {
	segs []segment
	// In the patcher, the map's encoded segments, decoded on first use.
	data  []byte
	count int

	r32  *ringMap    // x86-64: bytes, mod 2^32
	rarm [6]*ringMap // arm64: pairs of scale k (0-4), branches (5)
}

func (c *codeMaps) segments() []segment {
	if c.segs == nil && c.data != nil {
		c.segs = decodeMap(c.data, c.count)
	}
	return c.segs
}

func (c *codeMaps) amd64() *ringMap {
	if c.r32 == nil {
		c.r32 = newRingMap(c.segments(), 32, 1)
		if c.data != nil {
			c.segs = nil // x86-64 needs no other ring (decoded again if asked)
		}
	}
	return c.r32
}

// lastUse is called by the patcher once no region needs the map any more.
func (c *codeMaps) lastUse() {
	c.segs, c.data, c.r32, c.rarm = nil, nil, nil, [6]*ringMap{}
}

// forwardAMD64 rewrites every reference of the x86-64 section b, loaded at
// va, through m.
func forwardAMD64(b []byte, va uint64, m *ringMap) {
	sweepAMD64(b, func(r ref) {
		v := binary.LittleEndian.Uint32(b[r.field:])
		binary.LittleEndian.PutUint32(b[r.field:], amd64Fwd(m, v, va+uint64(r.field), va+uint64(r.end)))
	})
}

// codeInverter undoes the rewriting of one code region as its bytes
// stream in: it holds back the bytes of an instruction until the whole of
// it (and, for arm64, the next instruction) has arrived.
type codeInverter struct {
	kind   byte
	va     uint64 // address of the region's first byte
	length int64  // region length
	maps   *codeMaps

	buf  []byte // region bytes from offset base, not yet passed on
	base int64
	next int // offset in buf of the next instruction to decode
}

// window is how many bytes the decoder may need past an instruction's
// start.
func (c *codeInverter) window() int {
	if c.kind == kindARM64 {
		return 8
	}
	return x86MaxLen
}

// push adds p to the region's bytes and returns the bytes that are final
// (rewritten back), which stay valid until the next call.
func (c *codeInverter) push(p []byte) []byte {
	c.buf = append(c.buf, p...)
	atEnd := c.base+int64(len(c.buf)) == c.length
	w := c.window()
	for c.next < len(c.buf) && (len(c.buf)-c.next >= w || atEnd) {
		n := c.step(c.buf[c.next:])
		if n == 0 {
			// The rest is shorter than an instruction: raw bytes.
			c.next = len(c.buf)
			break
		}
		c.next += n
	}
	out := c.buf[:c.next]
	return out
}

// consumed drops the bytes push returned.
func (c *codeInverter) consumed() {
	k := c.next
	c.base += int64(k)
	rest := copy(c.buf, c.buf[k:])
	c.buf = c.buf[:rest]
	c.next = 0
}

// step decodes one instruction at the start of b (region offset
// c.base+c.next) and undoes the rewriting of its reference; it returns its
// length, 0 when b is too short.
func (c *codeInverter) step(b []byte) int {
	switch c.kind {
	case kindAMD64:
		n, f := x86Insn(b[:min(len(b), x86MaxLen)])
		if n > 0 && f >= 0 {
			at := uint64(c.base) + uint64(c.next)
			fva, e := c.va+at+uint64(f), c.va+at+uint64(n)
			w := binary.LittleEndian.Uint32(b[f:])
			binary.LittleEndian.PutUint32(b[f:], amd64Inv(c.maps.amd64(), w, fva, e))
		}
		return n
	case kindARM64:
		return c.stepARM64(b)
	}
	return len(b)
}
