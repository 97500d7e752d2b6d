//go:build !linux && !darwin

package notsotuf

import (
	"io/fs"
	"time"

	"github.com/spf13/afero"
)

// Elsewhere (Windows, the BSDs) carried files keep their bytes, modes and
// modification times only: no extended attributes (the BSDs' namespaced
// calls and Windows' streams are not read), link times or owners.

func copyXattrs(afero.Fs, string, string) error     { return nil }
func setLinkTimes(afero.Fs, string, time.Time)      {}
func copyOwner(afero.Fs, string, fs.FileInfo) error { return nil }
