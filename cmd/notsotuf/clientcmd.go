package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/notsotuf/notsotuf"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

func init() {
	const args = "--app NAME --current VERSION --install-dir DIR --metadata-url URL [flags]"
	register(command{"check", args, "check a repository for a newer release of an installed app", cmdCheck})
	register(command{"update", args, "download and install the newest release of an installed app", cmdUpdate})
}

// clientFlags are the flags of check and update.
type clientFlags struct {
	app, current, installDir, cacheDir string
	metadataURL, targetsURL, root      string
	pre, versions, platform            string
	full, singleExe, json, adopt       bool
	purge                              bool
	handOff                            *handOffFlags // update only
	timeout, rateWindow                time.Duration
	minRate                            int64
	header                             headerFlag
	mirrors                            mirrorFlag
}

// mirrorFlag collects --mirror (repeatable). Its values may hold
// passwords: config checks them, and its messages redact them.
type mirrorFlag []string

func (f *mirrorFlag) String() string { return "" }

func (f *mirrorFlag) Set(s string) error {
	*f = append(*f, s)
	return nil
}

// parseMirror reads a --mirror value: "METADATA_URL" (ending in
// /metadata, the targets beside it in /targets) or "METADATA_URL
// TARGETS_URL".
func parseMirror(s string) (notsotuf.Mirror, error) {
	var m notsotuf.Mirror
	switch fields := strings.Fields(s); len(fields) {
	case 1:
		m.MetadataURL = fields[0]
		if err := checkURLFlag("--mirror", m.MetadataURL); err != nil {
			return m, err
		}
		base, ok := strings.CutSuffix(strings.TrimRight(m.MetadataURL, "/"), "/metadata")
		if !ok {
			return m, usagef("--mirror %q: want the mirror's metadata URL, ending in /metadata (its targets beside it), or 'METADATA_URL TARGETS_URL'", redactedURL(m.MetadataURL))
		}
		m.TargetsURL = base + "/targets"
	case 2:
		m.MetadataURL, m.TargetsURL = fields[0], fields[1]
		for _, u := range fields {
			if err := checkURLFlag("--mirror", u); err != nil {
				return m, err
			}
		}
	default:
		return m, usagef("--mirror: want 'METADATA_URL' or 'METADATA_URL TARGETS_URL', got %d words", len(fields))
	}
	return m, nil
}

// headerFlag collects --header 'Name: value' (repeatable). Its values may
// be secrets: no message quotes them. (A Set error would be quoted with
// the argument by package flag, so a malformed one is only counted here and
// reported by config.)
type headerFlag struct {
	h   http.Header
	bad int // arguments that are not "Name: value"
}

func (f *headerFlag) String() string { return "" }

func (f *headerFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		f.bad++
		return nil
	}
	if f.h == nil {
		f.h = http.Header{}
	}
	f.h.Add(name, strings.TrimSpace(value))
	return nil
}

