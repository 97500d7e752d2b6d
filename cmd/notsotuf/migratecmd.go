package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/notsotuf/notsotuf"
	"github.com/spf13/afero"
)

func init() {
	register(command{"import-tufup", "[--config .tufup-repo-config] [flags]", "take over a tufup repository and its keys", cmdImportTufup})
	register(command{"deploy", deployArgs, "publish the repository to a directory or an S3 bucket (targets first, timestamp last)", cmdDeploy})
}

func cmdImportTufup(env *cliEnv, args []string) error {
	const usage = "[--config .tufup-repo-config] [flags]"
	fs := newFlags(env, "import-tufup", usage)
	tufupCfg := fs.String("config", notsotuf.TufupConfigFile, "tufup's configuration `file` (its repo_dir and keys_dir are relative to the file's directory)")
	repoDir := fs.String("repo-dir", "", "the tufup repository `dir` (default: repo_dir from tufup's config)")
	keysDir := fs.String("keys-dir", "", "tufup's key store `dir` (default: keys_dir from tufup's config)")
	newKeys := fs.String("new-keys-dir", "", "`dir` where keys are written in notsotuf's format when some are encrypted (default: the key store's path + \"-notsotuf\")")
	out := fs.String("out", notsotuf.ConfigFile, "notsotuf configuration `file` to write")
	force := fs.Bool("force", false, "overwrite an existing notsotuf configuration file")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("import-tufup takes no arguments (got %q)", pos[0])
	}
	if ok, err := afero.Exists(env.fs, *out); err != nil {
		return err
	} else if ok && !*force {
		return &hinted{fmt.Errorf("config %s already exists", *out), "pass --force to replace it, or --out FILE to write another file"}
	}
	res, err := notsotuf.ImportTufup(env.fs, notsotuf.TufupImport{
		Config: *tufupCfg, RepoDir: *repoDir, KeysDir: *keysDir, NewKeysDir: *newKeys,
		Passphrase: passphrase(env),
	})
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(env.stderr, "notsotuf: warning: %s\n", w)
	}
	cfg := res.Config
	keysNote := "tufup's key store, used as it is"
	if len(res.Written) > 0 {
		keysNote = fmt.Sprintf("converted from tufup's %s, which is unchanged", res.TufupKeysDir)
	}
	fmt.Fprintf(env.stdout, "imported tufup repository of %s\n  repository: %s\n  keys:       %s (%s)\n", cfg.AppName, cfg.RepoDir, cfg.KeysDir, keysNote)
	for _, k := range res.Keys {
		id := k.ID
		if len(id) > 12 {
			id = id[:12]
		}
		if id == "" {
			id = "-"
		}
		state := "private key here"
		switch {
		case k.Converted != "":
			state = "private key re-encrypted in notsotuf's format"
		case !k.Private:
			state = "public key only (offline)"
		}
		fmt.Fprintf(env.stdout, "  key %-10s %-12s %-18s %s\n", k.Name, id, strings.Join(k.Roles, ","), state)
	}
	if err := cfg.Save(env.fs, *out); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "wrote %s\n", *out)
	repo := env.repository(cfg)
	rep, err := repo.Verify(env.ctx)
	if rep != nil {
		for _, w := range rep.Warnings {
			fmt.Fprintf(env.stderr, "notsotuf: warning: %s\n", w)
		}
	}
	if err != nil {
		return &hinted{err, fmt.Sprintf("%s was written; fix the repository (expired metadata: `notsotuf refresh` or `notsotuf sign ROLE --expires DAYS`), then run `notsotuf verify`", *out)}
	}
	fmt.Fprintf(env.stdout, "ok: %s verified (root versions 1-%d, %d target files, %d patches applied)\n",
		cfg.RepoDir, rep.RootVersions, rep.Targets, rep.Patches)
	fmt.Fprintf(env.stdout, "next: `notsotuf add VERSION BUNDLE_DIR` publishes into this repository; tufup clients keep updating from it\n")
	return nil
}

const deployArgs = "DEST|s3://BUCKET[/PREFIX] [--repo-dir DIR] [--dry-run] [--endpoint URL] [--region R] [--path-style] [--cache-control-short DUR]"

