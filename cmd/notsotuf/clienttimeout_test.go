package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
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
	if code != 1 || !strings.Contains(errb.String(), "gave up after 1s, the time limit") {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v with --timeout 1s", d)
	}
}

// TestClientIgnoresNowEnv: a real build's check and update keep the real
// clock when NOTSOTUF_NOW is set (a clock in the past would turn off
// freeze protection); only the test binary lets it through.
func TestClientIgnoresNowEnv(t *testing.T) {
	fixture := filepath.Join("..", "..", "testdata", "tufup-demoapp")
	srv := httptest.NewServer(http.FileServer(http.Dir(fixture)))
	defer srv.Close()
	dir := t.TempDir()
	check := func() (int, string) {
		var out, errb bytes.Buffer
		code := run([]string{"check", "--app", "demoapp", "--current", "1.0.0", "--install-dir", filepath.Join(dir, "app"),
			"--cache-dir", filepath.Join(dir, "cache"), "--root", filepath.Join(fixture, "root.json"),
			"--metadata-url", srv.URL + "/metadata", "--targets-url", srv.URL + "/targets"}, &out, &errb)
		return code, errb.String()
	}
	// The fixture's metadata expires in 2052: a clock after that fails,
	// unless the client command does not take it.
	t.Setenv("NOTSOTUF_NOW", "2060-01-01T00:00:00Z")
	defer func(v bool) { clientClockFromEnv = v }(clientClockFromEnv)

	clientClockFromEnv = true
	if code, stderr := check(); code != 1 || !strings.Contains(stderr, "expired") {
		t.Fatalf("test build, clock in 2060: exit %d, stderr:\n%s", code, stderr)
	}
	clientClockFromEnv = false
	code, stderr := check()
	if code != 0 || !strings.Contains(stderr, "NOTSOTUF_NOW is ignored by check and update") {
		t.Fatalf("real build, clock in 2060: exit %d, stderr:\n%s", code, stderr)
	}
}
