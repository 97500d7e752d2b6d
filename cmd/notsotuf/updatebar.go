package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/notsotuf/notsotuf"
)

// updateBar draws the progress of an update (ClientConfig.OnProgress) on
// a terminal: a line per phase, redrawn in place while the phase runs,
// with the phase's share done and the whole update's; elsewhere (a pipe,
// a file, a test) it draws nothing.
type updateBar struct {
	w     io.Writer
	on    bool
	now   func() time.Time
	last  time.Time         // when the line was last drawn
	shown notsotuf.Progress // what it shows
	drawn bool              // a line of the current phase is on screen
}

func newUpdateBar(w io.Writer) *updateBar {
	return &updateBar{w: w, on: newProgressBar(w, "", false).on, now: time.Now}
}

// update is a ClientConfig.OnProgress: it draws p at most every 100 ms,
// but always the start and end of a phase.
func (b *updateBar) update(p notsotuf.Progress) {
	if !b.on {
		return
	}
	now := b.now()
	switch {
	case b.drawn && p.Phase != b.shown.Phase:
		fmt.Fprintln(b.w) // the previous phase keeps its line
		b.drawn = false
	case b.drawn && (p == b.shown || p.Done < p.Total && now.Sub(b.last) < 100*time.Millisecond):
		return
	}
	b.last, b.shown, b.drawn = now, p, true
	fmt.Fprint(b.w, "\r"+barLine(p))
}

// finish ends the line of the last phase.
func (b *updateBar) finish() {
	if b.drawn {
		fmt.Fprintln(b.w)
		b.drawn = false
	}
}

// barLine renders p: the phase, a bar and the share of the phase done,
// what it counts (bytes; the install is one step), and the share of the
// whole update done ("--" while it is not known, during the refresh).
func barLine(p notsotuf.Progress) string {
	const width = 30
	frac := 0.0 // nothing known yet (the refresh's start)
	if p.Total > 0 {
		frac = float64(p.Done) / float64(p.Total)
	}
	n := int(frac * width)
	// Percentages round down: 100% means done.
	line := fmt.Sprintf("%-8s [%s%s] %3d%%", p.Phase, strings.Repeat("=", n), strings.Repeat(" ", width-n), int(frac*100))
	if p.Phase != notsotuf.PhaseInstall {
		line += " " + byteCounts(p.Done, p.Total)
	}
	if p.OverallTotal > 0 {
		line += fmt.Sprintf("  (update %3d%%)", int(100*float64(p.OverallDone)/float64(p.OverallTotal)))
	} else {
		line += "  (update  --%)"
	}
	return line
}

// byteCounts renders done/total in the unit that suits total.
func byteCounts(done, total int64) string {
	switch {
	case total >= 1<<20:
		return fmt.Sprintf("%.1f/%.1f MiB", float64(done)/(1<<20), float64(total)/(1<<20))
	case total >= 1<<10:
		return fmt.Sprintf("%.1f/%.1f KiB", float64(done)/(1<<10), float64(total)/(1<<10))
	}
	return fmt.Sprintf("%d/%d B", done, total)
}
