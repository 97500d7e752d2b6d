//go:build unix

package notsotuf

import (
	"errors"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive flock(2) on fd without waiting.
func lockFile(fd uintptr) error {
	for {
		err := unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return errLocked
		default:
			return err
		}
	}
}
