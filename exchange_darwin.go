package notsotuf

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// osExchange swaps the paths a and b atomically with
// renamex_np(RENAME_SWAP) (APFS, and HFS+ on recent macOS). A file system
// without it answers ENOTSUP or EINVAL: errNoExchange then, and the
// caller falls back to two renames.
func osExchange(a, b string) error {
	for {
		err := unix.RenamexNp(a, b, unix.RENAME_SWAP)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
			return errNoExchange
		}
		return &os.LinkError{Op: "renamex_np swap", Old: a, New: b, Err: err}
	}
}
