//go:build linux || darwin

package notsotuf

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/afero"
	"golang.org/x/sys/unix"
)

// TestCarryKeepsXattrs: a user's file copied into the new tree (not
// hard-linked: another file system, or a copy forced here) keeps its
// extended attributes; a hard link shares them.
func TestCarryKeepsXattrs(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(src, "user.notsotuf-test", []byte("kept"), 0); err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			t.Skipf("no user extended attributes on this file system: %v", err)
		}
		t.Fatal(err)
	}
	fsys := afero.NewOsFs()
	dst := filepath.Join(dir, "copy")
	if err := copyFileTo(fsys, src, dst, 4); err != nil {
		t.Fatal(err)
	}
	if err := copyXattrs(fsys, src, dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := unix.Getxattr(dst, "user.notsotuf-test", buf)
	if err != nil || string(buf[:n]) != "kept" {
		t.Fatalf("xattr of the copy: %q %v", buf[:n], err)
	}
	// On another Fs nothing is done (and nothing fails).
	if err := copyXattrs(afero.NewMemMapFs(), src, dst); err != nil {
		t.Fatal(err)
	}
}
