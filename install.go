package notsotuf

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/afero"
)

// Suffixes of the files and directories the installer keeps beside the
// installed tree or executable. Nothing else beside it is ever touched.
const (
	suffixNew         = ".notsotuf-new"          // staged new tree or executable
	suffixOld         = ".notsotuf-old"          // previous tree or executable being removed; "-<random>" follows
	suffixJournal     = ".notsotuf-journal"      // the commit record of a swap
	suffixManifest    = ".notsotuf-manifest"     // what the installed release shipped (see manifest.go)
	suffixManifestNew = ".notsotuf-manifest-new" // tree mode: the staged tree's manifest during a swap

	// Tree mode, stage now and swap later (see handoff.go):
	suffixStaged       = ".notsotuf-staged"            // the staged tree waits for its swap (Client.Stage)
	suffixPrevious     = ".notsotuf-previous"          // the previous tree, kept until the new version confirms its start
	suffixManifestPrev = ".notsotuf-manifest-previous" // the previous tree's install manifest
	suffixPending      = ".notsotuf-pending"           // the new version must confirm its start by a deadline
)

// Journal operations.
const (
	opSwapTree = "swap-tree"
	opSwapExe  = "swap-exe"
)

// journal is the content of the journal file. Its presence means the new
// version has been staged completely and verified: recover rolls forward.
type journal struct {
	Op  string `json:"op"`            // opSwapTree or opSwapExe
	Dir string `json:"dir,omitempty"` // base name of the install dir (swap-tree)
	Exe string `json:"exe,omitempty"` // base name of the executable (swap-exe)
	// Old is the base name the previous version is moved to: the running
	// executable (swap-exe), or the installed tree (swap-tree; empty in
	// journals of earlier releases: .<base>.notsotuf-old).
	Old string `json:"old,omitempty"`
	Tag string `json:"tag,omitempty"` // installer.tag: what is being installed
	// Manifest (swap-tree): the new tree's install manifest is staged at
	// .<base>.notsotuf-manifest-new and replaces the manifest once the
	// tree is in place; false: the manifest, describing the previous
	// tree, is removed.
	Manifest bool `json:"manifest,omitempty"`
	// Staged (swap-tree) is the identity of the staged tree, when the file
	// system gives one: the tree keeps it when it is renamed or exchanged,
	// so recover can tell whether the install directory already holds it.
	// Without it, the swap is two renames and the names alone tell.
	Staged *fileID `json:"staged,omitempty"`
	// Confirm (swap-tree), when set, keeps the previous tree as
	// .<base>.notsotuf-previous (its manifest as
	// .<base>.notsotuf-manifest-previous) instead of removing it, and
	// finishing the swap writes the pending record .<base>.notsotuf-pending:
	// the new version must confirm its start before the deadline, or it is
	// rolled back (see handoff.go).
	Confirm *confirmSpec `json:"confirm,omitempty"`
	// Rollback (swap-tree): the tree swapped in is the kept previous tree
	// (.<base>.notsotuf-previous, with its manifest), in place of a
	// version that did not confirm its start; finishing removes the
	// pending record.
	Rollback bool `json:"rollback,omitempty"`
}

// confirmSpec is what a swap that waits for a confirmation records.
type confirmSpec struct {
	Within   time.Duration `json:"within"`   // the deadline is the end of the swap plus this
	Previous string        `json:"previous"` // the version of the previous tree
}

// pendingRecord is .<base>.notsotuf-pending: the version swapped in must
// confirm its start (Client.Confirm) before Deadline, or it is rolled
// back to the previous tree kept beside it.
type pendingRecord struct {
	Tag      string    `json:"tag"`      // the journal tag of the version swapped in
	Previous string    `json:"previous"` // the version of the previous tree
	Deadline time.Time `json:"deadline"`
}

