package notsotuf

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/spf13/afero"
)

// The helper process of SwapAtExit. It is our own code, never a script:
// the application's own executable started again with the environment
// variable NOTSOTUF_HELPER set (the application calls
// RunHelperIfRequested first thing in main), or the notsotuf command
// (`notsotuf update --wait-pid` starts `notsotuf helper`). Everything it
// is asked to do travels in that variable, from the application's process
// to the helper, never through a file another process could change.
//
// This file and helper_unix.go / helper_windows.go are the process seam:
// the one place where the library starts processes and waits for them
// (exec.Cmd, and the system calls that tell whether a process runs).
// Client.spawn replaces the start of the helper in tests.

// helperEnv carries the helper's parameters (JSON).
const helperEnv = "NOTSOTUF_HELPER"

// helperLogFile is the helper's log, in the cache directory.
const helperLogFile = "notsotuf-helper.log"

// maxHelperLog: a bigger log is moved to notsotuf-helper.log.1 at the next
// start of the helper.
const maxHelperLog = 1 << 20

// HandOff asks SwapAtExit for a swap done by a helper process once the
// application exits.
type HandOff struct {
	// PID is the process to wait for: the application's (os.Getpid()),
	// or, for the notsotuf command, the one given with --wait-pid.
	PID int
	// Wait bounds the wait for PID to exit; 0 means DefaultHandOffWait.
	// When it runs out, nothing is swapped: the update stays staged.
	Wait time.Duration
	// Restart is the program to start once the swap is done (or has
	// failed: then the installed version is started again), with its
	// arguments: usually the application's executable in the install
	// directory and its command line. nil starts nothing. A relative
	// program path is resolved against Dir.
	Restart []string
	// Dir is the working directory of Restart; "" means the install
	// directory.
	Dir string
	// ConfirmWithin, when positive, makes the swap keep the previous
	// tree, and the new version must call Confirm within this time after
	// the swap; otherwise the helper stops the process it restarted (if
	// it still runs), swaps the previous tree back, records the release
	// as bad (later checks withhold it) and starts Restart again, which
	// then runs the previous version.
	ConfirmWithin time.Duration
	// Helper is the command that runs the helper: a program that calls
	// RunHelperIfRequested first thing in main, and its arguments. nil
	// means this program (os.Executable()). On Windows a program inside
	// the install directory is first copied to the cache directory (a
	// running program there would keep the directory from being
	// renamed).
	Helper []string
}

// helperParams is what the helper is asked to do (helperEnv).
type helperParams struct {
	App           string        `json:"app"`
	InstallDir    string        `json:"install_dir"`
	CacheDir      string        `json:"cache_dir"`
	Current       string        `json:"current"` // the version installed before the swap
	Tag           string        `json:"tag"`     // the staged update to swap in
	PID           int           `json:"pid"`
	PIDStart      uint64        `json:"pid_start,omitempty"` // when PID started (processStart), 0 if unknown
	Wait          time.Duration `json:"wait"`
	Restart       []string      `json:"restart,omitempty"`
	Dir           string        `json:"dir,omitempty"`
	ConfirmWithin time.Duration `json:"confirm_within,omitempty"`
	Purge         bool          `json:"purge,omitempty"`
}

