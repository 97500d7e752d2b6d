//go:build !unix && !windows

package notsotuf

import "io/fs"

// openNoFollowFlags: no such flags here (see openNoFollow for the checks
// that remain).
const openNoFollowFlags = 0

const openNonBlockFlag = 0

func linkCount(fs.FileInfo) (uint64, bool) { return 0, false }

func fileOwner(fs.FileInfo) (int, bool) { return 0, false }

func processUID() int { return -1 }
