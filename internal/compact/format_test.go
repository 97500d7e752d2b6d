package compact

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/notsotuf/notsotuf/internal/bsdiff"
	"github.com/notsotuf/notsotuf/internal/flate"
)

func zlibOf(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := flate.NewZlibWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// handmade builds a patch by hand, with every feature of the format: an
// old zlib section appended decompressed to old*, a new one recompressed
// by the patcher, and x86-64 and arm64 code regions rewritten through an
// address map. It returns old, new and the patch.
func handmade(t testing.TB, seed uint64) (old, new, patch []byte) {
	rng := rand.New(rand.NewPCG(seed, 7))
	debugOld := bytes.Repeat([]byte("DW_AT_name main.main DW_AT_low_pc 0x401000\x00"), 200)
	debugNew := bytes.Replace(debugOld, []byte("0x401000"), []byte("0x401010"), 50)
	codeOld := randomCode(rng, 3000, kindAMD64)
	armOld := randomCode(rng, 2000, kindARM64)
	codeNew := append(append([]byte{}, codeOld[:1000]...), append(make([]byte, 16), codeOld[1000:]...)...)
	armNew := append([]byte{}, armOld...)
	zOld, zNew := zlibOf(t, debugOld), zlibOf(t, debugNew)

	old = append(append(append(append([]byte("old header\n"), codeOld...), armOld...), zOld...), "old trailer"...)
	new = append(append(append(append([]byte("new header\n"), codeNew...), armNew...), zNew...), "new trailer"...)

	segs := normalizeSegments([]segment{{n: 0x401000, o: 0x401000, l: 1000}, {n: 0x401000 + 1016, o: 0x401000 + 1000, l: 2000}, {n: 0x500000, o: 0x500000, l: 2000}})
	maps := &codeMaps{segs: segs}
	nstar := bytes.Clone(new)
	cStart := int64(len("new header\n"))
	aStart := cStart + int64(len(codeNew))
	forwardAMD64(nstar[cStart:aStart], 0x401000, maps.amd64())
	forwardARM64(nstar[aStart:aStart+int64(len(armNew))], 0x500000, maps)
	zStart := aStart + int64(len(armNew))
	nstar = append(append(nstar[:zStart:zStart], debugNew...), "new trailer"...)
	zOldOff := int64(len("old header\n") + len(codeOld) + len(armOld))
	ostar := append(bytes.Clone(old), debugOld...)

	h := &header{
		OldSize: int64(len(old)), NewSize: int64(len(new)), InnerSize: int64(len(nstar)),
		Exps: []expansion{{Off: zOldOff, CLen: int64(len(zOld)), ULen: int64(len(debugOld))}},
		Maps: [][]segment{segs},
		Regions: []region{
			{Kind: kindAMD64, Start: cStart, Len: int64(len(codeNew)), VA: 0x401000, Map: 0},
			{Kind: kindARM64, Start: aStart, Len: int64(len(armNew)), VA: 0x500000, Map: 0},
			{Kind: kindZlib, Start: zStart, Len: int64(len(debugNew)), CLen: int64(len(zNew))},
		},
	}
	return old, new, assemble(t, h, ostar, nstar)
}

// assemble writes a patch from a header and the inner files.
func assemble(t testing.TB, h *header, ostar, nstar []byte) []byte {
	hb, err := h.encode()
	if err != nil {
		t.Fatal(err)
	}
	var p bytes.Buffer
	p.WriteString(Magic)
	binary.Write(&p, binary.LittleEndian, uint32(len(hb)))
	p.Write(hb)
	if err := bsdiff.Diff(ostar, nstar, &p, nil); err != nil {
		t.Fatal(err)
	}
	return p.Bytes()
}

func TestHandmadePatch(t *testing.T) {
	old, new, patch := handmade(t, 1)
	got, err := applyCompact(t, old, patch)
	if err != nil || !bytes.Equal(got, new) {
		t.Fatalf("apply: %v (equal %v)", err, bytes.Equal(got, new))
	}
	// With a scratch file instead of memory.
	var removed bool
	var out bytes.Buffer
	_, err = Apply(bytes.NewReader(old), int64(len(old)), bytes.NewReader(patch), &out, &ApplyOptions{
		Scratch: func() (Scratch, func(), error) { return &memScratch{}, func() { removed = true }, nil },
	})
	if err != nil || !bytes.Equal(out.Bytes(), new) || !removed {
		t.Fatalf("apply with scratch: %v, equal %v, removed %v", err, bytes.Equal(out.Bytes(), new), removed)
	}
	// Stopped in the middle of a zlib region (Apply's error path), the
	// inverter stops the region's compressor: no goroutine is left behind.
	before := runtime.NumGoroutine()
	for range 3 {
		h := &header{InnerSize: 1000, NewSize: 900, Regions: []region{{Kind: kindZlib, Start: 10, Len: 500, CLen: 400}}}
		inv := &inverter{w: io.Discard, h: h}
		if _, err := inv.Write(make([]byte, 200)); err != nil {
			t.Fatal(err)
		}
		if inv.z == nil {
			t.Fatal("no compressor running in the region")
		}
		inv.abort()
	}
	for i := 0; runtime.NumGoroutine() > before && i < 100; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines left after stopped applies (%d before)", n, before)
	}
	// A plain reader and a ReaderAt patch give the same.
	got2, err := Apply(bytes.NewReader(old), int64(len(old)), struct{ io.Reader }{bytes.NewReader(patch)}, io.Discard, nil)
	if err != nil || got2 != int64(len(new)) {
		t.Fatalf("apply from a plain reader: %d, %v", got2, err)
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	h := &header{
		OldSize: 1000, NewSize: 900, InnerSize: 1900,
		Exps:    []expansion{{Off: 10, CLen: 100, ULen: 500}, {Off: 200, CLen: 50, ULen: 60}},
		Maps:    [][]segment{{{n: 0x1000, o: 0x2000, l: 16}, {n: 0x1010, o: 0x1000, l: 32}}, nil},
		Regions: []region{{Kind: kindZlib, Start: 5, Len: 1100, CLen: 100}, {Kind: kindAMD64, Start: 1200, Len: 300, VA: 0x401000, Map: 1}},
	}
	b, err := h.encode()
	if err != nil {
		t.Fatal(err)
	}
	body, err := readAllLimited(bzip2Reader(b), maxHeaderLen)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseHeader(body)
	if err != nil {
		t.Fatal(err)
	}
	got.decodeMaps()
	got.Maps[1] = nil
	got.mapCounts, got.mapData = nil, nil
	if !reflect.DeepEqual(got, h) {
		t.Errorf("round trip:\n%+v\nwant\n%+v", got, h)
	}
}

// Every hostile header is refused with an error wrapping ErrCorrupt that
// says what is wrong, before anything sized by it is allocated.
func TestHostileHeaders(t *testing.T) {
	old, _, _ := handmade(t, 1)
	base := func() *header {
		return &header{OldSize: int64(len(old)), NewSize: 10, InnerSize: 10}
	}
	for _, c := range []struct {
		name string
		edit func(h *header)
		want string
	}{
		{"other old size", func(h *header) { h.OldSize++ }, "old file of"},
		{"expansion past old", func(h *header) { h.Exps = []expansion{{Off: int64(len(old)) - 5, CLen: 10, ULen: 10}} }, "passes the old size"},
		{"inflation bomb", func(h *header) { h.Exps = []expansion{{Off: 0, CLen: 10, ULen: 1 << 40}} }, "cannot inflate"},
		{"region past new*", func(h *header) { h.Regions = []region{{Kind: kindZlib, Start: 5, Len: 10, CLen: 10}} }, "passes the rewritten size"},
		{"unknown region kind", func(h *header) { h.Regions = []region{{Kind: 9, Start: 0, Len: 1}} }, "unknown kind"},
		{"missing map", func(h *header) { h.Regions = []region{{Kind: kindAMD64, Start: 0, Len: 5, Map: 3}} }, "address map"},
		{"sizes disagree", func(h *header) { h.NewSize = 11 }, "not the new size"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := base()
			c.edit(h)
			p := assemble(t, h, old, make([]byte, h.InnerSize))
			_, err := Apply(bytes.NewReader(old), int64(len(old)), bytes.NewReader(p), io.Discard, nil)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want ErrCorrupt with %q", err, c.want)
			}
		})
	}
	// Huge counts in a tiny header.
	for _, body := range [][]byte{
		binary.AppendUvarint([]byte{1, 0, 0, 0}, 1<<40),                 // expansions
		binary.AppendUvarint([]byte{1, 0, 0, 0, 0}, 1<<40),              // maps
		binary.AppendUvarint([]byte{1, 0, 0, 0, 0, 1}, 1<<40),           // segments
		{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, // overlong varint
	} {
		if _, err := parseHeader(body); !errors.Is(err, ErrCorrupt) {
			t.Errorf("parseHeader(% x) = %v, want ErrCorrupt", body, err)
		}
	}
	// More segments than a patcher should hold, each well-formed.
	many := binary.AppendUvarint([]byte{1, 0, 0, 0, 0, 1}, maxSegments+1)
	many = append(many, bytes.Repeat([]byte{0, 1, 0}, maxSegments+1)...)
	if _, err := parseHeader(many); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "segments") {
		t.Errorf("parseHeader with %d segments = %v", maxSegments+1, err)
	}
	// More regions than a patcher should hold.
	regs := binary.AppendUvarint([]byte{1, 0, 0, 0, 0, 0}, maxRegions+1)
	regs = append(regs, bytes.Repeat([]byte{9, 0, 1}, maxRegions+1)...)
	if _, err := parseHeader(regs); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "regions, more than") {
		t.Errorf("parseHeader with %d regions = %v", maxRegions+1, err)
	}
	// A header length beyond the limit, a wrong magic, a truncated header.
	for _, p := range [][]byte{
		[]byte(Magic + "\xff\xff\xff\x7f"),
		[]byte("BSDIFF40\x00\x00\x00\x00"),
		[]byte(Magic + "\x10\x00\x00\x00abc"),
		[]byte(Magic[:5]),
	} {
		if _, err := Apply(bytes.NewReader(old), int64(len(old)), bytes.NewReader(p), io.Discard, nil); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Apply(%q) = %v, want ErrCorrupt", p, err)
		}
	}
}

