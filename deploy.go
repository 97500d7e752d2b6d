package notsotuf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/afero"
)

// DeployReport says what [Deploy] or [DeployTo] did (with
// DeployOptions.DryRun: what it would do).
type DeployReport struct {
	Copied    []string // files written to the destination, in the order written
	Unchanged int      // files already identical at the destination
	Removed   []string // files removed from the destination's targets/ and metadata/
	Bytes     int64    // bytes of the files written
}

// Cache-Control values of deployed files (see [DeployOptions]).
const (
	// CacheControlImmutable is for names whose content never changes:
	// N.root.json, and with consistent snapshots N.targets.json,
	// N.snapshot.json and the hash-prefixed target files.
	CacheControlImmutable = "public, max-age=31536000, immutable"
	// CacheControlConsistent is the default for the other files of a
	// repository with consistent snapshots: a stale timestamp.json only
	// delays an update, it never mixes versions.
	CacheControlConsistent = "public, max-age=60"
	// CacheControlRevalidate is the default for the other files of a
	// repository without consistent snapshots: a cache must ask the origin
	// every time, because a stale snapshot.json or targets.json next to a
	// fresh timestamp.json (or a patch rebuilt by `notsotuf remove` under
	// its old name) is refused by clients.
	CacheControlRevalidate = "no-cache"
)

// DeployOptions tunes [DeployTo].
type DeployOptions struct {
	// CacheControlShort is the Cache-Control of the files whose content
	// can change under the same name: timestamp.json and the unversioned
	// metadata, and in a repository without consistent snapshots the
	// target files too. "" means CacheControlConsistent in a repository
	// with consistent snapshots and CacheControlRevalidate otherwise.
	// Versioned names always get CacheControlImmutable.
	CacheControlShort string
	// DryRun compares the repository with the destination and reports what
	// would be written and removed, changing nothing.
	DryRun bool
	// Progress, when set, is called as files are written with the bytes
	// written so far and the total to write (as the destination reports
	// them: see DeployFile.Written), one call at a time.
	Progress func(done, total int64)
}

// DeployFile is a file of the repository that [DeployTo] hands to a
// [DeployDestination].
type DeployFile struct {
	Name         string // slash-separated, below the repository: "metadata/timestamp.json", "targets/app-1.0.tar.gz"
	Size         int64
	ContentType  string // application/json, application/gzip or application/octet-stream; never a Content-Encoding
	CacheControl string

	fs      afero.Fs
	path    string
	once    sync.Once
	sum     string
	sumErr  error
	written func(int64) // reports to DeployOptions.Progress; nil without one
}

// Open opens the file's content in the source repository. The file is an
// io.ReaderAt and an io.Seeker, for destinations that upload in parts or
// retry.
func (f *DeployFile) Open() (afero.File, error) {
	return f.fs.Open(f.path)
}

// Written is called by a destination's Put as it writes f: n more bytes
// reached the destination. It feeds DeployOptions.Progress (bytes sent
// again by a retry count again; the total is capped).
func (f *DeployFile) Written(n int64) {
	if f.written != nil {
		f.written(n)
	}
}

// SHA256 returns the hex sha256 of the file's content, computed once.
func (f *DeployFile) SHA256() (string, error) {
	f.once.Do(func() {
		var n int64
		n, f.sum, f.sumErr = hashFile(f.fs, f.path)
		if f.sumErr == nil && n != f.Size {
			f.sumErr = fmt.Errorf("%s changed during the deploy (%d bytes, was %d)", f.path, n, f.Size)
		}
	})
	return f.sum, f.sumErr
}

// DeployDestination is where [DeployTo] publishes a repository: a
// directory ([DirDestination]), a bucket (cmd/notsotuf's s3:// deploy), or
// anything that stores files by name. Names are slash-separated paths below
// the repository ("targets/app-1.0.tar.gz").
type DeployDestination interface {
	// List returns the names of the files the destination holds in its
	// metadata/ and targets/ directories (not below them).
	List(ctx context.Context) ([]string, error)
	// Unchanged reports whether the destination already holds f: the same
	// bytes and, where the destination stores them, the same
	// Content-Type and Cache-Control. It is called only for names that
	// List returned, possibly from several goroutines at once.
	Unchanged(ctx context.Context, f *DeployFile) (bool, error)
	// Put stores f so that a reader sees the old file or all of the new
	// one, never a part.
	Put(ctx context.Context, f *DeployFile) error
	// Remove deletes the file name.
	Remove(ctx context.Context, name string) error
}

