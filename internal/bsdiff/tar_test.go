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