// SwapAtExit hands the swap of the staged update (see Stage) to a
// detached helper process, which
//
//  1. waits for the process h.PID to exit (at most h.Wait; then the update
//     stays staged and the report says so);
//  2. takes the install lock, swaps the staged tree in (carrying the
//     files the release did not ship, see ClientConfig.Purge) and records
//     the new version; if that fails, the installed version stays;
//  3. starts h.Restart (the new version, or after a failure the old one);
//  4. with h.ConfirmWithin, waits for the new version's Confirm and rolls
//     back without it (see HandOff.ConfirmWithin).
//
// It returns the helper's process id once the helper runs; the
// application then exits. The helper logs to notsotuf-helper.log in the
// cache directory, and writes what happened to handoff.json there, which
// Check (Decision.HandOff) and LastHandOff report. The running
// executable is never written: the swap renames directories. It returns
// ErrNothingStaged when no update is staged, and needs the operating
// system's file system (ClientConfig.Fs nil or afero.OsFs).
func (c *Client) SwapAtExit(h HandOff) (int, error) {
	if c.singleExe {
		return 0, errors.New("swap at exit: single-executable mode replaces the running executable directly: use Install")
	}
	if _, ok := c.fs.(*afero.OsFs); !ok {
		return 0, errors.New("swap at exit: the helper process works on the operating system's file system only (ClientConfig.Fs)")
	}
	switch {
	case h.PID <= 0:
		return 0, fmt.Errorf("swap at exit: process id %d: want the application's (os.Getpid())", h.PID)
	case h.Wait < 0 || h.ConfirmWithin < 0:
		return 0, errors.New("swap at exit: negative duration")
	case h.Restart != nil && (len(h.Restart) == 0 || h.Restart[0] == ""):
		return 0, errors.New("swap at exit: Restart names no program")
	case h.Helper != nil && (len(h.Helper) == 0 || h.Helper[0] == ""):
		return 0, errors.New("swap at exit: Helper names no program")
	}
	if h.Wait == 0 {
		h.Wait = DefaultHandOffWait
	}
	if !processRunning(h.PID) {
		return 0, fmt.Errorf("swap at exit: process %d is not running: the swap would not wait for anything (use Install to update now)", h.PID)
	}
	if err := c.checkDirs(); err != nil {
		return 0, err
	}
	in := c.installer()
	unlock, err := in.lock()
	if err != nil {
		return 0, fmt.Errorf("swap at exit: %w", err)
	}
	err = c.recoverWith(in)
	var rec *stageRecord
	if err == nil {
		var ok bool
		if ok, err = in.stagedWaiting(); err == nil && ok {
			rec, err = in.readStageRecord()
		}
	}
	unlock()
	if err != nil {
		return 0, fmt.Errorf("swap at exit: %w", err)
	}
	if rec == nil {
		return 0, fmt.Errorf("swap at exit: %w (call Stage first)", ErrNothingStaged)
	}
	p := helperParams{
		App: c.app, InstallDir: c.installDir, CacheDir: c.cacheDir, Current: c.Current().String(), Tag: rec.Tag,
		PID: h.PID, PIDStart: processStart(h.PID), Wait: h.Wait, Restart: h.Restart, Dir: h.Dir,
		ConfirmWithin: h.ConfirmWithin, Purge: c.purge,
	}
	data, err := json.Marshal(p)
	if err != nil {
		return 0, err
	}
	argv, err := c.helperCommand(h.Helper, runtime.GOOS)
	if err != nil {
		return 0, fmt.Errorf("swap at exit: %w", err)
	}
	cmd := &exec.Cmd{Path: argv[0], Args: argv, Env: append(environWithout(helperEnv), helperEnv+"="+string(data)),
		Dir: filepath.Dir(c.installDir)} // never inside the tree it swaps
	if err := c.fs.MkdirAll(c.cacheDir, 0o755); err != nil {
		return 0, fmt.Errorf("swap at exit: %w", err)
	}
	c.writeHandOffReport(HandOffReport{Outcome: HandOffWaiting, Version: tagVersion(rec.Tag), From: p.Current})
	spawn := c.spawn
	if spawn == nil {
		spawn = startDetached
	}
	if err := spawn(cmd); err != nil {
		c.writeHandOffReport(HandOffReport{Outcome: HandOffFailed, Version: tagVersion(rec.Tag), From: p.Current, Error: "the helper did not start: " + err.Error()})
		return 0, fmt.Errorf("swap at exit: starting the helper %s: %w", argv[0], err)
	}
	c.log.Info("handed the swap to a helper process", "version", tagVersion(rec.Tag), "helper", cmd.Process.Pid, "waits for", h.PID)
	pid := cmd.Process.Pid
	go cmd.Wait() // reaps the helper if it ends before this process
	return pid, nil
}

// helperCommand returns the helper's command line: argv, or this program.
// A program inside the install directory on Windows is run from a copy
// in CacheDir/helper (see HandOff.Helper); earlier copies there are
// removed when they no longer run.
func (c *Client) helperCommand(argv []string, goos string) ([]string, error) {
	if argv == nil {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		if resolved, err := filepath.EvalSymlinks(exe); err == nil {
			exe = resolved
		}
		argv = []string{exe}
	}
	argv = slices.Clone(argv)
	if goos != "windows" || dirsOverlap(c.installDir, argv[0]) == "" {
		return argv, nil
	}
	dir := c.cachePath("helper")
	if err := c.fs.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if infos, err := afero.ReadDir(c.fs, dir); err == nil {
		for _, fi := range infos {
			_ = c.fs.Remove(filepath.Join(dir, fi.Name())) // fails while it runs
		}
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	ext := filepath.Ext(argv[0])
	cp := filepath.Join(dir, strings.TrimSuffix(filepath.Base(argv[0]), ext)+"-"+hex.EncodeToString(rnd[:])+ext)
	fi, err := lstat(c.fs, argv[0])
	if err != nil {
		return nil, err
	}
	if err := copyFileTo(c.fs, argv[0], cp, fi.Size()); err != nil {
		return nil, fmt.Errorf("copying the helper out of the install directory: %w", err)
	}
	if err := c.fs.Chmod(cp, 0o700); err != nil {
		return nil, err
	}
	argv[0] = cp
	return argv, nil
}

// environWithout returns this process's environment without name.
func environWithout(name string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, name+"=") {
			env = append(env, kv)
		}
	}
	return env
}