// installer installs a new version of an application, either as a whole
// directory tree or as one executable file, so that at every instant (and
// after any crash followed by recover) the application is either the old
// version, complete, or the new one, complete.
//
// Tree mode (singleExe false) owns dir and these siblings in dir's parent:
// .<base>.notsotuf-new (the staged tree), .<base>.notsotuf-old-<random>
// (the previous tree while it is removed), .<base>.notsotuf-journal, the
// install manifest .<base>.notsotuf-manifest (with app set; its staged
// version .<base>.notsotuf-manifest-new) and the install lock
// .<base>.notsotuf-lock. An install extracts the archive into the staged
// tree (see extractTar for the archive rules), verifies it against the
// archive's manifest, writes the staged install manifest (stageTar; with
// stageOnly it stops there, see stage.go), carries into it the entries of
// dir that the installed release did not ship (carry.go), then writes the
// journal atomically (the commit point), and swaps the staged tree in
// (swapStaged):
//
//   - where the operating system can exchange two paths atomically (Linux
//     renameat2 RENAME_EXCHANGE, macOS renamex_np RENAME_SWAP, on the
//     operating system's Fs and a file system that supports it), one
//     exchange puts the new tree at dir and the previous one at the staged
//     name, then renamed to the old name: dir always exists. The journal
//     records the staged tree's identity (device, inode), so recover knows
//     whether the exchange happened;
//   - elsewhere (Windows, other file systems, other Fs) dir is renamed to
//     the old name and the staged tree to dir: between the two renames
//     dir does not exist, and a crash exactly there leaves the journal,
//     with which recover completes the swap.
//
// Then the staged install manifest replaces the previous one, the journal
// is removed and the previous tree deleted (or, for a swap that waits for
// a confirmation, kept: see stage.go). Files the new version no longer
// has go away with the previous tree. Deleting it is best effort:
// a tree that cannot be deleted (a read-only mount inside it, files of
// another account) is logged and left under its old name, and every later
// recover and install tries again; it never stops an install. If dir
// cannot be moved aside, the update is abandoned (journal and staged tree
// removed, dir untouched; a tree staged by Client.Stage stays staged). On
// Windows a directory holding a running executable or an open file cannot
// be renamed: tree mode fails there that way while the application runs
// from dir; stage the update and hand the swap to a helper that runs once
// the application exits (Client.SwapAtExit), use single-executable mode,
// or install from a separate process (a launcher outside dir).
//
// Single-executable mode (singleExe true) treats dir as the path of one
// executable file. The new file is written to <exe>.notsotuf-new, synced,
// given the old file's permissions and renamed over the executable, which
// works on a running executable on Unix. On Windows the running executable
// cannot be replaced, so it is first renamed aside to
// <exe>.notsotuf-old-<random> (recorded in <exe>.notsotuf-journal), and
// these old files are removed by recover once they are no longer running.
// With app set, <exe>.notsotuf-manifest records the executable's content:
// before the swap both the old and the new one, after it the new one.
//
// One installer at a time per dir: two processes installing into the same
// dir at once would remove each other's staged copy, so the client holds
// the install lock (.<base>.notsotuf-lock or <exe>.notsotuf-lock, see
// lockInstall) around recover and every install. If dir is a symbolic
// link, the link itself is moved aside and replaced by a directory.
type installer struct {
	fs        afero.Fs
	dir       string       // install directory, or the executable in single-executable mode
	log       *slog.Logger // nil: silent
	singleExe bool
	goos      string // "" means runtime.GOOS; decides the executable swap strategy

	// app, if set, makes every install write the install manifest (the
	// client sets it; see manifest.go): app and tag are its header.
	app string

	// tag, if set, is recorded in the journal of an install (the client
	// puts the version being installed there), and recovered is set by
	// recover to the tag of an interrupted install it completed: the
	// installed version then is that one, whatever the caller had recorded
	// before the interruption. Swaps that need no journal (an executable on
	// Unix, a first install of an executable) record no tag.
	tag       string
	recovered string

	// prog, if set, receives the progress of the install (the verify
	// and install phases; the caller counts the extraction).
	prog *tracker

	// verify, if set, is called once the new version is staged and checked,
	// just before the commit point; an error abandons the install. The
	// client's patch pipeline extracts the patched tar while it is being
	// produced and waits here for its signed hash to match.
	verify func() error

	// stageOnly makes installTar stop once the new tree is staged,
	// verified and described by its staged manifest: the caller records
	// it (writeStageRecord) and swaps it later (swapStaged).
	stageOnly bool
	// purge: the files and directories in dir that the installed release
	// did not ship (its install manifest) go away with the previous tree
	// instead of being carried into the new one (see carry.go).
	purge bool
	// confirm, when set, makes the swap keep the previous tree until the
	// new version confirms its start (see journal.Confirm).
	confirm *confirmSpec
	// now is the clock of the confirmation deadline; nil means defaultNow.
	now func() time.Time
	// committed, if set, is called by a tree swap of this process once the
	// new tree is in place, before the journal is removed: the client
	// records the version installed there, so that no crash leaves the
	// tree swapped and the record behind (a crash before it leaves the
	// journal, whose tag recover records). Its error is logged.
	committed func() error
}

// onCommit calls in.committed, if set.
func (in *installer) onCommit() {
	if in.committed == nil {
		return
	}
	if err := in.committed(); err != nil {
		in.logger().Warn("recording the version installed", "err", err)
	}
}

func (in *installer) clock() time.Time {
	if in.now == nil {
		return defaultNow()
	}
	return in.now()
}

// verified calls in.verify, if set.
func (in *installer) verified() error {
	if in.verify == nil {
		return nil
	}
	return in.verify()
}

func (in *installer) logger() *slog.Logger {
	if in.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return in.log
}

func (in *installer) windows() bool {
	if in.goos == "" {
		return runtime.GOOS == "windows"
	}
	return in.goos == "windows"
}

// siblings returns the staged, old and journal paths of tree mode. old is
// the name journals of earlier releases used; swaps now use a fresh
// name, see oldPath.
func (in *installer) siblings() (staged, old, jpath string) {
	p := in.siblingPrefix()
	return p + suffixNew, p + suffixOld, p + suffixJournal
}

// siblingPrefix is <parent>/.<base> in tree mode.
func (in *installer) siblingPrefix() string {
	parent, base := filepath.Split(filepath.Clean(in.dir))
	return filepath.Join(parent, "."+base)
}

