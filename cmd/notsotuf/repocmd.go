package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/notsotuf/notsotuf"
	"github.com/spf13/afero"
)

func init() {
	register(command{"init", "--app NAME [flags]", "create keys and an empty signed repository", cmdInit})
	register(command{"add", "VERSION BUNDLE_DIR [--required] [--meta JSON] [--skip-patch] [--partial] [--rollout PERCENT] [--platform NAME] [--patch-format NAME]", "publish a release (archive + patch)", cmdAdd})
	register(command{"remove", "VERSION [--platform NAME]", "delete a release, repairing the patch chain (see also yank)", cmdRemove})
	register(command{"keys", "create|list|add|revoke|replace ...", "manage signing keys (root changes are signed by old and new keys)", cmdKeys})
	register(command{"sign", "ROLE [--expires DAYS] [--partial] [--consistent-snapshot]", "add signatures to a role, or re-sign it with a new expiry", cmdSign})
	register(command{"refresh", "[--within DURATION]", "re-sign metadata that expires soon (for cron)", cmdRefresh})
	register(command{"status", "[--json] [--check]", "show versions, expiry, keys and releases", cmdStatus})
	register(command{"verify", "[--repo-dir DIR] [--app NAME]", "check the whole repository as a client would", cmdVerify})
	register(command{"serve", "[--addr 127.0.0.1:8080] [--repo-dir DIR]", "serve the repository over HTTP (stop with Ctrl-C)", cmdServe})
}

// passphrase finds the passphrase of an encrypted key: NOTSOTUF_PASSPHRASE_<KEY>
// (the key name upper-cased, other characters as '_'), then
// NOTSOTUF_PASSPHRASE, then the file named by NOTSOTUF_PASSPHRASE_FILE
// (first line). It never prompts.
func passphrase(env *cliEnv) func(name string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if p := env.getenv(notsotuf.PassphraseEnvVar(name)); p != "" {
			return []byte(p), nil
		}
		if p := env.getenv("NOTSOTUF_PASSPHRASE"); p != "" {
			return []byte(p), nil
		}
		if f := env.getenv("NOTSOTUF_PASSPHRASE_FILE"); f != "" {
			data, err := afero.ReadFile(env.fs, f)
			if err != nil {
				return nil, fmt.Errorf("NOTSOTUF_PASSPHRASE_FILE: %w", err)
			}
			line, _, _ := strings.Cut(string(data), "\n")
			line = strings.TrimRight(line, "\r")
			if line == "" {
				return nil, fmt.Errorf("NOTSOTUF_PASSPHRASE_FILE %s: empty passphrase", f)
			}
			return []byte(line), nil
		}
		return nil, nil
	}
}

func (env *cliEnv) repository(cfg notsotuf.Config) *notsotuf.Repository {
	return &notsotuf.Repository{
		Fs:         env.fs,
		Config:     cfg,
		Now:        env.now,
		Logger:     env.logger,
		Passphrase: passphrase(env),
	}
}

// openRepo loads the configuration file and returns the repository.
func openRepo(env *cliEnv, configPath string) (*notsotuf.Repository, error) {
	cfg, err := notsotuf.LoadConfig(env.fs, configPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &hinted{err, fmt.Sprintf("run `notsotuf init --app NAME` first, or run notsotuf in the directory holding %s (or pass --config)", configPath)}
		}
		return nil, err
	}
	return env.repository(cfg), nil
}

// hinted attaches a hint to an error from the command line layer.
type hinted struct {
	err  error
	hint string
}

func (h *hinted) Error() string { return h.err.Error() }
func (h *hinted) Unwrap() error { return h.err }
func (h *hinted) Hint() string  { return h.hint }

func configFlag(fs interface {
	StringVar(*string, string, string, string)
}) *string {
	p := new(string)
	fs.StringVar(p, "config", notsotuf.ConfigFile, "configuration `file` written by init")
	return p
}

