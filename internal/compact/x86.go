package compact

// x86-64 instruction lengths, for finding the 32-bit relative references
// of code: the rel32 of CALL (E8), JMP (E9) and Jcc (0F 80-8F), and the
// disp32 of RIP-relative operands (ModRM mod=00 rm=101). Code is decoded by
// a linear sweep from the start of a code section.
//
// The decoder never looks at the bytes of those fields (nor at any
// displacement or immediate): a reference's value does not change where the
// next instruction starts. So the sweep finds the same references in a
// section whose reference values were rewritten, which is what lets the
// patcher undo the rewriting of the new file while it streams out. A wrong
// guess (data in a code section, an opcode this table gets wrong) only
// costs patch size, never correctness.

const x86MaxLen = 15

// Operand classes of one-byte and two-byte opcodes.
const (
	xNone   = iota // no ModRM, no immediate
	xM             // ModRM
	xMI8           // ModRM, imm8
	xMIz           // ModRM, imm16/32 (operand size)
	xI8            // imm8
	xI16           // imm16
	xIz            // imm16/32
	xRel32         // rel32: a reference
	xMoffs         // 8-byte address (4 with 67)
	xBad           // not an instruction in 64-bit mode: one byte
	xF6            // ModRM, imm8 when reg is 0 or 1 (TEST)
	xF7            // ModRM, imm16/32 when reg is 0 or 1 (TEST)
	xEnter         // imm16, imm8
	xMovImm        // B8-BF: imm16/32, imm64 with REX.W
)

var x86One = func() (t [256]byte) {
	for i := range t {
		t[i] = xNone
	}
	for op := 0x00; op < 0x40; op += 8 {
		t[op], t[op+1], t[op+2], t[op+3] = xM, xM, xM, xM
		t[op+4], t[op+5] = xI8, xIz
	}
	for _, op := range []int{0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f,
		0x60, 0x61, 0x82, 0x9a, 0xce, 0xd4, 0xd5, 0xd6, 0xea} {
		t[op] = xBad
	}
	t[0x63] = xM
	t[0x68], t[0x69], t[0x6a], t[0x6b] = xIz, xMIz, xI8, xMI8
	for op := 0x70; op < 0x80; op++ {
		t[op] = xI8
	}
	t[0x80], t[0x81], t[0x83] = xMI8, xMIz, xMI8
	for op := 0x84; op < 0x90; op++ {
		t[op] = xM
	}
	for op := 0xa0; op < 0xa4; op++ {
		t[op] = xMoffs
	}
	t[0xa8], t[0xa9] = xI8, xIz
	for op := 0xb0; op < 0xb8; op++ {
		t[op] = xI8
	}
	for op := 0xb8; op < 0xc0; op++ {
		t[op] = xMovImm
	}
	t[0xc0], t[0xc1], t[0xc2] = xMI8, xMI8, xI16
	t[0xc6], t[0xc7], t[0xc8], t[0xca], t[0xcd] = xMI8, xMIz, xEnter, xI16, xI8
	for op := 0xd0; op < 0xd4; op++ {
		t[op] = xM
	}
	for op := 0xd8; op < 0xe0; op++ {
		t[op] = xM
	}
	for op := 0xe0; op < 0xe8; op++ {
		t[op] = xI8
	}
	t[0xe8], t[0xe9], t[0xeb] = xRel32, xRel32, xI8
	t[0xf6], t[0xf7], t[0xfe], t[0xff] = xF6, xF7, xM, xM
	return t
}()

var x86Two = func() (t [256]byte) {
	for i := range t {
		t[i] = xM
	}
	for _, op := range []int{0x04, 0x0a, 0x0c, 0x24, 0x25, 0x26, 0x27, 0x36, 0x39, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x7a, 0x7b, 0xa6, 0xa7} {
		t[op] = xBad
	}
	for _, op := range []int{0x05, 0x06, 0x07, 0x08, 0x09, 0x0b, 0x0e, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x37, 0x77, 0xa0, 0xa1, 0xa2, 0xa8, 0xa9, 0xaa} {
		t[op] = xNone
	}
	for op := 0xc8; op < 0xd0; op++ {
		t[op] = xNone
	}
	for _, op := range []int{0x0f, 0x70, 0x71, 0x72, 0x73, 0xa4, 0xac, 0xba, 0xc2, 0xc4, 0xc5, 0xc6} {
		t[op] = xMI8
	}
	for op := 0x80; op < 0x90; op++ {
		t[op] = xRel32
	}
	return t
}()

