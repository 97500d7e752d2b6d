package notsotuf

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notsotuf/notsotuf/internal/faultfs"
	"github.com/spf13/afero"
)

// handOffReleases publishes 1.0 and 2.0 of "app"; the file "version" in
// each tree says which it is.
func handOffReleases(t *testing.T, repo *testRepo) []appRelease {
	mk := func(v string) map[string]string {
		f := releaseFiles(len(v))
		f["version"] = v
		return f
	}
	rels := []appRelease{buildRelease(t, "1.0", mk("1.0")), buildRelease(t, "2.0", mk("2.0"))}
	repo.publishRelease("app", rels[0], nil, false, "")
	repo.publishRelease("app", rels[1], makePatch(t, rels[0], rels[1]), false, "")
	return rels
}

// installed10 installs 1.0 into a fresh install directory on a real disk,
// adds the user's files and returns the configuration (current 1.0) and a
// clock to move.
func installed10(t *testing.T, repo *testRepo) (afero.Fs, ClientConfig, *time.Time) {
	t.Helper()
	fsys, cfg := osClientConfig(t, repo, "0")
	now := testNow
	cfg.Now = func() time.Time { return now }
	cfg.Versions = "<2"
	if _, err := newTestClient(t, cfg).Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg.Versions, cfg.CurrentVersion = "", "1.0"
	writeTree(t, fsys, cfg.InstallDir, map[string]string{"user.cfg": "mine", "data/notes.txt": "notes"})
	return fsys, cfg, &now
}

var userFiles = map[string]string{"user.cfg": "mine", "data/notes.txt": "notes"}

func withUser(files map[string]string) map[string]string {
	m := maps.Clone(files)
	maps.Copy(m, userFiles)
	return m
}

