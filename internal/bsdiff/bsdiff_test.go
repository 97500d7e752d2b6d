package bsdiff

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/notsotuf/notsotuf/internal/bsdiff/bzip2"
)

// onlyReader hides io.ReaderAt so Apply takes its buffering path.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func diff(t testing.TB, old, new []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Diff(old, new, &buf, &DiffOptions{Workers: 2, chunkSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func apply(old, patch []byte, seekable bool) ([]byte, error) {
	var out bytes.Buffer
	var pr io.Reader = onlyReader{bytes.NewReader(patch)}
	if seekable {
		pr = bytes.NewReader(patch)
	}
	n, err := Apply(bytes.NewReader(old), int64(len(old)), pr, &out, nil)
	if err == nil && n != int64(out.Len()) {
		return nil, fmt.Errorf("Apply returned %d, wrote %d", n, out.Len())
	}
	return out.Bytes(), err
}

// mutate returns a copy of b with random edits: byte changes, insertions,
// deletions and moved blocks, as between two builds of a program.
func mutate(r *rand.Rand, b []byte, edits int) []byte {
	out := append([]byte(nil), b...)
	for range edits {
		if len(out) == 0 {
			out = append(out, byte(r.IntN(256)))
			continue
		}
		p := r.IntN(len(out))
		switch r.IntN(4) {
		case 0:
			out[p] ^= byte(1 + r.IntN(255))
		case 1:
			ins := make([]byte, r.IntN(64))
			for i := range ins {
				ins[i] = byte(r.IntN(256))
			}
			out = append(out[:p], append(ins, out[p:]...)...)
		case 2:
			q := min(len(out), p+r.IntN(64))
			out = append(out[:p], out[q:]...)
		case 3:
			q := min(len(out), p+r.IntN(4096))
			blk := append([]byte(nil), out[p:q]...)
			out = append(out[:p], out[q:]...)
			d := r.IntN(len(out) + 1)
			out = append(out[:d], append(blk, out[d:]...)...)
		}
	}
	return out
}

func randBytes(r *rand.Rand, n, alpha int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.IntN(alpha))
	}
	return b
}

type pair struct {
	name     string
	old, new []byte
}

func testPairs() []pair {
	r := rand.New(rand.NewPCG(7, 8))
	base := randBytes(r, 200_000, 256)
	text := bytes.Repeat([]byte("func main() { fmt.Println(\"hello, world\") }\n"), 3000)
	big := randBytes(r, 300<<10, 16) // several matching chunks
	return []pair{
		{"both empty", nil, nil},
		{"empty old", nil, []byte("hello")},
		{"empty new", []byte("hello"), nil},
		{"one byte", []byte{1}, []byte{2}},
		{"equal", base, base},
		{"random unrelated", randBytes(r, 5000, 256), randBytes(r, 7000, 256)},
		{"binary edits", base, mutate(r, base, 200)},
		{"text edits", text, mutate(r, text, 50)},
		{"zeros", make([]byte, 100_000), make([]byte, 150_000)},
		{"chunks", big, mutate(r, big, 100)},
		{"shrink", base, base[1000:50_000]},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, p := range testPairs() {
		t.Run(p.name, func(t *testing.T) {
			patch := diff(t, p.old, p.new)
			for _, seekable := range []bool{true, false} {
				got, err := apply(p.old, patch, seekable)
				if err != nil {
					t.Fatalf("seekable=%v: %v", seekable, err)
				}
				if !bytes.Equal(got, p.new) {
					t.Fatalf("seekable=%v: output differs from new (%d vs %d bytes)", seekable, len(got), len(p.new))
				}
			}
		})
	}
}

func TestRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for i := range 60 {
		old := randBytes(r, r.IntN(3000), 1+r.IntN(256))
		new := mutate(r, old, r.IntN(20))
		if i%5 == 0 {
			new = randBytes(r, r.IntN(3000), 1+r.IntN(256))
		}
		got, err := apply(old, diff(t, old, new), i%2 == 0)
		if err != nil || !bytes.Equal(got, new) {
			t.Fatalf("case %d (old %d, new %d bytes): err=%v equal=%v", i, len(old), len(new), err, bytes.Equal(got, new))
		}
	}
}

