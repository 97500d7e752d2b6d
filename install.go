package notsotuf

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/rand"
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

	"github.com/spf13/afero"
)

// Suffixes of the files and directories the installer keeps beside the
// installed tree or executable. Nothing else beside it is ever touched.
const (
	suffixNew     = ".notsotuf-new"     // staged new tree or executable
	suffixOld     = ".notsotuf-old"     // previous tree while swapping; executables add "-<random>"
	suffixJournal = ".notsotuf-journal" // the commit record of a swap
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
	Old string `json:"old,omitempty"` // base name the running executable is renamed to (swap-exe)
	Tag string `json:"tag,omitempty"` // installer.tag: what is being installed
}

// installer installs a new version of an application, either as a whole
// directory tree or as one executable file, so that at every instant (and
// after any crash followed by recover) the application is either the old
// version, complete, or the new one, complete.
//
// Tree mode (singleExe false) owns dir and four siblings in dir's parent:
// .<base>.notsotuf-new (the staged tree), .<base>.notsotuf-old (the previous
// tree during the swap), .<base>.notsotuf-journal and the install lock
// .<base>.notsotuf-lock. An install extracts the
// archive into the staged tree (see extractTar for the archive rules),
// verifies it against the archive's manifest, writes the journal atomically
// (the commit point), renames dir to the old name and the staged tree to dir,
// then removes the old tree and the journal. Files the new version no longer
// has go away with the old tree. Between the two renames dir does not exist:
// a crash exactly there leaves the journal, and recover (run by the next
// process that uses an installer for dir) completes the swap. If dir cannot
// be moved aside, the update is abandoned (journal and staged tree removed,
// dir untouched). On Windows a directory holding a running executable or an
// open file cannot be renamed: tree mode fails there that way while the
// application runs from dir; use single-executable mode, or install from a
// separate process (a launcher outside dir) once the application exits.
//
// Single-executable mode (singleExe true) treats dir as the path of one
// executable file. The new file is written to <exe>.notsotuf-new, synced,
// given the old file's permissions and renamed over the executable, which
// works on a running executable on Unix. On Windows the running executable
// cannot be replaced, so it is first renamed aside to
// <exe>.notsotuf-old-<random> (recorded in <exe>.notsotuf-journal), and
// these old files are removed by recover once they are no longer running.
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

	// tag, if set, is recorded in the journal of an install (the client
	// puts the version being installed there), and recovered is set by
	// recover to the tag of an interrupted install it completed: the
	// installed version then is that one, whatever the caller had recorded
	// before the interruption. Swaps that need no journal (an executable on
	// Unix, a first install of an executable) record no tag.
	tag       string
	recovered string

	// verify, if set, is called once the new version is staged and checked,
	// just before the commit point; an error abandons the install. The
	// client's patch pipeline extracts the patched tar while it is being
	// produced and waits here for its signed hash to match.
	verify func() error
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

// siblings returns the staged, old and journal paths of tree mode.
func (in *installer) siblings() (staged, old, jpath string) {
	parent, base := filepath.Split(filepath.Clean(in.dir))
	p := filepath.Join(parent, "."+base)
	return p + suffixNew, p + suffixOld, p + suffixJournal
}