func newClientFlags(env *cliEnv, name string) (*flag.FlagSet, *clientFlags) {
	f := &clientFlags{}
	fs := newFlags(env, name, "--app NAME --current VERSION --install-dir DIR --metadata-url URL [flags]")
	fs.StringVar(&f.app, "app", "", "application `name` (as in the target names)")
	fs.StringVar(&f.current, "current", "", "installed `version`")
	fs.StringVar(&f.installDir, "install-dir", "", "`dir` of the installed application")
	fs.StringVar(&f.cacheDir, "cache-dir", "", "cache `dir` for trusted metadata and downloads (default: the user cache dir/notsotuf/APP)")
	fs.StringVar(&f.metadataURL, "metadata-url", "", "base `URL` of the repository's metadata")
	fs.StringVar(&f.targetsURL, "targets-url", "", "base `URL` of the repository's targets (default: the metadata URL with /metadata replaced by /targets)")
	fs.StringVar(&f.root, "root", "", "trusted root.json `file` to start from (default: the one in the cache dir)")
	fs.StringVar(&f.pre, "pre", "", "pre-release `channel`: a, b or rc (default: final releases only)")
	fs.StringVar(&f.versions, "versions", "", "PEP 440 version `specifier` bounding the releases installed, e.g. '~=1.4' to stay on 1.x")
	fs.StringVar(&f.platform, "platform", "", "install the builds of this `platform` when the repository has several (default: this system's, "+runtime.GOOS+"-"+runtime.GOARCH+")")
	fs.BoolVar(&f.full, "full", false, "always download the full archive, never patches")
	fs.DurationVar(&f.timeout, "timeout", notsotuf.DefaultTimeout, "give up after this `duration` in all (a download resumes at the next run)")
	fs.Int64Var(&f.minRate, "min-rate", notsotuf.DefaultMinRate, "a download slower than this many `bytes` per second over --rate-window is dropped and resumed; 4 such windows in a row fail it")
	fs.DurationVar(&f.rateWindow, "rate-window", notsotuf.DefaultRateWindow, "the `duration` over which --min-rate is measured")
	fs.Var(&f.mirrors, "mirror", "another server of the repository, tried in order after --metadata-url when a file cannot be had from it: "+
		"its metadata `URL` (the targets beside it, in /targets), or 'METADATA_URL TARGETS_URL' (repeatable; the first one stands for --metadata-url when that is left out)")
	fs.Var(&f.header, "header", "extra request header `'Name: value'` for every request, e.g. 'Authorization: Bearer TOKEN' (repeatable; never printed)")
	fs.BoolVar(&f.json, "json", false, "print the result as one JSON object on stdout, for programs (errors stay on stderr with a non-zero exit)")
	fs.BoolVar(&f.singleExe, "single-executable", false, "--install-dir is one executable file (each release archive holds one file), replaced by rename")
	fs.BoolVar(&f.adopt, "adopt", false, "update: replace --install-dir even when it does not hold the installed release (a copy made by hand and changed since); without it such a non-empty directory is refused and left as it is")
	if name == "update" {
		fs.BoolVar(&f.purge, "purge", false, "drop the files in --install-dir that the installed release did not ship (by default they are kept in the new tree)")
		f.handOff = addHandOffFlags(fs)
	}
	return fs, f
}

// config turns the flags into a client configuration.
func (f *clientFlags) config(env *cliEnv) (notsotuf.ClientConfig, error) {
	var cfg notsotuf.ClientConfig
	for _, req := range []struct{ name, val string }{
		{"--app", f.app}, {"--current", f.current}, {"--install-dir", f.installDir},
	} {
		if req.val == "" {
			return cfg, usagef("%s is required", req.name)
		}
	}
	if f.metadataURL == "" && len(f.mirrors) == 0 {
		return cfg, usagef("--metadata-url is required (or --mirror)")
	}
	if err := f.checkValues(); err != nil {
		return cfg, err
	}
	var mirrors []notsotuf.Mirror
	for _, s := range f.mirrors {
		m, err := parseMirror(s)
		if err != nil {
			return cfg, err
		}
		mirrors = append(mirrors, m)
	}
	if f.metadataURL == "" {
		if f.targetsURL != "" {
			return cfg, usagef("--targets-url goes with --metadata-url: give both, or the pair as --mirror 'METADATA_URL TARGETS_URL'")
		}
		f.metadataURL, f.targetsURL = mirrors[0].MetadataURL, mirrors[0].TargetsURL
		mirrors = mirrors[1:]
	}
	if f.timeout <= 0 {
		return cfg, usagef("--timeout %v: want a positive duration, e.g. 10m (default %v)", f.timeout, notsotuf.DefaultTimeout)
	}
	if f.rateWindow <= 0 {
		return cfg, usagef("--rate-window %v: want a positive duration, e.g. 30s", f.rateWindow)
	}
	if f.header.bad > 0 {
		return cfg, usagef("--header: want 'Name: value', e.g. 'Authorization: Bearer TOKEN' (the argument is not shown: it may hold a secret)")
	}
	if f.minRate <= 0 {
		return cfg, usagef("--min-rate %d: want a positive number of bytes per second, e.g. %d", f.minRate, notsotuf.DefaultMinRate)
	}
	cacheDir := f.cacheDir
	if cacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return cfg, usagef("--cache-dir is required here: %v", err)
		}
		cacheDir = filepath.Join(base, "notsotuf", f.app)
	}
	targetsURL := f.targetsURL
	if targetsURL == "" {
		base, ok := strings.CutSuffix(strings.TrimRight(f.metadataURL, "/"), "/metadata")
		if !ok {
			return cfg, usagef("--targets-url is required when --metadata-url does not end in /metadata")
		}
		targetsURL = base + "/targets"
	}
	rootFile := f.root
	if rootFile == "" {
		rootFile = filepath.Join(cacheDir, "metadata", "root.json")
	}
	if env.getenv("NOTSOTUF_NOW") != "" && !clientClockFromEnv {
		fmt.Fprintln(env.stderr, "notsotuf: warning: NOTSOTUF_NOW is ignored by check and update: a client keeps the real clock, or expired metadata would pass")
	}
	// A regular file of at most 512 KiB: --root /dev/zero or a FIFO is
	// refused at once, not read forever.
	root, err := notsotuf.ReadTrustedRoot(env.fs, rootFile)
	if err != nil {
		if f.root == "" && errors.Is(err, os.ErrNotExist) {
			return cfg, usagef("--root is required: no trusted root in %s yet", filepath.Dir(rootFile))
		}
		return cfg, fmt.Errorf("trusted root: %w", err)
	}
	if _, err := trustedmetadata.New(root); err != nil {
		what := "--root " + rootFile
		if f.root == "" {
			what = "trusted root " + rootFile
		}
		return cfg, &hinted{fmt.Errorf("%s: not a usable TUF root: %w", what, err),
			"pass with --root the root.json the repository published (its metadata/1.root.json, or a newer N.root.json you trust)"}
	}
	return notsotuf.ClientConfig{
		App: f.app, CurrentVersion: f.current, InstallDir: f.installDir, CacheDir: cacheDir,
		MetadataURL: f.metadataURL, TargetsURL: targetsURL, Mirrors: mirrors, TrustedRoot: root,
		Fs: env.fs, Now: env.clientNow, Logger: env.logger, Channel: f.pre, ForceFull: f.full, SingleExecutable: f.singleExe, Adopt: f.adopt, Purge: f.purge,
		Header: f.header.h, Timeout: f.timeout, MinRate: f.minRate, RateWindow: f.rateWindow,
		Versions: f.versions, Platform: f.platform,
	}, nil
}