func TestProgress(t *testing.T) {
	p := testPairs()[9]
	type call struct {
		phase       string
		done, total int64
	}
	var calls []call
	var buf bytes.Buffer
	err := Diff(p.old, p.new, &buf, &DiffOptions{chunkSize: 64 << 10, Progress: func(phase string, done, total int64) {
		calls = append(calls, call{phase, done, total})
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Each phase in turn, from 0 to its total, never backwards.
	want := []call{{"index", 0, int64(len(p.old))}, {"match", 0, int64(len(p.new))}, {"compress", 0, int64(len(p.new))}}
	i := 0
	for _, w := range want {
		if i >= len(calls) || calls[i] != w {
			t.Fatalf("progress calls %v: want phase %q to start with %v", calls, w.phase, w)
		}
		last := int64(0)
		n := 0
		for ; i < len(calls) && calls[i].phase == w.phase; i++ {
			if calls[i].done < last || calls[i].done > calls[i].total || calls[i].total != w.total {
				t.Fatalf("progress calls %v: %v goes backwards or beyond %d", calls, calls[i], w.total)
			}
			last = calls[i].done
			n++
		}
		if last != w.total || n < 2 {
			t.Fatalf("progress calls %v: phase %q ends at %d of %d after %d calls", calls, w.phase, last, w.total, n)
		}
	}
	if i != len(calls) {
		t.Fatalf("progress calls %v: more after the compress phase", calls)
	}
	var last int64
	last = 0
	_, err = Apply(bytes.NewReader(p.old), int64(len(p.old)), bytes.NewReader(buf.Bytes()), io.Discard,
		&ApplyOptions{Progress: func(done, total int64) { last = done }})
	if err != nil || last != int64(len(p.new)) {
		t.Fatalf("apply progress ended at %d of %d (err %v)", last, len(p.new), err)
	}
}

func TestCorruptPatches(t *testing.T) {
	old := []byte("the old file, with some content that the new file shares")
	new := []byte("the new file, with some content that the old file shares, and more")
	patch := diff(t, old, new)
	// Every truncation fails with ErrCorrupt.
	for n := range len(patch) {
		for _, seekable := range []bool{true, false} {
			_, err := apply(old, patch[:n], seekable)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("truncated to %d bytes (seekable=%v): err = %v, want ErrCorrupt", n, seekable, err)
			}
		}
	}
	hdr := func(ctrl, diff, size int64) []byte {
		b := append([]byte(nil), patch...)
		putInt(b[8:], ctrl)
		putInt(b[16:], diff)
		putInt(b[24:], size)
		return b
	}
	h, _ := ReadHeader(patch)
	cases := map[string][]byte{
		"bad magic":         append([]byte("BSDIFF41"), patch[8:]...),
		"negative ctrl":     hdr(-1, h.DiffLen, h.NewSize),
		"huge new size":     hdr(h.CtrlLen, h.DiffLen, 1<<62),
		"larger new size":   hdr(h.CtrlLen, h.DiffLen, h.NewSize+1),
		"smaller new size":  hdr(h.CtrlLen, h.DiffLen, h.NewSize-1),
		"ctrl length wrong": hdr(h.CtrlLen-3, h.DiffLen, h.NewSize),
		"diff length huge":  hdr(h.CtrlLen, 1<<61, h.NewSize),
	}
	for name, p := range cases {
		for _, seekable := range []bool{true, false} {
			if _, err := apply(old, p, seekable); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s (seekable=%v): err = %v, want ErrCorrupt", name, seekable, err)
			}
		}
	}
	// A patch for a longer old file must not read past the end of old.
	if _, err := apply(old[:10], patch, true); !errors.Is(err, ErrCorrupt) {
		t.Errorf("short old file: err = %v, want ErrCorrupt", err)
	}
}

// craft builds a patch from raw control triples, diff and extra bytes.
func craft(t testing.TB, newSize int64, triples [][3]int64, diffData, extraData []byte) []byte {
	var ctrl bytes.Buffer
	for _, tr := range triples {
		var b [24]byte
		putInt(b[0:], tr[0])
		putInt(b[8:], tr[1])
		putInt(b[16:], tr[2])
		ctrl.Write(b[:])
	}
	var c, d, e buffer
	for _, x := range []struct {
		w    *buffer
		data []byte
	}{{&c, ctrl.Bytes()}, {&d, diffData}, {&e, extraData}} {
		if err := compressTo(x.w, x.data); err != nil {
			t.Fatal(err)
		}
	}
	var hdr [32]byte
	copy(hdr[:], Magic)
	putInt(hdr[8:], int64(len(c.b)))
	putInt(hdr[16:], int64(len(d.b)))
	putInt(hdr[24:], newSize)
	return bytes.Join([][]byte{hdr[:], c.b, d.b, e.b}, nil)
}

func TestCraftedTriples(t *testing.T) {
	old := []byte("0123456789")
	ok := craft(t, 6, [][3]int64{{3, 1, -2}, {2, 0, 0}}, []byte{0, 0, 1, 0, 0}, []byte("x"))
	got, err := apply(old, ok, true)
	if err != nil || string(got) != "013x12" {
		t.Fatalf("crafted patch: %q, %v", got, err)
	}
	bad := map[string][]byte{
		"negative add":       craft(t, 6, [][3]int64{{-1, 1, 0}}, nil, nil),
		"negative copy":      craft(t, 6, [][3]int64{{0, -1, 0}}, nil, nil),
		"add past new":       craft(t, 2, [][3]int64{{3, 0, 0}}, []byte{0, 0, 0}, nil),
		"copy past new":      craft(t, 2, [][3]int64{{0, 3, 0}}, nil, []byte("abc")),
		"add before old":     craft(t, 3, [][3]int64{{0, 0, -1}, {3, 0, 0}}, []byte{0, 0, 0}, nil),
		"add after old":      craft(t, 3, [][3]int64{{0, 0, 9}, {3, 0, 0}}, []byte{0, 0, 0}, nil),
		"huge seek":          craft(t, 3, [][3]int64{{0, 0, 1 << 62}, {0, 0, 1 << 62}, {3, 0, 0}}, []byte{0, 0, 0}, nil),
		"diff block short":   craft(t, 6, [][3]int64{{6, 0, 0}}, []byte{0, 0}, nil),
		"extra block short":  craft(t, 6, [][3]int64{{0, 6, 0}}, nil, []byte("ab")),
		"control block ends": craft(t, 6, [][3]int64{{1, 0, 0}}, []byte{0}, nil),
	}
	for name, p := range bad {
		for _, seekable := range []bool{true, false} {
			if _, err := apply(old, p, seekable); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s (seekable=%v): err = %v, want ErrCorrupt", name, seekable, err)
			}
		}
	}
}

