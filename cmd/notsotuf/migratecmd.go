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
	register(command{"deploy", "DEST [--repo-dir DIR]", "copy the repository to DEST (targets first, timestamp last)", cmdDeploy})
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

func cmdDeploy(env *cliEnv, args []string) error {
	fs := newFlags(env, "deploy", "DEST [--repo-dir DIR]")
	cfgPath := configFlag(fs)
	repoDir := fs.String("repo-dir", "", "repository `dir` to deploy (default: from the config)")
	quiet := fs.Bool("q", false, "print only the summary line")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("deploy needs DEST, the directory the web server serves")
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
	if a, b := absPath(src), absPath(dst); a == b || strings.HasPrefix(b, a+string(filepath.Separator)) {
		return fmt.Errorf("deploy: destination %s is the repository or inside it", dst)
	}
	// Status finishes a change that a crash interrupted, and tells what
	// clients would refuse: metadata below its signature threshold (a
	// partial signing in progress) is never deployed.
	if st, err := repo.Status(); err == nil {
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
	rep, err := notsotuf.Deploy(env.fs, src, env.fs, dst)
	if rep != nil && !*quiet {
		for _, name := range rep.Copied {
			fmt.Fprintf(env.stdout, "copied  %s\n", name)
		}
		for _, name := range rep.Removed {
			fmt.Fprintf(env.stdout, "removed %s\n", name)
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "deployed %s to %s: %d copied, %d unchanged, %d removed\n", src, dst, len(rep.Copied), rep.Unchanged, len(rep.Removed))
	return nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return filepath.Clean(p)
}