// Deploy copies a published repository (its metadata/ and targets/
// directories) from src to dst, for example onto a mounted share or a
// directory that a web server serves: it is [DeployTo] with a
// [DirDestination].
func Deploy(src afero.Fs, srcDir string, dst afero.Fs, dstDir string) (*DeployReport, error) {
	return DeployTo(context.Background(), src, srcDir, &DirDestination{Fs: dst, Dir: dstDir}, DeployOptions{})
}

// DeployTo publishes a repository (its metadata/ and targets/ directories
// in srcDir) to dst in the one order that never shows a client metadata
// naming files that are not there yet:
//
//  1. targets/ files (archives and patches);
//  2. root metadata (N.root.json in version order, then root.json);
//  3. targets metadata, then snapshot metadata (versioned names first);
//  4. timestamp.json, last;
//  5. only then, files the source no longer has are removed from dst.
//
// Only files that differ at the destination are written, so a second
// DeployTo writes nothing. In a repository with consistent snapshots (see
// [Repository]), if it stops at any point (an error, a crash, a cut
// connection), clients see the repository as it was before or, once
// timestamp.json is written, as it is now. Without them, targets.json,
// snapshot.json and timestamp.json are replaced one after the other under
// the same names: stopped between the first and the last, the destination
// holds metadata of two versions, which clients refuse until a deploy
// completes. Every file gets a Content-Type and a Cache-Control (see
// [DeployOptions]).
func DeployTo(ctx context.Context, src afero.Fs, srcDir string, dst DeployDestination, opts DeployOptions) (*DeployReport, error) {
	files, err := deployFiles(src, srcDir, opts)
	if err != nil {
		return nil, err
	}
	have, err := dst.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	present := map[string]bool{}
	for _, n := range have {
		present[n] = true
	}
	same, err := unchangedFiles(ctx, dst, files, present)
	if err != nil {
		return nil, err
	}
	rep := &DeployReport{}
	var todo []*DeployFile
	srcNames := map[string]bool{}
	for i, f := range files {
		srcNames[f.Name] = true
		if same[i] {
			rep.Unchanged++
		} else {
			todo = append(todo, f)
			rep.Bytes += f.Size
		}
	}
	var stale []string
	for _, n := range have {
		if !srcNames[n] {
			stale = append(stale, n)
		}
	}
	sort.Strings(stale)
	if opts.DryRun {
		for _, f := range todo {
			rep.Copied = append(rep.Copied, f.Name)
		}
		rep.Removed = stale
		return rep, nil
	}

	total := rep.Bytes
	rep.Bytes = 0
	var done int64
	var finished bool
	var mu sync.Mutex // a destination may report from several goroutines
	// Reports that come after DeployTo returned are dropped.
	defer func() {
		mu.Lock()
		finished = true
		mu.Unlock()
	}()
	if opts.Progress != nil {
		// Set once, before any Put: an HTTP transport may still be
		// reading a body (and reporting it) after Put returned.
		for _, f := range todo {
			f.written = func(n int64) {
				mu.Lock()
				defer mu.Unlock()
				if finished {
					return
				}
				done = min(done+n, total)
				opts.Progress(done, total)
			}
		}
	}
	for _, f := range todo {
		err := dst.Put(ctx, f)
		if err != nil {
			return rep, fmt.Errorf("deploy: %s: %w", f.Name, err)
		}
		rep.Copied = append(rep.Copied, f.Name)
		rep.Bytes += f.Size
	}
	if opts.Progress != nil && total > 0 {
		mu.Lock()
		done = total
		opts.Progress(total, total)
		mu.Unlock()
	}
	for _, name := range stale {
		if err := dst.Remove(ctx, name); err != nil {
			return rep, fmt.Errorf("deploy: remove stale %s: %w", name, err)
		}
		rep.Removed = append(rep.Removed, name)
	}
	return rep, nil
}