func FuzzApply(f *testing.F) {
	old := []byte("an old file: 0123456789abcdefghijklmnopqrstuvwxyz, repeated 0123456789")
	new := []byte("a new file: 0123456789ABCDEFghijklmnopqrstuvwxyz, repeated twice 0123456789")
	f.Add(diff(f, old, new))
	f.Add(diff(f, old, nil))
	f.Add(diff(f, nil, new))
	f.Add(craft(f, 6, [][3]int64{{3, 1, -2}, {2, 0, 0}}, []byte{0, 0, 1, 0, 0}, []byte("x")))
	f.Add([]byte("BSDIFF40"))
	f.Fuzz(func(t *testing.T, patch []byte) {
		for _, seekable := range []bool{true, false} {
			var out bytes.Buffer
			var pr io.Reader = onlyReader{bytes.NewReader(patch)}
			if seekable {
				pr = bytes.NewReader(patch)
			}
			n, err := Apply(bytes.NewReader(old), int64(len(old)), pr, &out, nil)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("error does not wrap ErrCorrupt: %v", err)
				}
				continue
			}
			h, _ := ReadHeader(patch)
			if n != h.NewSize || int64(out.Len()) != n {
				t.Fatalf("wrote %d (returned %d), header says %d", out.Len(), n, h.NewSize)
			}
		}
	})
}

