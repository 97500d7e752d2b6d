package notsotuf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/afero"
)

// Stage now, swap at exit, and a health-checked rollback (tree mode).
//
// Stage does what Install does up to the swap while the application runs:
// download, verify, patch, extract into the staged tree beside the install
// directory, verify again, and record it (stage.go). SwapAtExit starts a
// helper process (helper.go) that waits for the application's process to
// exit, swaps the staged tree in (carrying the user's files into it, see
// carry.go), records the new version, and starts the application again.
// With HandOff.ConfirmWithin, the swap keeps the previous tree, and the
// restarted version must call Confirm before the deadline; otherwise the
// helper (or, if it died, the next Recover, Check or Install) swaps the
// previous tree back, records the release as bad in the cache directory
// (later checks withhold it) and restarts the previous version.
//
// Files in the cache directory: bad-releases.json (the releases rolled
// back, with why), handoff.json (what the last hand-off did, see
// HandOffReport) and notsotuf-helper.log (the helper's log).

// DefaultHandOffWait is how long the helper waits for the application's
// process to exit when HandOff.Wait is 0.
const DefaultHandOffWait = 24 * time.Hour

// ErrNothingStaged is returned by SwapAtExit when no update is staged.
var ErrNothingStaged = errors.New("no update is staged")

// StagedUpdate is an update that Stage staged and that waits for its swap.
type StagedUpdate struct {
	Version Version
	From    Version        // the version installed when it was staged
	Result  *InstallResult // what staging it downloaded
}

// Stage does everything Install does before the swap, while the
// application runs: it downloads and verifies u, applies the patches,
// extracts the new tree into .NAME.notsotuf-new beside the install
// directory and verifies it, and records it as staged. The installed
// version is not touched. The staged update survives the application's
// exit and a reboot (Recover keeps it); SwapAtExit hands its swap to a
// helper process, and an Install of the same release swaps it in without
// downloading it again. Staging another release replaces it. Tree mode
// only: in single-executable mode Install replaces the running executable
// directly.
//
// Stage holds the install lock while it runs, like Install, and returns
// an error wrapping ErrBusy while a version swapped in by a hand-off waits
// for its confirmation.
func (c *Client) Stage(ctx context.Context, u *Update) error {
	if c.singleExe {
		return errors.New("stage: single-executable mode replaces the running executable directly: use Install")
	}
	return c.install(ctx, u, true)
}

// Staged returns the update waiting for its swap, nil if there is none.
func (c *Client) Staged() (*StagedUpdate, error) {
	if c.singleExe {
		return nil, nil
	}
	in := c.installer()
	ok, err := in.stagedWaiting()
	if err != nil || !ok {
		return nil, err
	}
	rec, err := in.readStageRecord()
	if err != nil || rec == nil {
		return nil, err
	}
	v, err := ParseVersion(tagVersion(rec.Tag))
	if err != nil {
		return nil, fmt.Errorf("stage record %s: %w", in.stageRecordPath(), err)
	}
	from, _ := ParseVersion(rec.From)
	return &StagedUpdate{Version: v, From: from, Result: rec.Result}, nil
}

// recordStaged writes the stage record of u, staged by install.
func (c *Client) recordStaged(in *installer, u *Update, keep string) error {
	rec := stageRecord{App: c.app, Tag: in.tag, From: u.from.String(), Result: u.Result}
	if keep != "" {
		rec.Keep = filepath.Base(keep)
	}
	if err := in.writeStageRecord(rec); err != nil {
		in.discardStaged()
		return fmt.Errorf("stage %s: %w", u.Version, err)
	}
	c.log.Info("staged", "version", u.Version, "from", u.from, "full", u.Result.Full, "downloaded", u.Result.Downloaded)
	return nil
}

