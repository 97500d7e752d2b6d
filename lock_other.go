//go:build !unix && !windows

package notsotuf

// lockFile has no operating-system lock here: only the in-process half of
// the install lock applies.
func lockFile(uintptr) error { return nil }
