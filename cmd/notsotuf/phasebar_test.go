package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestPhaseBar: on a terminal, each phase of add/remove/verify gets its
// own line, finished when the next phase starts; elsewhere nothing is drawn.
func TestPhaseBar(t *testing.T) {
	var buf bytes.Buffer
	b := &phaseBar{w: &buf, on: true}
	b.update("archive", 0, 100<<20)
	b.update("archive", 100<<20, 100<<20)
	b.update("index", 0, 50<<20)
	b.update("index", 50<<20, 50<<20)
	b.update("index", 50<<20, 50<<20) // the same again: not redrawn
	b.finish()
	b.finish()
	want := "\rarchive  [                              ]   0% 0.0/100.0 MiB" +
		"\rarchive  [==============================] 100% 100.0/100.0 MiB\n" +
		"\rindex    [                              ]   0% 0.0/50.0 MiB" +
		"\rindex    [==============================] 100% 50.0/50.0 MiB\n"
	if buf.String() != want {
		t.Errorf("phase bar drew\n%q\nwant\n%q", buf.String(), want)
	}

	// Not a terminal: a buffer, a file.
	buf.Reset()
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, w := range []*phaseBar{newPhaseBar(&buf), newPhaseBar(f)} {
		w.update("archive", 0, 10)
		w.update("archive", 10, 10)
		w.finish()
	}
	if fi, _ := f.Stat(); buf.Len() > 0 || fi.Size() > 0 {
		t.Errorf("phase bar drew on a non-terminal: %q, file of %d bytes", buf.String(), fi.Size())
	}
}
