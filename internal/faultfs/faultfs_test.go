package faultfs

import (
	"errors"
	"os"
	"testing"

	"github.com/spf13/afero"
)

func TestCountsAndFails(t *testing.T) {
	for _, crash := range []bool{false, true} {
		base := afero.NewMemMapFs()
		f := New(base, 3, crash)
		if err := f.MkdirAll("/d", 0o755); err != nil { // 1
			t.Fatal(err)
		}
		file, err := f.Create("/d/x") // 2
		if err != nil {
			t.Fatal(err)
		}
		if _, err := file.Write([]byte("abc")); !errors.Is(err, ErrInjected) { // 3
			t.Fatalf("write 3: %v", err)
		}
		_, err = file.Write([]byte("def")) // 4
		if crash != (err != nil) {
			t.Fatalf("crash=%v: write 4: %v", crash, err)
		}
		file.Close()
		// Reads are neither counted nor failed.
		if _, err := f.Open("/d/x"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.OpenFile("/d/x", os.O_RDONLY, 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Rename("/d/x", "/d/y"); crash != (err != nil) { // 5
			t.Fatalf("crash=%v: rename: %v", crash, err)
		}
		if f.Count() != 5 || !f.Failed() || len(f.Ops()) != 5 {
			t.Fatalf("count %d, failed %v, ops %q", f.Count(), f.Failed(), f.Ops())
		}
	}
}

func TestNeverFails(t *testing.T) {
	f := New(afero.NewMemMapFs(), 0, true)
	for i := 0; i < 10; i++ {
		if err := f.Mkdir("/d"+string(rune('a'+i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if f.Failed() || f.Count() != 10 {
		t.Fatalf("failed %v count %d", f.Failed(), f.Count())
	}
}

func TestSymlinkThroughOsFs(t *testing.T) {
	dir := t.TempDir()
	f := New(afero.NewOsFs(), 0, false)
	if err := f.SymlinkIfPossible("target", dir+"/l"); err != nil {
		t.Skip("symlinks not available:", err)
	}
	if got, err := f.ReadlinkIfPossible(dir + "/l"); err != nil || got != "target" {
		t.Fatalf("readlink: %q %v", got, err)
	}
	if fi, lstat, err := f.LstatIfPossible(dir + "/l"); err != nil || !lstat || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("lstat: %v %v %v", fi, lstat, err)
	}
	if err := New(afero.NewMemMapFs(), 0, false).SymlinkIfPossible("t", "/l"); !errors.Is(err, afero.ErrNoSymlink) {
		t.Fatalf("memmap symlink: %v", err)
	}
}

func TestFailIfAndFault(t *testing.T) {
	f := New(afero.NewMemMapFs(), 0, false)
	f.FailIf(func(op, name string) bool { return op == "removeall" && name == "/stuck" })
	if err := f.MkdirAll("/stuck/x", 0o755); err != nil {
		t.Fatal(err)
	}
	for range 2 { // persistent
		if err := f.RemoveAll("/stuck"); !errors.Is(err, ErrInjected) {
			t.Fatalf("removeall: %v", err)
		}
	}
	if err := f.Fault("exchange", "/a <-> /b"); err != nil {
		t.Fatal(err)
	}
	f.FailIf(nil)
	if err := f.RemoveAll("/stuck"); err != nil {
		t.Fatal(err)
	}
	if ops := f.Ops(); len(ops) != 5 || ops[3] != "exchange /a <-> /b" {
		t.Fatalf("ops %q", ops)
	}
	crash := New(afero.NewMemMapFs(), 1, true)
	if err := crash.Fault("exchange", "/a <-> /b"); !errors.Is(err, ErrInjected) {
		t.Fatalf("fault: %v", err)
	}
}
