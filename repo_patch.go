package notsotuf

import (
	"context"
	"io"

	"github.com/spf13/afero"
)

// diffTarFiles writes to w the patch in format f from the tar file oldTar to
// the tar file newTar, reporting the engine's phases to progress (which may
// be nil).
func diffTarFiles(ctx context.Context, fsys afero.Fs, f PatchFormat, oldTar, newTar string, w io.Writer, progress func(phase string, done, total int64)) error {
	old, err := fsys.Open(oldTar)
	if err != nil {
		return err
	}
	defer old.Close()
	cur, err := fsys.Open(newTar)
	if err != nil {
		return err
	}
	defer cur.Close()
	oi, err := old.Stat()
	if err != nil {
		return err
	}
	ci, err := cur.Stat()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// afero's in-memory files do not support concurrent ReadAt.
	return f.Diff(&lockedFile{f: old}, oi.Size(), &lockedFile{f: cur}, ci.Size(), w, &PatchOptions{Phases: progress})
}

// applyPatchStream applies patch, in format f, to old (oldSize bytes),
// streaming the result to w. Scratch files go to fsys's tempDir. The patch is
// passed as a plain io.Reader: the bsdiff patcher reads an io.ReaderAt patch
// from several goroutines, and afero's in-memory files do not support
// concurrent ReadAt (it moves the shared offset).
func applyPatchStream(fsys afero.Fs, tempDir string, f PatchFormat, old io.ReaderAt, oldSize int64, patch io.Reader, w io.Writer, progress func(done, total int64)) (int64, error) {
	return f.Apply(old, oldSize, struct{ io.Reader }{patch}, w, &PatchOptions{Progress: progress, Fs: fsys, TempDir: tempDir, TempPrefix: ".check-"})
}
