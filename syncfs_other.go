//go:build !linux

package notsotuf

import "github.com/spf13/afero"

// syncFilesystem has no single-call form here: callers sync file by file.
func syncFilesystem(afero.Fs, string) bool { return false }