// roleInts parses "root=2,targets=1".
func roleInts(flagName, s string, into map[string]int) error {
	if s == "" {
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		role, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(val)
		if !ok || err != nil || n < 1 {
			return usagef("--%s %q: want ROLE=N[,ROLE=N...] with N >= 1", flagName, part)
		}
		switch role {
		case notsotuf.RoleRoot, notsotuf.RoleTargets, notsotuf.RoleSnapshot, notsotuf.RoleTimestamp:
		default:
			return usagef("--%s %q: role must be root, targets, snapshot or timestamp", flagName, part)
		}
		into[role] = n
	}
	return nil
}

func cmdInit(env *cliEnv, args []string) error {
	fs := newFlags(env, "init", "--app NAME [flags]")
	cfgPath := configFlag(fs)
	app := fs.String("app", "", "application `name` (letters, digits, '_', '-'); required")
	repoDir := fs.String("repo-dir", "repository", "repository `dir` (metadata/ and targets/ below it)")
	keysDir := fs.String("keys-dir", "keystore", "key store `dir`")
	encrypt := fs.String("encrypt", "", "encrypt the keys of these `roles` (comma-separated, or \"all\"); passphrase from NOTSOTUF_PASSPHRASE[_<KEY>] or NOTSOTUF_PASSPHRASE_FILE")
	thresholds := fs.String("threshold", "", "signatures needed per role, e.g. `root=2` (default 1 each)")
	nkeys := fs.String("keys", "", "number of keys per role, e.g. `root=3` (default: the threshold); extra keys are named ROLE-2, ROLE-3, ...")
	expires := fs.String("expires", "", "days a new version stays valid, e.g. `timestamp=2,targets=90` (default root=365,targets=30,snapshot=7,timestamp=1)")
	patchFormat := fs.String("patch-format", "", "`format` of the patches add makes: bsdiff (default; tufup clients apply it too) or compact (smaller for executables; notsotuf clients only)")
	consistent := fs.Bool("consistent-snapshot", false, "TUF consistent snapshots: versioned metadata and hash-prefixed target files, so only timestamp.json may be cached briefly (for buckets and CDNs: docs/hosting.md)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("init takes no arguments (got %q)", pos[0])
	}
	if *app == "" {
		return usagef("init: --app NAME is required")
	}
	if err := notsotuf.ValidAppName(*app); err != nil {
		return err
	}
	if ok, _ := afero.Exists(env.fs, *cfgPath); ok {
		return &hinted{fmt.Errorf("config %s already exists", *cfgPath), "this directory already has a repository; use `notsotuf status`"}
	}
	cfg := notsotuf.DefaultConfig(*app)
	cfg.RepoDir, cfg.KeysDir = *repoDir, *keysDir
	if *patchFormat != "" {
		if _, err := notsotuf.LookupPatchFormat(*patchFormat); err != nil {
			return usagef("--patch-format: %v", err)
		}
		cfg.PatchFormat = *patchFormat
	}
	cfg.ConsistentSnapshot = *consistent
	if err := roleInts("threshold", *thresholds, cfg.Thresholds); err != nil {
		return err
	}
	if err := roleInts("expires", *expires, cfg.ExpirationDays); err != nil {
		return err
	}
	counts := map[string]int{}
	if err := roleInts("keys", *nkeys, counts); err != nil {
		return err
	}
	for _, role := range notsotuf.Roles {
		n := max(counts[role], cfg.Thresholds[role])
		names := []string{role}
		for i := 2; i <= n; i++ {
			names = append(names, fmt.Sprintf("%s-%d", role, i))
		}
		cfg.KeyMap[role] = names
	}
	if *encrypt != "" {
		for _, role := range strings.Split(*encrypt, ",") {
			role = strings.TrimSpace(role)
			if role == "all" {
				for _, r := range notsotuf.Roles {
					cfg.EncryptedKeys = append(cfg.EncryptedKeys, cfg.KeyMap[r]...)
				}
				continue
			}
			names, ok := cfg.KeyMap[role]
			if !ok {
				return usagef("--encrypt %q: want roles (root, targets, snapshot, timestamp) or all", role)
			}
			cfg.EncryptedKeys = append(cfg.EncryptedKeys, names...)
		}
	}
	repo := env.repository(cfg)
	if err := repo.Init(); err != nil {
		return err
	}
	if err := repo.Config.Save(env.fs, *cfgPath); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "initialized repository for %s\n  metadata: %s\n  targets:  %s\n  keys:     %s\n  config:   %s\n",
		cfg.AppName, filepath.Join(cfg.RepoDir, "metadata"), filepath.Join(cfg.RepoDir, "targets"), cfg.KeysDir, *cfgPath)
	if cfg.ConsistentSnapshot {
		fmt.Fprintln(env.stdout, "consistent snapshots: on (metadata N.targets.json, N.snapshot.json; targets stored as <sha256>.<name>)")
	}
	fmt.Fprintf(env.stdout, "keep the root key (%s) offline; the snapshot and timestamp keys are the online keys `notsotuf refresh` uses\n",
		filepath.Join(cfg.KeysDir, cfg.KeyMap[notsotuf.RoleRoot][0]))
	return nil
}

