package notsotuf

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// ClientConfig configures a [Client]. App, CurrentVersion, InstallDir, CacheDir,
// MetadataURL, TargetsURL and TrustedRoot are required.
type ClientConfig struct {
	App            string // application name, as in the target names (<app>-<version>.tar.gz)
	CurrentVersion string // the running version (PEP 440)
	InstallDir     string // the directory holding the installed application (with SingleExecutable: the executable)
	// CacheDir holds the trusted metadata (CacheDir/metadata), downloads
	// and the verified tar of the installed version (the next patch base).
	// It must be on the same Fs as InstallDir and should not be inside it.
	CacheDir    string
	MetadataURL string // base URL of the repository's metadata (…/metadata)
	TargetsURL  string // base URL of the repository's targets (…/targets)
	// TrustedRoot is a root.json the application trusts (usually embedded
	// in it): the client starts from it when CacheDir has no newer trusted
	// root.
	TrustedRoot []byte

	// Fs is where every file is read and written; nil means the operating
	// system's (afero.NewOsFs).
	Fs afero.Fs
	// HTTPClient makes the requests; nil means a client with Go's default
	// transport settings and a 30 s limit on waiting for response headers.
	HTTPClient *http.Client
	// Now is the clock used to check metadata expiry; nil means time.Now.
	Now func() time.Time
	// Progress, when set, is called as bytes arrive with the bytes done and
	// the bytes planned across all files of an update.
	Progress func(done, total int64)
	// Logger receives the client's log; nil means silent.
	Logger *slog.Logger

	// Channel is the pre-release channel: "" for final releases only, "rc",
	// "b" or "a" to also accept release candidates, betas, alphas (tufup's
	// rule: "a" accepts a, b and rc).
	Channel string
	// PatchRatio: patches are used when their total size is at most
	// PatchRatio times the full archive's; 0 means DefaultPatchRatio.
	PatchRatio float64
	// ForceFull always downloads the full archive.
	ForceFull bool
	// SingleExecutable installs the application as one file: InstallDir is
	// then the path of the executable (usually the running program's,
	// from os.Executable), and every release archive holds exactly one
	// regular file. The new executable is written beside the old one and
	// renamed over it, which works while it runs (on Windows the running
	// file is first renamed aside); this is the usual self-update of a Go
	// program. Without an installed tree to rebuild, patches start from
	// the verified tar that the previous install left in CacheDir.
	SingleExecutable bool
	// PatchFormats are patch formats of the program's own, besides the
	// built-in ones (bsdiff, compact), as the repository's publisher set
	// them in Repository.PatchFormats. A patch in a format the client does
	// not know makes it download the full archive.
	PatchFormats []PatchFormat
}

// Client checks for, downloads and installs updates of one application from
// a notsotuf or tufup repository. Its methods must not be called
// concurrently, and only one process should use a cache directory at a time.
type Client struct {
	app        string
	current    Version
	installDir string
	singleExe  bool
	cacheDir   string
	targetsURL string
	channel    string
	ratio      float64
	forceFull  bool
	fs         afero.Fs
	log        *slog.Logger
	progress   func(done, total int64)
	remote     *remote
	tuf        *tufClient
	formats    patchFormats
}

