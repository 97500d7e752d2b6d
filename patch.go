package notsotuf

import (
	"io"

	"github.com/spf13/afero"

	"github.com/notsotuf/notsotuf/internal/bsdiff"
)

// ErrCorruptPatch is wrapped by the errors Apply returns when the patch is
// malformed, truncated, or does not fit the old file; the wrapping message
// says what is wrong. Errors reading old or writing the output do not wrap
// it.
var ErrCorruptPatch = bsdiff.ErrCorrupt

// PatchOptions tunes Diff and Apply. A nil *PatchOptions means defaults.
type PatchOptions struct {
	// Workers bounds the goroutines Diff uses; 0 means GOMAXPROCS.
	// Apply ignores it.
	Workers int
	// Progress, if set, is called from time to time with the bytes of the
	// new file processed so far and its total size (for Apply, the size the
	// patch announces). It is never called concurrently.
	Progress func(done, total int64)
	// Phases, if set, replaces Progress for a differ, which reports each
	// of its phases with the bytes of it done so far and in all: "index"
	// (indexing old: at its start and its end), "match" (matching new
	// against old, every chunk) and "compress" (new bytes fed to the
	// compressor, every 4 MiB and at the end). Each phase ends with
	// done == total.
	Phases func(phase string, done, total int64)
	// Fs, TempDir and TempPrefix say where a patch format that needs
	// scratch space while applying (compact: the decompressed debug
	// sections of the old file) writes its temporary file: TempDir/
	// TempPrefix followed by random characters ("" means ".notsotuf-tmp-"),
	// removed before Apply returns. A nil Fs keeps that data in memory.
	Fs         afero.Fs
	TempDir    string
	TempPrefix string
}

// Diff writes to w a BSDIFF40 patch that turns old into new: the format of
// bsdiff 4.x and Python's bsdiff4 (which tufup uses), so Debian's bspatch
// applies it. old must be smaller than 2 GiB. Diff holds old, new, a suffix
// array of old (4 bytes per byte of old) and the compressed patch in memory.
func Diff(old, new []byte, w io.Writer, opts *PatchOptions) error {
	o := bsdiff.DiffOptions{Workers: opts.workers(), Progress: opts.phases()}
	return bsdiff.Diff(old, new, w, &o)
}

func (o *PatchOptions) workers() int {
	if o == nil {
		return 0
	}
	return o.Workers
}

// phases returns the phase callback a differ reports to: Phases, or
// Progress for the "match" phase, the longest; nil when neither is set.
func (o *PatchOptions) phases() func(phase string, done, total int64) {
	switch {
	case o == nil:
		return nil
	case o.Phases != nil:
		return o.Phases
	case o.Progress != nil:
		p := o.Progress
		return func(phase string, done, total int64) {
			if phase == "match" {
				p(done, total)
			}
		}
	}
	return nil
}

// Apply reads a BSDIFF40 patch from patch and writes the file it produces
// to w as it goes, reading the old file (oldSize bytes) through ReadAt, so
// that the output can be hashed while it is written and memory use does not
// depend on the file sizes. When patch is also an io.ReaderAt and io.Seeker
// (an *os.File or afero.File), its blocks are read in place; otherwise the
// compressed control and diff blocks, a small part of a patch, are buffered.
//
// Every control triple is checked against the new size in the patch header
// and against oldSize (an add that would read outside old is rejected, where
// C bspatch would add zeros; bsdiff never writes one), and the bzip2
// checksums are verified, as is the end of each block; a bad patch
// yields an error wrapping ErrCorruptPatch, never a panic or an allocation
// sized by the header. Apply returns the number of bytes written to w, which
// is the patch's new size when the error is nil. On error, w may hold a
// partial output: write to a temporary file and rename it on success.
func Apply(old io.ReaderAt, oldSize int64, patch io.Reader, w io.Writer, opts *PatchOptions) (int64, error) {
	var o bsdiff.ApplyOptions
	if opts != nil {
		o.Progress = opts.Progress
	}
	return bsdiff.Apply(old, oldSize, patch, w, &o)
}
