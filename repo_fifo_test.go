//go:build unix

package notsotuf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// TestRepositoryRefusesFIFO: a named pipe planted in place of a metadata
// file or of the configuration makes the repository commands fail at once
// with an error naming it; they used to wait forever in the open.
func TestRepositoryRefusesFIFO(t *testing.T) {
	fsys := afero.NewOsFs()
	base := t.TempDir()
	r := newTestRepository(fsys, base)
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	ts := r.metaPath("timestamp.json")
	if err := os.Remove(ts); err != nil {
		t.Fatal(err)
	}
	if err := mkfifoForTest(ts); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(base, "fifo-config.json")
	if err := mkfifoForTest(cfg); err != nil {
		t.Fatal(err)
	}
	within := func(what string, f func() error) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still blocked after 10 s", what)
			return nil
		}
	}
	err := within("status", func() error { _, err := r.Status(); return err })
	if err == nil || !strings.Contains(err.Error(), ts) || !strings.Contains(err.Error(), "named pipe") {
		t.Errorf("status: %v", err)
	}
	err = within("LoadConfig", func() error { _, err := LoadConfig(fsys, cfg); return err })
	if err == nil || !strings.Contains(err.Error(), cfg) || !strings.Contains(err.Error(), "named pipe") {
		t.Errorf("LoadConfig: %v", err)
	}
}
