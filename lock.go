package notsotuf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"

	"github.com/spf13/afero"
)

// ErrBusy is wrapped by the error of [Client.Install], [Client.Update] and
// [Client.Recover] when another process (or another Client in this one)
// is installing into the same install directory. Nothing was changed; try
// again later.
var ErrBusy = errors.New("another install into this directory is in progress")

// suffixLock names the lock file the installer keeps beside the installed
// tree or executable. It is never removed: removing a lock file lets two
// processes lock two different files of the same name.
const suffixLock = ".notsotuf-lock"

// heldLocks is the in-process half of the install lock: it excludes two
// Clients of one process from the same lock file, also on a file system
// without operating-system locks (afero.MemMapFs, wrappers).
var heldLocks sync.Map // lockKey -> struct{}

// lockKey identifies a lock file: the same path on two in-memory file
// systems is two files.
type lockKey struct {
	fs   any // fsys when its dynamic type is comparable, else nil
	path string
}

// lockInstall takes the install lock at path without waiting: an
// exclusive lock on the file (flock on Unix, LockFileEx on Windows) when
// fsys hands out operating-system files, which the system releases when
// the process dies, so a crash never leaves a stale lock; and an
// in-process lock always. It returns an error wrapping ErrBusy when the
// lock is held elsewhere. unlock releases both.
func lockInstall(fsys afero.Fs, path string) (unlock func(), err error) {
	key := lockKey{path: filepath.Clean(path)}
	if reflect.TypeOf(fsys).Comparable() {
		key.fs = fsys
	}
	if _, loaded := heldLocks.LoadOrStore(key, struct{}{}); loaded {
		return nil, fmt.Errorf("locking %s: %w", path, ErrBusy)
	}
	// Never through a symbolic link: a link planted here would make the
	// updater (often root) create or open the file it points to.
	f, err := openNoFollow(fsys, path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		heldLocks.Delete(key)
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if fd, ok := f.(interface{ Fd() uintptr }); ok {
		if err := lockFile(fd.Fd()); err != nil {
			f.Close()
			heldLocks.Delete(key)
			if errors.Is(err, errLocked) {
				return nil, fmt.Errorf("locking %s: %w", path, ErrBusy)
			}
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
	}
	return func() {
		f.Close() // closing the file releases the operating-system lock
		heldLocks.Delete(key)
	}, nil
}

// errLocked is returned by lockFile when another open file holds the lock.
var errLocked = errors.New("locked")