// useStaged is install's step after its recover (lock held): a version
// swapped in by a hand-off that waits for its confirmation stops any
// install (ErrBusy); an Install of the update already staged swaps it in
// without a download, and a Stage of it does nothing. handled says that
// install is over, with err.
func (c *Client) useStaged(in *installer, u *Update, stage bool) (handled bool, err error) {
	if c.singleExe {
		return false, nil
	}
	p, err := in.readPending()
	if err != nil {
		c.log.Warn("ignoring the pending confirmation", "err", err)
	} else if p != nil {
		return true, fmt.Errorf("install %s: %w: the version %s swapped in by the last hand-off must confirm its start by %s (Client.Confirm, notsotuf confirm), or it is rolled back then",
			u.Version, ErrBusy, tagVersion(p.Tag), p.Deadline.Format(time.RFC3339))
	}
	ok, err := in.stagedWaiting()
	if err != nil || !ok {
		return false, err
	}
	rec, err := in.readStageRecord()
	if err != nil || rec == nil || rec.Tag != installTag(u) {
		return false, err
	}
	if stage {
		u.Result = rec.Result
		c.log.Info("already staged", "version", u.Version)
		return true, nil
	}
	c.log.Info("swapping in the update staged earlier", "version", u.Version)
	if err := c.swapRecorded(in, rec, nil); err != nil {
		return true, err
	}
	u.Result = rec.Result
	if u.Result == nil {
		u.Result = &InstallResult{}
	}
	return true, nil
}

