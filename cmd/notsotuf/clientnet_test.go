package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tufupFixtureDir is the tufup repository the client tests update from.
func tufupFixtureDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "tufup-demoapp")
	if _, err := os.Stat(filepath.Join(dir, "metadata", "root.json")); err != nil {
		t.Skip("no tufup fixture:", err)
	}
	if runtime.GOOS == "windows" {
		t.Skip("the fixture has symbolic links")
	}
	return dir
}

// runUpdate runs `notsotuf update` in-process on the fixture's demoapp
// 1.0.0 (nothing installed: the full archive of 1.1.0, 2 MB) with args
// after the common ones.
func runUpdate(t *testing.T, dir, metadataURL string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"update", "--app", "demoapp", "--current", "1.0.0",
		"--install-dir", filepath.Join(dir, "app"), "--cache-dir", filepath.Join(dir, "cache"),
		"--root", filepath.Join(tufupFixtureDir(t), "root.json"), "--metadata-url", metadataURL}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// TestUpdateTrickleDefaults: `notsotuf update` with no --timeout or rate
// flag, against a server that sends the archive at 1 byte per second,
// exits non-zero with a clear error within 3 minutes (the default minimum
// rate: 4 windows of 30 s below 1 KiB/s, about 2 minutes). The server
// stops after 3.5 minutes, so that without the rate check the test fails
// instead of hanging.
func TestUpdateTrickleDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 2 minutes (the default rate window)")
	}
	t.Parallel()
	fixture := tufupFixtureDir(t)
	files := http.FileServer(http.Dir(fixture))
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/targets/") {
			files.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Length", "2000000")
		w.WriteHeader(http.StatusOK)
		for {
			if _, err := w.Write([]byte{0}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-stop:
				return
			case <-time.After(time.Second):
			}
		}
	}))
	defer srv.Close()
	timer := time.AfterFunc(210*time.Second, func() { close(stop); srv.CloseClientConnections() })
	defer timer.Stop()

	start := time.Now()
	code, _, stderr := runUpdate(t, t.TempDir(), srv.URL+"/metadata")
	took := time.Since(start)
	t.Logf("exit %d after %v:\n%s", code, took.Round(time.Second), stderr)
	if code != 1 || !strings.Contains(stderr, "notsotuf: error: download "+srv.URL+"/targets/demoapp-1.1.0.tar.gz: too slow: ") ||
		!strings.Contains(stderr, "below the minimum of 1024 bytes/s") || !strings.Contains(stderr, "notsotuf: hint: the server or the network is too slow") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	if took > 3*time.Minute {
		t.Errorf("took %v, want less than 3 minutes", took)
	}
}

// TestClientLimitsRefused: --timeout, --min-rate and --rate-window take
// positive values only (a negative --timeout was taken as "no limit").
func TestClientLimitsRefused(t *testing.T) {
	for _, tt := range []struct{ flag, value, want string }{
		{"--timeout", "-1s", "--timeout -1s: want a positive duration, e.g. 10m (default 1h0m0s)"},
		{"--timeout", "0s", "--timeout 0s: want a positive duration"},
		{"--min-rate", "-5", "--min-rate -5: want a positive number of bytes per second"},
		{"--min-rate", "0", "--min-rate 0: want a positive number"},
		{"--rate-window", "-1m", "--rate-window -1m0s: want a positive duration"},
	} {
		for _, cmd := range []string{"check", "update"} {
			var out, errb bytes.Buffer
			code := run([]string{cmd, "--app", "demo", "--current", "1.0", "--install-dir", "app", "--cache-dir", t.TempDir(),
				"--metadata-url", "http://127.0.0.1:1/metadata", "--root", "root.json", tt.flag, tt.value}, &out, &errb)
			if code != 2 || !strings.Contains(errb.String(), "notsotuf: error: "+tt.want) {
				t.Errorf("%s %s %s: exit %d, stderr:\n%s", cmd, tt.flag, tt.value, code, errb.String())
			}
		}
	}
}