// RunHelperIfRequested runs the helper of SwapAtExit when this process was
// started as one, and returns its exit status and true; otherwise it
// returns at once with false. A program whose swaps SwapAtExit hands off
// to its own executable (HandOff.Helper nil) calls it first thing in
// main:
//
//	func main() {
//		if code, ok := notsotuf.RunHelperIfRequested(); ok {
//			os.Exit(code)
//		}
//		...
//	}
//
// The helper works on the operating system's file system and logs to
// notsotuf-helper.log in the application's cache directory.
func RunHelperIfRequested() (exitCode int, ran bool) {
	v, ok := os.LookupEnv(helperEnv)
	if !ok {
		return 0, false
	}
	var p helperParams
	if err := json.Unmarshal([]byte(v), &p); err != nil || p.App == "" || p.InstallDir == "" || p.CacheDir == "" {
		return 0, false // not ours (a stray variable): run the application
	}
	h := &helper{p: p, fs: afero.NewOsFs(), now: defaultNow, sleep: time.Sleep}
	return h.run(), true
}

// helper is the helper process's work.
type helper struct {
	p     helperParams
	fs    afero.Fs
	now   func() time.Time
	sleep func(time.Duration)
	log   *slog.Logger
	c     *Client
}

func (h *helper) run() int {
	logf, closeLog := h.openLog()
	defer closeLog()
	h.log = slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("helper", os.Getpid())
	c, err := newLocalClient(ClientConfig{App: h.p.App, CurrentVersion: h.p.Current, InstallDir: h.p.InstallDir,
		CacheDir: h.p.CacheDir, Fs: h.fs, Now: h.now, Logger: h.log, Purge: h.p.Purge})
	if err != nil {
		h.log.Error("bad parameters", "err", err)
		return 2
	}
	h.c = c
	version := tagVersion(h.p.Tag)
	h.log.Info("waiting for the application to exit", "pid", h.p.PID, "version", version, "timeout", h.p.Wait)
	if !waitExit(h.p.PID, h.p.PIDStart, h.p.Wait) {
		msg := fmt.Sprintf("process %d did not exit within %v: the update to %s stays staged", h.p.PID, h.p.Wait, version)
		h.log.Warn(msg)
		c.writeHandOffReport(HandOffReport{Outcome: HandOffTimeout, Version: version, From: h.p.Current, Error: msg})
		return 1
	}
	h.log.Info("the application exited; swapping", "version", version)
	if err := h.swap(); errors.Is(err, errSwappedElsewhere) {
		h.log.Info("installed already, by another run: nothing to do", "version", version)
		return 0
	} else if err != nil {
		h.log.Error("the swap failed: the installed version stays", "err", err)
		c.writeHandOffReport(HandOffReport{Outcome: HandOffFailed, Version: version, From: h.p.Current, Error: err.Error()})
		h.restart()
		return 1
	}
	c.writeHandOffReport(HandOffReport{Outcome: HandOffSwapped, Version: version, From: h.p.Current})
	proc := h.restart()
	if h.p.ConfirmWithin <= 0 {
		h.log.Info("done")
		return 0
	}
	return h.awaitConfirm(proc)
}

