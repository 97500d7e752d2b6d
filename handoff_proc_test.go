//go:build unix

package notsotuf

// The hand-off with real processes: this test binary plays the helper
// (TestHandOffHelperProcess, started by SwapAtExit through Client.spawn)
// and the application it restarts (TestHandOffApp), on a real temporary
// directory; the process the helper waits for is a real `sleep`.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// Environment of the application the helper restarts (TestHandOffApp).
const (
	appEnv       = "NOTSOTUF_TEST_APP"        // "1" in the application
	appEnvMarker = "NOTSOTUF_TEST_APP_MARKER" // it appends "ran VERSION PID" here
	appEnvBroken = "NOTSOTUF_TEST_APP_BROKEN" // this version hangs without confirming
	appEnvWrite  = "NOTSOTUF_TEST_APP_WRITE"  // "1": it writes data/written-by-VERSION
	appEnvDir    = "NOTSOTUF_TEST_APP_DIR"    // the install directory
	appEnvCache  = "NOTSOTUF_TEST_APP_CACHE"  // the cache directory
)

// TestHandOffHelperProcess is the helper process of the tests below.
func TestHandOffHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process of the hand-off tests")
	}
	code, _ := RunHelperIfRequested()
	os.Exit(code)
}

// TestHandOffApp is the application the helper restarts: it says which
// version of the tree it runs, and confirms it unless that version is
// the broken one, which hangs.
func TestHandOffApp(t *testing.T) {
	if os.Getenv(appEnv) != "1" {
		t.Skip("application of the hand-off tests")
	}
	dir := os.Getenv(appEnvDir)
	v, err := os.ReadFile(filepath.Join(dir, "version"))
	if err != nil {
		t.Fatal(err)
	}
	version := string(v)
	f, err := os.OpenFile(os.Getenv(appEnvMarker), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "ran %s %d\n", version, os.Getpid())
	f.Close()
	if os.Getenv(appEnvWrite) == "1" {
		os.MkdirAll(filepath.Join(dir, "data"), 0o755)
		os.WriteFile(filepath.Join(dir, "data", "written-by-"+version), []byte(version), 0o644)
	}
	if version == os.Getenv(appEnvBroken) {
		time.Sleep(time.Minute) // never confirms
		os.Exit(3)
	}
	if err := Confirm(ClientConfig{App: "app", CurrentVersion: version, InstallDir: dir, CacheDir: os.Getenv(appEnvCache)}); err != nil {
		t.Fatal(err)
	}
	os.Exit(0)
}

// procTest is the setup of a hand-off test with real processes.
type procTest struct {
	t      *testing.T
	repo   *testRepo
	rels   []appRelease
	fsys   afero.Fs
	cfg    ClientConfig
	marker string
}

// newProcTest installs 1.0 (real clock), adds the user's files and stages
// 2.0; the applications it starts report to marker.
func newProcTest(t *testing.T, repo *testRepo, rels []appRelease, broken string, write bool) *procTest {
	t.Helper()
	fsys, cfg := osClientConfig(t, repo, "0")
	cfg.Now = nil // the helper's clock is the real one
	cfg.Versions = "<2"
	if _, err := newTestClient(t, cfg).Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg.Versions, cfg.CurrentVersion = "", "1.0"
	writeTree(t, fsys, cfg.InstallDir, userFiles)
	c := newTestClient(t, cfg)
	u, err := c.Check(context.Background())
	if err != nil || u == nil {
		t.Fatalf("check: %v %v", u, err)
	}
	if err := c.Stage(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	p := &procTest{t: t, repo: repo, rels: rels, fsys: fsys, cfg: cfg, marker: filepath.Join(t.TempDir(), "marker")}
	w := ""
	if write {
		w = "1"
	}
	t.Setenv(appEnv, "1")
	t.Setenv(appEnvMarker, p.marker)
	t.Setenv(appEnvBroken, broken)
	t.Setenv(appEnvWrite, w)
	t.Setenv(appEnvDir, cfg.InstallDir)
	t.Setenv(appEnvCache, cfg.CacheDir)
	return p
}

// handOff starts a `sleep` for the helper to wait for, and hands the swap
// off with a confirmation window; it returns the sleeper and the helper's
// process id.
func (p *procTest) handOff(within time.Duration) (*exec.Cmd, int) {
	p.t.Helper()
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		p.t.Skipf("no sleep command: %v", err)
	}
	p.t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	exe, err := filepath.Abs(os.Args[0])
	if err != nil {
		p.t.Fatal(err)
	}
	c := newTestClient(p.t, p.cfg)
	c.spawn = func(cmd *exec.Cmd) error {
		cmd.Path, cmd.Args = exe, []string{exe, "-test.run=^TestHandOffHelperProcess$"}
		return startDetached(cmd)
	}
	pid, err := c.SwapAtExit(HandOff{PID: sleeper.Process.Pid, Wait: 30 * time.Second,
		Restart: []string{exe, "-test.run=^TestHandOffApp$"}, ConfirmWithin: within})
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL); p.killApps() })
	return sleeper, pid
}

