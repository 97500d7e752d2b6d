//go:build unix

package main

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// Script commands of the hand-off scenarios (client_handoff*.txtar).

// spawned holds the processes spawn started, by script and name.
var spawned sync.Map // procKey -> func()

type procKey struct {
	ts   *testscript.TestScript
	name string
}

// spawn VAR PROG [ARGS...]: starts PROG in the background and sets $VAR
// to its process id (for update --wait-pid); endproc VAR stops it.
func cmdSpawn(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: spawn VAR PROG [ARGS...]")
	}
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Dir = ts.MkAbs(".")
	ts.Check(cmd.Start())
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	spawned.Store(procKey{ts, args[0]}, func() { cmd.Process.Kill(); <-done })
	ts.Defer(func() { cmd.Process.Kill(); <-done; spawned.Delete(procKey{ts, args[0]}) })
	ts.Setenv(args[0], strconv.Itoa(cmd.Process.Pid))
}

// endproc VAR: stops the process spawn started, and waits until it is gone.
func cmdEndproc(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: endproc VAR")
	}
	v, _ := spawned.Load(procKey{ts, args[0]})
	stop, ok := v.(func())
	if !ok {
		ts.Fatalf("endproc: no process %s", args[0])
	}
	stop()
}

// waitfile FILE REGEXP [SECONDS]: waits (default 20 s) until FILE exists
// and matches REGEXP (multi-line mode).
func cmdWaitfile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: waitfile FILE REGEXP [SECONDS]")
	}
	re, err := regexp.Compile("(?m)" + args[1])
	ts.Check(err)
	d := 20 * time.Second
	if len(args) == 3 {
		s, err := strconv.ParseFloat(args[2], 64)
		ts.Check(err)
		d = time.Duration(s * float64(time.Second))
	}
	p := ts.MkAbs(args[0])
	start := time.Now()
	for {
		b, err := os.ReadFile(p)
		if err == nil && re.Match(b) {
			ts.Logf("waitfile: matched after %v", time.Since(start).Round(10*time.Millisecond))
			return
		}
		if time.Since(start) > d {
			ts.Fatalf("waitfile %s %q: not there after %v; the file holds:\n%s", args[0], args[1], d, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waithelper LOG: waits (up to 30 s) until the helper process named last
// in its log (helper=PID) has exited.
func cmdWaithelper(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waithelper LOG")
	}
	pid := lastHelperPID(ts, ts.ReadFile(args[0]))
	waitGone(ts, pid, 30*time.Second)
}

var helperPIDRe = regexp.MustCompile(`helper=(\d+)`)

func lastHelperPID(ts *testscript.TestScript, log string) int {
	m := helperPIDRe.FindAllStringSubmatch(log, -1)
	if len(m) == 0 {
		ts.Fatalf("no helper in the log:\n%s", log)
	}
	pid, _ := strconv.Atoi(m[len(m)-1][1])
	return pid
}

// waitGone waits until the process pid is gone (or a zombie).
func waitGone(ts *testscript.TestScript, pid int, d time.Duration) {
	start := time.Now()
	for alive(pid) {
		if time.Since(start) > d {
			ts.Fatalf("process %d still runs after %v", pid, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitDead waits up to d for the process pid to be gone (or a zombie).
func waitDead(pid int, d time.Duration) {
	for start := time.Now(); alive(pid) && time.Since(start) < d; {
		time.Sleep(20 * time.Millisecond)
	}
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z")
}

// setnow [OFFSET]: sets NOTSOTUF_NOW to the real time (plus OFFSET, a Go
// duration), for scenarios whose helper process keeps the real clock.
func cmdSetnow(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) > 1 {
		ts.Fatalf("usage: setnow [OFFSET]")
	}
	var off time.Duration
	if len(args) == 1 {
		var err error
		off, err = time.ParseDuration(args[0])
		ts.Check(err)
	}
	ts.Setenv("NOTSOTUF_NOW", time.Now().Add(off).UTC().Format(time.RFC3339))
}

// handoffkill ROUNDS OLD NEW CLIENT-ARGS...: in each round, installs the
// app (release OLD) into a fresh directory with a user file, stages NEW
// with update --wait-pid of a sleeping process (--restart run
// --confirm-within 1s; on odd rounds the restarted version never
// confirms), lets that process exit, and kills the helper with SIGKILL at
// a random instant (within 2 s). The install directory must then hold OLD
// or NEW, complete, with the user file; and after a run later than any
// deadline (update, which recovers first), OLD, or NEW if it confirmed
// (or if the helper died before the swap: that update installs it).
// It prints how many rounds ended in which state. OLD and NEW are the
// bundle directories of the releases 1.0 and 2.0; their "run" program
// appends "VERSION PID" to $MARKER, sleeps if $BROKEN is set, else runs
// notsotuf confirm.
func cmdHandoffkill(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 4 {
		ts.Fatalf("usage: handoffkill ROUNDS OLD NEW CLIENT-ARGS...")
	}
	rounds, err := strconv.Atoi(args[0])
	ts.Check(err)
	oldHash, newHash := treeHash(ts, ts.MkAbs(args[1]), true), treeHash(ts, ts.MkAbs(args[2]), true)
	client := args[3:]
	counts := map[string]int{}
	now := os.Getenv("NOTSOTUF_NOW")
	_ = now
	for r := 0; r < rounds; r++ {
		dir := ts.MkAbs(fmt.Sprintf("kill/%d", r))
		app, cache, marker := filepath.Join(dir, "app"), filepath.Join(dir, "cache"), filepath.Join(dir, "marker")
		base := append([]string{"update", "--install-dir", app, "--cache-dir", cache}, client...)
		ts.Setenv("MARKER", marker)
		ts.Setenv("APPDIR", app)
		ts.Setenv("CACHEDIR", cache)
		ts.Setenv("BROKEN", map[bool]string{true: "1"}[r%2 == 1])
		run := func(extra ...string) {
			err := ts.Exec("notsotuf", append(base, extra...)...)
			// A run program the helper started just before it died, too
			// early to be in the marker file, may hold the install lock
			// a moment while it confirms.
			for deadline := time.Now().Add(10 * time.Second); err != nil && strings.Contains(ts.ReadFile("stderr"), "in progress") && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
				err = ts.Exec("notsotuf", append(base, extra...)...)
			}
			if err != nil {
				ts.Fatalf("round %d: notsotuf %s: %v\n%s", r, strings.Join(extra, " "), err, ts.ReadFile("stderr"))
			}
		}
		run("--current", "0", "--versions", "<2")
		ts.Check(os.WriteFile(filepath.Join(app, "user.cfg"), []byte("mine\n"), 0o644))
		sleeper := exec.Command("sleep", "60")
		ts.Check(sleeper.Start())
		run("--current", "1.0", "--wait-pid", strconv.Itoa(sleeper.Process.Pid), "--restart", filepath.Join(app, "run"), "--confirm-within", "1s")
		m := regexp.MustCompile(`helper process (\d+)`).FindStringSubmatch(ts.ReadFile("stdout"))
		if m == nil {
			ts.Fatalf("round %d: no helper in\n%s", r, ts.ReadFile("stdout"))
		}
		helper, _ := strconv.Atoi(m[1])
		sleeper.Process.Kill()
		sleeper.Wait()
		time.Sleep(time.Duration(rand.Int64N(int64(2 * time.Second))))
		syscall.Kill(helper, syscall.SIGKILL)
		waitGone(ts, helper, 10*time.Second)
		killRuns(marker)
		state := func() string {
			switch treeHash(ts, app, false) {
			case oldHash:
				return "1.0"
			case newHash:
				return "2.0"
			}
			ts.Fatalf("round %d: the install directory is neither 1.0 nor 2.0 with the user's file:\n%s", r, treeList(ts, app))
			return ""
		}
		killed := state()
		// A later run, after any deadline, finishes the job.
		ts.Setenv("NOTSOTUF_NOW", time.Now().Add(time.Minute).UTC().Format(time.RFC3339))
		run("--current", killed)
		how := ""
		if _, err := os.Stat(filepath.Join(dir, ".app.notsotuf-pending")); err == nil {
			// The helper died between the commit and the end of the swap:
			// that run finished it, and the confirmation window runs from
			// then (no one has started 2.0 yet). The run after the window
			// rolls the unconfirmed 2.0 back.
			how = " (swap finished by the run, rolled back by the next)"
			ts.Setenv("NOTSOTUF_NOW", time.Now().Add(2*time.Minute).UTC().Format(time.RFC3339))
			run("--current", state())
		}
		ts.Setenv("NOTSOTUF_NOW", now)
		killRuns(marker)
		after := state()
		if how != "" && after != "1.0" {
			ts.Fatalf("round %d: the 2.0 that never started stays after its window", r)
		}
		// Killed before the swap, 2.0 is still staged and that run
		// installed it (no confirmation asked); swapped in with one, a
		// 2.0 that never confirms is rolled back.
		if r%2 == 1 && killed == "2.0" && after != "1.0" {
			ts.Fatalf("round %d: the 2.0 that never confirmed stays after its deadline", r)
		}
		counts["killed at "+killed+", then "+after+how]++
	}
	for k, n := range counts {
		fmt.Fprintf(ts.Stdout(), "%s: %d\n", k, n)
	}
}

// killRuns kills the processes of the "run" program listed in the marker.
func killRuns(marker string) {
	b, _ := os.ReadFile(marker)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			if pid, err := strconv.Atoi(f[1]); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
				waitDead(pid, 10*time.Second) // with the install lock it may hold
			}
		}
	}
}

// treeHash hashes the files of a tree (path, mode, content); withUser adds
// the user's file of handoffkill to a bundle.
func treeHash(ts *testscript.TestScript, dir string, withUser bool) string {
	lines := treeLines(ts, dir)
	if withUser {
		lines = append(lines, fmt.Sprintf("user.cfg %x %v", hashBytes([]byte("mine\n")), os.FileMode(0o644)))
	}
	sortStrings(lines)
	return fmt.Sprintf("%x", hashBytes([]byte(strings.Join(lines, "\n"))))
}

func treeList(ts *testscript.TestScript, dir string) string {
	return strings.Join(treeLines(ts, dir), "\n")
}

// treeLines lists the entries of a tree: path, type or content hash, mode.
func treeLines(ts *testscript.TestScript, dir string) []string {
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			lines = append(lines, fmt.Sprintf("%s/ %v", rel, fi.Mode().Perm()))
		case fi.Mode()&os.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			lines = append(lines, rel+" -> "+t)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			lines = append(lines, fmt.Sprintf("%s %x %v", rel, hashBytes(b), fi.Mode().Perm()))
		}
		return nil
	})
	ts.Check(err)
	sortStrings(lines)
	return lines
}

func hashBytes(b []byte) [32]byte { return sha256.Sum256(b) }

func sortStrings(s []string) { sort.Strings(s) }

// pause DURATION: waits (a Go duration).
func cmdPause(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: pause DURATION")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	time.Sleep(d)
}