// NewClient checks cfg and returns a client. It does not touch the network
// or the disk.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := ValidAppName(cfg.App); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	current, err := ParseVersion(cfg.CurrentVersion)
	if err != nil {
		return nil, fmt.Errorf("config: current version: %w", err)
	}
	if cfg.InstallDir == "" {
		return nil, errors.New("config: install directory not set")
	}
	if cfg.CacheDir == "" {
		return nil, errors.New("config: cache directory not set")
	}
	metaURL, err := checkBaseURL("metadata", cfg.MetadataURL)
	if err != nil {
		return nil, err
	}
	targetsURL, err := checkBaseURL("targets", cfg.TargetsURL)
	if err != nil {
		return nil, err
	}
	if len(cfg.TrustedRoot) == 0 {
		return nil, errors.New("config: trusted root not set")
	}
	if _, err := trustedmetadata.New(cfg.TrustedRoot); err != nil {
		return nil, fmt.Errorf("config: trusted root: %w", err)
	}
	if err := ValidChannel(cfg.Channel); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	ratio := cfg.PatchRatio
	if ratio == 0 {
		ratio = DefaultPatchRatio
	}
	if !(ratio > 0) {
		return nil, fmt.Errorf("config: patch ratio %v: want a positive number", cfg.PatchRatio)
	}
	c := &Client{
		app: cfg.App, current: current, installDir: cfg.InstallDir, singleExe: cfg.SingleExecutable, cacheDir: cfg.CacheDir,
		targetsURL: targetsURL, channel: cfg.Channel, ratio: ratio, forceFull: cfg.ForceFull,
		fs: cfg.Fs, log: cfg.Logger, progress: cfg.Progress, remote: newRemote(cfg.HTTPClient),
		formats: knownPatchFormats(cfg.PatchFormats),
	}
	if c.fs == nil {
		c.fs = afero.NewOsFs()
	}
	if c.log == nil {
		c.log = discardLogger()
	}
	now := cfg.Now
	if now == nil {
		now = defaultNow
	}
	c.tuf = &tufClient{
		fs: c.fs, dir: filepath.Join(c.cacheDir, "metadata"), metadataURL: metaURL,
		remote: c.remote, now: now, log: c.log, bootstrap: cfg.TrustedRoot,
	}
	return c, nil
}

func checkBaseURL(what, s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("config: %s URL: %w", what, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("config: %s URL %q: want an http or https URL", what, s)
	}
	return strings.TrimRight(s, "/"), nil
}

// installedRecord is CacheDir/installed.json: the version the client last
// installed, so that a process still running the old version does not
// install the same update twice.
type installedRecord struct {
	App     string `json:"app"`
	Version string `json:"version"`
}

func (c *Client) recordPath() string { return filepath.Join(c.cacheDir, "installed.json") }

// Current returns the installed version: ClientConfig.CurrentVersion, or the
// version this client's cache records as installed since, if newer (so a
// process still running the old version does not install the same update
// twice). Installing an older version by hand should go with removing the
// cache directory's installed.json.
func (c *Client) Current() Version {
	data, err := afero.ReadFile(c.fs, c.recordPath())
	if err != nil {
		return c.current
	}
	var rec installedRecord
	if json.Unmarshal(data, &rec) != nil || rec.App != c.app {
		return c.current
	}
	v, err := ParseVersion(rec.Version)
	if err != nil || v.Compare(c.current) <= 0 {
		return c.current
	}
	return v
}

// Check refreshes the repository's metadata and returns the release to
// install with its plan, or nil when the installed version is up to date.
// The release is the newest one on the channel, unless a required release
// comes before it: that one is installed first.
func (c *Client) Check(ctx context.Context) (*Update, error) {
	if err := c.tuf.refresh(ctx); err != nil {
		return nil, err
	}
	current := c.Current()
	rels := releases(c.tuf.targets(), c.app, c.log)
	t := selectTarget(rels, current, c.channel)
	if t < 0 {
		return nil, nil
	}
	r := &rels[t]
	u := &Update{
		Version: r.version, Required: r.meta.Required, UserMeta: compact(r.meta.User),
		from: current, target: r, archive: plannedFile(r.archive),
	}
	if reason := c.planPatches(u, rels, t); reason != "" {
		u.Plan = Plan{Full: true, Files: []PlannedFile{u.archive}, Bytes: u.archive.Length, Reason: reason}
	}
	c.log.Info("update available", "from", current, "to", u.Version, "full", u.Plan.Full, "bytes", u.Plan.Bytes, "reason", u.Plan.Reason)
	return u, nil
}

