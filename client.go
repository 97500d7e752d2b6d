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
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// ClientConfig configures a [Client]. App, CurrentVersion, InstallDir, CacheDir,
// MetadataURL, TargetsURL and TrustedRoot are required.
type ClientConfig struct {
	App            string // application name, as in the target names (<app>-<version>.tar.gz)
	CurrentVersion string // the running version (PEP 440)
	// InstallDir is the directory holding the installed application (with
	// SingleExecutable: the executable). A relative path is made absolute
	// against the working directory. Install replaces it only if it is
	// missing or empty, or holds the application (see [ErrForeignInstallDir]
	// and Adopt).
	InstallDir string
	// CacheDir holds the trusted metadata (CacheDir/metadata), downloads
	// and the verified tar of the installed version (the next patch base).
	// It must be on the same Fs as InstallDir and must not be, or be
	// inside, InstallDir, nor InstallDir inside it (also through symbolic
	// links): an update would take the trusted metadata away with the
	// installed tree, and with it the protection against rollback.
	CacheDir    string
	MetadataURL string // base URL of the repository's metadata (…/metadata)
	TargetsURL  string // base URL of the repository's targets (…/targets)
	// Mirrors are other servers of the same repository, tried in order
	// after MetadataURL and TargetsURL (the first mirror) when a file
	// cannot be had from them: a server down, an HTTP error (a mirror
	// that lags behind answers 404), too slow, or a file that fails
	// verification, which is logged as a warning and kept for
	// MirrorErrors. Every file is verified against the signed metadata
	// whichever mirror sends it. A mirror that could not be reached or
	// sent a bad file is not asked again in the same run while another
	// one answers. See docs/client.md, "Mirrors".
	Mirrors []Mirror
	// TrustedRoot is a root.json the application trusts (usually embedded
	// in it): the client starts from it when CacheDir has no newer trusted
	// root.
	TrustedRoot []byte

	// Fs is where every file is read and written; nil means the operating
	// system's (afero.NewOsFs).
	Fs afero.Fs
	// HTTPClient makes the requests; nil means a client with Go's default
	// transport settings. Its own timeouts, if any, apply on top of the
	// limits below.
	HTTPClient *http.Client
	// Header holds extra headers sent with every request (metadata and
	// targets, to every mirror), e.g. Authorization for a repository that
	// needs credentials. The client never prints or logs their values, and drops
	// them from a request redirected to another host or scheme. It sets
	// Accept-Encoding and Range itself. Credentials may also be given in
	// MetadataURL and TargetsURL (https://user:password@host/...), and in
	// those of each mirror: they are sent as basic authentication to that
	// server only and never appear in errors or logs either.
	Header http.Header

	// Timeout bounds each call of Check, Install and Update (Update: the
	// check and the install together), with every request and retry in
	// it; the context passed may set a shorter deadline. 0 means
	// DefaultTimeout (1 hour). An interrupted download resumes at the
	// next call, so the limit loses no work already done.
	Timeout time.Duration
	// MinRate and RateWindow hold every download (metadata and targets)
	// to a minimum transfer rate: a request that receives fewer than
	// MinRate bytes per second over a window of RateWindow (at least one
	// byte; the wait for the answer counts) is dropped and retried, a
	// target resuming where it stopped; after 4 such windows in a row it
	// fails with a *DownloadError wrapping a *SlowError. 0 means
	// DefaultMinRate (1 KiB/s) and DefaultRateWindow (30 s): a server that
	// does not answer, or trickles, fails in about 2 minutes.
	MinRate    int64
	RateWindow time.Duration
	// Now is the clock used to check metadata expiry; nil means time.Now.
	Now func() time.Time
	// OnProgress, when set, is called as a Check, Install or Update
	// works through its phases (refresh, download, patch, extract,
	// verify, install), with the work done of the phase and of the whole
	// call (see [Progress]): at the start and end of each phase and about
	// every 256 KiB of its work in between. It is called from the
	// goroutine doing the work (with a patch, two of them), never twice at
	// once, and the work waits for it: it must return quickly and must not
	// call the Client (Check, Install or Update called from it return an
	// error). A GUI hands the value to its UI thread (docs/client.md has
	// an example with a channel).
	OnProgress func(Progress)
	// Progress, when set, is called as bytes arrive with the bytes done and
	// the bytes planned across all files of an update.
	//
	// Deprecated: use OnProgress, which reports every phase; Progress
	// still works and reports the downloads only.
	Progress func(done, total int64)
	// Logger receives the client's log; nil means silent.
	Logger *slog.Logger

	// Channel is the pre-release channel: "" for final releases only, "rc",
	// "b" or "a" to also accept release candidates, betas, alphas (tufup's
	// rule: "a" accepts a, b and rc).
	Channel string
	// Versions, when set, is a PEP 440 version specifier that bounds the
	// releases offered, e.g. "~=1.4" to stay on 1.x from 1.4 on when 2.0
	// ships (see ParseSpecifier). Pre-releases remain the Channel's
	// business.
	Versions string
	// Platform names the builds this client installs when a repository
	// has builds for several platforms (<app>-<platform>-<version>.tar.gz,
	// see ValidPlatform); builds for every platform (<app>-<version>.tar.gz)
	// are seen too, a platform's own build wins. "" means the running
	// system's GOOS-GOARCH, e.g. "linux-amd64".
	Platform string
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
	// Adopt lets Install replace an install directory (or executable)
	// that it cannot tell holds the application: for a first install over
	// a tree copied by hand, changed since, or of a version the
	// repository no longer has. Without it Install refuses such a
	// directory with an error wrapping [ErrForeignInstallDir] and changes
	// nothing: a wrong InstallDir must not delete what it holds.
	Adopt bool
	// Purge drops, at the next swap, the files and directories in the
	// install directory that the installed release did not ship (a
	// config file, logs, plugins the application or its user put there).
	// Without it they are carried into the new tree (see docs/client.md,
	// "Files the release did not ship").
	Purge bool
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
	channel    string
	versions   Specifier
	platform   string
	ratio      float64
	forceFull  bool
	adopt      bool
	purge      bool
	fs         afero.Fs
	log        *slog.Logger
	progress   func(done, total int64)
	onProgress func(Progress)
	prog       *tracker // the progress of the call under way (see track)
	timeout    time.Duration
	remote     *remote
	tuf        *tufClient
	formats    patchFormats

	cacheChecked bool // CheckCacheDir was called: Check does not log its result

	now func() time.Time // ClientConfig.Now, or defaultNow
	// spawn starts the helper process of SwapAtExit (see helper.go); nil
	// means startDetached. Tests replace it.
	spawn func(cmd *exec.Cmd) error
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
	fsys := cfg.Fs
	if fsys == nil {
		fsys = afero.NewOsFs()
	}
	installDir, err := cleanConfigPath(fsys, "install directory", cfg.InstallDir)
	if err != nil {
		return nil, err
	}
	cacheDir, err := cleanConfigPath(fsys, "cache directory", cfg.CacheDir)
	if err != nil {
		return nil, err
	}
	if how := dirsOverlap(installDir, cacheDir); how != "" {
		return nil, errOverlap(how, installDir, cacheDir, "")
	}
	metaURL, metaUser, err := checkBaseURL("metadata", cfg.MetadataURL)
	if err != nil {
		return nil, err
	}
	targetsURL, targetsUser, err := checkBaseURL("targets", cfg.TargetsURL)
	if err != nil {
		return nil, err
	}
	mirrors, err := checkMirrors(cfg.Mirrors)
	if err != nil {
		return nil, err
	}
	if err := checkHeader(cfg.Header); err != nil {
		return nil, err
	}
	timeout, minRate, window, err := checkLimits(cfg.Timeout, cfg.MinRate, cfg.RateWindow)
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
	versions, err := ParseSpecifier(cfg.Versions)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	platform := cfg.Platform
	if platform == "" {
		platform = runtime.GOOS + "-" + runtime.GOARCH
	}
	if err := ValidPlatform(platform); err != nil {
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
		app: cfg.App, current: current, installDir: installDir, singleExe: cfg.SingleExecutable, cacheDir: cacheDir,
		channel: cfg.Channel, versions: versions, platform: platform, ratio: ratio, forceFull: cfg.ForceFull, adopt: cfg.Adopt, purge: cfg.Purge,
		fs: fsys, log: cfg.Logger, progress: cfg.Progress, onProgress: cfg.OnProgress, timeout: timeout, remote: newRemote(cfg.HTTPClient, cfg.Header),
		formats: knownPatchFormats(cfg.PatchFormats),
	}
	c.remote.minRate, c.remote.window = minRate, window
	c.remote.addCredentials(metaURL, metaUser)
	c.remote.addCredentials(targetsURL, targetsUser)
	ms := []mirror{{metadata: metaURL, targets: targetsURL}}
	for _, m := range mirrors {
		ms = append(ms, m.mirror)
		c.remote.addCredentials(m.metadata, m.metadataUser)
		c.remote.addCredentials(m.targets, m.targetsUser)
	}
	c.remote.setMirrors(ms)
	if c.log == nil {
		c.log = discardLogger()
	}
	c.remote.log = c.log
	now := cfg.Now
	if now == nil {
		now = defaultNow
	}
	c.now = now
	c.tuf = &tufClient{
		fs: c.fs, dir: filepath.Join(c.cacheDir, "metadata"),
		remote: c.remote, now: now, log: c.log, bootstrap: cfg.TrustedRoot,
	}
	return c, nil
}