func cmdAdd(env *cliEnv, args []string) error {
	fs := newFlags(env, "add", "VERSION BUNDLE_DIR [--required] [--meta JSON] [--skip-patch] [--partial] [--rollout PERCENT] [--platform NAME] [--patch-format NAME]")
	cfgPath := configFlag(fs)
	required := fs.Bool("required", false, "clients must install this release before any newer one")
	meta := fs.String("meta", "", "custom `JSON` published with the release (e.g. a changelog; integers and strings, no floats)")
	skipPatch := fs.Bool("skip-patch", false, "publish the archive only (clients download it in full)")
	partial := fs.Bool("partial", false, "sign targets with the keys here even if fewer than its threshold; others complete it with 'notsotuf sign targets'")
	rollout := fs.String("rollout", "", "offer the release to `PERCENT` of installs first (a staged rollout; widen it with 'notsotuf rollout')")
	platform := platformFlag(fs, "publish the build of platform `NAME` (e.g. linux-amd64, windows-amd64, darwin-arm64), with its own patch chain")
	patchFormat := fs.String("patch-format", "", "make the patch in this `format` and save it in the config for later adds: bsdiff (default; tufup clients apply it too) or compact (smaller for executables; notsotuf clients only)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("add needs VERSION and BUNDLE_DIR")
	}
	repo, err := openRepo(env, *cfgPath)
	if err != nil {
		return err
	}
	if *patchFormat != "" {
		if _, err := notsotuf.LookupPatchFormat(*patchFormat); err != nil {
			return usagef("--patch-format: %v", err)
		}
	}
	opts := notsotuf.AddOptions{Version: pos[0], BundleDir: pos[1], Required: *required, SkipPatch: *skipPatch, Partial: *partial, Platform: *platform, PatchFormat: *patchFormat}
	if *rollout != "" {
		p, err := parsePercent("--rollout", *rollout)
		if err != nil {
			return err
		}
		opts.Rollout = &p
	}
	if *meta != "" {
		opts.UserMeta = json.RawMessage(*meta)
	}
	bar := newPhaseBar(env.stderr)
	repo.Progress = bar.update
	res, err := repo.Add(env.ctx, opts)
	bar.finish()
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "added %s %s\n  archive %s (%d bytes, tar %d bytes)\n", repo.Config.AppName, res.Version, res.Archive.Name, res.Archive.Length, res.Archive.TarSize)
	if res.Patch != nil {
		format := ""
		if res.PatchFormat != notsotuf.PatchFormatBSDiff {
			format = ", format " + res.PatchFormat
		}
		fmt.Fprintf(env.stdout, "  patch   %s (%d bytes, from %s%s)\n", res.Patch.Name, res.Patch.Length, res.From, format)
	}
	if *patchFormat != "" && *patchFormat != repo.Config.PatchFormat {
		repo.Config.PatchFormat = *patchFormat
		if err := repo.Config.Save(env.fs, *cfgPath); err != nil {
			return fmt.Errorf("the release was added, but saving --patch-format in %s failed: %w", *cfgPath, err)
		}
		fmt.Fprintf(env.stdout, "patch format %s saved in %s: later adds use it\n", *patchFormat, *cfgPath)
	}
	if f, err := notsotuf.LookupPatchFormat(res.PatchFormat); res.Patch != nil && err == nil && !f.Tufup {
		fmt.Fprintf(env.stdout, "the %s patch is for notsotuf clients: tufup clients cannot apply it\n", res.PatchFormat)
	}
	printRepatched(env.stdout, res.Repatched)
	if opts.Rollout != nil && *opts.Rollout < 100 {
		fmt.Fprintf(env.stdout, "  staged rollout to %d%% of installs: widen it with `notsotuf rollout %s PERCENT`\n", *opts.Rollout, res.Version)
	}
	if res.Signatures < res.Threshold {
		fmt.Fprintf(env.stdout, "targets has %d of %d signatures: clients will not see this release until `notsotuf sign targets` is run where the other keys are\n", res.Signatures, res.Threshold)
	}
	warn(env, res.Warnings)
	return nil
}

