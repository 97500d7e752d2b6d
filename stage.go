package notsotuf

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The installer's records for an update staged now and swapped later, and
// for a swap that waits for the new version to confirm its start (tree
// mode; see handoff.go for the client's side). All live beside the install
// directory, with the other siblings of install.go:
//
//   - .<base>.notsotuf-staged, the stage record: the staged tree
//     .<base>.notsotuf-new (with its manifest .<base>.notsotuf-manifest-new)
//     is complete and verified, and waits for its swap. recover keeps such
//     a tree (an unrecorded one is unfinished and discarded), so a staged
//     update survives the application's exit and a reboot. The swap
//     checks the tree against its manifest again, carries the user's files
//     into it, writes the journal (the commit point) and removes the
//     record once the journal has put the tree in place.
//   - .<base>.notsotuf-previous and .<base>.notsotuf-manifest-previous: the
//     previous tree and its manifest, kept by a swap whose journal has
//     Confirm set, until the new version confirms its start.
//   - .<base>.notsotuf-pending, the pending record: written when such a
//     swap is finished (before its journal is removed), it names the
//     version that must confirm and the deadline. Removing it is the
//     confirmation; a rollback (a journal with Rollback set, which swaps
//     the previous tree back in) removes it when finished. recover
//     discards a previous tree that no pending record or journal needs.
//
// At every instant the install directory holds one version, complete (the
// journal's guarantee), and these records only decide what the next step
// is: keep a staged tree or drop it, wait for a confirmation or roll back.

// stageRecord is the content of the stage record.
type stageRecord struct {
	App  string `json:"app"`
	Tag  string `json:"tag"`  // installer.tag of the staged version (installTag)
	From string `json:"from"` // the version installed when it was staged
	// Keep is the cache file (base name) that becomes the next patch base
	// once the staged tree is swapped in.
	Keep   string         `json:"keep,omitempty"`
	Result *InstallResult `json:"result,omitempty"` // what staging it downloaded
}

func (in *installer) stageRecordPath() string  { return in.siblingPrefix() + suffixStaged }
func (in *installer) pendingPath() string      { return in.siblingPrefix() + suffixPending }
func (in *installer) previousPath() string     { return in.siblingPrefix() + suffixPrevious }
func (in *installer) manifestPrevPath() string { return in.siblingPrefix() + suffixManifestPrev }

// writeStageRecord records the staged tree as complete and waiting for its
// swap.
func (in *installer) writeStageRecord(rec stageRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return writeFileAtomic(in.fs, in.stageRecordPath(), append(data, '\n'), 0o644)
}

// readStageRecord returns the stage record, nil if there is none.
func (in *installer) readStageRecord() (*stageRecord, error) {
	p := in.stageRecordPath()
	rec, err := readStateJSON[stageRecord](in.fs, p, maxJournalLength, "stage record")
	if err != nil || rec == nil {
		return nil, err
	}
	if rec.Tag == "" {
		return nil, fmt.Errorf("stage record %s: no version", p)
	}
	return rec, nil
}