// ranVersions returns the versions the applications ran, in order.
func (p *procTest) ranVersions() string {
	b, _ := os.ReadFile(p.marker)
	var vs []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) == 3 {
			vs = append(vs, f[1])
		}
	}
	return strings.Join(vs, " ")
}

// killApps stops the applications the helper started.
func (p *procTest) killApps() {
	b, _ := os.ReadFile(p.marker)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 {
			if pid, err := strconv.Atoi(f[2]); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
				// Gone, with the install lock it may hold, before the test
				// goes on.
				waitFor(p.t, 10*time.Second, "a killed application to exit", func() bool { return !processAlive(pid, 0) })
			}
		}
	}
}

// waitApps waits until the applications the helper started have exited.
func (p *procTest) waitApps() {
	b, _ := os.ReadFile(p.marker)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 {
			if pid, err := strconv.Atoi(f[2]); err == nil {
				waitFor(p.t, 20*time.Second, "the application to exit", func() bool { return !processAlive(pid, 0) })
			}
		}
	}
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exited reports whether the process pid is gone (reaped: SwapAtExit
// waits for its helper).
func exited(pid int) bool { return syscall.Kill(pid, 0) != nil }

// TestHandOffSwapsAtExit: with real processes, the staged update changes
// nothing while the process the helper waits for runs; once it exits the
// helper swaps the tree (the user's files kept), restarts the
// application, which runs 2.0 and confirms, and the previous tree goes.
func TestHandOffSwapsAtExit(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := handOffReleases(t, repo)
	p := newProcTest(t, repo, rels, "", true)
	sleeper, helper := p.handOff(10 * time.Second)
	time.Sleep(700 * time.Millisecond)
	wantTree(t, p.fsys, p.cfg.InstallDir, withUser(rels[0].files))
	if exited(helper) {
		t.Fatal("the helper is gone while the application runs")
	}
	sleeper.Process.Kill()
	sleeper.Wait()
	waitFor(t, 20*time.Second, "the helper", func() bool { return exited(helper) })
	p.waitApps()
	if got := p.ranVersions(); got != "2.0" {
		t.Fatalf("ran %q, want 2.0", got)
	}
	want := withUser(rels[1].files)
	want["data/written-by-2.0"] = "2.0"
	wantTree(t, p.fsys, p.cfg.InstallDir, want)
	wantOnlyTree(t, p.fsys, p.cfg.InstallDir)
	c := newTestClient(t, p.cfg)
	if c.Current().String() != "2.0" {
		t.Errorf("current: %s", c.Current())
	}
	if r, err := c.LastHandOff(); err != nil || r == nil || r.Outcome != HandOffConfirmed {
		t.Errorf("report: %+v %v", r, err)
	}
	log, _ := os.ReadFile(filepath.Join(p.cfg.CacheDir, helperLogFile))
	if !strings.Contains(string(log), "the new version confirmed its start") {
		t.Errorf("helper log:\n%s", log)
	}
}

// TestHandOffRollsBack: the restarted 2.0 never confirms; within the
// window and a few seconds the helper stops it, swaps 1.0 back (with the
// user's files, also those 2.0 wrote), restarts 1.0, and later checks
// withhold 2.0.
func TestHandOffRollsBack(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := handOffReleases(t, repo)
	p := newProcTest(t, repo, rels, "2.0", true)
	sleeper, helper := p.handOff(2 * time.Second)
	sleeper.Process.Kill()
	sleeper.Wait()
	waitFor(t, 20*time.Second, "2.0 to start", func() bool { return p.ranVersions() != "" })
	start := time.Now()
	waitFor(t, 20*time.Second, "the helper", func() bool { return exited(helper) })
	waitFor(t, 20*time.Second, "1.0 to start", func() bool { return p.ranVersions() == "2.0 1.0" })
	if took := time.Since(start); took > 2*time.Second+5*time.Second {
		t.Errorf("rolled back %v after the restart, window 2s", took)
	}
	p.waitApps()
	if got := p.ranVersions(); got != "2.0 1.0" {
		log, _ := os.ReadFile(filepath.Join(p.cfg.CacheDir, helperLogFile))
		t.Fatalf("ran %q, want 2.0 then 1.0; helper log:\n%s", got, log)
	}
	want := withUser(rels[0].files)
	want["data/written-by-2.0"], want["data/written-by-1.0"] = "2.0", "1.0"
	wantTree(t, p.fsys, p.cfg.InstallDir, want)
	wantOnlyTree(t, p.fsys, p.cfg.InstallDir)
	d, err := newTestClient(t, p.cfg).Decide(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Update != nil || len(d.Withheld) != 1 || !strings.Contains(d.Withheld[0].Reason, "did not confirm its start") {
		t.Fatalf("decision: %v %+v", d.Update, d.Withheld)
	}
	log, _ := os.ReadFile(filepath.Join(p.cfg.CacheDir, helperLogFile))
	if !strings.Contains(string(log), "stopped the process that did not confirm") {
		t.Errorf("helper log:\n%s", log)
	}
}

// TestHandOffKilled kills the helper with SIGKILL at random instants of
// its work (waiting, swapping, restarting, waiting for the confirmation,
// rolling back): every time, the install directory is 1.0 or 2.0,
// complete with the user's files, and the next Recover finishes the job:
// after the deadline, an unconfirmed 2.0 is rolled back.
func TestHandOffKilled(t *testing.T) {
	rounds := 20
	if testing.Short() {
		rounds = 4
	}
	repo := newTestRepo(t, false)
	rels := handOffReleases(t, repo)
	v1, v2 := withUser(rels[0].files), withUser(rels[1].files)
	counts := map[string]int{}
	for r := 0; r < rounds; r++ {
		broken := ""
		if r%2 == 1 {
			broken = "2.0"
		}
		p := newProcTest(t, repo, rels, broken, false)
		var recoverLog bytes.Buffer
		fatalf := func(format string, args ...any) {
			t.Helper()
			log, _ := os.ReadFile(filepath.Join(p.cfg.CacheDir, helperLogFile))
			t.Fatalf("%s (ran %q, beside the tree: %q); helper log:\n%s\nrecover log:\n%s", fmt.Sprintf(format, args...),
				p.ranVersions(), siblingsOf(t, p.fsys, filepath.Dir(p.cfg.InstallDir)), log, recoverLog.Bytes())
		}
		sleeper, helper := p.handOff(400 * time.Millisecond)
		sleeper.Process.Kill()
		sleeper.Wait()
		time.Sleep(time.Duration(rand.Int64N(int64(1500 * time.Millisecond))))
		syscall.Kill(helper, syscall.SIGKILL)
		waitFor(t, 10*time.Second, "the helper to die", func() bool { return exited(helper) })
		p.killApps()
		got := treeManifest(t, p.fsys, p.cfg.InstallDir)
		state := "1.0"
		if maps2Equal(got, v2) {
			state = "2.0"
		} else if !maps2Equal(got, v1) {
			fatalf("round %d: after the kill the tree is neither 1.0 nor 2.0 (ran %q)", r, p.ranVersions())
		}
		counts[fmt.Sprintf("killed at %s, ran %q", state, p.ranVersions())]++
		// The next start, later than any deadline.
		cfg := p.cfg
		cfg.Now = func() time.Time { return time.Now().Add(time.Minute) }
		cfg.Logger = slog.New(slog.NewTextHandler(&recoverLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c := newTestClient(t, cfg)
		// An application the helper started just before it died, too
		// early to be in the marker file, may hold the install lock a
		// moment while it confirms.
		err := c.Recover()
		for deadline := time.Now().Add(10 * time.Second); errors.Is(err, ErrBusy) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			err = c.Recover()
		}
		if err != nil {
			fatalf("round %d: recover: %v", r, err)
		}
		pending := filepath.Join(filepath.Dir(p.cfg.InstallDir), ".app"+suffixPending)
		if ok, _ := afero.Exists(p.fsys, pending); ok {
			// The helper died between the commit and the end of the swap:
			// this Recover finished it, and the confirmation window runs
			// from now (no one has started 2.0 yet). The run after the
			// window rolls the unconfirmed 2.0 back.
			counts["swap finished by recover"]++
			cfg.Now = func() time.Time { return time.Now().Add(2 * time.Minute) }
			c = newTestClient(t, cfg)
			if err := c.Recover(); err != nil {
				fatalf("round %d: second recover: %v", r, err)
			}
			if got := treeManifest(t, p.fsys, p.cfg.InstallDir); !maps2Equal(got, v1) {
				fatalf("round %d: 2.0 never started nor confirmed, and stays after its window", r)
			}
		}
		got = treeManifest(t, p.fsys, p.cfg.InstallDir)
		switch {
		case maps2Equal(got, v1):
			if c.Current().String() != "1.0" {
				fatalf("round %d: tree 1.0, current %s", r, c.Current())
			}
		case maps2Equal(got, v2):
			if c.Current().String() != "2.0" {
				fatalf("round %d: tree 2.0, current %s", r, c.Current())
			}
			if broken != "" {
				fatalf("round %d: the broken 2.0 stays after its deadline", r)
			}
		default:
			fatalf("round %d: after recover the tree is neither 1.0 nor 2.0", r)
		}
		for _, s := range siblingsOf(t, p.fsys, filepath.Dir(p.cfg.InstallDir)) {
			switch s {
			case "app", "cache", ".app" + suffixLock, ".app" + suffixManifest:
			case ".app" + suffixNew, ".app" + suffixStaged, ".app" + suffixManifestNew:
				if !maps2Equal(got, v1) {
					fatalf("round %d: %s left beside 2.0", r, s)
				}
			default:
				fatalf("round %d: %s left beside the tree", r, s)
			}
		}
	}
	t.Logf("%d rounds: %v", rounds, counts)
}

func maps2Equal(got manifest, files map[string]string) bool {
	want := manifest{}
	for name, content := range files {
		want[name] = sha256hex([]byte(content))
		for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
			want[filepath.ToSlash(d)] = "dir"
		}
	}
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}
