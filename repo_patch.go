package notsotuf

import (
	"context"
	"io"

	"github.com/spf13/afero"
)

// makePatch writes to w the patch from the tar file oldTar to the tar file
// newTar. The patch engine needs both in memory (see Diff).
func makePatch(ctx context.Context, fsys afero.Fs, oldTar, newTar string, w io.Writer) error {
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

// applyPatch applies patch to old (oldSize bytes), streaming the result to w.
func applyPatch(old io.ReaderAt, oldSize int64, patch io.Reader, w io.Writer) (int64, error) {
	return Apply(old, oldSize, patch, w, nil)
}