func cmdRemove(env *cliEnv, args []string) error {
	fs := newFlags(env, "remove", "VERSION [--platform NAME]")
	cfgPath := configFlag(fs)
	platform := platformFlag(fs, "remove the build of platform `NAME` only (default: every build of VERSION)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("remove needs VERSION")
	}
	repo, err := openRepo(env, *cfgPath)
	if err != nil {
		return err
	}
	bar := newPhaseBar(env.stderr)
	repo.Progress = bar.update
	res, err := repo.RemoveBuild(env.ctx, pos[0], *platform)
	bar.finish()
	if err != nil {
		return err
	}
	if *platform != "" {
		fmt.Fprintf(env.stdout, "removed %s %s (%s)\n", repo.Config.AppName, pos[0], *platform)
	} else {
		fmt.Fprintf(env.stdout, "removed %s %s\n", repo.Config.AppName, pos[0])
	}
	printRepatched(env.stdout, res.Repatched)
	return nil
}

// keysSub is a subcommand of `notsotuf keys`.
type keysSub struct {
	name, args, summary string
	nargs               int
	encrypt, threshold  bool // the flags it takes besides --config
}

// keysSubcommands are the subcommands of `notsotuf keys`, in the order of
// its help.
var keysSubcommands = []keysSub{
	{"create", "NAME [--encrypt]", "create a key in the key store (it gets a role with `keys add`)", 1, true, false},
	{"list", "", "list each role's keys, and whether their private keys are here", 0, false, false},
	{"add", "ROLE NAME [--threshold N] [--encrypt]", "give a key (created if new) to a role: a new root version", 2, true, true},
	{"revoke", "ROLE NAME|KEYID [--threshold N]", "take a key away from a role: a new root version", 2, false, true},
	{"replace", "ROLE OLD NEW [--encrypt]", "swap a key of a role for another (created if new) in one new root version", 3, true, false},
}

// keysUsage prints the help of `notsotuf keys`.
func keysUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: notsotuf keys SUBCOMMAND [arguments] [flags]\n\nManage signing keys; root changes are signed by the old and the new root keys.\n\nsubcommands:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, sc := range keysSubcommands {
		fmt.Fprintf(tw, "  keys %s %s\t%s\n", sc.name, sc.args, sc.summary)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nRun `notsotuf keys SUBCOMMAND -h` for its flags.")
}

