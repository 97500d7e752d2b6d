package bzip2

import (
	"bytes"
	"compress/bzip2"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"
)

func compress(t *testing.T, data []byte, workers, chunk int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := NewWriter(&buf, workers)
	for p := data; len(p) > 0; {
		k := min(chunk, len(p))
		if _, err := zw.Write(p[:k]); err != nil {
			t.Fatal(err)
		}
		p = p[k:]
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testInputs() map[string][]byte {
	r := rand.New(rand.NewPCG(3, 4))
	in := map[string][]byte{
		"empty": nil,
		"one":   {42},
		"runs":  bytes.Repeat([]byte("aaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbc"), 5000),
		"zeros": make([]byte, 1_000_000),
		"255":   bytes.Repeat([]byte{7}, 255*3+4),
	}
	rnd := make([]byte, 300_000)
	for i := range rnd {
		rnd[i] = byte(r.IntN(256))
	}
	in["random"] = rnd
	text := make([]byte, 0, 1_200_000)
	words := []string{"the ", "quick ", "brown ", "fox ", "jumps\n", "over ", "lazy ", "dog. "}
	for len(text) < 1_200_000 {
		text = append(text, words[r.IntN(len(words))]...)
	}
	in["text"] = text
	mixed := make([]byte, 300_000)
	for i := range mixed {
		if r.IntN(10) == 0 {
			mixed[i] = byte(r.IntN(4))
		}
	}
	in["sparse"] = mixed
	return in
}

func TestRoundTrip(t *testing.T) {
	for name, data := range testInputs() {
		for _, workers := range []int{1, 3} {
			if workers == 1 && len(data) < 9*100000-19 {
				continue // one block: the worker count cannot matter
			}
			z := compress(t, data, workers, 70001)
			got, err := io.ReadAll(bzip2.NewReader(bytes.NewReader(z)))
			if err != nil {
				t.Fatalf("%s: decode: %v", name, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("%s: round trip mismatch (got %d bytes, want %d)", name, len(got), len(data))
			}
			t.Logf("%s: %d -> %d", name, len(data), len(z))
		}
	}
}

func TestWorkersSameOutput(t *testing.T) {
	data := testInputs()["text"]
	a := compress(t, data, 1, 1<<20)
	b := compress(t, data, 4, 999)
	if !bytes.Equal(a, b) {
		t.Fatal("output depends on workers or write sizes")
	}
}

// TestAgainstLibbzip2 compares with the bzip2 command when it is installed:
// it must decode our stream, and our size must stay within 0.5% of its -9.
func TestAgainstLibbzip2(t *testing.T) {
	path, err := exec.LookPath("bzip2")
	if err != nil {
		t.Skip("bzip2 command not installed")
	}
	for name, data := range testInputs() {
		if len(data) == 0 {
			continue
		}
		z := compress(t, data, 2, 1<<16)
		cmd := exec.Command(path, "-d", "-c")
		cmd.Stdin = bytes.NewReader(z)
		got, err := cmd.Output()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: bzip2 -d: err=%v, equal=%v", name, err, bytes.Equal(got, data))
		}
		cmd = exec.Command(path, "-9", "-c")
		cmd.Stdin = bytes.NewReader(data)
		ref, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: ours %d, libbzip2 %d (%.4fx)", name, len(z), len(ref), float64(len(z))/float64(len(ref)))
		if float64(len(z)) > float64(len(ref))*1.005+16 {
			t.Errorf("%s: %d bytes, libbzip2 -9 gives %d", name, len(z), len(ref))
		}
	}
}

func TestLevels(t *testing.T) {
	data := bytes.Repeat([]byte("abcdefgh"), 200_000)
	for i := 0; i < len(data); i += 997 {
		data[i] = byte(i)
	}
	for _, level := range []int{1, 3, 9, 0, 12} {
		var buf bytes.Buffer
		zw := NewWriterLevel(&buf, 2, level)
		if _, err := zw.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		want := byte('0' + min(max(level, 1), 9))
		if buf.Bytes()[3] != want {
			t.Errorf("level %d: header level %c", level, buf.Bytes()[3])
		}
		got, err := io.ReadAll(bzip2.NewReader(&buf))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("level %d: round trip: %v", level, err)
		}
	}
}