// newClient makes the client of check and update, and warns when its cache
// directory, or the directory holding the install directory, is writable
// by other users (it does not stop: see notsotuf.Client.CheckCacheDir).
func newClient(env *cliEnv, cfg notsotuf.ClientConfig) (*notsotuf.Client, error) {
	c, err := notsotuf.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	if err := c.CheckCacheDir(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(env.stderr, "notsotuf: warning: %s\n", line)
		}
	}
	return c, nil
}

// checkValues checks the flag values that NewClient would otherwise refuse
// in the library's words ("config: ..."), so that the error names the flag.
func (f *clientFlags) checkValues() error {
	if err := notsotuf.ValidAppName(f.app); err != nil {
		return usagef("--app: %v", err)
	}
	if _, err := notsotuf.ParseVersion(f.current); err != nil {
		return usagef("--current: %v", err)
	}
	if notsotuf.ValidChannel(f.pre) != nil {
		return usagef("--pre %q: want a, b or rc (leave --pre out for final releases only)", f.pre)
	}
	if _, err := notsotuf.ParseSpecifier(f.versions); err != nil {
		return &hinted{usagef("--versions: %v", err), "write a PEP 440 specifier, e.g. '~=1.4' (1.4 and later 1.x) or '>=1.4, <2'"}
	}
	if f.platform != "" {
		if err := notsotuf.ValidPlatform(f.platform); err != nil {
			return usagef("--platform: %v", err)
		}
	}
	for _, u := range []struct{ flag, val string }{{"--metadata-url", f.metadataURL}, {"--targets-url", f.targetsURL}} {
		if u.val == "" {
			continue
		}
		if err := checkURLFlag(u.flag, u.val); err != nil {
			return err
		}
	}
	return nil
}

// checkURLFlag checks the http(s) URL s given with flag, without quoting
// a password.
func checkURLFlag(flag, s string) error {
	p, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password and all
		}
		return usagef("%s: not a valid URL: %v", flag, err)
	}
	if (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return usagef("%s %q: want an http:// or https:// URL", flag, p.Redacted())
	}
	return nil
}

// redactedURL is s (a URL that parses) without its password.
func redactedURL(s string) string {
	if p, err := url.Parse(s); err == nil {
		return p.Redacted()
	}
	return "(not shown)"
}

// parseClientArgs parses the command line of check or update (flags only)
// into its flags and the client's configuration.
func parseClientArgs(env *cliEnv, name string, args []string) (*clientFlags, notsotuf.ClientConfig, error) {
	fs, f := newClientFlags(env, name)
	if pos, err := parseFlags(fs, args); err != nil {
		return nil, notsotuf.ClientConfig{}, err
	} else if len(pos) > 0 {
		return nil, notsotuf.ClientConfig{}, usagef("unexpected argument %q", pos[0])
	}
	cfg, err := f.config(env)
	return f, cfg, err
}

