package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDiffPatchCommands(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	old := bytes.Repeat([]byte("version 1 of a file with a body that stays\n"), 500)
	new := append(bytes.ReplaceAll(old, []byte("version 1"), []byte("version 2")), "and a tail\n"...)
	if err := os.WriteFile(p("old"), old, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p("new"), new, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"diff", p("old"), p("new"), p("patch")}, &stdout, &stderr); code != 0 {
		t.Fatalf("diff: exit %d: %s", code, stderr.String())
	}
	if code := run([]string{"patch", p("old"), p("patch"), p("out")}, &stdout, &stderr); code != 0 {
		t.Fatalf("patch: exit %d: %s", code, stderr.String())
	}
	got, err := os.ReadFile(p("out"))
	if err != nil || !bytes.Equal(got, new) {
		t.Fatalf("patched output differs (err %v)", err)
	}
	if st, _ := os.Stat(p("out")); st.Mode().Perm() != 0o755 {
		t.Errorf("output mode %v, want the old file's 0755", st.Mode().Perm())
	}

	// A truncated patch fails with a clear error and leaves no output.
	patch, _ := os.ReadFile(p("patch"))
	if err := os.WriteFile(p("bad"), patch[:len(patch)-10], 0o644); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := run([]string{"patch", p("old"), p("bad"), p("out2")}, &stdout, &stderr); code == 0 {
		t.Fatal("patch with a truncated patch succeeded")
	}
	if !strings.HasPrefix(stderr.String(), "notsotuf: error: ") || !strings.Contains(stderr.String(), "corrupt patch") {
		t.Errorf("stderr = %q", stderr.String())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() == "out2" || strings.Contains(e.Name(), ".tmp") {
			t.Errorf("partial output %s left behind", e.Name())
		}
	}

	// Missing input and wrong argument counts fail.
	stderr.Reset()
	if code := run([]string{"diff", p("nope"), p("new"), p("patch2")}, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), "nope") {
		t.Errorf("diff of a missing file: exit %d, stderr %q", code, stderr.String())
	}
	if code := run([]string{"patch", p("old")}, &stdout, &stderr); code != 2 {
		t.Errorf("patch with one argument: exit %d, want 2", code)
	}
	if code := run([]string{"diff", "-nope", p("old"), p("new"), p("patch2")}, &stdout, &stderr); code != 2 {
		t.Errorf("diff with an unknown flag: exit %d, want 2", code)
	}
	stdout.Reset()
	if code := run([]string{"diff", "-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "-workers") {
		t.Errorf("diff -h: exit %d, stdout %q", code, stdout.String())
	}
	// Flags may follow the arguments.
	if code := run([]string{"patch", p("old"), p("patch"), p("out3"), "-q"}, &stdout, &stderr); code != 0 {
		t.Errorf("patch with a trailing -q: exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(p("patch2")); !os.IsNotExist(err) {
		t.Error("failed diff left an output file")
	}
}

func TestDiffPatchFormats(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	old := bytes.Repeat([]byte("version 1 of a file\n"), 300)
	new := bytes.Repeat([]byte("version 2 of a file\n"), 300)
	for name, b := range map[string][]byte{"old": old, "new": new, "garbage": []byte("GARBAGE!GARBAGE!")} {
		if err := os.WriteFile(p(name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var stdout, stderr bytes.Buffer
	// An unknown format is a usage error naming the known ones.
	if code := run([]string{"diff", "-format", "nope", p("old"), p("new"), p("patch")}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "known: bsdiff") {
		t.Errorf("diff -format nope: exit %d, stderr %q", code, stderr.String())
	}
	if code := run([]string{"diff", "-format", "bsdiff", p("old"), p("new"), p("patch")}, &stdout, &stderr); code != 0 {
		t.Fatalf("diff -format bsdiff: exit %d: %s", code, stderr.String())
	}
	if b, _ := os.ReadFile(p("patch")); !bytes.HasPrefix(b, []byte("BSDIFF40")) {
		t.Errorf("patch starts %.8q", b)
	}
	// A file in no known format: a clear error, no output.
	stderr.Reset()
	if code := run([]string{"patch", p("old"), p("garbage"), p("out")}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "unknown patch format") || !strings.Contains(stderr.String(), "garbage") {
		t.Errorf("patch of garbage: exit %d, stderr %q", code, stderr.String())
	}
	if _, err := os.Stat(p("out")); !os.IsNotExist(err) {
		t.Error("failed patch left an output file")
	}
}
