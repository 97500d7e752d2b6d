package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// TestServe starts `serve` on a free loopback port, fetches metadata and a
// missing file through it, and stops it by cancelling its context (what
// SIGINT does).
func TestServe(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "metadata"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "metadata", "timestamp.json"), []byte(`{"signed": {}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	env := &cliEnv{ctx: ctx, stdout: pw, stderr: io.Discard, fs: afero.NewOsFs(), getenv: func(string) string { return "" },
		now: time.Now, logger: slog.New(slog.DiscardHandler)}
	done := make(chan error, 1)
	go func() {
		done <- cmdServe(env, []string{"--repo-dir", dir, "--addr", "127.0.0.1:0"})
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var base string
	re := regexp.MustCompile(`metadata URL: (http://127\.0\.0\.1:\d+)/metadata/`)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			base = m[1]
			break
		}
	}
	if base == "" {
		t.Fatalf("no URL printed (%v)", <-done)
	}
	go io.Copy(io.Discard, pr)
	resp, err := http.Get(base + "/metadata/timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, []byte(`{"signed": {}}`)) {
		t.Fatalf("GET timestamp.json: %d %q", resp.StatusCode, body)
	}
	resp, err = http.Get(base + "/metadata/2.root.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("GET missing file: %d, want 404 (clients stop the root rotation loop on it)", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
}