// stagedWaiting reports whether a recorded staged tree waits for its swap:
// the stage record is readable and names this app, and the staged tree and
// (with app set) its manifest are there.
func (in *installer) stagedWaiting() (bool, error) {
	rec, err := in.readStageRecord()
	if err != nil {
		in.logger().Warn("ignoring the stage record", "err", err)
		return false, nil
	}
	if rec == nil || rec.App != in.app {
		return false, nil
	}
	staged, _, _ := in.siblings()
	fi, err := lstat(in.fs, staged)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.IsDir() {
		return false, nil
	}
	if in.app != "" {
		if ok, err := exists(in.fs, in.siblingPrefix()+suffixManifestNew); err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// discardStaged removes a staged tree, its manifest and its record.
func (in *installer) discardStaged() error {
	if err := in.remove(in.stageRecordPath()); err != nil {
		return err
	}
	staged, _, _ := in.siblings()
	if ok, err := exists(in.fs, staged); err != nil {
		return err
	} else if ok {
		in.discard(staged)
	}
	return in.remove(in.siblingPrefix() + suffixManifestNew)
}

// writePending writes the pending record of the swap j has just put in
// place, unless it is there already (a swap finished again by recover
// keeps its first deadline).
func (in *installer) writePending(j *journal) error {
	if ok, err := exists(in.fs, in.pendingPath()); err != nil || ok {
		return err
	}
	p := pendingRecord{Tag: j.Tag, Previous: j.Confirm.Previous, Deadline: in.clock().Add(j.Confirm.Within).UTC()}
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return writeFileAtomic(in.fs, in.pendingPath(), append(data, '\n'), 0o644)
}

// readPending returns the pending record, nil if there is none.
func (in *installer) readPending() (*pendingRecord, error) {
	p := in.pendingPath()
	rec, err := readStateJSON[pendingRecord](in.fs, p, maxJournalLength, "pending confirmation")
	if err != nil || rec == nil {
		return nil, err
	}
	if rec.Tag == "" || rec.Deadline.IsZero() {
		return nil, fmt.Errorf("pending confirmation %s: incomplete", p)
	}
	return rec, nil
}

// settlePrevious discards the previous tree and its manifest when no
// pending record needs them (the confirmation came).
func (in *installer) settlePrevious() error {
	if ok, err := exists(in.fs, in.pendingPath()); err != nil || ok {
		return err
	}
	if ok, err := exists(in.fs, in.previousPath()); err != nil {
		return err
	} else if ok {
		in.logger().Debug("removing the previous tree: the update was confirmed", "dir", in.dir)
		in.discard(in.previousPath())
	}
	return in.remove(in.manifestPrevPath())
}

// clearPrevious removes a previous tree, its manifest and the pending
// record, before a new swap that keeps the tree it replaces.
func (in *installer) clearPrevious() error {
	if err := in.remove(in.pendingPath()); err != nil {
		return err
	}
	if ok, err := exists(in.fs, in.previousPath()); err != nil {
		return err
	} else if ok {
		in.discard(in.previousPath())
	}
	return in.remove(in.manifestPrevPath())
}

// rollbackTree swaps the previous tree, kept for the pending confirmation,
// back in place of the version that did not confirm: the user's files are
// carried from the install directory into it (unless purge), then a
// journal with Rollback set commits the swap, which finishTree completes
// like any other (the tree that did not confirm is removed). in.tag is
// the journal's tag.
func (in *installer) rollbackTree() error {
	prev, mprev := in.previousPath(), in.manifestPrevPath()
	if ok, err := exists(in.fs, prev); err != nil {
		return fmt.Errorf("roll back %s: %w", in.dir, err)
	} else if !ok {
		return fmt.Errorf("roll back %s: the previous tree %s is gone", in.dir, prev)
	}
	if err := checkNoMounts(in.fs, in.dir); err != nil {
		return fmt.Errorf("roll back %s: %w", in.dir, err)
	}
	if err := in.carryInto(prev, mprev, true); err != nil {
		return fmt.Errorf("roll back %s: %w", in.dir, err)
	}
	oldName, err := in.newOldName()
	if err != nil {
		return fmt.Errorf("roll back %s: %w", in.dir, err)
	}
	mok, err := exists(in.fs, mprev)
	if err != nil {
		return fmt.Errorf("roll back %s: %w", in.dir, err)
	}
	j := journal{Op: opSwapTree, Dir: filepath.Base(in.dir), Old: oldName, Tag: in.tag, Manifest: mok, Rollback: true}
	if id, ok := pathIdentity(in.fs, prev); ok {
		j.Staged = &id
	}
	_, _, jpath := in.siblings()
	if err := in.writeJournal(jpath, j); err != nil {
		return fmt.Errorf("roll back %s: %w", in.dir, err)
	}
	return in.finishCommitted(&j)
}

// tagVersion is the version part of an installer tag (see installTag).
func tagVersion(tag string) string {
	v, _, _ := strings.Cut(tag, rollbackTag)
	return v
}