func cmdCheck(env *cliEnv, args []string) error {
	f, cfg, err := parseClientArgs(env, "check", args)
	if err != nil {
		return err
	}
	c, err := newClient(env, cfg)
	if err != nil {
		return err
	}
	// The client bounds the call by --timeout (ClientConfig.Timeout).
	d, err := c.Decide(env.ctx)
	if err != nil {
		return err
	}
	u := d.Update
	if f.json {
		r := resultJSON{App: f.app, Installed: c.Current().String(), Update: updateOf(u), MirrorErrors: mirrorErrors(c), HandOff: handOffOf(d.HandOff)}
		for _, w := range d.Withheld {
			r.Withheld = append(r.Withheld, withheldJSON{Version: w.Version.String(), Platform: w.Platform, Reason: w.Reason})
		}
		return printResult(env.stdout, r)
	}
	warnHandOff(env, d.HandOff)
	if u == nil {
		fmt.Fprintf(env.stdout, "%s %s is up to date\n", f.app, c.Current())
	} else {
		describeUpdate(env.stdout, f.app, c.Current(), u)
	}
	for _, w := range d.Withheld {
		fmt.Fprintf(env.stdout, "withheld: %s %s (%s)\n", f.app, w.Version, w.Reason)
	}
	return nil
}

// resultJSON is what check and update print with --json.
type resultJSON struct {
	App       string      `json:"app"`
	Installed string      `json:"installed"`          // the installed version, after the command
	Previous  string      `json:"previous,omitempty"` // update: the version before it
	Update    *updateJSON `json:"update"`             // null: up to date
	// Withheld (check): newer releases not offered, and why (yanked,
	// staged rollout, outside --versions, a required release first, a
	// release rolled back here because it did not confirm its start).
	Withheld []withheldJSON `json:"withheld,omitempty"`
	// MirrorErrors: the failures of mirrors that another mirror made up
	// for (notsotuf.Client.MirrorErrors), e.g. a mirror down or one that
	// sent a file that failed verification.
	MirrorErrors []string `json:"mirror_errors,omitempty"`
	// update --wait-pid: the version staged, and the helper's process id.
	Staged    string `json:"staged,omitempty"`
	HelperPID int    `json:"helper_pid,omitempty"`
	// HandOff (check): the last hand-off, when it did not go as asked.
	HandOff *handOffJSON `json:"handoff,omitempty"`
}

// mirrorErrors lists c's mirror failures for --json.
func mirrorErrors(c *notsotuf.Client) []string {
	var out []string
	for _, e := range c.MirrorErrors() {
		out = append(out, e.Error())
	}
	return out
}

type withheldJSON struct {
	Version  string `json:"version"`
	Platform string `json:"platform,omitempty"`
	Reason   string `json:"reason"`
}

// updateJSON describes the release available (check: the plan) or
// installed (update: what was done).
type updateJSON struct {
	Version  string          `json:"version"`
	Required bool            `json:"required"`
	User     json.RawMessage `json:"user"`             // the publisher's --meta, as signed; null if none
	Full     bool            `json:"full"`             // the full archive, not patches
	Reason   string          `json:"reason,omitempty"` // why the full archive
	Bytes    int64           `json:"bytes"`            // check: to download; update: downloaded
	Files    []string        `json:"files"`            // target names: check: to download, update: installed from
	// update: the planned patches failed and the full archive was
	// installed instead (reason says why; bad_patch names the patch).
	Fallback bool   `json:"fallback,omitempty"`
	BadPatch string `json:"bad_patch,omitempty"`
	// Rollback: the installed version was yanked and this lower one
	// replaces it (a downgrade the publisher signed); RollbackReason why.
	Rollback       bool   `json:"rollback,omitempty"`
	RollbackReason string `json:"rollback_reason,omitempty"`
}

func updateOf(u *notsotuf.Update) *updateJSON {
	if u == nil {
		return nil
	}
	j := &updateJSON{
		Version: u.Version.String(), Required: u.Required, Full: u.Plan.Full,
		Reason: u.Plan.Reason, Bytes: u.Plan.Bytes, Files: []string{},
		Rollback: u.Rollback, RollbackReason: u.RollbackReason,
	}
	if len(u.UserMeta) > 0 {
		j.User = json.RawMessage(compactJSON(u.UserMeta))
	}
	for _, pf := range u.Plan.Files {
		j.Files = append(j.Files, pf.Name)
	}
	return j
}