// manifestPath is the install manifest beside the tree or executable.
func (in *installer) manifestPath() string {
	if in.singleExe {
		return filepath.Clean(in.dir) + suffixManifest
	}
	return in.siblingPrefix() + suffixManifest
}

// lockPath is the install lock beside the tree or executable (see
// lockInstall): .<base>.notsotuf-lock in tree mode, <exe>.notsotuf-lock in
// single-executable mode.
func (in *installer) lockPath() string {
	if in.singleExe {
		return filepath.Clean(in.dir) + suffixLock
	}
	return in.siblingPrefix() + suffixLock
}

// lock takes the install lock (see lockInstall), creating dir's parent if
// needed.
func (in *installer) lock() (unlock func(), err error) {
	if err := in.fs.MkdirAll(filepath.Dir(filepath.Clean(in.dir)), 0o755); err != nil {
		return nil, fmt.Errorf("locking %s: %w", in.lockPath(), err)
	}
	return lockInstall(in.fs, in.lockPath())
}

// recover finishes or undoes an install that was interrupted (crash, power
// loss, error) and removes the leftovers of earlier installs. Call it when
// the application starts; installTar and installExecutable call it first as
// well. If a journal exists the new version was complete and verified: the
// swap is completed. Otherwise any staged copy is discarded and the installed
// version is kept (or, if it is missing while the previous tree survives,
// restored).
func (in *installer) recover() error {
	if in.singleExe {
		return in.recoverExe()
	}
	err := in.recoverTree()
	if errors.Is(err, errInstallAbandoned) {
		return nil // the installed version is intact and nothing is left over
	}
	return err
}

// errInstallAbandoned means a committed tree swap was given up before it
// changed anything: the installed tree could not be moved aside.
var errInstallAbandoned = errors.New("update abandoned")

// oldPrefix is the base name prefix of the previous trees in tree mode.
func (in *installer) oldPrefix() string {
	return "." + filepath.Base(filepath.Clean(in.dir)) + suffixOld
}

// newOldName returns a fresh base name for the previous tree of a swap:
// .<base>.notsotuf-old-<12 hex digits>. A fresh name per swap means that a
// previous tree that could not be deleted never stands in the way of the
// next swap.
func (in *installer) newOldName() (string, error) {
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", err
	}
	return in.oldPrefix() + "-" + hex.EncodeToString(rnd[:]), nil
}

// isOldName reports whether name (a base name in dir's parent) is a
// previous tree of tree mode: .<base>.notsotuf-old, or that followed by
// "-" and 12 hex digits.
func (in *installer) isOldName(name string) bool {
	rest, ok := strings.CutPrefix(name, in.oldPrefix())
	if !ok {
		return false
	}
	if rest == "" {
		return true
	}
	rest, ok = strings.CutPrefix(rest, "-")
	if !ok || len(rest) != 12 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil && strings.ToLower(rest) == rest
}

// oldPath is where j moves the previous tree: .<base>.notsotuf-previous
// when it is kept for a confirmation, else the old name of the journal.
func (in *installer) oldPath(j *journal) string {
	_, old, _ := in.siblings()
	if j.Confirm != nil {
		return in.siblingPrefix() + suffixPrevious
	}
	if j.Old != "" {
		return filepath.Join(filepath.Dir(old), j.Old)
	}
	return old
}

// stagedOf is the tree that j swaps in: the staged tree, or for a
// rollback the kept previous tree.
func (in *installer) stagedOf(j *journal) string {
	if j.Rollback {
		return in.siblingPrefix() + suffixPrevious
	}
	staged, _, _ := in.siblings()
	return staged
}

// manifestNewOf is the install manifest of the tree that j swaps in.
func (in *installer) manifestNewOf(j *journal) string {
	if j.Rollback {
		return in.siblingPrefix() + suffixManifestPrev
	}
	return in.siblingPrefix() + suffixManifestNew
}

func (in *installer) recoverTree() error {
	staged, old, jpath := in.siblings()
	j, err := in.readJournal(jpath, opSwapTree)
	if err != nil {
		return err
	}
	if err := in.removeJournalTemps(jpath); err != nil {
		return err
	}
	for _, p := range []string{in.stageRecordPath(), in.pendingPath()} {
		if err := in.removeJournalTemps(p); err != nil {
			return err
		}
	}
	if j != nil {
		return in.finishTree(j, true)
	}
	// Nothing committed. A staged tree that Stage recorded waits for its
	// swap (it survives the application's exit and a reboot); any other
	// staged tree and its manifest are unfinished.
	if ok, err := in.stagedWaiting(); err != nil {
		return err
	} else if !ok {
		if err := in.remove(in.stageRecordPath()); err != nil {
			return err
		}
		in.discard(staged)
		if err := in.remove(in.siblingPrefix() + suffixManifestNew); err != nil {
			return err
		}
	}
	// A previous tree kept for a confirmation that came (or whose
	// rollback finished) is no longer needed.
	if err := in.settlePrevious(); err != nil {
		return err
	}
	dirOK, err := exists(in.fs, in.dir)
	if err != nil {
		return err
	}
	if !dirOK {
		// A previous tree under the name earlier releases used, and no
		// install directory: put it back.
		if ok, err := exists(in.fs, old); err != nil {
			return err
		} else if ok {
			in.logger().Warn("restoring the previous install", "dir", in.dir, "from", old)
			if err := in.rename(old, in.dir); err != nil {
				return err
			}
		}
	}
	in.removeOldTrees()
	return nil
}

