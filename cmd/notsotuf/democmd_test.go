package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs the README's first command in-process: it must publish,
// serve, install and update by patch, and clean up after itself.
func TestDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	var out, errb bytes.Buffer
	if code := run([]string{"demo", "--dir", dir}, &out, &errb); code != 0 {
		t.Fatalf("demo exited %d:\n%s%s", code, out.String(), errb.String())
	}
	for _, want := range []string{
		"installed 1.0.0", "full archive demoapp-1.0.0.tar.gz",
		"updated 1.0.0 -> 1.1.0", "patch chain demoapp-1.1.0.patch",
		"the installed tree equals the 1.1.0 bundle",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("demo left %s behind (err %v)", dir, err)
	}
	if code := run([]string{"demo", "--dir", t.TempDir(), "extra"}, &out, &errb); code != 2 {
		t.Errorf("demo with an argument exited %d, want 2", code)
	}
}