// unchangedFiles asks dst, a few files at a time, which files it already
// holds.
func unchangedFiles(ctx context.Context, dst DeployDestination, files []*DeployFile, present map[string]bool) ([]bool, error) {
	same := make([]bool, len(files))
	errs := make([]error, len(files))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, f := range files {
		if !present[f.Name] {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if ctx.Err() != nil {
				errs[i] = ctx.Err()
				return
			}
			same[i], errs[i] = dst.Unchanged(ctx, f)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("deploy: %s: %w", files[i].Name, err)
		}
	}
	return same, nil
}

// deployFiles lists the repository's files in publishing order, with their
// headers.
func deployFiles(src afero.Fs, srcDir string, opts DeployOptions) ([]*DeployFile, error) {
	var files []*DeployFile
	have := map[string]bool{}
	list := func(sub string) ([]*DeployFile, error) {
		entries, err := afero.ReadDir(src, filepath.Join(srcDir, sub))
		if err != nil {
			return nil, fmt.Errorf("deploy: read %s: %w", filepath.Join(srcDir, sub), err)
		}
		var out []*DeployFile
		for _, e := range entries {
			if e.Mode().IsRegular() && !isTempName(e.Name()) {
				name := path.Join(sub, e.Name())
				out = append(out, &DeployFile{Name: name, Size: e.Size(), fs: src, path: filepath.Join(srcDir, sub, e.Name())})
				have[name] = true
			}
		}
		return out, nil
	}
	targets, err := list("targets")
	if err != nil {
		return nil, err
	}
	meta, err := list("metadata")
	if err != nil {
		return nil, err
	}
	if !have["metadata/timestamp.json"] || !have["metadata/root.json"] {
		return nil, fmt.Errorf("deploy: %s is not a published repository (no metadata/root.json or metadata/timestamp.json)", srcDir)
	}
	consistent, err := readConsistentSnapshot(src, filepath.Join(srcDir, "metadata", "root.json"))
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].Name < targets[j].Name })
	sort.SliceStable(meta, func(i, j int) bool {
		a, b := metaRank(meta[i].Name), metaRank(meta[j].Name)
		return slices.Compare(a[:], b[:]) < 0
	})
	short := opts.CacheControlShort
	if short == "" {
		short = CacheControlRevalidate
		if consistent {
			short = CacheControlConsistent
		}
	}
	files = append(targets, meta...)
	for _, f := range files {
		f.ContentType = contentType(f.Name)
		f.CacheControl = short
		if immutableName(f.Name, consistent) {
			f.CacheControl = CacheControlImmutable
		}
	}
	return files, nil
}

// readConsistentSnapshot reads root metadata's consistent_snapshot flag.
// Content that is not JSON counts as false (the safe choice for headers):
// checking metadata is Verify's job.
func readConsistentSnapshot(fsys afero.Fs, name string) (bool, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var root struct {
		Signed struct {
			ConsistentSnapshot bool `json:"consistent_snapshot"`
		} `json:"signed"`
	}
	if err := json.NewDecoder(io.LimitReader(f, maxMetadataSize)).Decode(&root); err != nil {
		return false, nil
	}
	return root.Signed.ConsistentSnapshot, nil
}

var (
	versionedMeta = regexp.MustCompile(`^metadata/([0-9]+)\.(root|targets|snapshot)\.json$`)
	// versionedAny is any versioned metadata name (delegated roles too).
	versionedAny = regexp.MustCompile(`^metadata/[0-9]+\.[^/]+\.json$`)
	// hashPrefixed is a target file of a consistent snapshot:
	// <hex sha256>.<name>.
	hashPrefixed = regexp.MustCompile(`^targets/[0-9a-f]{64}\.[^/]+$`)
)

// immutableName reports whether a repository file's name changes whenever
// its content does: N.root.json always (a new root is a new version), and
// with consistent snapshots the versioned targets and snapshot metadata and
// the hash-prefixed target files. (Signatures added to a version already
// published, `notsotuf sign ROLE` without --expires, change the bytes but
// not what they mean: a cached copy stays valid.)
func immutableName(name string, consistent bool) bool {
	if m := versionedMeta.FindStringSubmatch(name); m != nil && m[2] == "root" {
		return true
	}
	return consistent && (versionedAny.MatchString(name) || hashPrefixed.MatchString(name))
}

