// Package faultfs is an afero.Fs for tests that fails the Nth operation that
// modifies the filesystem, to check that code survives an error or a crash at
// every step.
//
// Counted operations (each call counts one): Create, OpenFile with any of
// O_WRONLY, O_RDWR, O_CREATE, O_TRUNC or O_APPEND, Mkdir, MkdirAll, Remove,
// RemoveAll, Rename, Chmod, Chown, Chtimes, SymlinkIfPossible, and on files
// opened through the FS: Write, WriteAt, WriteString, Truncate and Sync.
// Reads are never counted nor failed.
//
// In crash mode every counted operation from the Nth on fails, as if the
// process had died there (the code under test may still run, but it cannot
// change the disk any more). Otherwise only the Nth fails (a transient
// error) and later operations go through. FailIf adds a persistent fault:
// every counted operation it matches fails (a directory that cannot be
// deleted, say). Fault counts an operation that a wrapper of the FS
// performs itself.
package faultfs

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/afero"
)

// ErrInjected is the error returned by a failed operation.
var ErrInjected = errors.New("faultfs: injected failure")

// FS wraps an afero.Fs and fails its FailAt-th counted operation.
type FS struct {
	afero.Fs
	mu     sync.Mutex
	failAt int  // 1-based; 0: never fail
	crash  bool // fail every operation from failAt on
	n      int
	failed bool
	ops    []string
	match  func(op, name string) bool
}

// New returns an FS over base failing its failAt-th counted operation
// (failAt 0: never), and every later one if crash is set.
func New(base afero.Fs, failAt int, crash bool) *FS {
	return &FS{Fs: base, failAt: failAt, crash: crash}
}

// Count returns how many counted operations were attempted so far.
func (f *FS) Count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// Failed reports whether a failure was injected.
func (f *FS) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// Ops returns the counted operations attempted so far, as "op name".
func (f *FS) Ops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ops...)
}

// FailIf makes every counted operation for which match(op, name) is true
// fail from now on (op as in Ops: "remove", "removeall", "rename"...;
// name the path, or "old -> new" for a rename); nil removes the fault.
func (f *FS) FailIf(match func(op, name string) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.match = match
}

// Fault counts an operation op on name that a wrapper of the FS performs
// itself (one the afero.Fs interface does not have) and returns the error
// to fail it with, or nil to let it go through.
func (f *FS) Fault(op, name string) error { return f.op(op, name) }

func (f *FS) op(op, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	f.ops = append(f.ops, op+" "+name)
	if f.failAt > 0 && (f.n == f.failAt || f.crash && f.n > f.failAt) || f.match != nil && f.match(op, name) {
		f.failed = true
		return &os.PathError{Op: op, Path: name, Err: fmt.Errorf("%w (operation %d)", ErrInjected, f.n)}
	}
	return nil
}

const writeFlags = os.O_WRONLY | os.O_RDWR | os.O_CREATE | os.O_TRUNC | os.O_APPEND

func (f *FS) Create(name string) (afero.File, error) {
	if err := f.op("create", name); err != nil {
		return nil, err
	}
	file, err := f.Fs.Create(name)
	if err != nil {
		return nil, err
	}
	return &File{File: file, fs: f}, nil
}

func (f *FS) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	if flag&writeFlags != 0 {
		if err := f.op("openfile", name); err != nil {
			return nil, err
		}
	}
	file, err := f.Fs.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &File{File: file, fs: f}, nil
}

func (f *FS) Open(name string) (afero.File, error) {
	file, err := f.Fs.Open(name)
	if err != nil {
		return nil, err
	}
	return &File{File: file, fs: f}, nil
}

func (f *FS) Mkdir(name string, perm os.FileMode) error {
	if err := f.op("mkdir", name); err != nil {
		return err
	}
	return f.Fs.Mkdir(name, perm)
}

func (f *FS) MkdirAll(name string, perm os.FileMode) error {
	if err := f.op("mkdirall", name); err != nil {
		return err
	}
	return f.Fs.MkdirAll(name, perm)
}

func (f *FS) Remove(name string) error {
	if err := f.op("remove", name); err != nil {
		return err
	}
	return f.Fs.Remove(name)
}

func (f *FS) RemoveAll(name string) error {
	if err := f.op("removeall", name); err != nil {
		return err
	}
	return f.Fs.RemoveAll(name)
}

func (f *FS) Rename(oldname, newname string) error {
	if err := f.op("rename", oldname+" -> "+newname); err != nil {
		return err
	}
	return f.Fs.Rename(oldname, newname)
}

func (f *FS) Chmod(name string, mode os.FileMode) error {
	if err := f.op("chmod", name); err != nil {
		return err
	}
	return f.Fs.Chmod(name, mode)
}

func (f *FS) Chown(name string, uid, gid int) error {
	if err := f.op("chown", name); err != nil {
		return err
	}
	return f.Fs.Chown(name, uid, gid)
}

func (f *FS) Chtimes(name string, atime, mtime time.Time) error {
	if err := f.op("chtimes", name); err != nil {
		return err
	}
	return f.Fs.Chtimes(name, atime, mtime)
}

func (f *FS) Name() string { return "faultfs(" + f.Fs.Name() + ")" }

// LstatIfPossible implements afero.Lstater.
func (f *FS) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	if l, ok := f.Fs.(afero.Lstater); ok {
		return l.LstatIfPossible(name)
	}
	fi, err := f.Fs.Stat(name)
	return fi, false, err
}

// SymlinkIfPossible implements afero.Linker (a counted operation).
func (f *FS) SymlinkIfPossible(oldname, newname string) error {
	if err := f.op("symlink", newname); err != nil {
		return err
	}
	if l, ok := f.Fs.(afero.Linker); ok {
		return l.SymlinkIfPossible(oldname, newname)
	}
	return &os.LinkError{Op: "symlink", Old: oldname, New: newname, Err: afero.ErrNoSymlink}
}

// ReadlinkIfPossible implements afero.LinkReader.
func (f *FS) ReadlinkIfPossible(name string) (string, error) {
	if l, ok := f.Fs.(afero.LinkReader); ok {
		return l.ReadlinkIfPossible(name)
	}
	return "", &os.PathError{Op: "readlink", Path: name, Err: afero.ErrNoReadlink}
}

// File wraps an afero.File so that its writes are counted.
type File struct {
	afero.File
	fs *FS
}

func (f *File) Write(p []byte) (int, error) {
	if err := f.fs.op("write", f.Name()); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.op("writeat", f.Name()); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *File) WriteString(s string) (int, error) {
	if err := f.fs.op("writestring", f.Name()); err != nil {
		return 0, err
	}
	return f.File.WriteString(s)
}

func (f *File) Truncate(size int64) error {
	if err := f.fs.op("truncate", f.Name()); err != nil {
		return err
	}
	return f.File.Truncate(size)
}

func (f *File) Sync() error {
	if err := f.fs.op("sync", f.Name()); err != nil {
		return err
	}
	return f.File.Sync()
}