// checkBaseURL checks a configured base URL and returns it without its
// user info and trailing slashes, and the user info (nil when none). Its
// errors never show a password.
func checkBaseURL(what, s string) (string, *url.Userinfo, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url.Parse's error quotes the whole string: say less.
		return "", nil, fmt.Errorf("config: %s URL %q: not a valid URL", what, redactURL(s))
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", nil, fmt.Errorf("config: %s URL %q: want an http or https URL", what, redactURL(s))
	}
	base, user := splitUserinfo(s)
	return strings.TrimRight(base, "/"), user, nil
}

// checkedMirror is a configured mirror's base URLs without user info, and
// the user info.
type checkedMirror struct {
	mirror
	metadataUser, targetsUser *url.Userinfo
}

// checkMirrors checks ClientConfig.Mirrors.
func checkMirrors(ms []Mirror) ([]checkedMirror, error) {
	var out []checkedMirror
	for i, m := range ms {
		var c checkedMirror
		var err error
		if m.MetadataURL == "" && m.TargetsURL == "" {
			return nil, fmt.Errorf("config: mirror %d: neither a metadata nor a targets URL", i+1)
		}
		if m.MetadataURL != "" {
			if c.metadata, c.metadataUser, err = checkBaseURL(fmt.Sprintf("mirror %d metadata", i+1), m.MetadataURL); err != nil {
				return nil, err
			}
		}
		if m.TargetsURL != "" {
			if c.targets, c.targetsUser, err = checkBaseURL(fmt.Sprintf("mirror %d targets", i+1), m.TargetsURL); err != nil {
				return nil, err
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// MirrorErrors returns the failures of mirrors that the client got past
// since the start of the last Check, Decide or Update (and the Install
// after it), oldest first: a mirror that could not be reached, answered
// with an error, or sent a file that failed verification
// (errors.Is(err, ErrSecurity): a tampered, corrupted or stale copy), when
// another mirror then served the file. Files a mirror did not have (404)
// are not listed: a mirror that lags behind is expected to miss new ones.
// A failure that made a call fail is in that call's error instead.
func (c *Client) MirrorErrors() []*MirrorError {
	return slices.Clone(c.remote.passed)
}

// checkHeader checks extra request headers without ever quoting a value.
func checkHeader(h http.Header) error {
	for k, vs := range h {
		if k == "" || strings.IndexFunc(k, func(r rune) bool { return !isTokenChar(r) }) >= 0 {
			return fmt.Errorf("config: header name %q: want letters, digits and !#$%%&'*+-.^_`|~", k)
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n\x00") {
				return fmt.Errorf("config: header %s: the value holds a line break or NUL", k)
			}
		}
	}
	return nil
}

// isTokenChar reports whether r may appear in an HTTP header name (RFC 9110 tchar).
func isTokenChar(r rune) bool {
	return r < 0x7f && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
		strings.ContainsRune("!#$%&'*+-.^_`|~", r))
}

// checkLimits applies the defaults of ClientConfig.Timeout, MinRate and
// RateWindow and refuses negative values.
func checkLimits(timeout time.Duration, minRate int64, window time.Duration) (time.Duration, int64, time.Duration, error) {
	switch {
	case timeout < 0:
		return 0, 0, 0, fmt.Errorf("config: timeout %v: want a positive duration, or 0 for the default (%v)", timeout, DefaultTimeout)
	case minRate < 0:
		return 0, 0, 0, fmt.Errorf("config: minimum rate %d bytes/s: want a positive number, or 0 for the default (%d)", minRate, DefaultMinRate)
	case window < 0:
		return 0, 0, 0, fmt.Errorf("config: rate window %v: want a positive duration, or 0 for the default (%v)", window, DefaultRateWindow)
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if minRate == 0 {
		minRate = DefaultMinRate
	}
	if window == 0 {
		window = DefaultRateWindow
	}
	return timeout, minRate, window, nil
}

// TimeoutError reports a Check, Install or Update that gave up when its
// time limit (ClientConfig.Timeout) ran out. Err is the failure of what was
// under way. errors.Is(err, context.DeadlineExceeded) is true.
type TimeoutError struct {
	Limit time.Duration
	Err   error
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("gave up after %v, the time limit: %v", e.Limit, e.Err)
}

func (e *TimeoutError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, context.DeadlineExceeded) true.
func (e *TimeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Hint gives advice on a timeout (the CLI prints it).
func (e *TimeoutError) Hint() string {
	return "the server or the network is too slow: run the update again later (a download resumes where it stopped), or allow more time (--timeout, ClientConfig.Timeout)"
}

// errTimeLimit is the cause of the deadline a client puts on its calls.
var errTimeLimit = errors.New("client time limit")

// limit bounds ctx by the client's time limit (ClientConfig.Timeout). Call
// done with the call's error when the call is over: it releases the
// context and wraps an error that the limit caused in a *TimeoutError
// (not one a deadline of the caller caused).
func (c *Client) limit(ctx context.Context) (_ context.Context, done func(error) error) {
	ctx, cancel := context.WithTimeoutCause(ctx, c.timeout, errTimeLimit)
	return ctx, func(err error) error {
		defer cancel()
		var te *TimeoutError
		if err != nil && context.Cause(ctx) == errTimeLimit && !errors.As(err, &te) {
			return &TimeoutError{Limit: c.timeout, Err: err}
		}
		return err
	}
}

// installedRecord is CacheDir/installed.json: the version the client last
// installed, so that a process still running the old version does not
// install the same update twice. After a rollback (see Update.Rollback),
// Replaced is the yanked version it replaced.
type installedRecord struct {
	App      string `json:"app"`
	Version  string `json:"version"`
	Replaced string `json:"replaced,omitempty"`
}

func (c *Client) recordPath() string { return filepath.Join(c.cacheDir, "installed.json") }

// maxRecordLength caps the read of installed.json (a few dozen bytes).
const maxRecordLength = 64 << 10

// Current returns the installed version: ClientConfig.CurrentVersion, or the
// version this client's cache records as installed since, if newer (so a
// process still running the old version does not install the same update
// twice), or if it is the rollback that replaced CurrentVersion (yanked).
// Installing an older version by hand should go with removing the cache
// directory's installed.json.
func (c *Client) Current() Version {
	data, err := readCacheFile(c.fs, c.recordPath(), maxRecordLength)
	if err != nil {
		return c.current
	}
	var rec installedRecord
	if json.Unmarshal(data, &rec) != nil || rec.App != c.app {
		return c.current
	}
	v, err := ParseVersion(rec.Version)
	if err != nil {
		return c.current
	}
	if rec.Replaced != "" {
		if r, err := ParseVersion(rec.Replaced); err == nil && r.Compare(c.current) == 0 {
			return v
		}
	}
	if v.Compare(c.current) <= 0 {
		return c.current
	}
	return v
}

// Check refreshes the repository's metadata and returns the release to
// install with its plan, or nil when the installed version is up to date.
// The release is the newest one on the channel, unless a required release
// comes before it: that one is installed first. Releases are offered
// under the rules the publisher signed (see [Client.Decide]): yanked
// releases never, a staged rollout to the installs in it; a client
// running a yanked version is offered a rollback.
//
// Check gives up when ClientConfig.Timeout runs out (a *TimeoutError).
func (c *Client) Check(ctx context.Context) (*Update, error) {
	d, err := c.Decide(ctx)
	if err != nil {
		return nil, err
	}
	return d.Update, nil
}

// Decision is what [Client.Decide] found: the update to install, if any,
// and the newer releases the client is not offered, with the reasons.
type Decision struct {
	Update   *Update    // nil when the installed version is up to date
	Withheld []Withheld // releases newer than Update (or than the installed version) not offered, oldest first
	// HandOff, when not nil, is the last hand-off to a helper process
	// (SwapAtExit), which did not go as asked: the swap failed, the
	// application did not exit in time, or the new version did not
	// confirm its start and was rolled back. Error says why.
	HandOff *HandOffReport
}

// Decide is Check, with the reasons: it refreshes the repository's
// metadata and chooses the release to install with these rules, all read
// from signed metadata. Among the releases newer than the installed one,
// for the client's platform (or for every platform), on its channel and
// within ClientConfig.Versions, it skips yanked releases and releases in
// a staged rollout that this install is not part of, and takes the
// newest, or the first required one. If there is none and the installed
// version itself is yanked, it takes the newest lower release that passes
// the same rules, as a rollback (Update.Rollback): the only case where a
// lower version is installed.
//
// The staged rollout bucket of the install is a random number kept in
// CacheDir/rollout-bucket (drawn on first need).
//
// Decide gives up when ClientConfig.Timeout runs out (a *TimeoutError).
func (c *Client) Decide(ctx context.Context) (_ *Decision, err error) {
	ctx, done := c.limit(ctx)
	defer func() { err = done(err) }()
	t, end, err := c.track()
	if err != nil {
		return nil, err
	}
	defer func() { end(err == nil) }()
	if err := c.checkDirs(); err != nil {
		return nil, err
	}
	if !c.cacheChecked {
		if err := c.CheckCacheDir(); err != nil {
			c.log.Warn("a directory the updater keeps files in is writable by other users", "err", err)
		}
	}
	// A version that did not confirm its start in time is rolled back
	// first (handoff.go): the release to offer depends on it.
	c.settleExpired()
	t.enter(PhaseRefresh)
	c.tuf.prog = t
	err = c.tuf.refresh(ctx)
	c.tuf.prog = nil
	if err != nil {
		return nil, err
	}
	current := c.Current()
	set := releaseSetOf(c.tuf.targets(), c.app, c.platform, c.log)
	if len(set.platforms) > 0 && !slices.Contains(set.platforms, c.platform) {
		c.log.Warn("the repository has no build for this platform (set it with ClientConfig.Platform or --platform)",
			"platform", c.platform, "platforms", strings.Join(set.platforms, ","))
	}
	bucket := -1
	var bucketErr error
	sel := selectRelease(set, current, selectOptions{channel: c.channel, versions: c.versions, bad: c.badReleases(), bucket: func() (int, error) {
		if bucket < 0 && bucketErr == nil {
			bucket, bucketErr = rolloutBucket(c.fs, c.cacheDir, c.log)
		}
		return bucket, bucketErr
	}})
	d := &Decision{Withheld: sel.withheld, HandOff: c.handOffProblem()}
	for _, w := range sel.withheld {
		c.log.Info("release withheld", "version", w.Version, "platform", w.Platform, "reason", w.Reason)
	}
	r := sel.target
	if r == nil {
		return d, nil
	}
	u := &Update{
		Version: r.version, Required: r.meta.Required, UserMeta: compact(r.meta.User),
		Rollback: sel.rollback, RollbackReason: sel.reason, rollback: sel.rollback,
		from: current, target: r, archive: plannedFile(r.archive),
	}
	if reason := c.planPatches(u, set); reason != "" {
		u.Plan = Plan{Full: true, Files: []PlannedFile{u.archive}, Bytes: u.archive.Length, Reason: reason}
	}
	c.log.Info("update available", "from", current, "to", u.Version, "rollback", u.Rollback, "full", u.Plan.Full, "bytes", u.Plan.Bytes, "reason", u.Plan.Reason)
	d.Update = u
	return d, nil
}

// planPatches fills u's plan with the patch chain, or returns why the full
// archive must be downloaded instead.
func (c *Client) planPatches(u *Update, set *releaseSet) string {
	if c.forceFull {
		return "a full download was requested"
	}
	if u.rollback {
		return fmt.Sprintf("a rollback from %s installs the full archive (patches only lead up)", u.from)
	}
	cur := set.at(u.from)
	chain, why := set.patchChain(cur, u.target, u.from)
	if why != "" {
		return why
	}
	for _, r := range chain {
		if _, err := c.formats.lookup(r.patchMeta.Format); err != nil {
			return fmt.Sprintf("the patch to %s is in the %s format, which this client does not know", r.version, r.patchMeta.Format)
		}
		if ok, _ := exists(c.fs, c.failedMarker(r.version)); ok {
			return fmt.Sprintf("the patch %s failed before", r.patch.Path)
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

// failedMarker is the file that says the patch to v failed: its copy on
// the server did not match its signed length and hash, or it did not
// apply. Later checks plan the full archive instead of a chain that holds
// it, until an install succeeds (cleanCache then removes the marker).
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

	keep func(rel string) bool // baseInstalled: the entries the release shipped (nil: all)
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
		if n, h, err := hashFileLimit(c.fs, p, size); err == nil && h == hash && n == size {
			return baseSource{kind: baseCachedTar, path: p, tarSize: size, tarHash: hash}
		} else if errors.Is(err, errNotRegular) {
			c.log.Warn("ignoring a cached tar", "err", err)
		}
	}
	if cur.archive != nil {
		p := c.cachePath(cur.archive.Path)
		want := plannedFile(cur.archive)
		if n, h, err := hashFileLimit(c.fs, p, want.Length); err == nil && h == want.SHA256 && n == want.Length {
			return baseSource{kind: baseCachedArchive, path: p, tarSize: size, tarHash: hash, archiveLen: want.Length}
		} else if errors.Is(err, errNotRegular) {
			c.log.Warn("ignoring a cached archive", "err", err)
		}
	}
	if hash != "" && !c.singleExe {
		// The release's files only, when the install manifest lists them:
		// not what the user added (see carry.go).
		shipped, err := loadShipped(c.fs, c.installer().manifestPath(), c.app)
		if err != nil {
			c.log.Warn("ignoring the install manifest", "err", err)
		}
		// (treeIsTar reads nothing of a tree too big to be the release.)
		ok, err := treeIsTar(c.fs, c.installDir, size, hash, shipped.keep())
		if ok {
			return baseSource{kind: baseInstalled, path: c.installDir, tarSize: size, tarHash: hash, keep: shipped.keep()}
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
// from it. What the install did (patches or the full archive, the bytes
// downloaded, a patch that failed) is in the result's Result.
//
// ClientConfig.Timeout bounds the check and the install together.
func (c *Client) Update(ctx context.Context) (_ *Update, err error) {
	ctx, done := c.limit(ctx)
	defer func() { err = done(err) }()
	_, end, err := c.track()
	if err != nil {
		return nil, err
	}
	defer func() { end(err == nil) }()
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
	if err := c.checkDirs(); err != nil {
		return err
	}
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
	return c.recoverWith(in)
}

// recoverJournal runs in's recover and records the version of an install
// it completed. The caller holds the install lock.
func (c *Client) recoverJournal(in *installer) error {
	if err := in.recover(); err != nil {
		return err
	}
	if in.recovered == "" {
		return nil
	}
	tag, from, rollback := strings.Cut(in.recovered, rollbackTag)
	v, err := ParseVersion(tag)
	if err != nil {
		return fmt.Errorf("recover: journal names version %q: %w", in.recovered, err)
	}
	var replaced Version
	if rollback {
		if replaced, err = ParseVersion(from); err != nil {
			return fmt.Errorf("recover: journal names version %q: %w", in.recovered, err)
		}
	}
	in.recovered = ""
	if replaced.IsZero() && v.Compare(c.Current()) > 0 || !replaced.IsZero() && replaced.Compare(c.Current()) == 0 {
		return c.record(v, replaced)
	}
	return nil
}

// installTag is what the install journal records of u (see Recover): its
// version, and for a rollback the yanked version it replaces.
func installTag(u *Update) string {
	if u.rollback {
		return u.Version.String() + rollbackTag + u.from.String()
	}
	return u.Version.String()
}

const rollbackTag = " replacing "

// record writes v as the installed version in CacheDir/installed.json;
// replaced is the yanked version a rollback replaced (zero otherwise).
func (c *Client) record(v, replaced Version) error {
	r := installedRecord{App: c.app, Version: v.String()}
	if !replaced.IsZero() {
		r.Replaced = replaced.String()
	}
	rec, err := json.Marshal(r)
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
	return &installer{fs: c.fs, dir: c.installDir, log: c.log, singleExe: c.singleExe, app: c.app, purge: c.purge, now: c.now, prog: c.prog}
}

// Install downloads and installs u, an update returned by Check on this
// client. It first finishes an install a crash interrupted (see
// [Client.Recover]) and makes sure that the install directory holds the
// application (missing, empty, installed by notsotuf, or the installed
// version's release; else an error wrapping [ErrForeignInstallDir],
// unless ClientConfig.Adopt), before anything of u is downloaded. With a
// patch plan, it downloads the patches and applies them to
// the verified tar of the installed version, extracting the output into
// the staged tree as it is produced (patching and extraction overlap);
// the staged tree is swapped in only once the whole output matched its
// signed tar size and hash. When a patch is bad (its copy on the server
// does not match its signed hash, or it does not apply) or missing on the
// server, it falls back to the full archive, which is signed too, in the
// same call; a bad patch is remembered, so later checks plan the full
// archive. A network failure is returned instead: the archive would meet
// it too (docs/client.md, "The patch pipeline and the fallback rules").
// The new tree is staged beside the install directory, receives the
// files the installed release did not ship (ClientConfig.Purge drops
// them), and is swapped in atomically. Then the new version is recorded
// in the cache directory, its verified tar or archive is kept as the next
// patch base and the files of other versions are removed from the cache. Installing a version that is
// already installed does nothing. On success u.Result says what was done.
//
// Install gives up when ClientConfig.Timeout runs out (a *TimeoutError).
//
// Install holds the install lock beside the install directory (see
// [ErrBusy]) from start to end: a second process updating the same
// application at the same time gets an error wrapping ErrBusy and changes
// nothing.
func (c *Client) Install(ctx context.Context, u *Update) error {
	return c.install(ctx, u, false)
}

// install is Install, or with stage Stage (handoff.go): the same steps up
// to the staged tree.
func (c *Client) install(ctx context.Context, u *Update, stage bool) (err error) {
	if u == nil || u.target == nil {
		return errors.New("install: no update (use the result of Check)")
	}
	res := &InstallResult{}
	ctx, done := c.limit(ctx)
	defer func() {
		if err != nil && res.Fallback != "" {
			err = fmt.Errorf("%w\n(the full archive was the fallback after the patches failed: %s)", err, res.Fallback)
		}
		err = done(err)
	}()
	t, end, err := c.track()
	if err != nil {
		return err
	}
	defer func() { end(err == nil) }()
	if err := c.checkDirs(); err != nil {
		return err
	}
	in := c.installer()
	unlock, err := in.lock()
	if err != nil {
		return fmt.Errorf("install %s: %w", u.Version, err)
	}
	defer unlock()
	// Settle an interrupted install first: the install directory is then
	// one version, complete, and its manifest says which.
	if err := c.recoverWith(in); err != nil {
		return fmt.Errorf("install %s: finishing an earlier install: %w", u.Version, err)
	}
	if cur := c.Current(); u.rollback && cur.Compare(u.from) != 0 || !u.rollback && u.Version.Compare(cur) <= 0 {
		return nil // installed meanwhile, or already
	}
	// A confirmation pending, or this update staged already (handoff.go).
	if handled, err := c.useStaged(in, u, stage); handled {
		return err
	}
	if err := c.fs.MkdirAll(c.cacheDir, 0o755); err != nil {
		return fmt.Errorf("install %s: %w", u.Version, err)
	}
	t.plan(u.Plan.Bytes, patchWork(u), extractWork(u, u.Plan.Full), treeWork(u))
	prog := &progress{total: u.Plan.Bytes, fn: c.progress, t: t}
	t.enter(PhaseDownload)
	// Never replace a directory that does not hold the application.
	if err := c.checkInstallDir(ctx, prog); err != nil {
		return err
	}
	if !c.singleExe {
		// Before the update is downloaded; the swap checks again (mounts.go).
		if err := checkNoMounts(c.fs, c.installDir); err != nil {
			return fmt.Errorf("install %s: %w", u.Version, err)
		}
	}
	in.tag = installTag(u) // lets Recover record it if a crash cuts the install short
	in.stageOnly = stage
	if !stage {
		var replaced Version
		if u.rollback {
			replaced = u.from
		}
		in.committed = func() error { return c.record(u.Version, replaced) } // and before the journal goes
	}
	var keep string
	if !u.Plan.Full {
		tarPath, err, installErr := c.installPatches(ctx, u, prog, in)
		switch {
		case installErr != nil:
			return installErr
		case err == nil:
			keep = tarPath
			res.Files = slices.Clone(u.Plan.Files)
		case ctx.Err() != nil:
			return err
		default:
			fallback, bad, distrust := classifyPatchFailure(err)
			if !fallback {
				return err // the network or the server: the archive would meet it too
			}
			c.log.Warn("the patches failed, installing the full archive instead", "version", u.Version, "patch", bad, "err", err)
			if distrust {
				c.markFailed(u, bad, err)
			}
			res.Fallback, res.BadPatch = err.Error(), bad
			prog.total += u.archive.Length
			t.fallback(u.archive.Length, extractWork(u, true))
		}
	}
	if keep == "" {
		res.Full, res.Files = true, []PlannedFile{u.archive}
		gz := c.cachePath(u.archive.Name)
		if err := c.remote.fetchTargetFile(ctx, c.fs, c.tuf.targetPath(u.target.archive), gz, u.archive.Length, u.archive.SHA256, prog); err != nil {
			return err
		}
		t.enter(PhaseExtract)
		tarSize, tarHash := u.target.tarHash()
		keep = gz
		if tarHash != "" {
			// A notsotuf archive signs its tar: install from it and keep
			// that tar, checked, as the next patch base (no gunzip then).
			tarPath := c.cachePath(tarName(c.app, u.Version))
			kept, err := c.installArchiveKeepTar(ctx, in, gz, u.archive, tarPath, tarSize, tarHash)
			if err != nil {
				return err
			}
			if kept {
				keep = tarPath
			}
		} else {
			// tufup archives do not sign their tar size.
			if err := c.installFile(ctx, in, gz, u.archive); err != nil {
				return err
			}
		}
	}
	if stage {
		res.Downloaded = prog.received
		u.Result = res
		return c.recordStaged(in, u, keep)
	}
	var replaced Version
	if u.rollback {
		replaced = u.from
	}
	if err := c.record(u.Version, replaced); err != nil {
		return err
	}
	res.Downloaded = prog.received
	u.Result = res
	c.log.Info("installed", "version", u.Version, "from", u.from, "full", res.Full, "downloaded", res.Downloaded, "fallback", res.Fallback != "")
	c.cleanCache(keep)
	c.clearHandOffReport()
	return nil
}

// classifyPatchFailure applies the fallback rules to a failure of the
// patch path (docs/client.md, "The patch pipeline and the fallback
// rules"). fallback: install the full archive in the same run; bad: the
// patch at fault, when one is; distrust: remember it, so later checks
// plan the full archive.
//
//   - A patch whose download does not match its signed length or hash
//     (a stale CDN copy, a hostile server), or that does not apply: fall
//     back, distrust it.
//   - A patch missing on the server (HTTP 404, 410, or 403 as object
//     stores answer for a missing key): fall back; it is tried again next
//     time (one request).
//   - The patch base could not be produced, or a local I/O error (a full
//     disk): fall back; the patches are not at fault.
//   - Any other download failure (connection refused, DNS, a timeout, a
//     server too slow, HTTP 5xx, 401): no fallback; the archive comes
//     from the same server and would fail the same way, and the next run
//     resumes the patch.
func classifyPatchFailure(err error) (fallback bool, bad string, distrust bool) {
	var pe *patchError
	if errors.As(err, &pe) {
		bad = pe.name
	}
	var se *SecurityError
	var de *DownloadError
	var lm *metadata.ErrDownloadLengthMismatch
	var be *baseError
	switch {
	case errors.As(err, &se), errors.As(err, &lm):
		return true, bad, true
	case errors.As(err, &de):
		switch de.StatusCode {
		case http.StatusNotFound, http.StatusGone, http.StatusForbidden:
			return true, bad, false
		}
		return false, bad, false
	case errors.As(err, &be), localIOError(err):
		return true, bad, false
	}
	return true, bad, true // the patch does not apply
}

// markFailed remembers that the patch named bad (or, when unknown, the
// chain to u) failed, so that later checks plan the full archive.
func (c *Client) markFailed(u *Update, bad string, err error) {
	v := u.Version
	for _, r := range u.chain {
		if r.patch.Path == bad {
			v = r.version
		}
	}
	if werr := writeFileAtomic(c.fs, c.failedMarker(v), []byte(err.Error()+"\n"), 0o644); werr != nil {
		c.log.Warn("cannot record the failed patch", "err", werr)
	}
}

// patchError names the patch of a chain whose download or application
// failed.
type patchError struct {
	name string // target name
	err  error
}

func (e *patchError) Error() string { return e.err.Error() }
func (e *patchError) Unwrap() error { return e.err }

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
		if err := c.remote.fetchTargetFile(ctx, c.fs, c.tuf.targetPath(r.patch), p, f.Length, f.SHA256, prog); err != nil {
			return "", &patchError{name: f.Name, err: err}, nil
		}
		format, err := c.formats.lookup(r.patchMeta.Format)
		if err != nil {
			return "", err, nil // not reached: planPatches checked it
		}
		steps[i] = patchStep{Name: f.Name, Path: p, Meta: r.patchMeta, Format: format}
	}
	c.prog.enter(PhasePatch)
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
		err := applyPatchChainTee(ctx, fsys, base, steps, dst, in.prog.counter(PhasePatch), pw)
		if err == nil {
			in.prog.enter(PhaseExtract) // what is left of the extraction
		}
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
	r := namedReader{in.prog.reader(PhaseExtract, pr), dst}
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
		mw := io.MultiWriter(w, h, cw, c.prog.writer(PhasePatch))
		defer func() { n = cw.n }()
		switch b.kind {
		case baseCachedArchive:
			f, err := openNoFollow(c.fs, b.path, os.O_RDONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			zr, err := gzip.NewReader(io.LimitReader(f, b.archiveLen))
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
			return writeTarFilter(c.fs, c.installDir, mw, b.keep)
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
	return err == nil && (tn.App == c.app || tn.App == releaseStem(c.app, c.platform))
}

// signedArchive opens the downloaded archive p for an install: it reads
// at most its signed length, hashing what it reads, and check (to call
// from the installer's verify hook, before the commit) reads the rest and
// compares it with the signed length and sha256. The archive was checked
// when downloaded; this catches one changed since (another user writing
// to the cache), whose tar would otherwise go unchecked when the
// repository signs no tar hash (tufup archives).
func (c *Client) signedArchive(p string, want PlannedFile) (r io.Reader, check func() error, closeFn func(), err error) {
	f, err := openNoFollow(c.fs, p, os.O_RDONLY, 0)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("install: %w", err)
	}
	h, cw := sha256.New(), &countWriter{}
	r = io.TeeReader(io.LimitReader(f, want.Length), io.MultiWriter(h, cw))
	check = func() error {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if sum := hex.EncodeToString(h.Sum(nil)); cw.n != want.Length || sum != want.SHA256 {
			return &SecurityError{File: want.Name, Err: &metadata.ErrLengthOrHashMismatch{
				Msg: fmt.Sprintf("%s changed since it was downloaded: %d bytes with sha256 %s, signed metadata says %d bytes with sha256 %s", p, cw.n, sum, want.Length, want.SHA256)}}
		}
		return nil
	}
	return r, check, func() { f.Close() }, nil
}

// installFile installs the downloaded archive p (see signedArchive) with
// the installer. Its tar size is not signed (a tufup archive): the
// extraction is bounded by what the archive's signed length of gzip can
// expand to.
func (c *Client) installFile(ctx context.Context, in *installer, p string, archive PlannedFile) error {
	r, check, closeFn, err := c.signedArchive(p, archive)
	if err != nil {
		return err
	}
	defer closeFn()
	in.verify = check
	defer func() { in.verify = nil }()
	nr := namedReader{c.prog.reader(PhaseExtract, r), p}
	limit := archive.Length * maxDeflateRatio
	if c.singleExe {
		return in.installExecutable(ctx, nr, limit)
	}
	return in.installTar(ctx, nr, limit)
}

// installArchiveKeepTar installs the downloaded archive gz (see
// signedArchive) while writing its uncompressed tar to tarPath in the same
// pass. The uncompressed tar must be the signed one (size and sha256):
// extraction stops at the signed size, and the installer's commit waits
// until the whole tar matched its signed hash (in.verify), as on the patch
// path; a mismatch abandons the install (an error wrapping
// ErrUnsafeArchive). It reports whether the tar was kept as the next
// patch base (a failure to write it, a full cache disk, only leaves the
// archive as the base).
func (c *Client) installArchiveKeepTar(ctx context.Context, in *installer, gz string, archive PlannedFile, tarPath string, size int64, hash string) (bool, error) {
	if size <= 0 || size/maxDeflateRatio > archive.Length {
		// No gzip stream of that length expands to that: the metadata
		// lies, and extracting up to it could fill the disk.
		return false, fmt.Errorf("install: %s: the signed tar_size %d is impossible for an archive of %d bytes: %w", gz, size, archive.Length, ErrUnsafeArchive)
	}
	r, checkArchive, closeFn, err := c.signedArchive(gz, archive)
	if err != nil {
		return false, err
	}
	defer closeFn()
	zr, err := gzip.NewReader(r)
	if err != nil {
		return false, fmt.Errorf("install: %s: %w", gz, err)
	}
	var installErr error
	keepErr := writeCacheFile(c.fs, tarPath, func(w io.Writer) error {
		// Keeping the tar is an optimisation: a failure to write it (a full
		// cache disk) must not fail the install.
		sw := &softWriter{w: w}
		h, cw := sha256.New(), &countWriter{}
		tee := namedReader{c.prog.reader(PhaseExtract, io.TeeReader(io.LimitReader(zr, size+1), io.MultiWriter(sw, h, cw))), gz}
		in.verify = func() error {
			// The tar reader stops at the end-of-archive blocks: read the
			// rest (padding, gzip checksum) before judging the whole.
			if _, err := io.Copy(io.Discard, tee); err != nil {
				return fmt.Errorf("%s: %w", gz, err)
			}
			if err := checkArchive(); err != nil {
				return err
			}
			if sum := hex.EncodeToString(h.Sum(nil)); cw.n != size || sum != hash {
				return fmt.Errorf("%s: the uncompressed tar (%d bytes, sha256 %s) is not the signed one (tar_size %d, tar_hash %s): %w",
					gz, cw.n, sum, size, hash, ErrUnsafeArchive)
			}
			return nil
		}
		defer func() { in.verify = nil }()
		if c.singleExe {
			installErr = in.installExecutable(ctx, tee, size)
		} else {
			installErr = in.installTar(ctx, tee, size)
		}
		if installErr != nil {
			return installErr
		}
		return sw.err
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