// TestCredentialsNeverPrintedCLI: a password in --metadata-url and a token
// in --header reach the server, and no output of check or update shows
// them: not stdout (text or --json), not stderr (errors, hints, the -v log,
// the progress), whether the command succeeds or fails. A 401 gets a hint
// on how to pass credentials.
func TestCredentialsNeverPrintedCLI(t *testing.T) {
	const password, token = "pw-S3CRET-1", "tok-S3CRET-2"
	fixture := tufupFixtureDir(t)
	files := http.FileServer(http.Dir(fixture))
	var faultMode atomic.Value
	faultMode.Store("")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, ok := r.BasicAuth()
		if !ok || user != "user" || pw != password || r.Header.Get("X-Api-Key") != token {
			http.Error(w, "credentials please", http.StatusUnauthorized)
			return
		}
		if fault := faultMode.Load().(string); strings.HasPrefix(r.URL.Path, "/targets/") && fault != "" {
			switch fault {
			case "404":
				http.NotFound(w, r)
			case "tampered":
				data, _ := os.ReadFile(filepath.Join(fixture, filepath.FromSlash(r.URL.Path)))
				data[len(data)/2] ^= 1
				w.Write(data)
			case "cut":
				conn, _, _ := http.NewResponseController(w).Hijack()
				conn.Close()
			}
			return
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	creds := strings.Replace(srv.URL, "http://", "http://user:"+password+"@", 1) + "/metadata"
	header := "X-Api-Key: " + token
	check := func(name string, wantCode int, stdout, stderr string) {
		t.Helper()
		if strings.Contains(stdout+stderr, password) || strings.Contains(stdout+stderr, token) {
			t.Errorf("%s: a secret is printed:\n%s\n%s", name, stdout, stderr)
		}
	}
	for _, tt := range []struct {
		name, fault, metadataURL string
		args                     []string
		code                     int
		want                     string // in stdout+stderr
	}{
		{"update", "", creds, []string{"--header", header}, 0, "updated demoapp 1.0.0 -> 1.1.0 (full archive, "},
		{"update --json -v", "", creds, []string{"--header", header, "--json"}, 0, `"installed":"1.1.0"`},
		{"404", "404", creds, []string{"--header", header}, 1, "not found on the server (HTTP 404)"},
		{"tampered", "tampered", creds, []string{"--header", header}, 1, "security: demoapp-1.1.0.tar.gz"},
		{"cut", "cut", creds, []string{"--header", header}, 1, "server unreachable or connection lost"},
		{"unreachable", "", "http://user:" + password + "@127.0.0.1:1/metadata", []string{"--header", header}, 1, "connection refused"},
		{"401", "", creds, []string{"--header", "X-Api-Key: wrong-" + token}, 1, "notsotuf: hint: the server wants credentials, or other ones: pass them with --header 'Authorization: ...'"},
		{"bad header", "", creds, []string{"--header", "Bearer " + token}, 2, "--header: want 'Name: value'"},
		{"bad URL", "", "http://user:" + password + "@host:port/metadata", []string{"--header", header}, 2, "--metadata-url: not a valid URL"},
	} {
		faultMode.Store(tt.fault)
		args := tt.args
		if strings.Contains(tt.name, "-v") {
			t.Setenv("NOTSOTUF_VERBOSE", "1")
		}
		code, stdout, stderr := runUpdate(t, t.TempDir(), tt.metadataURL, args...)
		t.Setenv("NOTSOTUF_VERBOSE", "")
		if code != tt.code || !strings.Contains(stdout+stderr, tt.want) {
			t.Errorf("%s: exit %d, want %d with %q:\n%s\n%s", tt.name, code, tt.code, tt.want, stdout, stderr)
		}
		check(tt.name, tt.code, stdout, stderr)
	}
}