func cmdDeploy(env *cliEnv, args []string) error {
	fs := newFlags(env, "deploy", deployArgs)
	cfgPath := configFlag(fs)
	repoDir := fs.String("repo-dir", "", "repository `dir` to deploy (default: from the config)")
	quiet := fs.Bool("q", false, "print only the summary line")
	dryRun := fs.Bool("dry-run", false, "say what would be written and removed, change nothing")
	s3 := s3Flags(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("deploy needs DEST, the directory the web server serves, or s3://BUCKET[/PREFIX]")
	}
	var repo *notsotuf.Repository
	if *repoDir != "" {
		cfg := notsotuf.DefaultConfig("")
		if c, err := notsotuf.LoadConfig(env.fs, *cfgPath); err == nil {
			cfg = c
		}
		cfg.RepoDir = *repoDir
		repo = env.repository(cfg)
	} else if repo, err = openRepo(env, *cfgPath); err != nil {
		return err
	}
	src, dst := repo.Config.RepoDir, pos[0]
	toS3 := strings.HasPrefix(dst, "s3://")
	if !toS3 {
		if set := s3.setFlags(fs); set != "" {
			return usagef("--%s is for s3:// destinations; %s is a directory (its web server sets the headers: docs/hosting.md)", set, dst)
		}
		if a, b := absPath(src), absPath(dst); a == b || strings.HasPrefix(b, a+string(filepath.Separator)) {
			return fmt.Errorf("deploy: destination %s is the repository or inside it", dst)
		}
	}
	// Status finishes a change that a crash interrupted, and tells what
	// clients would refuse: metadata below its signature threshold (a
	// partial signing in progress) is never deployed.
	consistent := true
	if st, err := repo.Status(); err == nil {
		consistent = st.ConsistentSnapshot
		for _, r := range st.Roles {
			if r.Signatures < r.Threshold {
				return &hinted{fmt.Errorf("deploy: %s metadata has %d of %d signatures; clients would refuse it", r.Role, r.Signatures, r.Threshold),
					fmt.Sprintf("finish signing with `notsotuf sign %s --partial` where the other keys are, then deploy", r.Role)}
			}
			if r.Expired {
				fmt.Fprintf(env.stderr, "notsotuf: warning: %s metadata expired %s; clients will refuse it: run `notsotuf refresh`\n", r.Role, r.Expires.Format(time.RFC3339))
			}
		}
	}
	opts := notsotuf.DeployOptions{DryRun: *dryRun}
	var dest notsotuf.DeployDestination = &notsotuf.DirDestination{Fs: env.fs, Dir: dst}
	done, todo := "copied", "copy" // what happens to a changed file
	if toS3 {
		if opts.CacheControlShort, err = s3.cacheControl(fs); err != nil {
			return err
		}
		d, err := s3.destination(env, dst)
		if err != nil {
			return err
		}
		if !consistent {
			fmt.Fprintf(env.stderr, "notsotuf: warning: %s has no consistent snapshots: behind a cache, or while a deploy is cut short, clients can see metadata of two versions and refuse it; run `notsotuf sign root --consistent-snapshot` (docs/hosting.md)\n", src)
		}
		dest, done, todo = d, "uploaded", "upload"
	}
	bar := newProgressBar(env.stderr, "deploy", *quiet || *dryRun)
	opts.Progress = bar.update
	start := time.Now()
	rep, err := notsotuf.DeployTo(env.ctx, env.fs, src, dest, opts)
	bar.finish()
	if rep != nil && !*quiet {
		for _, name := range rep.Copied {
			if *dryRun {
				fmt.Fprintf(env.stdout, "would %s %s\n", todo, name)
			} else {
				fmt.Fprintf(env.stdout, "%-7s %s\n", done, name) // "copied  x", "uploaded x"
			}
		}
		for _, name := range rep.Removed {
			if *dryRun {
				fmt.Fprintf(env.stdout, "would remove %s\n", name)
			} else {
				fmt.Fprintf(env.stdout, "removed %s\n", name)
			}
		}
	}
	if err != nil {
		return err
	}
	switch {
	case *dryRun:
		fmt.Fprintf(env.stdout, "dry run: %d to %s (%s), %d unchanged, %d to remove; nothing was changed\n",
			len(rep.Copied), todo, size(rep.Bytes), rep.Unchanged, len(rep.Removed))
	case toS3:
		fmt.Fprintf(env.stdout, "deployed %s to %s: %d uploaded (%s), %d unchanged, %d removed in %.1fs\n",
			src, dst, len(rep.Copied), size(rep.Bytes), rep.Unchanged, len(rep.Removed), time.Since(start).Seconds())
	default:
		fmt.Fprintf(env.stdout, "deployed %s to %s: %d copied, %d unchanged, %d removed\n", src, dst, len(rep.Copied), rep.Unchanged, len(rep.Removed))
	}
	return nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return filepath.Clean(p)
}
