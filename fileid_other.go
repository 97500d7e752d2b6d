//go:build !unix

package notsotuf

import "io/fs"

// fileIdentity gives no identity here (on Windows the file index needs an
// open handle, which afero does not give): callers fall back to what names
// alone can tell.
func fileIdentity(fs.FileInfo) (fileID, bool) { return fileID{}, false }
