package compact

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// x86Refs lists the references a sweep finds.
func x86Refs(b []byte) []ref {
	var out []ref
	sweepAMD64(b, func(r ref) { out = append(out, r) })
	return out
}

// scribble sets every reference field of b to random values.
func scribbleAMD64(b []byte, rng *rand.Rand) {
	sweepAMD64(b, func(r ref) { binary.LittleEndian.PutUint32(b[r.field:], rng.Uint32()) })
}

func sameRefs(a, b []ref) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Some real x86-64 instructions and what the decoder must say about them.
func TestX86Insn(t *testing.T) {
	for _, c := range []struct {
		hex   []byte
		n, fo int
	}{
		{[]byte{0xe8, 1, 2, 3, 4}, 5, 1},                                // call rel32
		{[]byte{0xe9, 1, 2, 3, 4}, 5, 1},                                // jmp rel32
		{[]byte{0x0f, 0x84, 1, 2, 3, 4}, 6, 2},                          // je rel32
		{[]byte{0x48, 0x8d, 0x05, 1, 2, 3, 4}, 7, 3},                    // lea rax, [rip+x]
		{[]byte{0x48, 0x8b, 0x0d, 1, 2, 3, 4}, 7, 3},                    // mov rcx, [rip+x]
		{[]byte{0x48, 0xc7, 0x05, 1, 2, 3, 4, 5, 6, 7, 8}, 11, 3},       // mov qword [rip+x], imm32
		{[]byte{0x80, 0x3d, 1, 2, 3, 4, 9}, 7, 2},                       // cmp byte [rip+x], imm8
		{[]byte{0xc5, 0xfd, 0x6f, 0x05, 1, 2, 3, 4}, 8, 4},              // vmovdqa ymm0, [rip+x]
		{[]byte{0x62, 0xf1, 0x7c, 0x48, 0x10, 0x05, 1, 2, 3, 4}, 10, 6}, // vmovups zmm0, [rip+x]
		{[]byte{0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8}, 10, -1},            // mov rax, imm64
		{[]byte{0x66, 0x0f, 0x3a, 0x0f, 0xc1, 8}, 6, -1},                // palignr
		{[]byte{0x8b, 0x04, 0x25, 1, 2, 3, 4}, 7, -1},                   // mov eax, [abs32]
		{[]byte{0xeb, 0x10}, 2, -1},                                     // jmp rel8
		{[]byte{0xc3}, 1, -1},                                           // ret
		{[]byte{0xcc}, 1, -1},                                           // int3
		{[]byte{0xf6, 0xc0, 1}, 3, -1},                                  // test al, 1
		{[]byte{0xf6, 0xd0}, 2, -1},                                     // not al
		{[]byte{0x06}, 1, -1},                                           // invalid in 64-bit mode
	} {
		// Pad so the decoder sees a full window.
		b := append(append([]byte{}, c.hex...), make([]byte, 16)...)
		n, fo := x86Insn(b)
		if n != c.n || fo != c.fo {
			t.Errorf("% x: length %d field %d, want %d %d", c.hex, n, fo, c.n, c.fo)
		}
		// Cut short, outside the end: "need more".
		if n, _ := x86Insn(c.hex[:len(c.hex)-1]); len(c.hex) > 1 && n != 0 && c.fo >= 0 {
			t.Errorf("% x cut short: length %d, want 0", c.hex, n)
		}
	}
}

// The decoder never reads a reference field: whatever values they hold,
// the sweep finds the same references.
func TestX86FieldsDoNotChangeTheSweep(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		b := make([]byte, 2000)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		want := x86Refs(b)
		scribbleAMD64(b, rng)
		if got := x86Refs(b); !sameRefs(got, want) {
			t.Fatalf("references moved after the fields changed")
		}
	}
}

func FuzzX86Sweep(f *testing.F) {
	f.Add([]byte{0xe8, 1, 2, 3, 4, 0x48, 0x8d, 0x05, 1, 2, 3, 4}, uint64(1))
	f.Fuzz(func(t *testing.T, b []byte, seed uint64) {
		want := x86Refs(b)
		for _, r := range want {
			if r.field < 0 || r.field+4 > r.end || r.end > len(b) {
				t.Fatalf("reference %+v outside the %d bytes", r, len(b))
			}
		}
		scribbleAMD64(b, rand.New(rand.NewPCG(seed, 1)))
		if got := x86Refs(b); !sameRefs(got, want) {
			t.Fatalf("references moved after the fields changed")
		}
	})
}

func armRefs(b []byte) [][3]int {
	var out [][3]int
	sweepARM64(b, func(kind int, k uint, q int) { out = append(out, [3]int{kind, int(k), q}) })
	return out
}

