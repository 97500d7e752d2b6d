package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/afero"
	"golang.org/x/term"

	"github.com/notsotuf/notsotuf"
)

const diffUsage = `usage: notsotuf diff [-q] [-workers N] [-format NAME] OLD NEW PATCH

Writes PATCH, a patch that turns OLD into NEW, atomically. The default
format, bsdiff, is BSDIFF40 (bsdiff 4.x): Debian's bspatch and Python's
bsdiff4 apply it. The compact format is smaller for executables (ELF, PE,
Mach-O on x86-64 and arm64, alone or in a tar); only notsotuf applies it.
`

const patchUsage = `usage: notsotuf patch [-q] OLD PATCH NEW

Applies PATCH to OLD and writes NEW atomically, with the permissions of
OLD. The format is recognised by its first bytes: BSDIFF40 (from notsotuf
diff, bsdiff or bsdiff4) or compact (from notsotuf diff -format compact).
`

// patchFlags returns a FlagSet whose -h help (text, then the flags) goes to
// stdout; mistakes are reported by parseFlags as usage errors.
func patchFlags(name, text string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprint(stdout, text+"\nflags:\n")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// runDiff implements "notsotuf diff OLD NEW PATCH".
func runDiff(args []string, stdout, stderr io.Writer) error {
	fs := patchFlags("diff", diffUsage, stdout)
	quiet := fs.Bool("q", false, "no progress bar")
	workers := fs.Int("workers", 0, "goroutines to use (0: all CPUs)")
	format := fs.String("format", notsotuf.PatchFormatBSDiff, "patch `format`: bsdiff or compact")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 3 {
		return usagef("diff takes 3 arguments (OLD NEW PATCH), got %d", len(pos))
	}
	f, err := notsotuf.LookupPatchFormat(*format)
	if err != nil {
		return usagef("-format: %v", err)
	}
	oldPath, newPath, patchPath := pos[0], pos[1], pos[2]
	// The live heap is old, new and a suffix array, all without pointers:
	// collecting often is cheap and keeps the peak near the live size.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	old, oldSize, err := openRegular(oldPath)
	if err != nil {
		return err
	}
	defer old.Close()
	new, newSize, err := openRegular(newPath)
	if err != nil {
		return err
	}
	defer new.Close()
	bar := newProgressBar(stderr, "diff", *quiet)
	opts := &notsotuf.PatchOptions{Workers: *workers, Progress: bar.update}
	err = writeFileAtomic(patchPath, 0o644, func(w io.Writer) error {
		return f.Diff(old, oldSize, new, newSize, w, opts)
	})
	bar.finish()
	if err != nil {
		return fmt.Errorf("writing %s: %w", patchPath, err)
	}
	return nil
}

// runPatch implements "notsotuf patch OLD PATCH NEW".
func runPatch(args []string, stdout, stderr io.Writer) error {
	fs := patchFlags("patch", patchUsage, stdout)
	quiet := fs.Bool("q", false, "no progress bar")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 3 {
		return usagef("patch takes 3 arguments (OLD PATCH NEW), got %d", len(pos))
	}
	oldPath, patchPath, newPath := pos[0], pos[1], pos[2]
	// Applying streams through small buffers that are recycled quickly:
	// collecting at 50% keeps the peak near what is live, and a soft limit
	// makes the runtime give freed memory back to the system soon (the live
	// heap is about 15 MiB: three bzip2 decoders and a compact patch's
	// address maps).
	defer debug.SetGCPercent(debug.SetGCPercent(50))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(24 << 20))
	old, err := os.Open(oldPath)
	if err != nil {
		return err
	}
	defer old.Close()
	st, err := old.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", oldPath)
	}
	patch, err := os.Open(patchPath)
	if err != nil {
		return err
	}
	defer patch.Close()
	bar := newProgressBar(stderr, "patch", *quiet)
	opts := &notsotuf.PatchOptions{Progress: bar.update, Fs: afero.NewOsFs(), TempDir: filepath.Dir(newPath)}
	err = writeFileAtomic(newPath, st.Mode().Perm(), func(w io.Writer) error {
		_, _, err := notsotuf.ApplyPatch(old, st.Size(), patch, w, opts)
		return err
	})
	bar.finish()
	switch {
	case errors.Is(err, notsotuf.ErrCorruptPatch):
		return fmt.Errorf("%s: %w", patchPath, err)
	case err != nil:
		return fmt.Errorf("writing %s: %w", newPath, err)
	}
	return nil
}

// openRegular opens a regular file for reading and returns its size.
func openRegular(name string) (*os.File, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", name)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// writeFileAtomic writes name through a temporary file in the same
// directory, synced and renamed over name only when fill succeeds: after a
// failure no partial output is left behind.
func writeFileAtomic(name string, perm os.FileMode, fill func(w io.Writer) error) (err error) {
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 256<<10)
	if err = fill(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// progressBar draws a one-line bar on a terminal; elsewhere it does nothing.
type progressBar struct {
	w        io.Writer
	label    string
	on       bool
	last     time.Time
	lastDone int64
	drawn    bool
}

func newProgressBar(w io.Writer, label string, quiet bool) *progressBar {
	p := &progressBar{w: w, label: label}
	if f, ok := w.(*os.File); ok && !quiet && term.IsTerminal(int(f.Fd())) {
		p.on = true
	}
	return p
}

func (p *progressBar) update(done, total int64) {
	if !p.on {
		return
	}
	now := time.Now()
	if (done < total && now.Sub(p.last) < 100*time.Millisecond) || (p.drawn && done == p.lastDone) {
		return
	}
	p.last, p.lastDone = now, done
	const width = 30
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	n := int(frac * width)
	fmt.Fprintf(p.w, "\r%-8s [%s%s] %3.0f%% %.1f/%.1f MiB", p.label,
		strings.Repeat("=", n), strings.Repeat(" ", width-n), frac*100,
		float64(done)/(1<<20), float64(total)/(1<<20))
	p.drawn = true
}

func (p *progressBar) finish() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

// phaseBar draws a bar per phase of a long repository command (add,
// remove, verify) on a terminal, each phase on its own line; elsewhere
// (a pipe, a file, a test) it does nothing.
type phaseBar struct {
	w     io.Writer
	on    bool
	phase string
	bar   *progressBar
}

func newPhaseBar(w io.Writer) *phaseBar {
	return &phaseBar{w: w, on: newProgressBar(w, "", false).on}
}

// update is a Repository.Progress.
func (b *phaseBar) update(phase string, done, total int64) {
	if !b.on {
		return
	}
	if b.bar == nil || phase != b.phase {
		b.finish()
		b.phase, b.bar = phase, &progressBar{w: b.w, label: phase, on: true}
	}
	b.bar.update(done, total)
}

// finish ends the line of the last phase.
func (b *phaseBar) finish() {
	if b.bar != nil {
		b.bar.finish()
		b.bar = nil
	}
}