// planPatches fills u's plan with the patch chain, or returns why the full
// archive must be downloaded instead.
func (c *Client) planPatches(u *Update, rels []clientRelease, t int) string {
	if c.forceFull {
		return "a full download was requested"
	}
	if ok, _ := exists(c.fs, c.failedMarker(u.Version)); ok {
		return fmt.Sprintf("a patch to %s failed before", u.Version)
	}
	chain, why := patchChain(rels, u.from, t)
	if why != "" {
		return why
	}
	for _, r := range chain {
		if _, err := c.formats.lookup(r.patchMeta.Format); err != nil {
			return fmt.Sprintf("the patch to %s is in the %s format, which this client does not know", r.version, r.patchMeta.Format)
		}
	}
	var files []PlannedFile
	var sum int64
	for _, r := range chain {
		files = append(files, plannedFile(r.patch))
		sum += r.patch.Length
	}
	if float64(sum) > c.ratio*float64(u.archive.Length) {
		return fmt.Sprintf("the patches (%d bytes) exceed %g times the archive (%d bytes)", sum, c.ratio, u.archive.Length)
	}
	var cur *clientRelease
	for i := range rels {
		if rels[i].version.Compare(u.from) == 0 {
			cur = &rels[i]
		}
	}
	base := c.findBase(cur)
	if base.kind == baseNone {
		if _, hash := cur.tarHash(); hash == "" {
			return fmt.Sprintf("no verified copy of the installed version %s to patch: none is cached and the repository signs no tar hash for it", u.from)
		}
		return fmt.Sprintf("no verified copy of the installed version %s to patch: none is cached and the install directory does not match its signed tar hash", u.from)
	}
	u.chain, u.base = chain, base
	u.Plan = Plan{Files: files, Bytes: sum}
	return ""
}

func (c *Client) cachePath(name string) string { return filepath.Join(c.cacheDir, name) }

func tarName(app string, v Version) string { return app + "-" + v.String() + ".tar" }

func (c *Client) failedMarker(v Version) string {
	return c.cachePath(c.app + "-" + v.String() + ".patch-failed")
}

type baseKind int

const (
	baseNone          baseKind = iota
	baseCachedTar              // CacheDir/<app>-<v>.tar, matching the signed tar hash
	baseCachedArchive          // CacheDir/<app>-<v>.tar.gz, matching the signed archive hash
	baseInstalled              // the install directory, whose WriteTar matches the signed tar hash
)

// baseSource is where the tar of the installed version (the first patch's
// base) comes from.
type baseSource struct {
	kind    baseKind
	path    string
	tarSize int64  // signed size of the tar, 0 when unknown
	tarHash string // signed sha256 of the tar, "" when unknown

	archiveLen int64 // baseCachedArchive: the archive's signed length
}

// maxDeflateRatio bounds the size of a decompressed archive whose tar size
// is not signed: deflate cannot expand data more than 1032 times.
const maxDeflateRatio = 1032

// findBase looks for a verified copy of cur's tar: a cached tar or archive
// whose hash is the signed one, or the install directory when its rebuilt
// tar (WriteTar) has the signed tar hash.
func (c *Client) findBase(cur *clientRelease) baseSource {
	size, hash := cur.tarHash()
	if hash != "" {
		p := c.cachePath(tarName(c.app, cur.version))
		if n, h, err := hashFile(c.fs, p); err == nil && h == hash && n == size {
			return baseSource{kind: baseCachedTar, path: p, tarSize: size, tarHash: hash}
		}
	}
	if cur.archive != nil {
		p := c.cachePath(ArchiveName(c.app, cur.version))
		want := plannedFile(cur.archive)
		if n, h, err := hashFile(c.fs, p); err == nil && h == want.SHA256 && n == want.Length {
			return baseSource{kind: baseCachedArchive, path: p, tarSize: size, tarHash: hash, archiveLen: want.Length}
		}
	}
	if hash != "" && !c.singleExe {
		h := sha256.New()
		cw := &countWriter{}
		err := WriteTar(c.fs, c.installDir, io.MultiWriter(h, cw))
		if err == nil && hex.EncodeToString(h.Sum(nil)) == hash && cw.n == size {
			return baseSource{kind: baseInstalled, path: c.installDir, tarSize: size, tarHash: hash}
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("cannot rebuild the installed version's tar", "dir", c.installDir, "err", err)
		}
	}
	return baseSource{}
}