// TestInteropC checks our patches against Debian's bspatch and C bsdiff's
// patches against Apply, when the tools are installed.
func TestInteropC(t *testing.T) {
	bsdiffC, err1 := exec.LookPath("bsdiff")
	bspatchC, err2 := exec.LookPath("bspatch")
	if err1 != nil || err2 != nil {
		t.Skip("bsdiff/bspatch not installed (apt-get install bsdiff)")
	}
	dir := t.TempDir()
	for i, p := range testPairs() {
		if len(p.old) > 1<<19 || len(p.old) == 0 || len(p.new) == 0 {
			continue // C bsdiff is slow on big inputs and cannot mmap empty files
		}
		oldF := filepath.Join(dir, fmt.Sprint(i, ".old"))
		newF := filepath.Join(dir, fmt.Sprint(i, ".new"))
		ours := filepath.Join(dir, fmt.Sprint(i, ".ours"))
		theirs := filepath.Join(dir, fmt.Sprint(i, ".theirs"))
		out := filepath.Join(dir, fmt.Sprint(i, ".out"))
		must(t, os.WriteFile(oldF, p.old, 0o644))
		must(t, os.WriteFile(newF, p.new, 0o644))
		must(t, os.WriteFile(ours, diff(t, p.old, p.new), 0o644))
		if b, err := exec.Command(bspatchC, oldF, out, ours).CombinedOutput(); err != nil {
			t.Fatalf("%s: C bspatch rejects our patch: %v: %s", p.name, err, b)
		}
		got, err := os.ReadFile(out)
		must(t, err)
		if !bytes.Equal(got, p.new) {
			t.Fatalf("%s: C bspatch output differs", p.name)
		}
		if b, err := exec.Command(bsdiffC, oldF, newF, theirs).CombinedOutput(); err != nil {
			t.Fatalf("%s: C bsdiff: %v: %s", p.name, err, b)
		}
		cp, err := os.ReadFile(theirs)
		must(t, err)
		got, err = apply(p.old, cp, true)
		if err != nil || !bytes.Equal(got, p.new) {
			t.Fatalf("%s: applying C bsdiff's patch: err=%v equal=%v", p.name, err, bytes.Equal(got, p.new))
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func compressTo(w io.Writer, data []byte) error {
	zw := bzip2.NewWriter(w, 1)
	if _, err := zw.Write(data); err != nil {
		return err
	}
	return zw.Close()
}

func benchPair() (old, new []byte) {
	r := rand.New(rand.NewPCG(15, 16))
	old = randBytes(r, 4<<20, 64)
	return old, mutate(r, old, 2000)
}

func BenchmarkDiff(b *testing.B) {
	old, new := benchPair()
	b.SetBytes(int64(len(new)))
	for b.Loop() {
		if err := Diff(old, new, io.Discard, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApply(b *testing.B) {
	old, new := benchPair()
	patch := diff(b, old, new)
	b.SetBytes(int64(len(new)))
	for b.Loop() {
		if _, err := Apply(bytes.NewReader(old), int64(len(old)), bytes.NewReader(patch), io.Discard, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDiffProgress measures what progress reporting costs: Diff with
// a Progress callback and without, alternately in the same run, reported
// as the ratio with/without (1.00 means free).
func BenchmarkDiffProgress(b *testing.B) {
	old, new := benchPair()
	opts := &DiffOptions{Progress: func(string, int64, int64) {}}
	var with, without time.Duration
	for b.Loop() {
		t0 := time.Now()
		if err := Diff(old, new, io.Discard, nil); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := Diff(old, new, io.Discard, opts); err != nil {
			b.Fatal(err)
		}
		without += t1.Sub(t0)
		with += time.Since(t1)
	}
	b.ReportMetric(float64(with)/float64(without), "with/without")
}