// finishTree completes the tree swap that the journal j committed:
// wherever a crash or an error stopped it, it brings the new tree to dir
// (or, if the new tree is gone, the previous one back), puts the install
// manifest in place, removes the journal and then, best effort, the
// previous tree. interrupted says that j was found by recover (an earlier
// process's install), not just written by this one.
func (in *installer) finishTree(j *journal, interrupted bool) error {
	_, _, jpath := in.siblings()
	staged := in.stagedOf(j)
	if j.Old != "" && !in.isOldName(j.Old) {
		return fmt.Errorf("recover %s: journal %s: unexpected content", in.dir, jpath)
	}
	old := in.oldPath(j)
	parent := filepath.Dir(staged)
	dirOK, err := exists(in.fs, in.dir)
	if err != nil {
		return err
	}
	stagedOK, err := exists(in.fs, staged)
	if err != nil {
		return err
	}
	oldOK, err := exists(in.fs, old)
	if err != nil {
		return err
	}
	// Is the new tree at dir already? By identity, when the journal has
	// one (after an exchange the staged name holds the previous tree);
	// else by names: the staged tree is gone.
	swapped := false
	if j.Staged != nil && dirOK {
		if id, ok := pathIdentity(in.fs, in.dir); ok && id == *j.Staged {
			swapped = true
		}
	}
	if !swapped && !stagedOK && dirOK {
		swapped = true
	}
	completing := func() {
		if interrupted {
			in.logger().Info("completing an interrupted install", "dir", in.dir)
		}
	}
	switch {
	case swapped:
		completing()
		if stagedOK {
			// The exchange left the previous tree at the staged name.
			if err := in.fs.Rename(staged, old); err != nil {
				in.logger().Debug("moving the previous tree from the staged name", "err", err)
			}
		}
	case stagedOK:
		completing()
		exchanged := false
		if dirOK && j.Staged != nil {
			err := exchange(in.fs, staged, in.dir)
			switch {
			case err == nil:
				exchanged = true
				syncDir(in.fs, parent)
				// The staged name holds the previous tree now.
				if err := in.fs.Rename(staged, old); err != nil {
					in.logger().Debug("moving the previous tree from the staged name", "err", err)
				}
			case !errors.Is(err, errNoExchange):
				in.logger().Debug("atomic exchange failed, swapping by two renames", "dir", in.dir, "err", err)
			}
		}
		if !exchanged {
			if dirOK {
				if oldOK {
					in.discard(old) // a journal of an earlier release, whose old name is taken
				}
				if err := in.fs.Rename(in.dir, old); err != nil {
					// Nothing has changed yet: give the new version up rather
					// than retry forever (on Windows a running program in the
					// tree forbids the rename).
					in.logger().Warn("cannot move the installed tree aside, abandoning the update", "dir", in.dir, "err", err)
					if rerr := in.remove(jpath); rerr != nil {
						return rerr
					}
					// A recorded staged tree (Client.Stage) stays staged for
					// another try, and so does the previous tree of a rollback.
					if recorded, _ := exists(in.fs, in.stageRecordPath()); !j.Rollback && !recorded {
						if rerr := in.removeTree(staged); rerr != nil {
							return rerr
						}
						if rerr := in.remove(in.manifestNewOf(j)); rerr != nil {
							return rerr
						}
					}
					hint := ""
					if in.windows() {
						hint = " (is a program in it running?)"
					}
					return fmt.Errorf("%w: moving %s aside%s: %w", errInstallAbandoned, in.dir, hint, err)
				}
			}
			if err := in.rename(staged, in.dir); err != nil {
				return err
			}
		}
		syncDir(in.fs, parent) // the swap is on disk before the journal goes
	case !dirOK && oldOK:
		in.logger().Warn("staged tree missing, restoring the previous install", "dir", in.dir)
		if err := in.rename(old, in.dir); err != nil {
			return err
		}
		// The previous tree is back: the staged manifest is not its, and
		// the manifest, if the new one had replaced it already, neither.
		mnew := in.manifestNewOf(j)
		if j.Confirm != nil {
			// The manifest moved aside for the confirmation is its own.
			mprev := in.siblingPrefix() + suffixManifestPrev
			if ok, _ := exists(in.fs, mprev); ok {
				if err := in.rename(mprev, in.manifestPath()); err != nil {
					return err
				}
			}
		}
		if ok, _ := exists(in.fs, mnew); ok || !j.Manifest {
			if err := in.remove(mnew); err != nil {
				return err
			}
		} else if err := in.remove(in.manifestPath()); err != nil {
			return err
		}
		syncDir(in.fs, parent)
		return in.remove(jpath)
	default:
		return fmt.Errorf("recover %s: journal %s present but neither the staged nor the previous tree exists", in.dir, jpath)
	}
	in.recovered = j.Tag
	if !interrupted {
		in.onCommit() // this process's swap: the tree is in place
	}
	if err := in.placeManifest(j); err != nil {
		return err
	}
	switch {
	case j.Confirm != nil:
		// The new version must now confirm its start (see handoff.go).
		if err := in.writePending(j); err != nil {
			return err
		}
	case j.Rollback:
		if err := in.remove(in.pendingPath()); err != nil {
			return err
		}
	}
	if err := in.remove(in.stageRecordPath()); err != nil { // it recorded the tree now in place
		return err
	}
	syncDir(in.fs, parent) // the tree and its manifest are on disk before the journal goes
	if err := in.remove(jpath); err != nil {
		return err
	}
	// The install is complete; what follows is clean-up.
	if ok, _ := exists(in.fs, staged); ok {
		in.discard(staged) // the previous tree, if it could not be renamed above
	}
	if j.Confirm == nil {
		in.discard(old)
	}
	return nil
}