func cmdKeys(env *cliEnv, args []string) error {
	if len(args) == 0 {
		return usagef("keys needs a subcommand: create, list, add, revoke or replace")
	}
	if isHelp(args[0]) {
		keysUsage(env.stdout)
		return flag.ErrHelp
	}
	sub := args[0]
	i := slices.IndexFunc(keysSubcommands, func(sc keysSub) bool { return sc.name == sub })
	if i < 0 {
		return usagef("keys %s: unknown subcommand; want create, list, add, revoke or replace", sub)
	}
	sc := keysSubcommands[i]
	fs := newFlagsSummary(env, "keys "+sub, sc.args, sc.summary)
	cfgPath := configFlag(fs)
	encrypt, threshold := new(bool), new(int)
	if sc.encrypt {
		fs.BoolVar(encrypt, "encrypt", false, "encrypt a new private key (passphrase from NOTSOTUF_PASSPHRASE[_<KEY>] or NOTSOTUF_PASSPHRASE_FILE)")
	}
	if sc.threshold {
		fs.IntVar(threshold, "threshold", 0, "set the role's threshold to `N`")
	}
	subUsage := &usageError{name: "keys " + sub, args: sc.args}
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			subUsage.msg = ue.msg
			return subUsage
		}
		return err
	}
	if len(pos) != sc.nargs {
		subUsage.msg = fmt.Sprintf("keys %s: want %s, got %d", sub, plural(sc.nargs, "argument"), len(pos))
		return subUsage
	}
	repo, err := openRepo(env, *cfgPath)
	if err != nil {
		return err
	}
	save := func() error { return repo.Config.Save(env.fs, *cfgPath) }
	switch sub {
	case "create":
		id, err := repo.CreateKey(pos[0], *encrypt)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "created key %s (id %s) in %s\n", pos[0], id, repo.Config.KeysDir)
		return save()
	case "list":
		st, err := repo.Status()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROLE\tTHRESHOLD\tKEY ID\tNAME\tPRIVATE KEY HERE")
		for _, r := range st.Roles {
			for _, k := range r.Keys {
				name := k.Name
				if name == "" {
					name = "-"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%v\n", r.Role, r.Threshold, k.ID, name, k.Private)
			}
		}
		return tw.Flush()
	case "add":
		if err := repo.AddKey(pos[0], pos[1], *threshold, *encrypt); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "key %s added to role %s\n", pos[1], pos[0])
		return save()
	case "revoke":
		if err := repo.RevokeKey(pos[0], pos[1], *threshold); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "key %s revoked from role %s\n", pos[1], pos[0])
		return save()
	default: // replace
		if err := repo.ReplaceKey(pos[0], pos[1], pos[2], *encrypt); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "key %s replaced by %s in role %s\n", pos[1], pos[2], pos[0])
		return save()
	}
}

func cmdSign(env *cliEnv, args []string) error {
	fs := newFlags(env, "sign", "ROLE [--expires DAYS] [--partial] [--consistent-snapshot]")
	cfgPath := configFlag(fs)
	days := fs.Int("expires", 0, "publish a new version expiring in `DAYS` days (default: add signatures to the current version)")
	partial := fs.Bool("partial", false, "write the metadata even if it has fewer signatures than the threshold")
	consistent := fs.Bool("consistent-snapshot", false, "with root: a new root version that turns on TUF consistent snapshots (target files get hash-prefixed names; clients follow at their next update)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("sign needs ROLE")
	}
	repo, err := openRepo(env, *cfgPath)
	if err != nil {
		return err
	}
	res, err := repo.Sign(notsotuf.SignOptions{Role: pos[0], ExpiresDays: *days, Partial: *partial, ConsistentSnapshot: *consistent})
	if err != nil {
		return err
	}
	if *consistent {
		if err := repo.Config.Save(env.fs, *cfgPath); err != nil {
			return err
		}
		fmt.Fprintln(env.stdout, "consistent snapshots: on; deploy the repository (`notsotuf deploy`) for clients to see them")
	}
	fmt.Fprintf(env.stdout, "%s version %d: %d of %d signatures; wrote %s\n", res.Role, res.Version, res.Signatures, res.Threshold, strings.Join(res.Written, ", "))
	if res.Signatures < res.Threshold {
		fmt.Fprintf(env.stdout, "threshold not met yet: run `notsotuf sign %s --partial` where the other keys are\n", res.Role)
	}
	warn(env, res.Warnings)
	return nil
}

// plural writes n and the noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// warn prints a library's warnings on stderr.
func warn(env *cliEnv, warnings []string) {
	for _, w := range warnings {
		fmt.Fprintf(env.stderr, "notsotuf: warning: %s\n", w)
	}
}

func cmdRefresh(env *cliEnv, args []string) error {
	fs := newFlags(env, "refresh", "[--within DURATION]")
	cfgPath := configFlag(fs)
	within := fs.Duration("within", 0, "re-sign roles expiring within this `duration` (e.g. 12h; default: half of each role's lifetime, at most 720h)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("refresh takes no arguments")
	}
	if *within < 0 {
		return usagef("--within %v: want a positive duration, e.g. 12h (or none for each role's default)", *within)
	}
	repo, err := openRepo(env, *cfgPath)
	if err != nil {
		return err
	}
	res, err := repo.Refresh(*within)
	if res != nil {
		if len(res.Resigned) == 0 {
			fmt.Fprintln(env.stdout, "nothing expires soon")
		}
		for i, role := range res.Resigned {
			fmt.Fprintf(env.stdout, "re-signed %s, expires %s\n", role, res.Expires[i])
		}
	}
	return err
}

