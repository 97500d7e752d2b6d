package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUpdateTimeout: against a server that accepts connections and never
// answers, --timeout bounds the whole command.
func TestUpdateTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, say nothing
		}
	}()
	dir := t.TempDir()
	root, err := os.ReadFile(filepath.Join("..", "..", "testdata", "tufup-demoapp", "root.json"))
	if err != nil {
		t.Skip("no tufup fixture root:", err)
	}
	rootFile := filepath.Join(dir, "root.json")
	os.WriteFile(rootFile, root, 0o644)
	var out, errb bytes.Buffer
	start := time.Now()
	code := run([]string{"update", "--app", "demoapp", "--current", "1.0.0", "--install-dir", filepath.Join(dir, "app"),
		"--cache-dir", filepath.Join(dir, "cache"), "--root", rootFile,
		"--metadata-url", "http://" + ln.Addr().String() + "/metadata", "--timeout", "1s"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "gave up after --timeout 1s") {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v with --timeout 1s", d)
	}
}
