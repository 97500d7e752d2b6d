package notsotuf

import (
	"context"
	"io"

	"github.com/spf13/afero"
)

// diffTarFiles writes to w the patch from the tar file oldTar to the tar file
// newTar. The patch engine needs both in memory (see Diff).
func diffTarFiles(ctx context.Context, fsys afero.Fs, oldTar, newTar string, w io.Writer) error {
	old, err := afero.ReadFile(fsys, oldTar)
	if err != nil {
		return err
	}
	cur, err := afero.ReadFile(fsys, newTar)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return Diff(old, cur, w, nil)
}

// applyPatchStream applies patch to old (oldSize bytes), streaming the result to w.
// The patch is passed as a plain io.Reader: Apply reads an io.ReaderAt patch
// from several goroutines, and afero's in-memory files do not support
// concurrent ReadAt (it moves the shared offset).
func applyPatchStream(old io.ReaderAt, oldSize int64, patch io.Reader, w io.Writer) (int64, error) {
	return Apply(old, oldSize, struct{ io.Reader }{patch}, w, nil)
}
