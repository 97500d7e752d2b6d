//go:build linux

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/notsotuf/notsotuf"
	"github.com/spf13/afero"
)

// TestTreeUpdateCycle runs the example for real: builds of 1.0, 2.0 and a
// 3.0 that hangs at start are published to a repository served on
// loopback. 1.0, installed with a file of the user's, stages 2.0 while it
// runs and exits; its helper swaps the tree and starts the application
// again, which runs 2.0 and confirms. Then 2.0 stages 3.0 and exits; 3.0
// never confirms: the helper stops it, puts 2.0 back, starts it, and 2.0
// reports 3.0 as withheld. (Linux only: see docs/client.md for what runs
// elsewhere.)
func TestTreeUpdateCycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example three times")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	tmp := t.TempDir()
	ctx := context.Background()

	cfg := notsotuf.DefaultConfig(appName)
	cfg.RepoDir, cfg.KeysDir = filepath.Join(tmp, "repository"), filepath.Join(tmp, "keystore")
	repo := &notsotuf.Repository{Fs: afero.NewOsFs(), Config: cfg}
	if err := repo.Init(); err != nil {
		t.Fatal(err)
	}
	here, err := filepath.Abs("root.json")
	if err != nil {
		t.Fatal(err)
	}
	overlay, err := json.Marshal(map[string]any{"Replace": map[string]string{here: filepath.Join(cfg.RepoDir, "metadata", "root.json")}})
	if err != nil {
		t.Fatal(err)
	}
	overlayPath := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(overlayPath, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	// build makes bundle-v: the executable and data/message.txt.
	build := func(v, flags string) {
		t.Helper()
		bundle := filepath.Join(tmp, "bundle-"+v)
		cmd := exec.Command(goBin, "build", "-overlay", overlayPath, "-ldflags", "-s -w -X main.version="+v+" "+flags, "-o", filepath.Join(bundle, appName), ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", v, err, out)
		}
		if err := os.MkdirAll(filepath.Join(bundle, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bundle, "data", "message.txt"), []byte("message of "+v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	publish := func(v string) {
		t.Helper()
		if _, err := repo.Add(ctx, notsotuf.AddOptions{Version: v, BundleDir: filepath.Join(tmp, "bundle-"+v)}); err != nil {
			t.Fatal(err)
		}
	}
	build("1.0", "")
	build("2.0", "")
	build("3.0", "-X main.broken=hang")
	publish("1.0")
	srv := httptest.NewServer(http.FileServer(http.Dir(cfg.RepoDir)))
	defer srv.Close()

	// Install 1.0 with the library, as an installer would, and add a
	// file of the user's.
	install, cache, logPath := filepath.Join(tmp, "app"), filepath.Join(tmp, "cache"), filepath.Join(tmp, "runs.log")
	root, err := os.ReadFile(filepath.Join(cfg.RepoDir, "metadata", "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	ccfg := notsotuf.ClientConfig{App: appName, CurrentVersion: "0", InstallDir: install, CacheDir: cache,
		MetadataURL: srv.URL + "/metadata", TargetsURL: srv.URL + "/targets", TrustedRoot: root}
	c, err := notsotuf.NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Update(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(install, "user.cfg"), []byte("mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	exe := filepath.Join(install, appName)
	// runApp runs the installed application and returns its output.
	runApp := func() string {
		t.Helper()
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), "TREEUPDATE_URL="+srv.URL, "TREEUPDATE_CACHE="+cache,
			"TREEUPDATE_LOG="+logPath, "TREEUPDATE_CONFIRM_WITHIN=4s")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", exe, err, out)
		}
		return string(out)
	}
	var pids []int
	runs := func() []string {
		b, _ := os.ReadFile(logPath)
		var lines []string
		pids = pids[:0]
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			pid, line, _ := strings.Cut(l, " ")
			n, _ := strconv.Atoi(pid)
			pids = append(pids, n)
			lines = append(lines, line)
		}
		return lines
	}
	// Every run must have exited before the temporary directory goes.
	defer func() {
		runs()
		for _, pid := range pids {
			for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	// waitRuns waits until the log has n lines and the helper is done.
	waitRuns := func(n int, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			hl, _ := os.ReadFile(filepath.Join(cache, "notsotuf-helper.log"))
			lines := strings.Split(strings.TrimSpace(string(hl)), "\n")
			if len(runs()) >= n && strings.Contains(lines[len(lines)-1], "msg=done") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("runs so far:\n%s\nhelper log:\n%s", strings.Join(runs(), "\n"), hl)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	message := func(v string) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(install, "data", "message.txt"))
		if err != nil || string(got) != "message of "+v+"\n" {
			t.Fatalf("data/message.txt = %q, %v; want %s's", got, err, v)
		}
		if b, err := os.ReadFile(filepath.Join(install, "user.cfg")); err != nil || string(b) != "mine\n" {
			t.Fatalf("the user's file: %q %v", b, err)
		}
	}

	// 1.0 runs, stages 2.0 and exits; the helper swaps and starts 2.0.
	publish("2.0")
	out := runApp()
	if !strings.Contains(out, "treeupdate 1.0: message of 1.0\n") || !strings.Contains(out, "will be replaced by 2.0 when it exits") {
		t.Fatalf("run of 1.0:\n%s", out)
	}
	waitRuns(2, 30*time.Second)
	if got := runs(); got[1] != "treeupdate 2.0: message of 2.0" {
		t.Fatalf("after the swap: %q", got)
	}
	message("2.0")

	// 2.0 stages 3.0, which hangs at start: rolled back to 2.0.
	publish("3.0")
	helperLog := filepath.Join(cache, "notsotuf-helper.log")
	os.Remove(helperLog)
	out = runApp()
	if !strings.Contains(out, "will be replaced by 3.0 when it exits") {
		t.Fatalf("run of 2.0:\n%s", out)
	}
	start := time.Now()
	waitRuns(4, 40*time.Second)
	t.Logf("rolled back and restarted %v after 2.0 handed off (window 4s)", time.Since(start).Round(100*time.Millisecond))
	got := runs()
	if !strings.HasPrefix(got[3], "treeupdate 2.0: message of 2.0 withheld 3.0 (did not start on this install: ") {
		t.Fatalf("after the rollback: %q", got)
	}
	message("2.0")
	hl, _ := os.ReadFile(helperLog)
	if !strings.Contains(string(hl), "stopped the process that did not confirm") {
		t.Errorf("helper log:\n%s", hl)
	}
	// Later checks skip 3.0.
	ccfg.CurrentVersion = "2.0"
	c, err = notsotuf.NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := c.Check(ctx); err != nil || u != nil {
		t.Fatalf("check after the rollback: %v %v", u, err)
	}
}
