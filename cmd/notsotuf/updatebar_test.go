package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notsotuf/notsotuf"
)

// TestUpdateBar: on a terminal, update draws a line per phase of the
// update with the phase's share and the whole update's, redrawn at most
// every 100 ms but always at the start and end of a phase; elsewhere
// nothing is drawn.
func TestUpdateBar(t *testing.T) {
	var buf bytes.Buffer
	clock := time.Unix(1e9, 0)
	b := &updateBar{w: &buf, on: true, now: func() time.Time { return clock }}
	const mib = 1 << 20
	for _, e := range []struct {
		p       notsotuf.Progress
		advance time.Duration
	}{
		{notsotuf.Progress{Phase: notsotuf.PhaseRefresh, Done: 0, Total: 0}, 0},
		{notsotuf.Progress{Phase: notsotuf.PhaseRefresh, Done: 2048, Total: 2048}, 0},
		{notsotuf.Progress{Phase: notsotuf.PhaseDownload, Done: 0, Total: 4 * mib, OverallDone: 2048, OverallTotal: 20 * mib}, 0},
		{notsotuf.Progress{Phase: notsotuf.PhaseDownload, Done: 1 * mib, Total: 4 * mib, OverallDone: 1 * mib, OverallTotal: 20 * mib}, 10 * time.Millisecond}, // too soon: not drawn
		{notsotuf.Progress{Phase: notsotuf.PhaseDownload, Done: 2 * mib, Total: 4 * mib, OverallDone: 2 * mib, OverallTotal: 20 * mib}, 200 * time.Millisecond},
		{notsotuf.Progress{Phase: notsotuf.PhaseDownload, Done: 4 * mib, Total: 4 * mib, OverallDone: 4 * mib, OverallTotal: 20 * mib}, 0}, // the end: drawn at once
		{notsotuf.Progress{Phase: notsotuf.PhasePatch, Done: 0, Total: 8 * mib, OverallDone: 4 * mib, OverallTotal: 20 * mib}, 0},
		{notsotuf.Progress{Phase: notsotuf.PhasePatch, Done: 8 * mib, Total: 8 * mib, OverallDone: 15 * mib, OverallTotal: 20 * mib}, 0},
		{notsotuf.Progress{Phase: notsotuf.PhaseInstall, Done: 0, Total: 1, OverallDone: 15 * mib, OverallTotal: 20 * mib}, 0},
		{notsotuf.Progress{Phase: notsotuf.PhaseInstall, Done: 1, Total: 1, OverallDone: 20 * mib, OverallTotal: 20 * mib}, 0},
		{notsotuf.Progress{Phase: notsotuf.PhaseInstall, Done: 1, Total: 1, OverallDone: 20 * mib, OverallTotal: 20 * mib}, time.Second}, // the same again: not redrawn
	} {
		clock = clock.Add(e.advance)
		b.update(e.p)
	}
	b.finish()
	b.finish()
	want := []string{
		"\rrefresh  [                              ]   0% 0/0 B  (update  --%)" +
			"\rrefresh  [==============================] 100% 2.0/2.0 KiB  (update  --%)",
		"\rdownload [                              ]   0% 0.0/4.0 MiB  (update   0%)" +
			"\rdownload [===============               ]  50% 2.0/4.0 MiB  (update  10%)" +
			"\rdownload [==============================] 100% 4.0/4.0 MiB  (update  20%)",
		"\rpatch    [                              ]   0% 0.0/8.0 MiB  (update  20%)" +
			"\rpatch    [==============================] 100% 8.0/8.0 MiB  (update  75%)",
		"\rinstall  [                              ]   0%  (update  75%)" +
			"\rinstall  [==============================] 100%  (update 100%)",
		"",
	}
	if got := buf.String(); got != strings.Join(want, "\n") {
		t.Errorf("update bar drew\n%q\nwant\n%q", got, strings.Join(want, "\n"))
	}

	// Not a terminal: a buffer, a file.
	buf.Reset()
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, w := range []*updateBar{newUpdateBar(&buf), newUpdateBar(f)} {
		w.update(notsotuf.Progress{Phase: notsotuf.PhaseDownload, Done: 0, Total: 10})
		w.update(notsotuf.Progress{Phase: notsotuf.PhaseDownload, Done: 10, Total: 10, OverallDone: 10, OverallTotal: 10})
		w.finish()
	}
	if fi, _ := f.Stat(); buf.Len() > 0 || fi.Size() > 0 {
		t.Errorf("update bar drew on a non-terminal: %q, file of %d bytes", buf.String(), fi.Size())
	}
}
