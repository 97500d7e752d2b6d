package compact

import (
	"math/rand/v2"
	"testing"
)

func randomSegments(rng *rand.Rand, n int, span uint64) []segment {
	segs := make([]segment, n)
	for i := range segs {
		segs[i] = segment{n: rng.Uint64N(span), o: rng.Uint64N(span), l: 1 + rng.Uint64N(span/8+1)}
	}
	return segs
}

// checkBijection checks, over the whole ring, that fwd is a bijection, inv
// its inverse, and that the kept segments map as they say.
func checkBijection(t *testing.T, m *ringMap, bits uint) {
	t.Helper()
	size := uint64(1) << bits
	seen := make([]bool, size)
	for x := range size {
		y := m.fwd(x)
		if y >= size {
			t.Fatalf("fwd(%d) = %d, outside the ring of %d", x, y, size)
		}
		if seen[y] {
			t.Fatalf("fwd(%d) = %d twice", x, y)
		}
		seen[y] = true
		if back := m.inv(y); back != x {
			t.Fatalf("inv(fwd(%d)) = %d", x, back)
		}
	}
	for _, s := range m.segments() {
		for k := range s.l {
			if got := m.fwd(s.n + k); got != s.o+k {
				t.Fatalf("segment %+v: fwd(%d) = %d", s, s.n+k, got)
			}
		}
	}
}

func TestRingMapBijection(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 300 {
		bits := uint(4 + iter%9)
		unit := uint64(1) << (iter % 3)
		span := uint64(1) << (bits + uint(iter%3) + 1) // some segments wrap the ring
		segs := randomSegments(rng, rng.IntN(12), span)
		if iter%4 == 0 {
			// Segments that shift by a multiple of unit, as code does.
			for i := range segs {
				segs[i].o = segs[i].n + unit*rng.Uint64N(8)
			}
		}
		m := newRingMap(segs, bits, unit)
		checkBijection(t, m, bits)
	}
}

func TestRingMapSegments(t *testing.T) {
	// Code moved: [100, 200) is the same, a function grew by 16 bytes at
	// 200, everything after moved up by 16.
	segs := []segment{{n: 100, o: 100, l: 100}, {n: 232, o: 216, l: 500}}
	m := newRingMap(segs, 32, 1)
	for _, c := range []struct{ x, y uint64 }{{150, 150}, {232, 216}, {731, 715}} {
		if got := m.fwd(c.x); got != c.y {
			t.Errorf("fwd(%d) = %d, want %d", c.x, got, c.y)
		}
	}
	// 4-byte units: a segment whose shift is not a multiple of 4 is left
	// out, and segment ends are rounded inwards.
	m = newRingMap([]segment{{n: 2, o: 10, l: 20}, {n: 101, o: 202, l: 50}}, 26, 4)
	if segs := m.segments(); len(segs) != 1 || segs[0] != (seg{n: 1, o: 3, l: 4}) {
		t.Errorf("4-byte units: segments %+v", segs)
	}
}

func FuzzRingMap(f *testing.F) {
	f.Add(uint64(1), uint8(8), uint8(0), []byte{1, 2, 3, 4, 5, 6})
	f.Fuzz(func(t *testing.T, seed uint64, bits, unitLog uint8, raw []byte) {
		bits = 1 + bits%12
		unit := uint64(1) << (unitLog % 4)
		var segs []segment
		for i := 0; i+2 < len(raw) && len(segs) < 64; i += 3 {
			segs = append(segs, segment{n: uint64(raw[i]) * 37, o: uint64(raw[i+1]) * 41, l: uint64(raw[i+2])})
		}
		checkBijection(t, newRingMap(segs, uint(bits), unit), uint(bits))
	})
}