// openLog opens the helper's log in the cache directory for appending
// (moving a big one aside first); stderr if it cannot.
func (h *helper) openLog() (io.Writer, func()) {
	p := filepath.Join(h.p.CacheDir, helperLogFile)
	if fi, err := lstat(h.fs, p); err == nil && fi.Mode().IsRegular() && fi.Size() > maxHelperLog {
		_ = h.fs.Rename(p, p+".1")
	}
	if err := h.fs.MkdirAll(h.p.CacheDir, 0o755); err == nil {
		if f, err := openNoFollow(h.fs, p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err == nil {
			return f, func() { f.Close() }
		}
	}
	return os.Stderr, func() {}
}

// swap swaps the staged update in, under the install lock.
func (h *helper) swap() error {
	c := h.c
	if err := c.checkDirs(); err != nil {
		return err
	}
	in := c.installer()
	unlock, err := c.lockWait(in, 5*time.Minute)
	if err != nil {
		return err
	}
	defer unlock()
	if err := c.recoverWith(in); err != nil {
		return err
	}
	ok, err := in.stagedWaiting()
	if err != nil {
		return err
	}
	rec, err := in.readStageRecord()
	if err != nil {
		return err
	}
	if !ok || rec == nil || rec.Tag != h.p.Tag {
		if v, _ := c.installedVersion(); v == tagVersion(h.p.Tag) {
			return errSwappedElsewhere // another helper (which restarts the application), or an Install
		}
		return fmt.Errorf("the staged update to %s is gone (replaced, or installed by another run)", tagVersion(h.p.Tag))
	}
	var confirm *confirmSpec
	if h.p.ConfirmWithin > 0 {
		confirm = &confirmSpec{Within: h.p.ConfirmWithin, Previous: c.Current().String()}
	}
	return c.swapRecorded(in, rec, confirm)
}

// installedVersion is the version in the install manifest, if any.
func (c *Client) installedVersion() (string, error) {
	h, err := readManifest(c.fs, c.installer().manifestPath(), func(manifestHeader, installedEntry) error { return errStopManifest })
	if err != nil && !errors.Is(err, errStopManifest) {
		return "", err
	}
	return tagVersion(h.Version), nil
}

var errStopManifest = errors.New("stop")

// errSwappedElsewhere: the update the helper was to swap in was installed
// by another run.
var errSwappedElsewhere = errors.New("installed by another run")

// restart starts the application again, if asked; the process, nil when
// there is none.
func (h *helper) restart() *os.Process {
	if len(h.p.Restart) == 0 {
		return nil
	}
	dir := h.p.Dir
	if dir == "" {
		dir = h.p.InstallDir
	}
	prog := h.p.Restart[0]
	if !filepath.IsAbs(prog) && strings.ContainsAny(prog, `/\`) {
		prog = filepath.Join(dir, prog)
	}
	cmd := &exec.Cmd{Path: prog, Args: h.p.Restart, Env: environWithout(helperEnv), Dir: dir}
	if filepath.Base(prog) == prog {
		if lp, err := exec.LookPath(prog); err == nil {
			cmd.Path = lp
		}
	}
	if err := startRestart(cmd); err != nil {
		h.log.Error("cannot start the application", "program", prog, "err", err)
		return nil
	}
	h.log.Info("started the application", "program", prog, "pid", cmd.Process.Pid)
	go cmd.Wait()
	return cmd.Process
}

// awaitConfirm waits until the new version confirms, or its deadline
// passes: then it stops the process it started, if it still runs, rolls
// back and starts the application again.
func (h *helper) awaitConfirm(proc *os.Process) int {
	c, in := h.c, h.c.installer()
	for {
		p, err := in.readPending()
		if err != nil {
			h.log.Error("reading the pending confirmation", "err", err)
			return 1
		}
		if p == nil {
			h.log.Info("the new version confirmed its start")
			if unlock, err := c.lockWait(in, time.Minute); err == nil {
				if err := c.recoverWith(in); err != nil { // removes the previous tree
					h.log.Warn("removing the previous tree", "err", err)
				}
				unlock()
			}
			h.log.Info("done")
			return 0
		}
		if !h.now().Before(p.Deadline) {
			break
		}
		h.sleep(min(100*time.Millisecond, p.Deadline.Sub(h.now())+time.Millisecond))
	}
	h.log.Warn("the new version did not confirm its start in time: rolling back", "version", tagVersion(h.p.Tag))
	if proc != nil {
		if err := proc.Kill(); err == nil {
			h.log.Info("stopped the process that did not confirm", "pid", proc.Pid)
			h.sleep(200 * time.Millisecond) // its files close (Windows)
		}
	}
	unlock, err := c.lockWait(in, 5*time.Minute)
	if err != nil {
		h.log.Error("cannot roll back now (the next start of the application does)", "err", err)
		return 1
	}
	err = c.recoverWith(in) // rolls back: the deadline passed
	unlock()
	if err != nil {
		h.log.Error("the rollback failed (the next start of the application finishes it)", "err", err)
		return 1
	}
	h.log.Info("rolled back", "to", h.p.Current)
	h.restart()
	h.log.Info("done")
	return 0
}