// x86Insn decodes the instruction at the start of b. It returns its length
// n and, when it holds a 32-bit relative reference (rel32 or RIP-relative
// disp32, relative to the end of the instruction), the offset of that field
// in the instruction (else -1). n is 0 when b ends before the instruction
// does; the caller passes at least x86MaxLen bytes except at the end of the
// code. Only the bytes before displacements and immediates are read.
func x86Insn(b []byte) (n, field int) {
	i := 0
	opsize16, addr32 := false, false
	for ; i < len(b) && i < x86MaxLen; i++ {
		switch b[i] {
		case 0x66:
			opsize16 = true
			continue
		case 0x67:
			addr32 = true
			continue
		case 0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65:
			continue
		}
		break
	}
	if i >= len(b) {
		return 0, -1
	}
	if i >= x86MaxLen {
		return 1, -1
	}
	rexW := false
	if b[i]&0xf0 == 0x40 {
		rexW = b[i]&8 != 0
		i++
		if i >= len(b) {
			return 0, -1
		}
	}
	op := b[i]
	i++
	class := x86One[op]
	switch op {
	case 0x0f:
		if i >= len(b) {
			return 0, -1
		}
		op2 := b[i]
		i++
		switch op2 {
		case 0x38:
			if i >= len(b) {
				return 0, -1
			}
			i++
			class = xM
		case 0x3a:
			if i >= len(b) {
				return 0, -1
			}
			i++
			class = xMI8
		default:
			class = x86Two[op2]
		}
	case 0xc4, 0xc5, 0x62:
		// VEX (3 or 2 bytes) and EVEX (4 bytes) prefixes, then the opcode.
		var mapSel byte
		var payload int
		switch op {
		case 0xc4:
			payload = 2
		case 0xc5:
			payload = 1
		default:
			payload = 3
		}
		if i+payload >= len(b) {
			return 0, -1
		}
		switch op {
		case 0xc4:
			mapSel = b[i] & 0x1f
		case 0xc5:
			mapSel = 1
		default:
			mapSel = b[i] & 0x07
		}
		i += payload
		vop := b[i]
		i++
		switch mapSel {
		case 1:
			switch {
			case vop == 0x77 && op != 0x62:
				class = xNone // VZEROUPPER, VZEROALL
			case vop >= 0x70 && vop <= 0x73, vop == 0xc2, vop >= 0xc4 && vop <= 0xc6:
				class = xMI8
			default:
				class = xM
			}
		case 2:
			class = xM
		case 3:
			class = xMI8
		case 5, 6:
			if op != 0x62 {
				return 1, -1
			}
			class = xM
		default:
			return 1, -1
		}
	}
	imm := 0
	field = -1
	hasModRM := false
	switch class {
	case xBad:
		return 1, -1
	case xNone:
	case xM:
		hasModRM = true
	case xMI8:
		hasModRM, imm = true, 1
	case xMIz, xF7:
		hasModRM, imm = true, 4
		if opsize16 {
			imm = 2
		}
	case xF6:
		hasModRM, imm = true, 1
	case xI8:
		imm = 1
	case xI16:
		imm = 2
	case xIz:
		imm = 4
		if opsize16 {
			imm = 2
		}
	case xRel32:
		field, imm = i, 4
	case xMoffs:
		imm = 8
		if addr32 {
			imm = 4
		}
	case xEnter:
		imm = 3
	case xMovImm:
		imm = 4
		switch {
		case rexW:
			imm = 8
		case opsize16:
			imm = 2
		}
	}
	if hasModRM {
		if i >= len(b) {
			return 0, -1
		}
		m := b[i]
		i++
		mod, reg, rm := m>>6, (m>>3)&7, m&7
		if (class == xF6 || class == xF7) && reg > 1 {
			imm = 0
		}
		if mod != 3 {
			if rm == 4 {
				if i >= len(b) {
					return 0, -1
				}
				sib := b[i]
				i++
				if mod == 0 && sib&7 == 5 {
					i += 4 // absolute disp32: not relative
				}
			} else if mod == 0 && rm == 5 {
				field = i // RIP-relative disp32
				i += 4
			}
			switch mod {
			case 1:
				i++
			case 2:
				i += 4
			}
		}
	}
	n = i + imm
	if n > x86MaxLen {
		return 1, -1
	}
	if n > len(b) {
		return 0, -1
	}
	return n, field
}