func TestARM64Sweep(t *testing.T) {
	put := func(ws ...uint32) []byte {
		var b []byte
		for _, w := range ws {
			b = binary.LittleEndian.AppendUint32(b, w)
		}
		return b
	}
	b := put(
		0x94000010, // bl +64
		0x90000080, // adrp x0, page
		0x91004000, // add x0, x0, #16
		0x90000081, // adrp x1, page
		0xf9400421, // ldr x1, [x1, #8]
		0x90000082, // adrp x2, page
		0xf9400420, // ldr x0, [x1, #8]: another register, not a pair
		0xd65f03c0, // ret
		0x17ffffff, // b -4
	)
	got := armRefs(b)
	want := [][3]int{{armBranch, 0, 0}, {armPair, 0, 4}, {armPair, 3, 12}, {armBranch, 0, 32}}
	if len(got) != len(want) {
		t.Fatalf("refs %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("refs %v, want %v", got, want)
		}
	}
}

// scribbleARM64 sets every field to random values of the rewriting's
// domain.
func scribbleARM64(b []byte, rng *rand.Rand) {
	sweepARM64(b, func(kind int, k uint, q int) {
		switch kind {
		case armBranch:
			x := binary.LittleEndian.Uint32(b[q:])
			binary.LittleEndian.PutUint32(b[q:], x&^(1<<26-1)|rng.Uint32()&(1<<26-1))
		case armPair:
			armSetPairField(b[q:], k, rng.Uint64()&(1<<(33-k)-1))
		}
	})
}

func FuzzARM64Sweep(f *testing.F) {
	f.Add([]byte{0x10, 0, 0, 0x94, 0x80, 0, 0, 0x90, 0, 0x40, 0, 0x91}, uint64(1))
	f.Fuzz(func(t *testing.T, b []byte, seed uint64) {
		want := armRefs(b)
		scribbleARM64(b, rand.New(rand.NewPCG(seed, 1)))
		if got := armRefs(b); len(got) != len(want) {
			t.Fatalf("references changed after the fields changed")
		} else {
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("references changed after the fields changed")
				}
			}
		}
	})
}

// randomCode returns plausible code: random bytes with many references.
func randomCode(rng *rand.Rand, n int, arch byte) []byte {
	b := make([]byte, 0, n)
	for len(b) < n {
		switch arch {
		case kindAMD64:
			switch rng.IntN(4) {
			case 0:
				b = append(b, 0xe8)
				b = binary.LittleEndian.AppendUint32(b, rng.Uint32()%4096-2048)
			case 1:
				b = append(b, 0x48, 0x8d, 0x05)
				b = binary.LittleEndian.AppendUint32(b, rng.Uint32()%100000)
			default:
				b = append(b, byte(rng.Uint32()))
			}
		case kindARM64:
			switch rng.IntN(4) {
			case 0:
				b = binary.LittleEndian.AppendUint32(b, 0x94000000|rng.Uint32()&0xfff)
			case 1:
				b = binary.LittleEndian.AppendUint32(b, 0x90000000|rng.Uint32()&0x1f)
				b = binary.LittleEndian.AppendUint32(b, 0x91000000|rng.Uint32()&0x3ffc00)
			default:
				b = binary.LittleEndian.AppendUint32(b, rng.Uint32())
			}
		}
	}
	return b[:n]
}

// Rewriting code and undoing it, as the patcher does while bytes stream in
// chunks of any size, gives the code back.
func TestCodeRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for iter := range 40 {
		kind := byte(kindAMD64)
		if iter%2 == 1 {
			kind = kindARM64
		}
		orig := randomCode(rng, 5000+rng.IntN(3000), kind)
		va := uint64(0x401000)
		segs := normalizeSegments([]segment{
			{n: va, o: va, l: 1000},
			{n: va + 1200, o: va + 1000 + uint64(rng.IntN(4))*4, l: 3000},
			{n: va + 5000, o: va - 4096, l: 2000},
		})
		maps := &codeMaps{segs: segs}
		b := bytes.Clone(orig)
		switch kind {
		case kindAMD64:
			forwardAMD64(b, va, maps.amd64())
		case kindARM64:
			forwardARM64(b, va, maps)
		}
		if bytes.Equal(b, orig) {
			t.Fatal("the rewriting changed nothing")
		}
		inv := &codeInverter{kind: kind, va: va, length: int64(len(b)), maps: &codeMaps{segs: segs}}
		var out []byte
		for rest := b; len(rest) > 0; {
			k := min(len(rest), 1+rng.IntN(100))
			out = append(out, inv.push(rest[:k])...)
			inv.consumed()
			rest = rest[k:]
		}
		if !bytes.Equal(out, orig) {
			t.Fatalf("iteration %d (%d): round trip differs", iter, kind)
		}
	}
}