// placeManifest puts the install manifest of the tree now at dir in place
// (see journal.Manifest).
func (in *installer) placeManifest(j *journal) error {
	mnew, m := in.manifestNewOf(j), in.manifestPath()
	mprev := in.siblingPrefix() + suffixManifestPrev
	if !j.Manifest {
		if j.Confirm != nil {
			if ok, _ := exists(in.fs, m); ok {
				if err := in.rename(m, mprev); err != nil {
					return err
				}
			}
		}
		if err := in.remove(m); err != nil {
			return err
		}
		return in.remove(mnew)
	}
	ok, err := exists(in.fs, mnew)
	if err != nil || !ok {
		return err // in place already
	}
	if j.Confirm != nil {
		// The previous tree is kept: so is its manifest, for a rollback.
		if ok, _ := exists(in.fs, m); ok {
			if err := in.rename(m, mprev); err != nil {
				return err
			}
		}
	}
	return in.rename(mnew, m)
}

// discard removes the tree at p (a previous tree, or an unfinished staged
// one) as far as it can. What cannot be removed is logged and left, under
// a previous tree's name (renamed there if needed, so that the staged name
// is free for the next install), for removeOldTrees to try again at the
// next recover: it never fails the caller.
func (in *installer) discard(p string) {
	err := in.removeTree(p)
	if err == nil {
		return
	}
	if !in.isOldName(filepath.Base(p)) {
		if name, nerr := in.newOldName(); nerr == nil {
			q := filepath.Join(filepath.Dir(p), name)
			if in.fs.Rename(p, q) == nil {
				p = q
			}
		}
	}
	in.logger().Warn("cannot remove the files of a previous install; trying again at the next update", "path", p, "err", err)
}

// removeOldTrees discards every previous tree left beside dir.
func (in *installer) removeOldTrees() {
	parent := filepath.Dir(filepath.Clean(in.dir))
	infos, err := afero.ReadDir(in.fs, parent)
	if err != nil {
		in.logger().Debug("cannot list the install directory's parent", "dir", parent, "err", err)
		return
	}
	for _, fi := range infos {
		if in.isOldName(fi.Name()) {
			in.discard(filepath.Join(parent, fi.Name()))
		}
	}
}

// installTar installs the tar (or gzip-compressed tar) read from r as the new
// content of the install directory; limit bounds the uncompressed archive
// (see extractTar). If r has a Name method (an afero.File does), errors use
// that name for the archive. On error before the commit point the installed
// version is untouched and the staged tree removed; an error after it means
// the swap could not be finished now and recover will finish it. With
// stageOnly it stops once the tree is staged (see stageTar).
func (in *installer) installTar(ctx context.Context, r io.Reader, limit int64) error {
	if in.singleExe {
		return fmt.Errorf("install %s: installer is in single-executable mode", in.dir)
	}
	if err := in.recover(); err != nil {
		return fmt.Errorf("install %s: finishing an earlier install: %w", in.dir, err)
	}
	if err := in.stageTar(ctx, r, limit); err != nil {
		return err
	}
	if in.stageOnly {
		return nil
	}
	return in.swapStaged(false)
}

// stageTar extracts the tar read from r into the staged tree
// .<base>.notsotuf-new, verifies it against the archive's manifest, syncs
// it, calls the verify hook and writes its install manifest
// (.<base>.notsotuf-manifest-new, with app set). A tree staged earlier
// (and its stage record) gives way to it first. On error nothing staged
// is left.
func (in *installer) stageTar(ctx context.Context, r io.Reader, limit int64) error {
	staged, _, _ := in.siblings()
	mnew := in.siblingPrefix() + suffixManifestNew
	// The record goes first: a crash then leaves an unrecorded tree, which
	// recover discards.
	if err := in.remove(in.stageRecordPath()); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	if ok, err := exists(in.fs, staged); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	} else if ok {
		in.discard(staged)
	}
	if err := in.fs.MkdirAll(filepath.Dir(staged), 0o755); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	if err := in.fs.Mkdir(staged, 0o700); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	done := false
	defer func() {
		if !done {
			if err := in.removeTree(staged); err != nil {
				in.logger().Warn("removing the staged tree", "err", err)
			}
			if err := in.remove(mnew); err != nil {
				in.logger().Warn("removing the staged install manifest", "err", err)
			}
		}
	}()
	m, err := extractTar(ctx, in.fs, staged, readerName(r), r, limit)
	if err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	in.prog.begin(PhaseVerify, treeBytes(m))
	if err := verifyTree(in.fs, staged, m); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	// extractTar synced the files; sync their directory entries too, before
	// the journal makes the staged tree the one recover keeps.
	m.syncDirs(ctx, in.fs, staged)
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := in.verified(); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	if in.app != "" {
		if err := writeTreeManifest(in.fs, staged, mnew, in.app, in.tag); err != nil {
			return fmt.Errorf("install %s: %w", in.dir, err)
		}
	}
	done = true
	return nil
}