// Update checks for a newer release (see [Client.Check]) and installs it
// (see [Client.Install]). It returns the release installed, or nil when the
// installed version was up to date. It installs one release: when a
// required release stood before a newer one, the next Update continues
// from it.
func (c *Client) Update(ctx context.Context) (*Update, error) {
	u, err := c.Check(ctx)
	if err != nil || u == nil {
		return nil, err
	}
	if err := c.Install(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}

// Recover finishes or undoes an install that a crash or power loss
// interrupted. Call it when the application starts; Install calls it too.
//
// When the interrupted install had passed its commit point, Recover
// completes it and records its version as installed (see [Client.Current]),
// so the record never lags behind the installed tree.
//
// If another process is installing into the same directory, Recover
// changes nothing and returns an error wrapping [ErrBusy]: that process
// finishes or undoes its own install.
func (c *Client) Recover() error {
	in := c.installer()
	unlock, err := in.lock()
	switch {
	case errors.Is(err, ErrBusy):
		return fmt.Errorf("recover: %w", err)
	case err != nil:
		// No lock file can be made beside the install directory (a
		// read-only location, another account's): no install from here
		// could have been interrupted there, and recover only looks, or
		// fails on the first change it needs.
		c.log.Debug("recover without the install lock", "err", err)
	default:
		defer unlock()
	}
	if err := in.recover(); err != nil {
		return err
	}
	if in.recovered == "" {
		return nil
	}
	v, err := ParseVersion(in.recovered)
	if err != nil {
		return fmt.Errorf("recover: journal names version %q: %w", in.recovered, err)
	}
	if v.Compare(c.Current()) > 0 {
		return c.record(v)
	}
	return nil
}

// record writes v as the installed version in CacheDir/installed.json.
func (c *Client) record(v Version) error {
	rec, err := json.Marshal(installedRecord{App: c.app, Version: v.String()})
	if err != nil {
		return err
	}
	if err := c.fs.MkdirAll(c.cacheDir, 0o755); err != nil {
		return err
	}
	if err := writeFileAtomic(c.fs, c.recordPath(), rec, 0o644); err != nil {
		return fmt.Errorf("installed %s but could not record it: %w", v, err)
	}
	return nil
}

func (c *Client) installer() *installer {
	return &installer{fs: c.fs, dir: c.installDir, log: c.log, singleExe: c.singleExe}
}

// Install downloads and installs u, an update returned by Check on this
// client. With a patch plan, it downloads the patches and applies them to
// the verified tar of the installed version, extracting the output into
// the staged tree as it is produced (patching and extraction overlap);
// the staged tree is swapped in only once the whole output matched its
// signed tar size and hash. If applying fails, it remembers the failure
// (later checks plan the full archive) and falls back to the full archive
// at once. The new tree is staged beside the install directory and swapped
// in atomically. Then the new version is recorded in the cache directory, its
// verified tar or archive is kept as the next patch base and the files of
// other versions are removed from the cache. Installing a version that is
// already installed does nothing.
//
// Install holds the install lock beside the install directory (see
// [ErrBusy]) from start to end: a second process updating the same
// application at the same time gets an error wrapping ErrBusy and changes
// nothing.
func (c *Client) Install(ctx context.Context, u *Update) error {
	if u == nil || u.target == nil {
		return errors.New("install: no update (use the result of Check)")
	}
	in := c.installer()
	unlock, err := in.lock()
	if err != nil {
		return fmt.Errorf("install %s: %w", u.Version, err)
	}
	defer unlock()
	if u.Version.Compare(c.Current()) <= 0 {
		return nil // installed meanwhile, or already
	}
	if err := c.fs.MkdirAll(c.cacheDir, 0o755); err != nil {
		return fmt.Errorf("install %s: %w", u.Version, err)
	}
	prog := &progress{total: u.Plan.Bytes, fn: c.progress}
	in.tag = u.Version.String() // lets Recover record it if a crash cuts the install short
	var keep string
	if !u.Plan.Full {
		tarPath, err, installErr := c.installPatches(ctx, u, prog, in)
		switch {
		case installErr != nil:
			return installErr
		case err == nil:
			keep = tarPath
		case ctx.Err() != nil:
			return err
		default:
			var de *DownloadError
			var se *SecurityError
			if errors.As(err, &de) || errors.As(err, &se) {
				return err // a network or security failure: the archive would meet it too
			}
			c.log.Warn("patching failed, downloading the full archive", "version", u.Version, "err", err)
			var be *baseError
			if !errors.As(err, &be) && !localIOError(err) {
				// The patches are bad: do not try them again. (A local
				// I/O error, a full disk say, says nothing about them.)
				if werr := writeFileAtomic(c.fs, c.failedMarker(u.Version), []byte(err.Error()+"\n"), 0o644); werr != nil {
					c.log.Warn("cannot record the failed patch", "err", werr)
				}
			}
			prog.total += u.archive.Length
		}
	}
	if keep == "" {
		gz := c.cachePath(u.archive.Name)
		if err := c.remote.fetchTarget(ctx, c.fs, c.tuf.targetURL(c.targetsURL, u.target.archive), gz, u.archive.Length, u.archive.SHA256, prog); err != nil {
			return err
		}
		limit, tarHash := u.target.tarHash()
		keep = gz
		if tarHash != "" {
			// A notsotuf archive signs its tar: install from it and keep
			// that tar, checked, as the next patch base (no gunzip then).
			tarPath := c.cachePath(tarName(c.app, u.Version))
			kept, err := c.installArchiveKeepTar(ctx, in, gz, tarPath, limit, tarHash)
			if err != nil {
				return err
			}
			if kept {
				keep = tarPath
			}
		} else {
			// tufup archives do not sign their tar size.
			limit = u.archive.Length * maxDeflateRatio
			if err := c.installFile(ctx, in, gz, limit); err != nil {
				return err
			}
		}
	}
	if err := c.record(u.Version); err != nil {
		return err
	}
	c.log.Info("installed", "version", u.Version, "full", strings.HasSuffix(keep, ArchiveExt))
	c.cleanCache(keep)
	return nil
}

// installPatches downloads u's patches and applies them to the installed
// version's tar while in extracts the output into its staged tree: the
// two run as a pipeline, on two cores. The install commits only after the
// whole output has matched its signed tar_size and tar_hash (in.verify
// waits for it), so a bad patch never reaches the install directory. On
// success it returns the path of the verified new tar in the cache.
//
// patchErr reports a failure of the patches or of the base (the caller
// falls back to the full archive); installErr a failure of the install
// itself with patches that were good.
func (c *Client) installPatches(ctx context.Context, u *Update, prog *progress, in *installer) (tarPath string, patchErr, installErr error) {
	steps := make([]patchStep, len(u.chain))
	for i, r := range u.chain {
		f := plannedFile(r.patch)
		p := c.cachePath(f.Name)
		if err := c.remote.fetchTarget(ctx, c.fs, c.tuf.targetURL(c.targetsURL, r.patch), p, f.Length, f.SHA256, prog); err != nil {
			return "", err, nil
		}
		format, err := c.formats.lookup(r.patchMeta.Format)
		if err != nil {
			return "", err, nil // not reached: planPatches checked it
		}
		steps[i] = patchStep{Name: f.Name, Path: p, Meta: r.patchMeta, Format: format}
	}
	base, err := c.baseTar(ctx, u)
	if err != nil {
		return "", &baseError{err}, nil
	}
	dst := c.cachePath(tarName(c.app, u.Version))
	size, _ := u.target.tarHash()
	if patchErr, installErr = patchAndInstall(ctx, c.fs, base, steps, dst, in, size); patchErr != nil || installErr != nil {
		return "", patchErr, installErr
	}
	return dst, nil, nil
}

// patchAndInstall applies the patch chain steps to the tar at base,
// writing the result to dst (see applyPatchChain), and installs that
// result with in while it is produced; in's commit waits until the whole
// output matched its signed size and hash. limit is the signed tar size.
// See Client.installPatches for the two errors.
func patchAndInstall(ctx context.Context, fsys afero.Fs, base string, steps []patchStep, dst string, in *installer, limit int64) (patchErr, installErr error) {
	// A buffered pipe lets the patch run ahead of the extraction (2 MiB).
	pr := newBufPipe(8)
	pw := pr
	done := make(chan error, 1)
	go func() {
		err := applyPatchChainTee(ctx, fsys, base, steps, dst, nil, pw)
		pw.closeWrite(err) // nil: the reader sees EOF once the output matched
		done <- err
	}()
	in.verify = func() error {
		// The tar reader stops at the end-of-archive blocks: read the
		// rest, which ends without error only once the hash matched.
		_, err := io.Copy(io.Discard, pr)
		return err
	}
	defer func() { in.verify = nil }()
	r := namedReader{pr, dst}
	if in.singleExe {
		installErr = in.installExecutable(ctx, r, limit)
	} else {
		installErr = in.installTar(ctx, r, limit)
	}
	// Whatever stopped the installer, let the chain run to its end: its
	// verdict on the patches decides between falling back to the full
	// archive (bad patches) and reporting the install's own failure.
	if _, err := io.Copy(io.Discard, pr); err != nil && installErr == nil {
		installErr = err // not reached: the install committed after a clean EOF
	}
	if err := <-done; err != nil {
		return err, nil
	}
	return nil, installErr
}

// baseTar returns the path of a verified tar of the installed version,
// writing it to the cache if the base is an archive or the install tree.
func (c *Client) baseTar(ctx context.Context, u *Update) (string, error) {
	b := u.base
	if b.kind == baseCachedTar {
		return b.path, nil
	}
	dst := c.cachePath(tarName(c.app, u.from))
	h := sha256.New()
	var n int64
	err := writeCacheFile(c.fs, dst, func(w io.Writer) error {
		cw := &countWriter{}
		mw := io.MultiWriter(w, h, cw)
		defer func() { n = cw.n }()
		switch b.kind {
		case baseCachedArchive:
			f, err := c.fs.Open(b.path)
			if err != nil {
				return err
			}
			defer f.Close()
			zr, err := gzip.NewReader(f)
			if err != nil {
				return fmt.Errorf("%s: %w", b.path, err)
			}
			limit := b.tarSize
			if limit == 0 {
				limit = b.archiveLen * maxDeflateRatio
			}
			m, err := io.Copy(mw, io.LimitReader(&ctxReader{ctx: ctx, r: zr}, limit+1))
			if err != nil {
				return fmt.Errorf("%s: %w", b.path, err)
			}
			if m > limit {
				return fmt.Errorf("%s: uncompressed tar larger than %d bytes", b.path, limit)
			}
			return nil
		case baseInstalled:
			return WriteTar(c.fs, c.installDir, mw)
		}
		return errors.New("no base")
	})
	if err != nil {
		return "", fmt.Errorf("patch base %s: %w", dst, err)
	}
	if b.tarHash != "" && (hex.EncodeToString(h.Sum(nil)) != b.tarHash || n != b.tarSize) {
		c.fs.Remove(dst)
		return "", fmt.Errorf("patch base %s: does not match the signed tar hash of %s", dst, u.from)
	}
	return dst, nil
}

// cleanCache removes the cache files of other versions of the app (tars,
// archives, patches, partial downloads, failure marks) and the patches of
// the new one, keeping keep: the verified tar or archive of the installed
// version, the next patch base.
func (c *Client) cleanCache(keep string) {
	names, err := afero.ReadDir(c.fs, c.cacheDir)
	if err != nil {
		c.log.Warn("cannot list the cache", "dir", c.cacheDir, "err", err)
		return
	}
	for _, fi := range names {
		name := fi.Name()
		p := c.cachePath(name)
		if fi.IsDir() || p == keep || !c.ownCacheFile(name) {
			continue
		}
		if err := c.fs.Remove(p); err != nil {
			c.log.Warn("cannot remove an old cache file", "file", p, "err", err)
		}
	}
}

// ownCacheFile reports whether name is a file the client writes in the
// cache for its app: <app>-<version> followed by .tar.gz, .tar, .patch,
// .patch-failed, possibly with .part, and the temporary files of an
// interrupted run: "." + one of those + ".step-*" (an intermediate tar of
// a patch chain) or ".tmp-*" (a file being written).
func (c *Client) ownCacheFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		for _, sep := range []string{".step-", ".tmp-"} {
			if i := strings.LastIndex(name, sep); i > 1 {
				return c.ownCacheFile(name[1:i])
			}
		}
		return false
	}
	name = strings.TrimSuffix(name, ".part")
	switch {
	case strings.HasSuffix(name, ".patch-failed"):
		name = strings.TrimSuffix(name, "-failed")
	case strings.HasSuffix(name, ".tar"):
		name += ".gz"
	}
	tn, err := ParseTargetName(name)
	return err == nil && tn.App == c.app
}

