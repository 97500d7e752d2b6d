package bsdiff

import (
	"archive/tar"
	"bytes"
	"math/rand/v2"
	"testing"
	"time"
)

func makeTar(t testing.TB, mtime time.Time, files map[string][]byte, order []string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range order {
		data, ok := files[name]
		if !ok {
			continue
		}
		h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: mtime, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTarPairing(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	lib := randBytes(r, 50_000, 256)
	app := randBytes(r, 30_000, 256)
	doc := bytes.Repeat([]byte("documentation line\n"), 2000)
	oldFiles := map[string][]byte{"./lib.so": lib, "./app": app, "./doc.txt": doc, "./gone": randBytes(r, 9000, 256), "./tiny": []byte("x")}
	newFiles := map[string][]byte{"./lib.so": lib, "./app": mutate(r, app, 30), "./renamed-doc.txt": doc, "./added": randBytes(r, 7000, 256), "./tiny": []byte("y")}
	order := []string{"./added", "./app", "./doc.txt", "./gone", "./lib.so", "./renamed-doc.txt", "./tiny"}
	old := makeTar(t, time.Unix(1700000000, 0), oldFiles, order)
	new := makeTar(t, time.Unix(1701950000, 0), newFiles, order)

	spans, claimed := pairMembers(old, new)
	if len(spans) != 2 || len(claimed) != 2 {
		t.Fatalf("paired %d new members over %d old ones, want lib.so and the renamed doc: %+v", len(spans), len(claimed), spans)
	}
	for _, s := range spans {
		if !bytes.Equal(old[s.oldPos:s.oldPos+s.n], new[s.newPos:s.newPos+s.n]) {
			t.Fatalf("span %+v pairs different bytes", s)
		}
	}
	m := newMatcher(old, new, nil)
	if len(m.text) != len(old)-len(lib)-len(doc) {
		t.Fatalf("suffix array covers %d bytes, want old minus the paired members (%d)", len(m.text), len(old)-len(lib)-len(doc))
	}
	patch := diff(t, old, new)
	got, err := apply(old, patch, true)
	if err != nil || !bytes.Equal(got, new) {
		t.Fatalf("round trip: err=%v equal=%v", err, bytes.Equal(got, new))
	}
	// Not tars: no pairing, and no panic on near-tar garbage.
	if s, c := pairMembers(lib, app); s != nil || c != nil {
		t.Fatal("paired members of non-tar inputs")
	}
	if s, _ := pairMembers(old[:700], new); s != nil {
		t.Fatal("paired members of a truncated tar")
	}
}

// FuzzDiffRoundTrip checks that any old/new pair, tar or not, round-trips.
func FuzzDiffRoundTrip(f *testing.F) {
	r := rand.New(rand.NewPCG(13, 14))
	files := map[string][]byte{"./a": randBytes(r, 1500, 256), "./b": bytes.Repeat([]byte("b"), 700)}
	order := []string{"./a", "./b"}
	oldTar := makeTar(f, time.Unix(1, 0), files, order)
	files["./c"] = files["./a"]
	newTar := makeTar(f, time.Unix(2, 0), files, append(order, "./c"))
	f.Add(oldTar, newTar)
	f.Add([]byte("abcabcabc"), []byte("abcXabcabcY"))
	f.Add([]byte{}, []byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, old, new []byte) {
		patch := diff(t, old, new)
		got, err := apply(old, patch, true)
		if err != nil || !bytes.Equal(got, new) {
			t.Fatalf("round trip: err=%v equal=%v", err, bytes.Equal(got, new))
		}
	})
}

// spanGuard is a ReaderAt over b that fails the test when a read touches a
// forbidden range after arm is set.
type spanGuard struct {
	t      *testing.T
	b      []byte
	armed  bool
	forbid [][2]int
}

func (g *spanGuard) ReadAt(p []byte, off int64) (int, error) {
	if g.armed {
		for _, f := range g.forbid {
			if int(off) < f[1] && int(off)+len(p) > f[0] {
				g.t.Errorf("read of new at %d+%d inside paired member [%d, %d)", off, len(p), f[0], f[1])
			}
		}
	}
	return bytes.NewReader(g.b).ReadAt(p, off)
}

// DiffAt makes patches that apply like Diff's, and loads of new only what
// the tar pre-pass did not pair: after pairing, no read of new touches a
// paired member.
func TestDiffAt(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	lib := randBytes(r, 80_000, 256)
	app := randBytes(r, 30_000, 256)
	doc := bytes.Repeat([]byte("documentation line\n"), 3000)
	order := []string{"./added", "./app", "./doc.txt", "./gone", "./lib.so", "./renamed-doc.txt"}
	old := makeTar(t, time.Unix(1700000000, 0), map[string][]byte{"./lib.so": lib, "./app": app, "./doc.txt": doc, "./gone": randBytes(r, 9000, 256)}, order)
	new := makeTar(t, time.Unix(1701950000, 0), map[string][]byte{"./lib.so": lib, "./app": mutate(r, app, 30), "./renamed-doc.txt": doc, "./added": randBytes(r, 7000, 256)}, order)

	spans, _ := pairMembers(old, new)
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	g := &spanGuard{t: t, b: new}
	for _, s := range spans {
		g.forbid = append(g.forbid, [2]int{s.newPos, s.newPos + s.n})
	}
	// Pairing streams each member; loading never reads a paired one.
	nm := tarMembersAt(g, int64(len(new)))
	gotSpans, _, err := pairAt(old, tarMembers(old), g, nm)
	if err != nil || len(gotSpans) != len(spans) {
		t.Fatalf("pairAt: %d spans, %v", len(gotSpans), err)
	}
	g.armed = true
	nb, err := loadNew(g, int64(len(new)), gotSpans)
	if err != nil {
		t.Fatal(err)
	}
	g.armed = false
	for _, s := range gotSpans {
		if bytes.ContainsFunc(nb[s.newPos:s.newPos+s.n], func(r rune) bool { return r != 0 }) {
			t.Errorf("paired member at %d was loaded", s.newPos)
		}
	}
	var patch bytes.Buffer
	if err := DiffAt(bytes.NewReader(old), int64(len(old)), g, int64(len(new)), &patch, nil); err != nil {
		t.Fatal(err)
	}
	got, err := apply(old, patch.Bytes(), true)
	if err != nil || !bytes.Equal(got, new) {
		t.Fatalf("round trip: err=%v equal=%v", err, bytes.Equal(got, new))
	}
	// The same size as Diff's, within a few bytes.
	full := diff(t, old, new)
	if d := len(patch.Bytes()) - len(full); d > 64 || d < -64 {
		t.Errorf("DiffAt patch %d bytes, Diff %d", patch.Len(), len(full))
	}
	// Not tars: everything is loaded, and the patch round-trips.
	for _, c := range [][2][]byte{{lib, mutate(r, lib, 10)}, {nil, app}, {app, nil}} {
		var p bytes.Buffer
		if err := DiffAt(bytes.NewReader(c[0]), int64(len(c[0])), bytes.NewReader(c[1]), int64(len(c[1])), &p, nil); err != nil {
			t.Fatal(err)
		}
		if got, err := apply(c[0], p.Bytes(), true); err != nil || !bytes.Equal(got, c[1]) {
			t.Fatalf("plain files: err=%v", err)
		}
	}
}