// swapStaged swaps the staged tree in: it carries the files the installed
// release did not ship into it (see carryUserFiles), commits by writing
// the journal, and finishes the swap. recorded says the tree was staged
// by an earlier process (Client.Stage): it is checked against its staged
// manifest first, and on an error before the commit it stays staged for
// another try; otherwise such an error removes it.
func (in *installer) swapStaged(recorded bool) error {
	staged, _, jpath := in.siblings()
	mnew := in.siblingPrefix() + suffixManifestNew
	committed := false
	defer func() {
		if !committed && !recorded {
			if err := in.removeTree(staged); err != nil {
				in.logger().Warn("removing the staged tree", "err", err)
			}
			if err := in.remove(mnew); err != nil {
				in.logger().Warn("removing the staged install manifest", "err", err)
			}
		}
	}()
	in.prog.begin(PhaseInstall, 1)
	if err := checkNoMounts(in.fs, in.dir); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	if err := in.carryInto(staged, mnew, recorded); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	oldName, err := in.newOldName()
	if err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	j := journal{Op: opSwapTree, Dir: filepath.Base(in.dir), Old: oldName, Tag: in.tag, Manifest: in.app != ""}
	if in.confirm != nil {
		if ok, err := exists(in.fs, in.dir); err != nil {
			return fmt.Errorf("install %s: %w", in.dir, err)
		} else if ok {
			// A previous tree of an earlier confirmation is not needed any
			// more: its name is this swap's.
			if err := in.clearPrevious(); err != nil {
				return fmt.Errorf("install %s: %w", in.dir, err)
			}
			c := *in.confirm
			j.Confirm = &c
		}
	}
	if id, ok := pathIdentity(in.fs, staged); ok {
		j.Staged = &id
	}
	if err := in.writeJournal(jpath, j); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	committed = true
	in.logger().Debug("install committed", "dir", in.dir, "journal", jpath)
	return in.finishCommitted(&j)
}

