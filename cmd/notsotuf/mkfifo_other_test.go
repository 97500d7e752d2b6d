//go:build !unix

package main

import "github.com/rogpeppe/go-internal/testscript"

// mkfifo PATH: no named pipes in the file system here.
func cmdMkfifo(ts *testscript.TestScript, neg bool, args []string) {
	ts.Skip("no named pipes here")
}