// installedOf is updateOf with what Install did instead of the plan.
func installedOf(u *notsotuf.Update) *updateJSON {
	j := updateOf(u)
	if j == nil {
		return nil
	}
	if u.Result == nil {
		// Another run installed it between this one's check and install.
		j.Full, j.Bytes, j.Files, j.Reason = false, 0, []string{}, "installed meanwhile by another run"
		return j
	}
	r := u.Result
	j.Full, j.Bytes, j.Files = r.Full, r.Downloaded, []string{}
	for _, pf := range r.Files {
		j.Files = append(j.Files, pf.Name)
	}
	switch {
	case r.Fallback != "":
		j.Reason, j.Fallback, j.BadPatch = r.Fallback, true, r.BadPatch
	case !r.Full:
		j.Reason = ""
	}
	return j
}

// howInstalled says in words what an update did.
func howInstalled(r *notsotuf.InstallResult) string {
	if r == nil {
		return "installed meanwhile by another run"
	}
	if !r.Full {
		return fmt.Sprintf("%d patch(es), %s", len(r.Files), size(r.Downloaded))
	}
	if r.Fallback == "" {
		return "full archive, " + size(r.Downloaded)
	}
	return fmt.Sprintf("full archive, %s, after the patches failed: %s", size(r.Downloaded), strings.ReplaceAll(r.Fallback, "\n", "; "))
}

func printResult(w io.Writer, r resultJSON) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// describeUpdate prints what an update will install and download.
func describeUpdate(w io.Writer, app string, from notsotuf.Version, u *notsotuf.Update) {
	req := ""
	if u.Required {
		req = " (required)"
	}
	if u.Rollback {
		fmt.Fprintf(w, "%s %s is available as a rollback (installed: %s): %s\n", app, u.Version, from, u.RollbackReason)
	} else {
		fmt.Fprintf(w, "%s %s is available%s (installed: %s)\n", app, u.Version, req, from)
	}
	if u.Plan.Full {
		fmt.Fprintf(w, "download: full archive, %s (%s)\n", size(u.Plan.Bytes), u.Plan.Reason)
	} else {
		fmt.Fprintf(w, "download: %d patch(es), %s\n", len(u.Plan.Files), size(u.Plan.Bytes))
	}
	if len(u.UserMeta) > 0 {
		fmt.Fprintf(w, "release metadata: %s\n", compactJSON(u.UserMeta))
	}
}

func cmdUpdate(env *cliEnv, args []string) error {
	// After "--": the arguments of --restart.
	var restartArgs []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, restartArgs = args[:i], args[i+1:]
	}
	f, cfg, err := parseClientArgs(env, "update", args)
	if err != nil {
		return err
	}
	if err := f.handOff.check(restartArgs); err != nil {
		return err
	}
	bar := newUpdateBar(env.stderr)
	cfg.OnProgress = bar.update
	c, err := newClient(env, cfg)
	if err != nil {
		return err
	}
	if err := c.Recover(); err != nil {
		return err
	}
	if f.handOff.waitPID != 0 {
		return updateHandOff(env, f, c, bar, restartArgs) // handoffcmd.go
	}
	from := c.Current()
	u, err := c.Update(env.ctx) // bounded by --timeout (ClientConfig.Timeout)
	bar.finish()
	if err != nil {
		return err
	}
	if f.json {
		r := resultJSON{App: f.app, Installed: from.String(), Update: installedOf(u), MirrorErrors: mirrorErrors(c)}
		if u != nil {
			r.Installed, r.Previous = u.Version.String(), from.String()
		}
		return printResult(env.stdout, r)
	}
	if u == nil {
		fmt.Fprintf(env.stdout, "%s %s is up to date\n", f.app, from)
		return nil
	}
	if u.Rollback {
		fmt.Fprintf(env.stdout, "rolled back %s %s -> %s (%s): %s\n", f.app, from, u.Version, howInstalled(u.Result), u.RollbackReason)
		return nil
	}
	fmt.Fprintf(env.stdout, "updated %s %s -> %s (%s)\n", f.app, from, u.Version, howInstalled(u.Result))
	return nil
}

func compactJSON(raw []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