// finishCommitted finishes the swap of the journal j this process just
// wrote (retrying once), and on failure leaves the application runnable.
func (in *installer) finishCommitted(j *journal) error {
	recovered := in.recovered
	defer func() { in.recovered = recovered }() // finishing our own install is no recovery
	err := in.finishTree(j, false)
	if err != nil && !errors.Is(err, errInstallAbandoned) {
		in.logger().Warn("finishing the install failed, retrying", "dir", in.dir, "err", err)
		err = in.finishTree(j, false)
	}
	if errors.Is(err, errInstallAbandoned) {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	if err != nil {
		// Keep the application runnable: put the previous tree back if the
		// swap stopped between its two renames. The journal and the staged
		// tree stay, so the next recover completes the install.
		if ok, _ := exists(in.fs, in.dir); !ok {
			if old := in.oldPath(j); old != "" {
				if ok, _ := exists(in.fs, old); ok {
					_ = in.fs.Rename(old, in.dir)
				}
			}
		}
		return fmt.Errorf("install %s: committed but not finished (the next start completes it): %w", in.dir, err)
	}
	return nil
}

// exePaths returns the staged and journal paths of single-executable mode.
func (in *installer) exePaths() (staged, jpath string) {
	return in.dir + suffixNew, in.dir + suffixJournal
}

// installExecutable installs the single regular file held by the tar (or
// gzip-compressed tar) read from r as the executable in.dir. The archive may
// also hold a top directory entry ("./") and PAX global headers, nothing
// else; limit bounds the uncompressed archive. The new file gets the
// permissions of the executable it replaces (or, on a first install, those
// of the archive entry).
func (in *installer) installExecutable(ctx context.Context, r io.Reader, limit int64) error {
	if !in.singleExe {
		return fmt.Errorf("install %s: installer is in tree mode", in.dir)
	}
	if err := in.recover(); err != nil {
		return fmt.Errorf("install %s: finishing an earlier install: %w", in.dir, err)
	}
	staged, jpath := in.exePaths()
	committed := false
	defer func() {
		if !committed {
			if err := in.fs.Remove(staged); err != nil && !errors.Is(err, os.ErrNotExist) {
				in.logger().Warn("removing the staged executable", "err", err)
			}
		}
	}()
	content, err := in.extractExecutable(ctx, staged, readerName(r), r, limit)
	if err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	in.prog.begin(PhaseVerify, content.Size)
	if err := in.verified(); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	in.prog.begin(PhaseInstall, 1)
	exeOK, err := exists(in.fs, in.dir)
	if err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	if in.app != "" {
		// Before the swap the manifest accepts both contents, so that it
		// describes the executable whenever a crash comes.
		contents := []installedEntry{content}
		if exeOK {
			if n, sum, err := hashFile(in.fs, in.dir); err == nil {
				contents = append(contents, installedEntry{Size: n, SHA256: sum})
			}
		}
		if err := writeExeManifest(in.fs, in.manifestPath(), in.dir, in.app, in.tag, contents); err != nil {
			return fmt.Errorf("install %s: %w", in.dir, err)
		}
	}
	// After the swap, the manifest names the new content only.
	settle := func() {
		if in.app == "" {
			return
		}
		if err := writeExeManifest(in.fs, in.manifestPath(), in.dir, in.app, in.tag, []installedEntry{content}); err != nil {
			in.logger().Warn("cannot update the install manifest (it still accepts the previous executable)", "err", err)
		}
	}
	if !in.windows() || !exeOK {
		if err := in.rename(staged, in.dir); err != nil {
			return fmt.Errorf("install %s: %w", in.dir, err)
		}
		committed = true
		syncDir(in.fs, filepath.Dir(in.dir))
		settle()
		return nil
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	base := filepath.Base(in.dir)
	j := journal{Op: opSwapExe, Exe: base, Old: base + suffixOld + "-" + hex.EncodeToString(rnd[:]), Tag: in.tag}
	if err := in.writeJournal(jpath, j); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	committed = true
	recovered := in.recovered
	defer func() { in.recovered = recovered }()
	err = in.recoverExe()
	if err != nil {
		in.logger().Warn("finishing the install failed, retrying", "exe", in.dir, "err", err)
		err = in.recoverExe()
	}
	if err != nil {
		if ok, _ := exists(in.fs, in.dir); !ok {
			_ = in.fs.Rename(filepath.Join(filepath.Dir(in.dir), j.Old), in.dir)
		}
		return fmt.Errorf("install %s: committed but not finished (the next start completes it): %w", in.dir, err)
	}
	settle()
	return nil
}

// extractExecutable writes the one regular file of the archive r to staged
// and returns its size and sha256.
func (in *installer) extractExecutable(ctx context.Context, staged, archive string, r io.Reader, limit int64) (installedEntry, error) {
	var content installedEntry
	err := in.extractExe(ctx, staged, archive, r, limit, &content)
	return content, err
}

func (in *installer) extractExe(ctx context.Context, staged, archive string, r io.Reader, limit int64, content *installedEntry) error {
	if limit <= 0 {
		return fmt.Errorf("%s: extraction limit must be positive, got %d", archive, limit)
	}
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%s: %w", archive, err)
		}
		defer gz.Close()
		src = gz
	}
	capped := &capReader{r: src, limit: limit}
	tr := tar.NewReader(&ctxReader{ctx: ctx, r: capped})
	overLimit := func(err error) error {
		if capped.exceeded {
			return fmt.Errorf("%s: uncompressed archive exceeds the limit of %d bytes: %w", archive, limit, ErrUnsafeArchive)
		}
		return err
	}
	var file string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return overLimit(fmt.Errorf("%s: reading tar: %w", archive, err))
		}
		bad := func(reason string) error {
			return &entryError{Archive: archive, Entry: hdr.Name, Reason: reason}
		}
		name, err := cleanEntryName(hdr.Name)
		switch {
		case hdr.Typeflag == tar.TypeXGlobalHeader:
			continue
		case err != nil:
			return bad(err.Error())
		case name == "" && hdr.Typeflag == tar.TypeDir:
			continue
		case isSparse(hdr):
			return bad("sparse files are not allowed")
		case hdr.Typeflag != tar.TypeReg:
			return bad("a single-executable archive holds one regular file and nothing else")
		case strings.Contains(name, "/"):
			return bad("the executable must be at the top of the archive")
		case file != "":
			return bad(fmt.Sprintf("a single-executable archive holds one regular file, found %q too", file))
		}
		file = hdr.Name
		if hdr.Size < 0 || hdr.Size > limit {
			return fmt.Errorf("%s: entry %q: %d bytes exceed the limit of %d bytes: %w", archive, hdr.Name, hdr.Size, limit, ErrUnsafeArchive)
		}
		perm := fs.FileMode(hdr.Mode) & fs.ModePerm
		if fi, err := in.fs.Stat(in.dir); err == nil {
			perm = fi.Mode().Perm()
		}
		if err := in.writeExe(staged, tr, hdr.Size, perm, content); err != nil {
			return overLimit(fmt.Errorf("%s: entry %q: %w", archive, hdr.Name, err))
		}
	}
	if file == "" {
		return fmt.Errorf("%s: no regular file in a single-executable archive: %w", archive, ErrUnsafeArchive)
	}
	return nil
}

func (in *installer) writeExe(staged string, r io.Reader, size int64, perm fs.FileMode, content *installedEntry) error {
	if err := in.fs.Remove(staged); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := openNoFollow(in.fs, staged, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, size))
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	*content = installedEntry{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}
	return in.fs.Chmod(staged, perm)
}