// A patch whose new* does not recompress to the promised bytes, or whose
// old section does not inflate as it says, fails with a clear error.
func TestHostileRegions(t *testing.T) {
	old, _, patch := handmade(t, 2)
	hb, inner := splitPatch(t, patch)
	h := parseOK(t, hb)
	for _, c := range []struct {
		name string
		edit func(h *header)
		want string
	}{
		{"compressed length", func(h *header) { h.Regions[2].CLen--; h.NewSize--; h.InnerSize--; h.Regions[2].Len-- }, "recompresses"},
		{"inflated length", func(h *header) { h.Exps[0].ULen++ }, "inflates to"},
		{"not zlib", func(h *header) { h.Exps[0].Off-- }, "zlib"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h2 := *h
			h2.Exps = append([]expansion{}, h.Exps...)
			h2.Regions = append([]region{}, h.Regions...)
			c.edit(&h2)
			b, err := h2.encode()
			if err != nil {
				t.Fatal(err)
			}
			var p bytes.Buffer
			p.WriteString(Magic)
			binary.Write(&p, binary.LittleEndian, uint32(len(b)))
			p.Write(b)
			p.Write(inner)
			_, err = Apply(bytes.NewReader(old), int64(len(old)), bytes.NewReader(p.Bytes()), io.Discard, nil)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want ErrCorrupt with %q", err, c.want)
			}
		})
	}
}