func cmdStatus(env *cliEnv, args []string) error {
	fs := newFlags(env, "status", "[--json] [--check]")
	cfgPath := configFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	check := fs.Bool("check", false, "exit with status 1 when there are warnings (expiring metadata, missing signatures): for monitoring")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("status takes no arguments")
	}
	repo, err := openRepo(env, *cfgPath)
	if err != nil {
		return err
	}
	st, err := repo.Status()
	if err != nil {
		return err
	}
	// Warnings are part of the normal output (the NOTE column, notes below
	// the tables); --check also writes them to stderr and fails, for cron
	// and monitoring.
	warned := func() error {
		if !*check || len(st.Warnings) == 0 {
			return nil
		}
		for _, w := range st.Warnings {
			fmt.Fprintf(env.stderr, "notsotuf: warning: %s\n", w)
		}
		return fmt.Errorf("status --check: %s", plural(len(st.Warnings), "warning"))
	}
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return err
		}
		return warned()
	}
	fmt.Fprintf(env.stdout, "app %s, repository %s\n", st.App, repo.Config.RepoDir)
	if st.TufupReadable {
		fmt.Fprintf(env.stdout, "patch format %s (notsotuf and tufup clients)\n", st.PatchFormat)
	} else {
		fmt.Fprintf(env.stdout, "patch format %s: notsotuf clients only, tufup clients cannot apply these patches\n", st.PatchFormat)
	}
	if st.ConsistentSnapshot {
		fmt.Fprintln(env.stdout, "consistent snapshots: on")
	}
	fmt.Fprintln(env.stdout)
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tVERSION\tEXPIRES\tIN\tSIGNATURES\tNOTE")
	inTable := map[string]bool{}
	for _, r := range st.Roles {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d (need %d)\t%s\n", r.Role, r.Version, r.Expires.Format(time.RFC3339),
			timeLeft(r.ExpiresIn), r.Signatures, r.Threshold, r.Warning)
		inTable[r.Role+": "+r.Warning] = true
	}
	tw.Flush()
	fmt.Fprintln(env.stdout)
	if len(st.Releases) == 0 {
		fmt.Fprintln(env.stdout, "no releases yet: `notsotuf add VERSION BUNDLE_DIR`")
	} else {
		tw = tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		// The PLATFORM, FORMAT and STATE columns appear once a release
		// uses them (FORMAT: a patch format other than bsdiff).
		platforms, states, formats := false, false, !st.TufupReadable
		for _, r := range st.Releases {
			platforms = platforms || r.Platform != ""
			states = states || r.Yanked || r.Rollout < 100
		}
		head := "VERSION"
		if platforms {
			head += "\tPLATFORM"
		}
		head += "\tARCHIVE\tSIZE\tPATCH\tPATCH SIZE"
		if formats {
			head += "\tFORMAT"
		}
		head += "\tREQUIRED"
		if states {
			head += "\tSTATE"
		}
		fmt.Fprintln(tw, head)
		for _, r := range st.Releases {
			patch, psize, pformat := "-", "-", "-"
			if r.Patch != "" {
				patch, psize, pformat = r.Patch, strconv.FormatInt(r.PatchSize, 10), r.PatchFormat
			}
			row := r.Version
			if platforms {
				row += "\t" + cmp.Or(r.Platform, "all")
			}
			row += fmt.Sprintf("\t%s\t%d\t%s\t%s", r.Archive, r.ArchiveSize, patch, psize)
			if formats {
				row += "\t" + pformat
			}
			row += fmt.Sprintf("\t%v", r.Required)
			if states {
				row += "\t" + releaseState(r)
			}
			fmt.Fprintln(tw, row)
		}
		tw.Flush()
	}
	for _, w := range st.Warnings {
		if !inTable[w] {
			fmt.Fprintf(env.stdout, "note: %s\n", w)
		}
	}
	return warned()
}

