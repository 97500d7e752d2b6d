package flate

import (
	"bytes"
	"compress/zlib"
	"math/rand/v2"
	"testing"
)

// The pinned encoder writes what the standard library's compress/zlib
// writes at BestSpeed, for the Go version this is built with (the copy is of
// Go 1.26; if a later Go changes its encoder, this test says so, and the
// copy stays as it is).
func stdZlib(t testing.TB, chunks ...[]byte) []byte {
	var buf bytes.Buffer
	z, err := zlib.NewWriterLevel(&buf, zlib.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		z.Write(c)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ours(t testing.TB, chunks ...[]byte) []byte {
	var buf bytes.Buffer
	z := NewZlibWriter(&buf)
	for _, c := range chunks {
		if _, err := z.Write(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testInputs() [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	text := bytes.Repeat([]byte("DW_TAG_subprogram main.main /src/main.go 42\x00"), 5000)
	random := make([]byte, 300000)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	mixed := append(append([]byte{}, text...), random[:70000]...)
	for i := 0; i < len(mixed); i += 997 {
		mixed[i] ^= byte(i)
	}
	return [][]byte{nil, []byte("a"), []byte("0123456789abcdef"), bytes.Repeat([]byte{0}, 100), text[:127], text[:128], text, random, mixed}
}

func TestSameAsStdlib(t *testing.T) {
	for i, in := range testInputs() {
		want := stdZlib(t, in)
		if got := ours(t, in); !bytes.Equal(got, want) {
			t.Errorf("input %d (%d bytes): %d bytes, standard library %d", i, len(in), len(got), len(want))
		}
		// Write boundaries do not change the output.
		var chunks [][]byte
		for b := in; len(b) > 0; {
			k := min(len(b), 1+len(b)%7000)
			chunks = append(chunks, b[:k])
			b = b[k:]
		}
		if got := ours(t, chunks...); !bytes.Equal(got, want) {
			t.Errorf("input %d in chunks: differs", i)
		}
	}
}

func FuzzSameAsStdlib(f *testing.F) {
	for _, in := range testInputs()[:6] {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if got, want := ours(t, in), stdZlib(t, in); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: output differs from compress/zlib", len(in))
		}
	})
}