func splitPatch(t testing.TB, p []byte) (hb, inner []byte) {
	n := binary.LittleEndian.Uint32(p[8:])
	return p[12 : 12+n], p[12+n:]
}

func parseOK(t testing.TB, hb []byte) *header {
	body, err := readAllLimited(bzip2Reader(hb), maxHeaderLen)
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseHeader(body)
	if err != nil {
		t.Fatal(err)
	}
	h.decodeMaps()
	return h
}

// FuzzApply feeds Apply damaged patches: it must return an error wrapping
// ErrCorrupt (or the right output), never panic.
func FuzzApply(f *testing.F) {
	old, _, patch := handmade(f, 3)
	f.Add(patch)
	f.Add(patch[:len(patch)/2])
	hb, _ := splitPatch(f, patch)
	f.Add(append([]byte(Magic+"\x00\x00\x00\x00"), hb...))
	f.Fuzz(func(t *testing.T, p []byte) {
		_, err := Apply(bytes.NewReader(old), int64(len(old)), bytes.NewReader(p), io.Discard, nil)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error not wrapping ErrCorrupt: %v", err)
		}
	})
}

// FuzzHeader feeds parseHeader any body (the part after bzip2).
func FuzzHeader(f *testing.F) {
	_, _, patch := handmade(f, 4)
	hb, _ := splitPatch(f, patch)
	body, _ := readAllLimited(bzip2Reader(hb), maxHeaderLen)
	f.Add(body)
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := parseHeader(body)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not wrapping ErrCorrupt: %v", err)
			}
			return
		}
		// What parses encodes back to what parses the same.
		h.decodeMaps()
		b, err := h.encode()
		if err != nil {
			t.Fatal(err)
		}
		body2, _ := readAllLimited(bzip2Reader(b), maxHeaderLen)
		if _, err := parseHeader(body2); err != nil {
			t.Fatalf("re-encoded header does not parse: %v", err)
		}
	})
}

// Files that are no executables, empty files, and an executable against
// something else: the patch is BSDIFF40's with a small header, and it
// round-trips.
func TestDiffPlainInputs(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	data := randomCode(rng, 20000, kindAMD64)
	changed := bytes.Clone(data)
	for i := 0; i < len(changed); i += 777 {
		changed[i]++
	}
	elfHead := append([]byte("\x7fELF\x02\x01\x01"), data[:500]...)
	for i, c := range [][2][]byte{
		{nil, nil}, {nil, data}, {data, nil}, {data, changed}, {elfHead, data}, {data, elfHead},
	} {
		patch, trace := diffCompact(t, c[0], c[1])
		if len(trace) != 0 {
			t.Errorf("case %d: rewrote something: %v", i, trace)
		}
		got, err := applyCompact(t, c[0], patch)
		if err != nil || !bytes.Equal(got, c[1]) {
			t.Fatalf("case %d: round trip: %v", i, err)
		}
		plain := diffBSDiff(t, c[0], c[1])
		if len(patch) > len(plain)+64 {
			t.Errorf("case %d: compact %d bytes, bsdiff %d", i, len(patch), len(plain))
		}
	}
}