// contentType is the media type a repository file is served with.
func contentType(name string) string {
	switch {
	case strings.HasSuffix(name, ".json"):
		return "application/json"
	case strings.HasSuffix(name, ".gz"):
		return "application/gzip"
	}
	return "application/octet-stream"
}

// metaRank orders metadata files for publishing: roots by version, then
// targets, snapshot, timestamp, versioned files before unversioned ones.
func metaRank(name string) [3]int64 {
	if m := versionedMeta.FindStringSubmatch(name); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 63)
		return [3]int64{roleRank(m[2]), 0, n}
	}
	base := path.Base(name)
	role := base[:len(base)-len(path.Ext(base))]
	return [3]int64{roleRank(role), 1, 0}
}

func roleRank(role string) int64 {
	switch role {
	case "root":
		return 0
	case "targets":
		return 2
	case "snapshot":
		return 3
	case "timestamp":
		return 4
	}
	return 1 // delegated targets roles, before the top-level targets
}

func isTempName(name string) bool { return len(name) > 0 && name[0] == '.' }

// DirDestination deploys to a directory of a file system: a web root, a
// mounted share, a staging directory that another tool uploads. Each file is
// written under a temporary name and renamed into place, so a web server
// serving Dir never serves part of a file. A directory stores no headers:
// docs/hosting.md shows the web server configuration that gives each file
// the Content-Type and Cache-Control that DeployTo computes.
type DirDestination struct {
	Fs  afero.Fs
	Dir string
}

// List implements [DeployDestination].
func (d *DirDestination) List(ctx context.Context) ([]string, error) {
	var names []string
	for _, sub := range []string{"targets", "metadata"} {
		entries, err := afero.ReadDir(d.Fs, filepath.Join(d.Dir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.Mode().IsRegular() {
				names = append(names, path.Join(sub, e.Name()))
			}
		}
	}
	return names, nil
}

// Unchanged implements [DeployDestination]: same size and same bytes.
func (d *DirDestination) Unchanged(ctx context.Context, f *DeployFile) (bool, error) {
	name := d.path(f.Name)
	fi, err := d.Fs.Stat(name)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() || fi.Size() != f.Size {
		return false, nil
	}
	in, err := f.Open()
	if err != nil {
		return false, err
	}
	defer in.Close()
	out, err := d.Fs.Open(name)
	if err != nil {
		return false, err
	}
	defer out.Close()
	return sameContent(in, out)
}

// Put implements [DeployDestination].
func (d *DirDestination) Put(ctx context.Context, f *DeployFile) error {
	name := d.path(f.Name)
	if err := d.Fs.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	in, err := f.Open()
	if err != nil {
		return err
	}
	defer in.Close()
	return writeAtomic(d.Fs, name, 0o644, func(w io.Writer) error {
		_, err := io.Copy(deployProgress{w, f}, in)
		return err
	})
}

// Remove implements [DeployDestination].
func (d *DirDestination) Remove(ctx context.Context, name string) error {
	return d.Fs.Remove(d.path(name))
}

func (d *DirDestination) path(name string) string {
	return filepath.Join(d.Dir, filepath.FromSlash(name))
}

func sameContent(fa, fb io.Reader) (bool, error) {
	bufA, bufB := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, errA := io.ReadFull(fa, bufA)
		nb, errB := io.ReadFull(fb, bufB)
		if na != nb || !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false, nil
		}
		if errA == io.EOF || errA == io.ErrUnexpectedEOF {
			return errB == io.EOF || errB == io.ErrUnexpectedEOF, nil
		}
		if errA != nil {
			return false, errA
		}
		if errB != nil {
			return false, errB
		}
	}
}

// deployProgress reports the bytes written through it to a DeployFile.
type deployProgress struct {
	w io.Writer
	f *DeployFile
}

func (p deployProgress) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.f.Written(int64(n))
	return n, err
}