// TestStageThenInstall: Stage leaves the installed tree alone, survives a
// recover (the application's exit, a reboot), and an Install of the same
// release swaps the staged tree in without downloading it again, keeping
// the user's files.
func TestStageThenInstall(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := handOffReleases(t, repo)
	fsys, cfg, _ := installed10(t, repo)
	c := newTestClient(t, cfg)
	u, err := c.Check(context.Background())
	if err != nil || u == nil {
		t.Fatalf("check: %v %v", u, err)
	}
	if err := c.Stage(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	wantTree(t, fsys, cfg.InstallDir, withUser(rels[0].files))
	if c.Current().String() != "1.0" {
		t.Fatalf("current after stage: %s", c.Current())
	}
	// A new process: recover keeps the staged update.
	c = newTestClient(t, cfg)
	if err := c.Recover(); err != nil {
		t.Fatal(err)
	}
	s, err := c.Staged()
	if err != nil || s == nil || s.Version.String() != "2.0" || s.From.String() != "1.0" {
		t.Fatalf("staged: %+v %v", s, err)
	}
	repo.resetRequests()
	u, err = c.Check(context.Background())
	if err != nil || u == nil {
		t.Fatalf("check: %v %v", u, err)
	}
	if err := c.Install(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	if got := targetRequests(repo); len(got) != 0 {
		t.Errorf("the staged update was downloaded again: %q", got)
	}
	wantTree(t, fsys, cfg.InstallDir, withUser(rels[1].files))
	if s, err := c.Staged(); s != nil || err != nil {
		t.Errorf("still staged: %+v %v", s, err)
	}
	if c.Current().String() != "2.0" {
		t.Errorf("current: %s", c.Current())
	}
	wantOnlyTree(t, fsys, cfg.InstallDir)
}

// stageAndSwap stages 2.0 and swaps it in the way the helper does, keeping
// the previous tree for a confirmation within d.
func stageAndSwap(t *testing.T, cfg ClientConfig, d time.Duration) *Client {
	t.Helper()
	c := newTestClient(t, cfg)
	u, err := c.Check(context.Background())
	if err != nil || u == nil {
		t.Fatalf("check: %v %v", u, err)
	}
	if err := c.Stage(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	in := c.installer()
	unlock, err := in.lock()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	rec, err := in.readStageRecord()
	if err != nil || rec == nil {
		t.Fatalf("stage record: %v %v", rec, err)
	}
	if err := c.swapRecorded(in, rec, &confirmSpec{Within: d, Previous: c.Current().String()}); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestConfirmKeepsTheNewVersion: after a swap that waits for a
// confirmation, the new version runs with the previous tree kept beside
// it; Confirm (from the new version) removes the pending record, and the
// next recover the previous tree; a later deadline changes nothing.
func TestConfirmKeepsTheNewVersion(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := handOffReleases(t, repo)
	fsys, cfg, now := installed10(t, repo)
	c := stageAndSwap(t, cfg, time.Minute)
	wantTree(t, fsys, cfg.InstallDir, withUser(rels[1].files))
	in := c.installer()
	wantTree(t, fsys, in.previousPath(), withUser(rels[0].files))
	// The old version cannot confirm the new one; an install waits.
	if err := newTestClient(t, cfg).Confirm(); err != nil {
		t.Fatal(err)
	}
	if p, _ := in.readPending(); p == nil {
		t.Fatal("the old version confirmed the new one")
	}
	u, err := newTestClient(t, cfg).Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if u != nil {
		t.Fatalf("offered %s while 2.0 waits for its confirmation", u.Version)
	}
	cfg2 := cfg
	cfg2.CurrentVersion = "2.0"
	*now = now.Add(59 * time.Second)
	if err := newTestClient(t, cfg2).Confirm(); err != nil {
		t.Fatal(err)
	}
	if p, _ := in.readPending(); p != nil {
		t.Fatal("still pending after Confirm")
	}
	if err := newTestClient(t, cfg2).Recover(); err != nil {
		t.Fatal(err)
	}
	wantOnlyTree(t, fsys, cfg.InstallDir)
	*now = now.Add(time.Hour)
	if err := newTestClient(t, cfg2).Recover(); err != nil {
		t.Fatal(err)
	}
	wantTree(t, fsys, cfg.InstallDir, withUser(rels[1].files))
	if r, _ := newTestClient(t, cfg2).LastHandOff(); r == nil || r.Outcome != HandOffConfirmed {
		t.Errorf("hand-off report: %+v", r)
	}
}

// TestRecoverRollsBackUnconfirmed: with no confirmation by the deadline
// (the helper died, say), the next Recover swaps the previous tree back,
// with the user's files as the new version left them, records the release
// as bad, and Check withholds it, saying why, until a newer release
// appears. A Confirm after the deadline fails.
func TestRecoverRollsBackUnconfirmed(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := handOffReleases(t, repo)
	fsys, cfg, now := installed10(t, repo)
	// The user edited a file of 1.0 (allowed: the tree stays the app's).
	writeTree(t, fsys, cfg.InstallDir, map[string]string{"share/README": "edited"})
	stageAndSwap(t, cfg, time.Minute)
	// The new version changes the user's files while it runs.
	writeTree(t, fsys, cfg.InstallDir, map[string]string{"user.cfg": "changed by 2.0", "data/new.txt": "written by 2.0"})
	cfg2 := cfg
	cfg2.CurrentVersion = "2.0"
	*now = now.Add(time.Minute)
	if err := newTestClient(t, cfg2).Confirm(); err == nil || !strings.Contains(err.Error(), "too late") {
		t.Fatalf("late confirm: %v", err)
	}
	c := newTestClient(t, cfg2) // the new version, started after the deadline
	if err := c.Recover(); err != nil {
		t.Fatal(err)
	}
	want := withUser(rels[0].files)
	want["user.cfg"], want["data/new.txt"], want["share/README"] = "changed by 2.0", "written by 2.0", "edited"
	wantTree(t, fsys, cfg.InstallDir, want)
	if c.Current().String() != "1.0" {
		t.Errorf("current after rollback: %s", c.Current())
	}
	wantOnlyTree(t, fsys, cfg.InstallDir)
	d, err := newTestClient(t, cfg).Decide(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Update != nil || len(d.Withheld) != 1 || d.Withheld[0].Version.String() != "2.0" || !strings.Contains(d.Withheld[0].Reason, "did not confirm its start") {
		t.Fatalf("decision after rollback: update %v, withheld %+v", d.Update, d.Withheld)
	}
	if d.HandOff == nil || d.HandOff.Outcome != HandOffRolledBack {
		t.Errorf("hand-off report: %+v", d.HandOff)
	}
	// A newer release is offered.
	repo.publishRelease("app", buildRelease(t, "2.1", rels[1].files), nil, false, "")
	u, err := newTestClient(t, cfg).Check(context.Background())
	if err != nil || u == nil || u.Version.String() != "2.1" {
		t.Fatalf("after 2.1: %v %v", u, err)
	}
}

// TestCheckRollsBackExpired: Check settles an expired confirmation too.
func TestCheckRollsBackExpired(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := handOffReleases(t, repo)
	fsys, cfg, now := installed10(t, repo)
	stageAndSwap(t, cfg, time.Minute)
	*now = now.Add(2 * time.Minute)
	u, err := newTestClient(t, cfg).Check(context.Background())
	if err != nil || u != nil {
		t.Fatalf("check: %v %v", u, err)
	}
	wantTree(t, fsys, cfg.InstallDir, withUser(rels[0].files))
}

// TestSwapAtExitRefuses: no staged update, no process id, another Fs.
func TestSwapAtExitRefuses(t *testing.T) {
	repo := newTestRepo(t, false)
	handOffReleases(t, repo)
	_, cfg, _ := installed10(t, repo)
	c := newTestClient(t, cfg)
	c.spawn = func(*exec.Cmd) error { t.Fatal("spawned"); return nil }
	if _, err := c.SwapAtExit(HandOff{PID: os.Getpid()}); !errors.Is(err, ErrNothingStaged) {
		t.Errorf("nothing staged: %v", err)
	}
	if _, err := c.SwapAtExit(HandOff{}); err == nil {
		t.Error("no PID accepted")
	}
	// A process that is not running (a mistyped --wait-pid).
	u, err := c.Check(context.Background())
	if err != nil || u == nil {
		t.Fatalf("check: %v %v", u, err)
	}
	if err := c.Stage(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	dead := exec.Command(os.Args[0], "-test.run=^$")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SwapAtExit(HandOff{PID: dead.Process.Pid}); err == nil || !strings.Contains(err.Error(), "is not running") {
		t.Errorf("a process that exited: %v", err)
	}
	cfg.Fs = afero.NewMemMapFs()
	if _, err := newTestClient(t, cfg).SwapAtExit(HandOff{PID: 1}); err == nil {
		t.Error("MemMapFs accepted")
	}
}

// wantOnlyTree fails unless the install directory's parent holds only the
// tree, its manifest and lock, and the cache.
func wantOnlyTree(t *testing.T, fsys afero.Fs, dir string) {
	t.Helper()
	got := strings.Join(siblingsOf(t, fsys, filepath.Dir(dir)), " ")
	if want := ".app.notsotuf-lock .app.notsotuf-manifest app cache"; got != want {
		t.Errorf("install parent holds %s, want %s", got, want)
	}
}

// TestHelperCommandCopiedOutOfTheTree: on Windows a helper program inside
// the install directory runs from a copy in the cache directory (a running
// program would keep the directory from being renamed); elsewhere, or
// outside the tree, it runs in place. Earlier copies are removed.
func TestHelperCommandCopiedOutOfTheTree(t *testing.T) {
	repo := newTestRepo(t, false)
	handOffReleases(t, repo)
	fsys, cfg, _ := installed10(t, repo)
	c := newTestClient(t, cfg)
	exe := filepath.Join(cfg.InstallDir, "app.exe")
	if err := afero.WriteFile(fsys, exe, []byte("MZ program"), 0o755); err != nil {
		t.Fatal(err)
	}
	argv, err := c.helperCommand([]string{exe, "helper"}, "linux")
	if err != nil || argv[0] != exe {
		t.Fatalf("linux: %q %v", argv, err)
	}
	outside := filepath.Join(filepath.Dir(cfg.InstallDir), "launcher.exe")
	if argv, err := c.helperCommand([]string{outside}, "windows"); err != nil || argv[0] != outside {
		t.Fatalf("outside the tree: %q %v", argv, err)
	}
	first, err := c.helperCommand([]string{exe, "helper"}, "windows")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(first[0]) != filepath.Join(cfg.CacheDir, "helper") || !strings.HasSuffix(first[0], ".exe") || first[1] != "helper" {
		t.Fatalf("windows: %q", first)
	}
	if b, err := afero.ReadFile(fsys, first[0]); err != nil || string(b) != "MZ program" {
		t.Fatalf("copy: %q %v", b, err)
	}
	second, err := c.helperCommand([]string{exe}, "windows")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := afero.Exists(fsys, first[0]); ok || second[0] == first[0] {
		t.Errorf("the earlier copy %s stays (next: %s)", first[0], second[0])
	}
}

// TestStagedSwapInUse: with Windows' rule (a directory holding a running
// program cannot be renamed), the swap of a staged update is abandoned,
// the installed tree untouched, and the update stays staged: once the
// directory is free, the next try swaps it in without a download.
func TestStagedSwapInUse(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := handOffReleases(t, repo)
	fsys, cfg, _ := installed10(t, repo)
	c := newTestClient(t, cfg)
	u, err := c.Check(context.Background())
	if err != nil || u == nil {
		t.Fatalf("check: %v %v", u, err)
	}
	if err := c.Stage(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	locked := cfg
	locked.Fs = lockedDirFs{Fs: fsys, locked: cfg.InstallDir}
	lc := newTestClient(t, locked)
	lc.installDir, lc.cacheDir = cfg.InstallDir, cfg.CacheDir
	in := lc.installer()
	in.goos = "windows"
	rec, err := in.readStageRecord()
	if err != nil || rec == nil {
		t.Fatalf("stage record: %v %v", rec, err)
	}
	err = lc.swapRecorded(in, rec, &confirmSpec{Within: time.Minute, Previous: "1.0"})
	if !errors.Is(err, errInstallAbandoned) || !strings.Contains(err.Error(), "is a program in it running?") {
		t.Fatalf("swap of a directory in use: %v", err)
	}
	wantTree(t, fsys, cfg.InstallDir, withUser(rels[0].files))
	if s, err := c.Staged(); err != nil || s == nil {
		t.Fatalf("no longer staged: %v %v", s, err)
	}
	if p, _ := c.installer().readPending(); p != nil {
		t.Fatal("a pending confirmation for a swap that did not happen")
	}
	repo.resetRequests()
	if _, err := newTestClient(t, cfg).Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := targetRequests(repo); len(got) != 0 {
		t.Errorf("downloaded again: %q", got)
	}
	wantTree(t, fsys, cfg.InstallDir, withUser(rels[1].files))
	wantOnlyTree(t, fsys, cfg.InstallDir)
}

// TestRollbackFaults fails (crash mode: as if the process died there) each
// write of a rollback in turn; the next Recover must always leave 1.0 in
// place with the user's files, recorded as installed (also for the
// process of 2.0 still running), and 2.0 recorded as bad.
func TestRollbackFaults(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := handOffReleases(t, repo)
	for n := 1; ; n++ {
		fsys, cfg, now := installed10(t, repo)
		stageAndSwap(t, cfg, time.Minute)
		*now = now.Add(2 * time.Minute)
		cfg2 := cfg
		cfg2.CurrentVersion = "2.0"
		ffs := faultfs.New(fsys, n, true)
		faulty := cfg2
		faulty.Fs = ffs
		err := newTestClient(t, faulty).Recover()
		if !ffs.Failed() {
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d writes in a rollback", n-1)
			break
		}
		op := ffs.Ops()[n-1]
		c := newTestClient(t, cfg2)
		if err := c.Recover(); err != nil {
			t.Fatalf("op %d (%s): recover: %v", n, op, err)
		}
		wantTree(t, fsys, cfg.InstallDir, withUser(rels[0].files))
		if got := c.Current().String(); got != "1.0" {
			t.Fatalf("op %d (%s): current %s after the rollback", n, op, got)
		}
		if c.badReleases()["2.0"] == "" {
			t.Fatalf("op %d (%s): 2.0 not recorded as bad", n, op)
		}
		wantOnlyTree(t, fsys, cfg.InstallDir)
	}
}

// TestStagedSwapFaults fails (crash mode) each write of the swap of a
// staged update that waits for a confirmation: after Recover the tree is
// 1.0 or 2.0, complete with the user's files, the record says which, a
// 2.0 waits for its confirmation (and comes back to 1.0 without it), and
// a 1.0 still has 2.0 staged.
func TestStagedSwapFaults(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := handOffReleases(t, repo)
	for n := 1; ; n++ {
		fsys, cfg, now := installed10(t, repo)
		c := newTestClient(t, cfg)
		u, err := c.Check(context.Background())
		if err != nil || u == nil {
			t.Fatalf("check: %v %v", u, err)
		}
		if err := c.Stage(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		ffs := faultfs.New(fsys, n, true)
		faulty := cfg
		faulty.Fs = ffs
		fc := newTestClient(t, faulty)
		in := fc.installer()
		rec, err := in.readStageRecord()
		if err != nil || rec == nil {
			t.Fatalf("stage record: %v %v", rec, err)
		}
		err = fc.swapRecorded(in, rec, &confirmSpec{Within: time.Minute, Previous: "1.0"})
		if !ffs.Failed() {
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d writes in a staged swap", n-1)
			break
		}
		op := ffs.Ops()[n-1]
		c = newTestClient(t, cfg)
		if err := c.Recover(); err != nil {
			t.Fatalf("op %d (%s): recover: %v", n, op, err)
		}
		got := treeManifest(t, fsys, cfg.InstallDir)
		switch {
		case maps2Equal(got, withUser(rels[0].files)):
			if c.Current().String() != "1.0" {
				t.Fatalf("op %d (%s): tree 1.0, current %s", n, op, c.Current())
			}
			if s, err := c.Staged(); err != nil || s == nil {
				t.Fatalf("op %d (%s): 2.0 no longer staged: %v", n, op, err)
			}
		case maps2Equal(got, withUser(rels[1].files)):
			if c.Current().String() != "2.0" {
				t.Fatalf("op %d (%s): tree 2.0, current %s", n, op, c.Current())
			}
			if p, err := c.installer().readPending(); err != nil || p == nil {
				t.Fatalf("op %d (%s): 2.0 in place without a pending confirmation: %v", n, op, err)
			}
			*now = now.Add(2 * time.Minute)
			if err := newTestClient(t, cfg).Recover(); err != nil {
				t.Fatalf("op %d (%s): rollback: %v", n, op, err)
			}
			wantTree(t, fsys, cfg.InstallDir, withUser(rels[0].files))
			wantOnlyTree(t, fsys, cfg.InstallDir)
		default:
			t.Fatalf("op %d (%s): the tree is neither 1.0 nor 2.0", n, op)
		}
	}
}

// FuzzHandOffRecords: the records of a staged update, a pending
// confirmation, the bad releases and the hand-off report are read from
// files another local user might have written: any bytes give a clear
// error or a value, never a panic, and Decide's helpers carry on.
func FuzzHandOffRecords(f *testing.F) {
	f.Add([]byte(`{"app":"app","tag":"2.0","from":"1.0","keep":"app-2.0.tar"}`))
	f.Add([]byte(`{"tag":"2.0 replacing 3.0","previous":"1.0","deadline":"2030-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"app":"app","releases":[{"version":"2.0","reason":"x"}]}`))
	f.Add([]byte(`{"time":"2030-01-01T00:00:00Z","outcome":"failed","version":"2.0","error":"x"}`))
	f.Add([]byte(`{"tag":"not a version","deadline":"0001-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := afero.NewMemMapFs()
		c, err := newLocalClient(ClientConfig{App: "app", InstallDir: "/opt/app", CacheDir: "/cache", Fs: fsys, CurrentVersion: "1.0"})
		if err != nil {
			t.Fatal(err)
		}
		in := c.installer()
		for _, p := range []string{in.stageRecordPath(), in.pendingPath(), c.cachePath(badReleasesFile), c.cachePath(handOffFile)} {
			fsys.MkdirAll(filepath.Dir(p), 0o755)
			if err := afero.WriteFile(fsys, p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if rec, err := in.readStageRecord(); err == nil && rec != nil {
			parseTag(rec.Tag)
		}
		if p, err := in.readPending(); err == nil && p != nil {
			parseTag(p.Tag)
		}
		c.badReleases()
		c.handOffProblem()
		c.Staged()
		if err := c.recoverWith(in); err != nil && strings.Contains(err.Error(), "panic") {
			t.Fatal(err)
		}
	})
}

// TestPendingWithoutPreviousTree: an expired (or unreadable) pending
// confirmation whose previous tree is gone does not wedge the client:
// the version in place stays and the record goes.
func TestPendingWithoutPreviousTree(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := handOffReleases(t, repo)
	for _, corrupt := range []bool{false, true} {
		fsys, cfg, now := installed10(t, repo)
		c := stageAndSwap(t, cfg, time.Minute)
		in := c.installer()
		if err := fsys.RemoveAll(in.previousPath()); err != nil {
			t.Fatal(err)
		}
		if corrupt {
			afero.WriteFile(fsys, in.pendingPath(), []byte("{"), 0o644)
		}
		*now = now.Add(2 * time.Minute)
		if err := newTestClient(t, cfg).Recover(); err != nil {
			t.Fatalf("corrupt=%v: %v", corrupt, err)
		}
		wantTree(t, fsys, cfg.InstallDir, withUser(rels[1].files))
		wantOnlyTree(t, fsys, cfg.InstallDir)
	}
}
