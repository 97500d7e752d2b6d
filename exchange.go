package notsotuf

import (
	"errors"

	"github.com/spf13/afero"
)

// fileID is the identity of a file on the operating system's file system
// (device and inode number on Unix): it follows the file across renames,
// which lets the swap journal tell which tree a name holds.
type fileID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// errNoExchange means that two paths cannot be swapped atomically here
// (another Fs than the operating system's, a platform or a file system
// without the call): the caller uses two renames.
var errNoExchange = errors.New("atomic exchange not supported")

// exchanger is a file system that can swap two paths atomically (tests
// implement it to inject faults into the exchange).
type exchanger interface {
	exchangeIfPossible(a, b string) error
}

// exchange swaps the files or directories at a and b atomically: after it
// returns nil, a holds what b held and b what a held, and no instant
// exists where either name is missing. Only on the operating system's file
// system (see osExchange for where); elsewhere it returns errNoExchange.
func exchange(fsys afero.Fs, a, b string) error {
	if x, ok := fsys.(exchanger); ok {
		return x.exchangeIfPossible(a, b)
	}
	if _, ok := fsys.(*afero.OsFs); ok {
		return osExchange(a, b)
	}
	return errNoExchange
}