func (in *installer) recoverExe() error {
	staged, jpath := in.exePaths()
	j, err := in.readJournal(jpath, opSwapExe)
	if err != nil {
		return err
	}
	if err := in.removeJournalTemps(jpath); err != nil {
		return err
	}
	if err := in.removeJournalTemps(in.manifestPath()); err != nil { // an interrupted writeExeManifest
		return err
	}
	dir := filepath.Dir(in.dir)
	if j != nil {
		if j.Exe != filepath.Base(in.dir) || !strings.HasPrefix(j.Old, j.Exe+suffixOld+"-") || strings.ContainsAny(j.Old, `/\`) {
			return fmt.Errorf("recover %s: journal %s: unexpected content", in.dir, jpath)
		}
		old := filepath.Join(dir, j.Old)
		stagedOK, err := exists(in.fs, staged)
		if err != nil {
			return err
		}
		exeOK, err := exists(in.fs, in.dir)
		if err != nil {
			return err
		}
		switch {
		case stagedOK:
			if exeOK {
				if err := in.rename(in.dir, old); err != nil {
					return err
				}
			}
			if err := in.rename(staged, in.dir); err != nil {
				return err
			}
			in.recovered = j.Tag
		case exeOK:
			in.recovered = j.Tag // swapped already
		case !exeOK:
			if err := in.rename(old, in.dir); err != nil {
				return fmt.Errorf("recover %s: neither the staged nor the previous executable can be restored: %w", in.dir, err)
			}
		}
		syncDir(in.fs, dir)
		if err := in.remove(jpath); err != nil {
			return err
		}
	} else if err := in.remove(staged); err != nil {
		return err
	}
	// Old executables renamed aside: removable once they no longer run.
	infos, err := afero.ReadDir(in.fs, dir)
	if err != nil {
		return fmt.Errorf("recover %s: %w", in.dir, err)
	}
	prefix := filepath.Base(in.dir) + suffixOld + "-"
	for _, fi := range infos {
		if strings.HasPrefix(fi.Name(), prefix) && fi.Mode().IsRegular() {
			if err := in.fs.Remove(filepath.Join(dir, fi.Name())); err != nil {
				in.logger().Debug("old executable not removed yet", "file", fi.Name(), "err", err)
			}
		}
	}
	return nil
}

// maxJournalLength caps the read of a journal (a few hundred bytes).
const maxJournalLength = 64 << 10

// readJournal returns the journal at jpath, nil if there is none.
func (in *installer) readJournal(jpath, op string) (*journal, error) {
	j, err := readStateJSON[journal](in.fs, jpath, maxJournalLength, "journal")
	if err != nil {
		return nil, fmt.Errorf("recover %s: %w", in.dir, err)
	}
	if j == nil {
		return nil, nil
	}
	if j.Op != op {
		return nil, fmt.Errorf("recover %s: journal %s records operation %q, want %q (tree and single-executable modes mixed?)", in.dir, jpath, j.Op, op)
	}
	return j, nil
}

func (in *installer) writeJournal(jpath string, j journal) error {
	data, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return writeFileAtomic(in.fs, jpath, append(data, '\n'), 0o644)
}

// removeJournalTemps removes temporary files left by an interrupted
// writeFileAtomic of the journal.
func (in *installer) removeJournalTemps(jpath string) error {
	dir, base := filepath.Split(jpath)
	if dir == "" {
		dir = "."
	}
	err := removeStale(in.fs, dir, "."+base+".tmp-")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("recover %s: %w", in.dir, err)
	}
	return nil
}

func (in *installer) rename(from, to string) error {
	if err := in.fs.Rename(from, to); err != nil {
		return fmt.Errorf("recover %s: %w", in.dir, err)
	}
	return nil
}

func (in *installer) remove(name string) error {
	if ok, err := exists(in.fs, name); err == nil && !ok {
		return nil // (a read-only Fs refuses even to remove what is not there)
	}
	if err := in.fs.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("recover %s: %w", in.dir, err)
	}
	return nil
}

// removeTree removes the tree at p, if any. If that fails (a read-only
// directory of the archive), it gives every directory of the tree owner
// write access and tries again.
func (in *installer) removeTree(p string) error {
	if ok, err := exists(in.fs, p); err != nil || !ok {
		return err
	}
	// Never delete across a file-system boundary: a volume mounted in a
	// tree (after the checks of mounts.go, or before a crash) is left, and
	// the tree with it, for the next recover to try again.
	if err := checkNoMounts(in.fs, p); err != nil {
		return err
	}
	if err := in.fs.RemoveAll(p); err == nil {
		return nil
	}
	_ = afero.Walk(in.fs, p, func(q string, fi fs.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			_ = in.fs.Chmod(q, fi.Mode().Perm()|0o700)
		}
		return nil
	})
	if err := in.fs.RemoveAll(p); err != nil {
		return fmt.Errorf("recover %s: %w", in.dir, err)
	}
	return nil
}

// readerName returns r's Name() (an afero.File or *os.File), else "archive".
func readerName(r io.Reader) string {
	if n, ok := r.(interface{ Name() string }); ok && n.Name() != "" {
		return n.Name()
	}
	return "archive"
}
