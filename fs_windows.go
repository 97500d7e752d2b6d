//go:build windows

package notsotuf

import "io/fs"

// openNoFollowFlags: Windows has no O_NOFOLLOW; openNoFollow relies on
// O_EXCL for new files and on comparing the file opened with the one
// Lstat found (see openNoFollow).
const openNoFollowFlags = 0

// openNonBlockFlag: named pipes do not live in the file system on Windows.
const openNonBlockFlag = 0

// linkCount: not reported through os.FileInfo on Windows.
func linkCount(fs.FileInfo) (uint64, bool) { return 0, false }

// fileOwner: Windows has owners in ACLs, which the cache check does not read.
func fileOwner(fs.FileInfo) (int, bool) { return 0, false }

func processUID() int { return -1 }