// swapRecorded swaps in the staged tree that rec describes (lock held),
// keeping the previous tree for a confirmation when confirm is set, then
// records the new version and cleans the cache.
func (c *Client) swapRecorded(in *installer, rec *stageRecord, confirm *confirmSpec) error {
	v, replaced, err := parseTag(rec.Tag)
	if err != nil {
		return fmt.Errorf("swap: stage record %s: %w", in.stageRecordPath(), err)
	}
	in.tag, in.stageOnly, in.confirm = rec.Tag, false, confirm
	in.committed = func() error { return c.record(v, replaced) }
	defer func() { in.confirm, in.committed = nil, nil }()
	if err := in.swapStaged(true); err != nil {
		return err
	}
	keep := ""
	if rec.Keep != "" && !strings.ContainsAny(rec.Keep, `/\`) {
		keep = c.cachePath(rec.Keep)
	}
	c.log.Info("installed", "version", v, "from", rec.From, "staged", true)
	c.cleanCache(keep)
	return nil
}

// parseTag returns the version of an installer tag and, for a rollback of
// a yanked version, the version it replaced.
func parseTag(tag string) (v, replaced Version, err error) {
	s, from, rollback := strings.Cut(tag, rollbackTag)
	if v, err = ParseVersion(s); err != nil {
		return v, replaced, err
	}
	if rollback {
		replaced, err = ParseVersion(from)
	}
	return v, replaced, err
}

// recoverWith settles the install directory (lock held): it finishes or
// undoes an interrupted install (recoverJournal), then rolls back a
// version whose confirmation deadline passed.
func (c *Client) recoverWith(in *installer) error {
	if err := c.recoverJournal(in); err != nil {
		return err
	}
	if c.singleExe {
		return nil
	}
	p, err := in.readPending()
	if err != nil {
		// Unreadable: nothing can be decided from it; the version in
		// place stays, and so that the previous tree can go.
		c.log.Warn("removing an unreadable pending confirmation: the installed version stays", "err", err)
		if err := in.remove(in.pendingPath()); err != nil {
			return err
		}
		return in.settlePrevious()
	}
	if p == nil || c.now().Before(p.Deadline) {
		return nil
	}
	if ok, err := exists(c.fs, in.previousPath()); err != nil {
		return err
	} else if !ok {
		c.log.Warn("the version that did not confirm its start stays: the previous tree is gone", "version", tagVersion(p.Tag))
		if err := in.remove(in.pendingPath()); err != nil {
			return err
		}
		return in.settlePrevious()
	}
	return c.rollBack(in, p, fmt.Sprintf("did not confirm its start by %s", p.Deadline.Format(time.RFC3339)))
}

// settleExpired rolls back a version whose confirmation deadline passed,
// if the install lock is free (Decide calls it: the release to offer
// depends on it).
func (c *Client) settleExpired() {
	if c.singleExe {
		return
	}
	in := c.installer()
	if p, err := in.readPending(); err != nil || p == nil || c.now().Before(p.Deadline) {
		return
	}
	unlock, err := in.lock()
	if err != nil {
		c.log.Info("an expired confirmation is settled by the next run", "err", err)
		return
	}
	defer unlock()
	if err := c.recoverWith(in); err != nil {
		c.log.Warn("rolling back a version that did not confirm its start", "err", err)
	}
}

// rollBack swaps the previous tree back in place of the version p names,
// which did not confirm its start (lock held). The release is recorded as
// bad first, so a crash after the swap never offers it again, and the
// journal's tag records the previous version as installed in its place.
func (c *Client) rollBack(in *installer, p *pendingRecord, why string) error {
	bad, _, err := parseTag(p.Tag)
	if err != nil {
		return fmt.Errorf("roll back: pending confirmation %s: %w", in.pendingPath(), err)
	}
	prev, err := ParseVersion(p.Previous)
	if err != nil {
		return fmt.Errorf("roll back: pending confirmation %s: previous version: %w", in.pendingPath(), err)
	}
	reason := fmt.Sprintf("rolled back on %s: %s", c.now().UTC().Format(time.RFC3339), why)
	c.log.Warn("rolling back a version that did not confirm its start", "version", bad, "to", prev, "reason", why)
	if err := c.markBad(bad, reason); err != nil {
		return err
	}
	in.tag = prev.String() + rollbackTag + bad.String()
	in.committed = func() error { return c.record(prev, bad) }
	defer func() { in.committed = nil }()
	if err := in.rollbackTree(); err != nil {
		return err
	}
	c.writeHandOffReport(HandOffReport{Outcome: HandOffRolledBack, Version: bad.String(), From: prev.String(), Error: bad.String() + " " + why})
	return nil
}

// Confirm tells that the running version started well. After a hand-off
// with ConfirmWithin, the version swapped in must call it before the
// deadline, or it is rolled back to the previous one. It confirms only the
// version the client runs (ClientConfig.CurrentVersion); with nothing to
// confirm (no hand-off, confirmed already, another version pending) it
// returns nil. Once the deadline passed it returns an error and the
// previous version comes back (the helper, or the next Recover, restores
// it). Call it early, once the application is known to work (its window
// opened, its configuration loaded): that is the whole health check.
//
// Confirm takes the install lock briefly (waiting up to 10 seconds while
// another process holds it), and only removes the pending record: the
// previous tree is removed by the helper or by the next Recover.
func (c *Client) Confirm() error {
	return c.confirm(true)
}

// Confirm is Client.Confirm for a program that holds no Client (the
// notsotuf confirm command): of cfg it uses App, InstallDir, CacheDir, Fs,
// Now, Logger and CurrentVersion, which may be empty to confirm whatever
// version waits for its confirmation.
func Confirm(cfg ClientConfig) error {
	c, err := newLocalClient(cfg)
	if err != nil {
		return err
	}
	return c.confirm(cfg.CurrentVersion != "")
}

func (c *Client) confirm(checkVersion bool) error {
	if c.singleExe {
		return nil
	}
	if err := c.checkDirs(); err != nil {
		return err
	}
	in := c.installer()
	unlock, err := c.lockWait(in, 10*time.Second)
	if err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	defer unlock()
	p, err := in.readPending()
	if err != nil || p == nil {
		return err
	}
	v, _, err := parseTag(p.Tag)
	if err != nil {
		return fmt.Errorf("confirm: pending confirmation %s: %w", in.pendingPath(), err)
	}
	if checkVersion && v.Compare(c.current) != 0 {
		c.log.Info("not confirmed: the version waiting for its confirmation is another one", "pending", v, "running", c.current)
		return nil
	}
	if !c.now().Before(p.Deadline) {
		return fmt.Errorf("confirm %s: too late: the deadline was %s; the previous version %s is restored", v, p.Deadline.Format(time.RFC3339), p.Previous)
	}
	if err := in.remove(in.pendingPath()); err != nil {
		return fmt.Errorf("confirm %s: %w", v, err)
	}
	syncDir(c.fs, filepath.Dir(in.pendingPath()))
	c.log.Info("confirmed", "version", v)
	c.writeHandOffReport(HandOffReport{Outcome: HandOffConfirmed, Version: v.String(), From: p.Previous})
	return nil
}

// lockWait takes the install lock, retrying for up to d while another
// process holds it.
func (c *Client) lockWait(in *installer, d time.Duration) (func(), error) {
	const step = 50 * time.Millisecond
	for tries := d / step; ; tries-- {
		unlock, err := in.lock()
		if !errors.Is(err, ErrBusy) || tries <= 0 {
			return unlock, err
		}
		time.Sleep(step)
	}
}

// newLocalClient is a Client for what needs no repository (Confirm, the
// helper): App, InstallDir and CacheDir are required.
func newLocalClient(cfg ClientConfig) (*Client, error) {
	if err := ValidAppName(cfg.App); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if cfg.InstallDir == "" {
		return nil, errors.New("config: install directory not set")
	}
	if cfg.CacheDir == "" {
		return nil, errors.New("config: cache directory not set")
	}
	var current Version
	if cfg.CurrentVersion != "" {
		v, err := ParseVersion(cfg.CurrentVersion)
		if err != nil {
			return nil, fmt.Errorf("config: current version: %w", err)
		}
		current = v
	}
	c := &Client{app: cfg.App, current: current, singleExe: cfg.SingleExecutable, purge: cfg.Purge, fs: cfg.Fs, log: cfg.Logger, now: cfg.Now}
	if c.fs == nil {
		c.fs = afero.NewOsFs()
	}
	if c.log == nil {
		c.log = discardLogger()
	}
	if c.now == nil {
		c.now = defaultNow
	}
	var err error
	if c.installDir, err = cleanConfigPath(c.fs, "install directory", cfg.InstallDir); err != nil {
		return nil, err
	}
	if c.cacheDir, err = cleanConfigPath(c.fs, "cache directory", cfg.CacheDir); err != nil {
		return nil, err
	}
	if how := dirsOverlap(c.installDir, c.cacheDir); how != "" {
		return nil, errOverlap(how, c.installDir, c.cacheDir, "")
	}
	return c, nil
}

// Bad releases: CacheDir/bad-releases.json.

const badReleasesFile = "bad-releases.json"

type badReleases struct {
	App      string       `json:"app"`
	Releases []badRelease `json:"releases"`
}

type badRelease struct {
	Version string `json:"version"`
	Reason  string `json:"reason"`
}

// maxBadReleases bounds the list (the oldest entries go first).
const maxBadReleases = 100

func (c *Client) readBad() badReleases {
	b := badReleases{App: c.app}
	data, err := readCacheFile(c.fs, c.cachePath(badReleasesFile), 1<<20)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("ignoring the list of bad releases", "err", err)
		}
		return b
	}
	if err := json.Unmarshal(data, &b); err != nil || b.App != c.app {
		c.log.Warn("ignoring the list of bad releases", "file", c.cachePath(badReleasesFile), "err", err)
		return badReleases{App: c.app}
	}
	return b
}

// badReleases returns the releases rolled back on this install, by
// version, with the reason Decide gives for withholding them.
func (c *Client) badReleases() map[string]string {
	m := map[string]string{}
	for _, r := range c.readBad().Releases {
		if v, err := ParseVersion(r.Version); err == nil {
			m[v.String()] = "did not start on this install: " + r.Reason
		}
	}
	return m
}

// markBad records v as a release that did not confirm its start.
func (c *Client) markBad(v Version, reason string) error {
	b := c.readBad()
	var kept []badRelease
	for _, r := range b.Releases {
		if r.Version != v.String() {
			kept = append(kept, r)
		}
	}
	kept = append(kept, badRelease{Version: v.String(), Reason: reason})
	if len(kept) > maxBadReleases {
		kept = kept[len(kept)-maxBadReleases:]
	}
	b.Releases = kept
	data, err := json.MarshalIndent(b, "", " ")
	if err != nil {
		return err
	}
	if err := c.fs.MkdirAll(c.cacheDir, 0o755); err != nil {
		return err
	}
	if err := writeFileAtomic(c.fs, c.cachePath(badReleasesFile), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("recording the bad release %s: %w", v, err)
	}
	return nil
}

// Hand-off reports: CacheDir/handoff.json.

const handOffFile = "handoff.json"

// Outcomes of a hand-off (HandOffReport.Outcome).
const (
	HandOffWaiting    = "waiting"     // the helper waits for the application to exit
	HandOffTimeout    = "timeout"     // it did not exit in time: the update stays staged
	HandOffFailed     = "failed"      // the swap failed: the previous version stays (Error says why)
	HandOffSwapped    = "swapped"     // the new version is in place (and waits for its confirmation, if asked)
	HandOffConfirmed  = "confirmed"   // the new version confirmed its start
	HandOffRolledBack = "rolled-back" // it did not: the previous version is back
)

// HandOffReport is what the last hand-off to a helper process did, kept in
// the cache directory (handoff.json) so that the next run can say it.
type HandOffReport struct {
	Time    time.Time `json:"time"`
	Outcome string    `json:"outcome"`         // one of the HandOff* outcomes
	Version string    `json:"version"`         // the version handed off
	From    string    `json:"from,omitempty"`  // the version it replaces
	Error   string    `json:"error,omitempty"` // why it failed, timed out or was rolled back
	// Log is the helper's log file.
	Log string `json:"log,omitempty"`
}

// LastHandOff returns what the last hand-off did, nil if there was none
// (or a later Install succeeded).
func (c *Client) LastHandOff() (*HandOffReport, error) {
	return readStateJSON[HandOffReport](c.fs, c.cachePath(handOffFile), 64<<10, "hand-off report")
}

// handOffProblem returns the last hand-off's report when it did not go as
// asked.
func (c *Client) handOffProblem() *HandOffReport {
	r, err := c.LastHandOff()
	if err != nil {
		c.log.Warn("ignoring the hand-off report", "err", err)
		return nil
	}
	if r == nil {
		return nil
	}
	switch r.Outcome {
	case HandOffFailed, HandOffTimeout, HandOffRolledBack:
		c.log.Info("the last hand-off did not go as asked", "outcome", r.Outcome, "version", r.Version, "err", r.Error)
		return r
	}
	return nil
}

func (c *Client) writeHandOffReport(r HandOffReport) {
	if r.Time.IsZero() {
		r.Time = c.now().UTC()
	}
	r.Log = c.cachePath(helperLogFile)
	data, err := json.Marshal(r)
	if err == nil {
		err = c.fs.MkdirAll(c.cacheDir, 0o755)
	}
	if err == nil {
		err = writeFileAtomic(c.fs, c.cachePath(handOffFile), append(data, '\n'), 0o644)
	}
	if err != nil {
		c.log.Warn("cannot write the hand-off report", "err", err)
	}
}

// clearHandOffReport removes the report after a successful Install: its
// news is stale.
func (c *Client) clearHandOffReport() {
	if err := c.fs.Remove(c.cachePath(handOffFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Debug("removing the hand-off report", "err", err)
	}
}