// releaseState describes a release's yank and rollout for status.
func releaseState(r notsotuf.ReleaseStatus) string {
	switch {
	case r.Yanked && r.YankReason != "":
		return "yanked: " + r.YankReason
	case r.Yanked:
		return "yanked"
	case r.Rollout == 0:
		return "rollout halted (0%)"
	case r.Rollout < 100:
		return fmt.Sprintf("rollout %d%%", r.Rollout)
	}
	return "live"
}

// timeLeft writes seconds left for people, to the minute: "6d23h",
// "11h0m", or "31d0h ago" once past.
func timeLeft(sec int64) string {
	ago := ""
	if sec < 0 {
		sec, ago = -sec, " ago"
	}
	m := sec / 60
	if d := m / (24 * 60); d > 0 {
		return fmt.Sprintf("%dd%dh%s", d, m/60%24, ago)
	}
	return fmt.Sprintf("%dh%dm%s", m/60, m%60, ago)
}

func cmdVerify(env *cliEnv, args []string) error {
	fs := newFlags(env, "verify", "[--repo-dir DIR] [--app NAME]")
	cfgPath := configFlag(fs)
	repoDir := fs.String("repo-dir", "", "verify this repository `dir` instead of the configured one (e.g. a tufup repository)")
	app := fs.String("app", "", "application `name` (default: from the config, or from the target names)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("verify takes no arguments")
	}
	var repo *notsotuf.Repository
	if *repoDir != "" {
		cfg := notsotuf.DefaultConfig(*app)
		if c, err := notsotuf.LoadConfig(env.fs, *cfgPath); err == nil && *app == "" {
			cfg.AppName = c.AppName
		}
		cfg.RepoDir = *repoDir
		if fi, err := env.fs.Stat(filepath.Join(*repoDir, "metadata")); err != nil || !fi.IsDir() {
			return &hinted{fmt.Errorf("--repo-dir %s: no metadata directory there", *repoDir),
				"give the directory that holds metadata/ and targets/ (the repository, not its metadata/)"}
		}
		repo = env.repository(cfg)
	} else {
		if repo, err = openRepo(env, *cfgPath); err != nil {
			return err
		}
		if *app != "" {
			repo.Config.AppName = *app
		}
	}
	bar := newPhaseBar(env.stderr)
	repo.Progress = bar.update
	rep, err := repo.Verify(env.ctx)
	bar.finish()
	if rep != nil {
		for _, w := range rep.Warnings {
			fmt.Fprintf(env.stderr, "notsotuf: warning: %s\n", w)
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "ok: %s verified (root versions 1-%d, %d target files, %d patches applied)\n",
		repo.Config.RepoDir, rep.RootVersions, rep.Targets, rep.Patches)
	return nil
}

func cmdServe(env *cliEnv, args []string) error {
	fs := newFlags(env, "serve", "[--addr 127.0.0.1:8080] [--repo-dir DIR]")
	cfgPath := configFlag(fs)
	addr := fs.String("addr", "127.0.0.1:8080", "listen `address` (loopback by default; the repository is public data, but serve it from a real web server in production)")
	repoDir := fs.String("repo-dir", "", "repository `dir` (default: from the config)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("serve takes no arguments")
	}
	dir := *repoDir
	if dir == "" {
		repo, err := openRepo(env, *cfgPath)
		if err != nil {
			return err
		}
		dir = repo.Config.RepoDir
	}
	if fi, err := env.fs.Stat(filepath.Join(dir, "metadata")); err != nil || !fi.IsDir() {
		return fmt.Errorf("repository %s: no metadata directory", dir)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(env.stdout, "serving %s\n  metadata URL: %s/metadata/\n  targets URL:  %s/targets/\npress Ctrl-C to stop\n", dir, base, base)
	srv := &http.Server{
		Handler:           http.FileServer(afero.NewHttpFs(afero.NewReadOnlyFs(afero.NewBasePathFs(env.fs, dir))).Dir("/")),
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-env.ctx.Done():
		ctx, cancel := contextWithTimeout(5 * time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			return err
		}
		fmt.Fprintln(env.stdout, "stopped")
		return nil
	}
}