// lockPath is the install lock beside the tree or executable (see
// lockInstall): .<base>.notsotuf-lock in tree mode, <exe>.notsotuf-lock in
// single-executable mode.
func (in *installer) lockPath() string {
	if in.singleExe {
		return filepath.Clean(in.dir) + suffixLock
	}
	parent, base := filepath.Split(filepath.Clean(in.dir))
	return filepath.Join(parent, "."+base+suffixLock)
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

func (in *installer) recoverTree() error {
	staged, old, jpath := in.siblings()
	j, err := in.readJournal(jpath, opSwapTree)
	if err != nil {
		return err
	}
	if err := in.removeJournalTemps(jpath); err != nil {
		return err
	}
	dirOK, err := exists(in.fs, in.dir)
	if err != nil {
		return err
	}
	if j == nil {
		// Nothing committed: a staged tree is unfinished.
		if err := in.removeTree(staged); err != nil {
			return err
		}
		if !dirOK {
			if ok, err := exists(in.fs, old); err != nil {
				return err
			} else if ok {
				in.logger().Warn("restoring the previous install", "dir", in.dir, "from", old)
				if err := in.rename(old, in.dir); err != nil {
					return err
				}
			}
		}
		return in.removeTree(old)
	}
	stagedOK, err := exists(in.fs, staged)
	if err != nil {
		return err
	}
	oldOK, err := exists(in.fs, old)
	if err != nil {
		return err
	}
	switch {
	case stagedOK:
		in.logger().Info("completing an interrupted install", "dir", in.dir)
		if dirOK {
			if oldOK {
				if err := in.removeTree(old); err != nil {
					return err
				}
			}
			if err := in.fs.Rename(in.dir, old); err != nil {
				// Nothing has changed yet: give the new version up rather
				// than retry forever (on Windows a running program in the
				// tree forbids the rename).
				in.logger().Warn("cannot move the installed tree aside, abandoning the update", "dir", in.dir, "err", err)
				if rerr := in.remove(jpath); rerr != nil {
					return rerr
				}
				if rerr := in.removeTree(staged); rerr != nil {
					return rerr
				}
				return fmt.Errorf("%w: moving %s aside (is a program in it running?): %w", errInstallAbandoned, in.dir, err)
			}
		}
		if err := in.rename(staged, in.dir); err != nil {
			return err
		}
		syncDir(in.fs, filepath.Dir(staged)) // the swap is on disk before the journal goes
		in.recovered = j.Tag
	case dirOK:
		in.recovered = j.Tag // swapped already, only the clean-up was left
	case !dirOK && oldOK:
		in.logger().Warn("staged tree missing, restoring the previous install", "dir", in.dir)
		if err := in.rename(old, in.dir); err != nil {
			return err
		}
	case !dirOK:
		return fmt.Errorf("recover %s: journal %s present but neither the staged nor the previous tree exists", in.dir, jpath)
	}
	if err := in.removeTree(old); err != nil {
		return err
	}
	return in.remove(jpath)
}

// installTar installs the tar (or gzip-compressed tar) read from r as the new
// content of the install directory; limit bounds the uncompressed archive
// (see extractTar). If r has a Name method (an afero.File does), errors use
// that name for the archive. On error before the commit point the installed
// version is untouched and the staged tree removed; an error after it means
// the swap could not be finished now and recover will finish it.
func (in *installer) installTar(ctx context.Context, r io.Reader, limit int64) error {
	if in.singleExe {
		return fmt.Errorf("install %s: installer is in single-executable mode", in.dir)
	}
	if err := in.recover(); err != nil {
		return fmt.Errorf("install %s: finishing an earlier install: %w", in.dir, err)
	}
	staged, old, jpath := in.siblings()
	if err := in.fs.MkdirAll(filepath.Dir(staged), 0o755); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	if err := in.fs.Mkdir(staged, 0o700); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	committed := false
	defer func() {
		if !committed {
			if err := in.removeTree(staged); err != nil {
				in.logger().Warn("removing the staged tree", "err", err)
			}
		}
	}()
	m, err := extractTar(ctx, in.fs, staged, readerName(r), r, limit)
	if err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
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
	if err := in.writeJournal(jpath, journal{Op: opSwapTree, Dir: filepath.Base(in.dir), Tag: in.tag}); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	committed = true
	in.logger().Debug("install committed", "dir", in.dir, "journal", jpath)
	recovered := in.recovered
	defer func() { in.recovered = recovered }() // finishing our own install is no recovery
	err = in.recoverTree()
	if err != nil && !errors.Is(err, errInstallAbandoned) {
		in.logger().Warn("finishing the install failed, retrying", "dir", in.dir, "err", err)
		err = in.recoverTree()
	}
	if errors.Is(err, errInstallAbandoned) {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	if err != nil {
		// Keep the application runnable: put the previous tree back if the
		// swap stopped between its two renames. The journal and the staged
		// tree stay, so the next recover completes the install.
		if ok, _ := exists(in.fs, in.dir); !ok {
			if ok, _ := exists(in.fs, old); ok {
				_ = in.fs.Rename(old, in.dir)
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
	if err := in.extractExecutable(ctx, staged, readerName(r), r, limit); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := in.verified(); err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	exeOK, err := exists(in.fs, in.dir)
	if err != nil {
		return fmt.Errorf("install %s: %w", in.dir, err)
	}
	if !in.windows() || !exeOK {
		if err := in.rename(staged, in.dir); err != nil {
			return fmt.Errorf("install %s: %w", in.dir, err)
		}
		committed = true
		syncDir(in.fs, filepath.Dir(in.dir))
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
	return nil
}

// extractExecutable writes the one regular file of the archive r to staged.
func (in *installer) extractExecutable(ctx context.Context, staged, archive string, r io.Reader, limit int64) error {
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
		if err := in.writeExe(staged, tr, hdr.Size, perm); err != nil {
			return overLimit(fmt.Errorf("%s: entry %q: %w", archive, hdr.Name, err))
		}
	}
	if file == "" {
		return fmt.Errorf("%s: no regular file in a single-executable archive: %w", archive, ErrUnsafeArchive)
	}
	return nil
}

func (in *installer) writeExe(staged string, r io.Reader, size int64, perm fs.FileMode) error {
	if err := in.fs.Remove(staged); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := openNoFollow(in.fs, staged, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(r, size))
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
	data, err := readCacheFile(in.fs, jpath, maxJournalLength)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("recover %s: %w", in.dir, err)
	}
	var j journal
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("recover %s: journal %s: %w", in.dir, jpath, err)
	}
	if j.Op != op {
		return nil, fmt.Errorf("recover %s: journal %s records operation %q, want %q (tree and single-executable modes mixed?)", in.dir, jpath, j.Op, op)
	}
	return &j, nil
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
