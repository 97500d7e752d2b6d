package notsotuf

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// osExchange swaps the paths a and b atomically with
// renameat2(RENAME_EXCHANGE) (Linux 3.15+; ext4, xfs, btrfs, tmpfs...). A
// file system or kernel without it answers EINVAL, ENOSYS or EOPNOTSUPP:
// errNoExchange then, and the caller falls back to two renames.
func osExchange(a, b string) error {
	for {
		err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
			return errNoExchange
		}
		return &os.LinkError{Op: "renameat2 exchange", Old: a, New: b, Err: err}
	}
}