// installFile installs the tar or tar.gz at p with the installer.
func (c *Client) installFile(ctx context.Context, in *installer, p string, limit int64) error {
	f, err := c.fs.Open(p)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer f.Close()
	if c.singleExe {
		return in.installExecutable(ctx, f, limit)
	}
	return in.installTar(ctx, f, limit)
}

// installArchiveKeepTar installs the verified archive gz while writing its
// uncompressed tar to tarPath in the same pass. It reports whether the tar
// was kept: only when it has the signed size and sha256 (else the archive
// stays the base). An error means the install failed.
func (c *Client) installArchiveKeepTar(ctx context.Context, in *installer, gz, tarPath string, size int64, hash string) (bool, error) {
	f, err := c.fs.Open(gz)
	if err != nil {
		return false, fmt.Errorf("install: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return false, fmt.Errorf("install: %s: %w", gz, err)
	}
	var installErr error
	keepErr := writeCacheFile(c.fs, tarPath, func(w io.Writer) error {
		// Keeping the tar is an optimisation: a failure to write it (a full
		// cache disk) must not fail the install.
		sw := &softWriter{w: w}
		h, cw := sha256.New(), &countWriter{}
		tee := namedReader{io.TeeReader(io.LimitReader(zr, size+1), io.MultiWriter(sw, h, cw)), gz}
		if c.singleExe {
			installErr = in.installExecutable(ctx, tee, size)
		} else {
			installErr = in.installTar(ctx, tee, size)
		}
		if installErr != nil {
			return installErr
		}
		if _, err := io.Copy(io.Discard, tee); err != nil { // the tar's final padding
			return err
		}
		if sw.err != nil {
			return sw.err
		}
		if cw.n != size || hex.EncodeToString(h.Sum(nil)) != hash {
			return fmt.Errorf("uncompressed tar is not the signed one (%d bytes)", cw.n)
		}
		return nil
	})
	if installErr != nil {
		return false, installErr
	}
	if keepErr != nil {
		c.log.Warn("installed, but the archive stays the next patch base", "archive", gz, "err", keepErr)
		return false, nil
	}
	return true, nil
}

// softWriter writes to w until a write fails, then remembers the error
// and discards the rest, so that a reader teeing into it carries on.
type softWriter struct {
	w   io.Writer
	err error
}

func (s *softWriter) Write(p []byte) (int, error) {
	if s.err == nil {
		if _, err := s.w.Write(p); err != nil {
			s.err = err
		}
	}
	return len(p), nil
}

// namedReader gives a reader the name the installer puts in its errors.
type namedReader struct {
	io.Reader
	name string
}

func (r namedReader) Name() string { return r.name }

// compact returns raw JSON without insignificant white space.
func compact(raw json.RawMessage) json.RawMessage {
	if raw == nil {
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

// localIOError reports whether err is a failure of the local file system
// (a full disk, a permission) rather than of a patch: patch corruption and
// mismatches wrap ErrCorruptPatch.
func localIOError(err error) bool {
	if errors.Is(err, ErrCorruptPatch) {
		return false
	}
	var pe *fs.PathError
	var le *os.LinkError
	var se *os.SyscallError
	return errors.As(err, &pe) || errors.As(err, &le) || errors.As(err, &se)
}

// baseError reports that the patch base (the installed version's tar)
// could not be produced: the patches are not at fault.
type baseError struct{ err error }

func (e *baseError) Error() string { return e.err.Error() }
func (e *baseError) Unwrap() error { return e.err }
