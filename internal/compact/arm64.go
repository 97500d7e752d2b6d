package compact

import "encoding/binary"

// arm64 references: BL and B (imm26, in instructions), and ADRP followed by
// an ADD (immediate) or a load/store (unsigned immediate) on the register
// ADRP set, which together address any byte (ADD) or scaled slot
// (load/store) within 4 GiB. Instructions are 4 bytes, aligned from the
// start of the section.
//
// Each kind is rewritten in the ring of its field: a branch's target in
// instructions modulo 2^26; a pair's target, in units of the load/store
// size 2^k, modulo 2^(33-k) (the 21 bits of ADRP's page and the 12-k low
// bits of the immediate). A load/store whose immediate reaches past its
// page (not what linkers write) is left alone, and the rewriting never sets
// those high bits, so the patcher makes the same choice.

const (
	armBranch = iota + 1 // B or BL at offset q
	armPair              // ADRP at q, ADD or load/store at q+4
)

// armInsn classifies the instruction at b[0:4] (and b[4:8] for a pair):
// the kind of reference, the scale k of a pair (0 for ADD), and its length
// (8 for a pair, else 4). It reads opcodes and register numbers, and of the
// load/store immediate only the bits the rewriting keeps.
func armInsn(b []byte) (kind int, k uint, n int) {
	x := binary.LittleEndian.Uint32(b)
	switch {
	case x&0x7c000000 == 0x14000000: // B, BL
		return armBranch, 0, 4
	case x&0x9f000000 == 0x90000000 && len(b) >= 8: // ADRP
		y := binary.LittleEndian.Uint32(b[4:])
		rd := x & 0x1f
		if (y>>5)&0x1f != rd {
			return 0, 0, 4
		}
		switch {
		case y&0x7fc00000 == 0x11000000: // ADD (immediate), no shift
			return armPair, 0, 8
		case y&0x3b000000 == 0x39000000: // load/store, unsigned immediate
			k := uint(y >> 30)
			if y&(1<<26) != 0 && (y>>23)&1 != 0 { // SIMD&FP 128-bit
				k = 4
			}
			imm12 := (y >> 10) & 0xfff
			if imm12>>(12-k) != 0 {
				return 0, 0, 4 // reaches past the page
			}
			return armPair, k, 8
		}
	}
	return 0, 0, 4
}

// sweepARM64 calls fn for every reference of the arm64 code in b.
func sweepARM64(b []byte, fn func(kind int, k uint, q int)) {
	for q := 0; q+4 <= len(b); {
		kind, k, n := armInsn(b[q:min(len(b), q+8)])
		if kind != 0 {
			fn(kind, k, q)
		}
		q += n
	}
}

// armPairField reads the field of a pair: the page offset (21 bits) and the
// low immediate bits, as one number of 33-k bits.
func armPairField(b []byte, k uint) uint64 {
	x, y := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
	page := uint64((x>>29)&3 | ((x>>5)&0x7ffff)<<2)
	lo := uint64((y >> 10) & 0xfff)
	return page<<(12-k) | lo
}

func armSetPairField(b []byte, k uint, f uint64) {
	x, y := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
	page := uint32(f >> (12 - k) & 0x1fffff)
	lo := uint32(f & (1<<(12-k) - 1))
	x = x&^(3<<29|0x7ffff<<5) | (page&3)<<29 | (page>>2)<<5
	y = y&^(0xfff<<10) | lo<<10
	binary.LittleEndian.PutUint32(b, x)
	binary.LittleEndian.PutUint32(b[4:], y)
}

func (c *codeMaps) arm(ring int) *ringMap {
	if c.rarm[ring] == nil {
		switch ring {
		case 5: // branches: instructions, mod 2^26
			c.rarm[ring] = newRingMap(c.segments(), 26, 4)
		default: // pairs of scale k = ring: units of 2^k, mod 2^(33-k)
			c.rarm[ring] = newRingMap(c.segments(), 33-uint(ring), 1<<ring)
		}
	}
	return c.rarm[ring]
}

// armRewrite rewrites (inv false) or restores (inv true) the reference of
// kind at b (the instruction at address pc).
func armRewrite(c *codeMaps, b []byte, kind int, k uint, pc uint64, inv bool) {
	switch kind {
	case armBranch:
		m := c.arm(5)
		x := binary.LittleEndian.Uint32(b)
		const mask = 1<<26 - 1
		f := uint64(x & mask)
		base := m.fwd(pc / 4)
		var out uint64
		if !inv {
			out = m.fwd(pc/4+f) - base
		} else {
			out = m.inv(f+base) - pc/4
		}
		binary.LittleEndian.PutUint32(b, x&^mask|uint32(out&mask))
	case armPair:
		m := c.arm(int(k))
		bytesMap := c.arm(0)
		f := armPairField(b, k)
		s := uint64(1) << k
		page := (pc &^ 0xfff) / s
		oldPage := (bytesMap.fwd(pc) &^ 0xfff) / s
		var out uint64
		if !inv {
			out = m.fwd(page+f) - oldPage
		} else {
			out = m.inv(f+oldPage) - page
		}
		armSetPairField(b, k, out&(1<<(33-k)-1))
	}
}

// forwardARM64 rewrites every reference of the arm64 section b, loaded at va.
func forwardARM64(b []byte, va uint64, c *codeMaps) {
	sweepARM64(b, func(kind int, k uint, q int) {
		armRewrite(c, b[q:], kind, k, va+uint64(q), false)
	})
}

// stepARM64 is codeInverter.step for arm64.
func (c *codeInverter) stepARM64(b []byte) int {
	if len(b) < 4 {
		return 0
	}
	kind, k, n := armInsn(b[:min(len(b), 8)])
	if kind != 0 {
		pc := c.va + uint64(c.base) + uint64(c.next)
		armRewrite(c.maps, b, kind, k, pc, true)
	}
	return n
}
