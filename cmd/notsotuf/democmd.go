package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/notsotuf/notsotuf"
	"github.com/spf13/afero"
)

func init() {
	register(command{
		name:    "demo",
		args:    "[--dir DIR] [--keep]",
		summary: "publish two releases of a sample app, serve them on loopback, install and update by patch",
		run:     runDemo,
	})
}

// runDemo is the whole product in one run, on an embedded default: a
// repository in a temporary directory, a sample app, a loopback server and
// a client that installs 1.0.0 and then updates it to 1.1.0 by patch.
func runDemo(env *cliEnv, args []string) (err error) {
	fl := newFlags(env, "demo", "[--dir DIR] [--keep]")
	dir := fl.String("dir", "", "work in `DIR` (must be empty or missing) instead of a temporary directory")
	keep := fl.Bool("keep", false, "keep the work directory afterwards")
	if pos, err := parseFlags(fl, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("demo takes no arguments")
	}
	work := *dir
	if work == "" {
		if work, err = os.MkdirTemp("", "notsotuf-demo-"); err != nil {
			return err
		}
	} else if entries, err := os.ReadDir(work); err == nil && len(entries) > 0 {
		return fmt.Errorf("demo directory %s is not empty", work)
	}
	if work, err = filepath.Abs(work); err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(work)
	}
	say := func(format string, a ...any) { fmt.Fprintf(env.stdout, format+"\n", a...) }
	start := time.Now()
	fsys := afero.NewOsFs()

	// 1. A signed repository, as `notsotuf init --app demoapp` makes it.
	cfg := notsotuf.DefaultConfig("demoapp")
	cfg.RepoDir = filepath.Join(work, "repository")
	cfg.KeysDir = filepath.Join(work, "keystore")
	repo := &notsotuf.Repository{Fs: fsys, Config: cfg, Now: env.now, Logger: env.logger}
	if err := repo.Init(); err != nil {
		return err
	}
	say("1. created a TUF repository for app %q in %s (keys in %s)", cfg.AppName, cfg.RepoDir, cfg.KeysDir)

	// 2. Release 1.0.0 of a sample app.
	bundle1, bundle2 := filepath.Join(work, "build", "demoapp-1.0.0"), filepath.Join(work, "build", "demoapp-1.1.0")
	if err := writeSampleApp(bundle1, "1.0.0"); err != nil {
		return err
	}
	res1, err := repo.Add(env.ctx, notsotuf.AddOptions{Version: "1.0.0", BundleDir: bundle1,
		UserMeta: []byte(`{"changes":["first release"]}`)})
	if err != nil {
		return err
	}
	say("2. published 1.0.0: %s (%s)", res1.Archive.Name, size(res1.Archive.Length))

	// 3. Serve the repository on loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(cfg.RepoDir)), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	say("3. serving the repository at %s/metadata and %s/targets", base, base)

	// 4. The client installs 1.0.0 (nothing installed yet: the full archive).
	root, err := os.ReadFile(filepath.Join(cfg.RepoDir, "metadata", "1.root.json"))
	if err != nil {
		return err
	}
	installDir, cacheDir := filepath.Join(work, "installed", "demoapp"), filepath.Join(work, "cache")
	update := func(current string) (*notsotuf.Update, error) {
		bar := newProgressBar(env.stderr, "update", false)
		defer bar.finish()
		c, err := notsotuf.NewClient(notsotuf.ClientConfig{
			App: cfg.AppName, CurrentVersion: current, InstallDir: installDir, CacheDir: cacheDir,
			MetadataURL: base + "/metadata", TargetsURL: base + "/targets", TrustedRoot: root,
			Fs: fsys, Now: env.now, Logger: env.logger, Progress: bar.update,
		})
		if err != nil {
			return nil, err
		}
		return c.Update(env.ctx)
	}
	u, err := update("0")
	if err != nil {
		return err
	}
	if u == nil {
		return errors.New("the client found no release to install")
	}
	say("4. installed %s into %s: %s", u.Version, installDir, describeInstalled(u))

	// 5. Release 1.1.0: a few changes, a new file, a removed one.
	if err := writeSampleApp(bundle2, "1.1.0"); err != nil {
		return err
	}
	res2, err := repo.Add(env.ctx, notsotuf.AddOptions{Version: "1.1.0", BundleDir: bundle2,
		UserMeta: []byte(`{"changes":["new plugin","faster startup"]}`)})
	if err != nil {
		return err
	}
	if res2.Patch == nil {
		return errors.New("1.1.0 was published without a patch")
	}
	say("5. published 1.1.0: %s (%s) and %s from %s (%s, %.1f%% of the archive)",
		res2.Archive.Name, size(res2.Archive.Length), res2.Patch.Name, res2.From, size(res2.Patch.Length),
		100*float64(res2.Patch.Length)/float64(res2.Archive.Length))

	// 6. The client updates 1.0.0 to 1.1.0 by patch.
	t0 := time.Now()
	u, err = update("1.0.0")
	if err != nil {
		return err
	}
	if u == nil || u.Version.String() != "1.1.0" {
		return fmt.Errorf("the client did not update to 1.1.0 (got %v)", u)
	}
	say("6. updated 1.0.0 -> %s in %v: %s; release notes: %s", u.Version, time.Since(t0).Round(time.Millisecond), describeInstalled(u), u.UserMeta)

	// 7. Check the installed tree against the bundle, and a second update.
	if err := sameTree(bundle2, installDir); err != nil {
		return fmt.Errorf("installed tree differs from the 1.1.0 bundle: %w", err)
	}
	if u, err = update("1.1.0"); err != nil {
		return err
	} else if u != nil {
		return fmt.Errorf("a second update installed %s again", u.Version)
	}
	say("7. the installed tree equals the 1.1.0 bundle, and a second check finds nothing to do")
	if *keep {
		say("done in %v; everything is kept in %s", time.Since(start).Round(time.Millisecond), work)
	} else {
		say("done in %v; removed %s (run with --keep to look at it)", time.Since(start).Round(time.Millisecond), work)
	}
	return nil
}

// describeInstalled says what an update did (its Result, not its plan).
func describeInstalled(u *notsotuf.Update) string {
	r := u.Result
	if r == nil {
		return "installed meanwhile by another run"
	}
	var names []string
	for _, f := range r.Files {
		names = append(names, f.Name)
	}
	how := "patch chain"
	if r.Full {
		how = "full archive"
	}
	s := fmt.Sprintf("%s %s, %s downloaded", how, strings.Join(names, " + "), size(r.Downloaded))
	switch {
	case r.Fallback != "":
		s += " (the patches failed: " + r.Fallback + ")"
	case r.Full && u.Plan.Reason != "":
		s += " (" + u.Plan.Reason + ")"
	}
	return s
}

func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// writeSampleApp writes a small application bundle: an executable and a
// library of binary-looking content (the same seed in every version, with
// a few edits in 1.1.0), documentation, a symlink and a file that 1.1.0
// drops while adding another.
func writeSampleApp(dir, version string) error {
	v2 := version != "1.0.0"
	blob := func(seed uint64, n int) []byte {
		r := rand.New(rand.NewPCG(seed, 7))
		b := make([]byte, n)
		for i := 0; i < n; i += 8 {
			x := r.Uint64()
			for j := 0; j < 8 && i+j < n; j++ {
				b[i+j] = byte(x >> (8 * j))
			}
		}
		return b
	}
	exe := blob(1, 3<<20)
	lib := blob(2, 1<<20)
	if v2 {
		copy(exe[100000:], []byte("version 1.1.0: faster startup"))
		copy(exe[2000000:], blob(3, 20000)) // a recompiled function
		lib = append(lib[:500000], append(blob(4, 3000), lib[500000:]...)...)
	}
	files := map[string][]byte{
		"demoapp":                  exe,
		"lib/libdemo.so":           lib,
		"share/doc/README.txt":     []byte("demoapp " + version + "\nA sample application updated by notsotuf.\n"),
		"share/config/config.json": []byte(`{"theme": "light"}` + "\n"),
		"VERSION":                  []byte(version + "\n"),
	}
	if v2 {
		files["plugins/extra.py"] = []byte("def hello():\n    return 'new in 1.1.0'\n")
	} else {
		files["share/doc/legacy.txt"] = []byte("dropped in 1.1.0\n")
	}
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if name == "demoapp" {
			mode = 0o755
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			return err
		}
	}
	if runtime.GOOS != "windows" {
		return os.Symlink("libdemo.so", filepath.Join(dir, "lib", "libdemo.so.1"))
	}
	return nil
}

// sameTree reports the first difference between two directory trees
// (names, kinds, contents, link targets, executable bits).
func sameTree(want, got string) error {
	list := func(root string) (map[string]fs.FileInfo, error) {
		m := map[string]fs.FileInfo{}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := os.Lstat(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			m[filepath.ToSlash(rel)] = info
			return nil
		})
		return m, err
	}
	w, err := list(want)
	if err != nil {
		return err
	}
	g, err := list(got)
	if err != nil {
		return err
	}
	for name := range g {
		if _, ok := w[name]; !ok {
			return fmt.Errorf("%s: not in the bundle", name)
		}
	}
	for name, wi := range w {
		gi, ok := g[name]
		if !ok {
			return fmt.Errorf("%s: missing", name)
		}
		if wi.Mode().Type() != gi.Mode().Type() {
			return fmt.Errorf("%s: %v, want %v", name, gi.Mode().Type(), wi.Mode().Type())
		}
		if runtime.GOOS != "windows" && wi.Mode().Perm()&0o111 != gi.Mode().Perm()&0o111 {
			return fmt.Errorf("%s: mode %v, want %v", name, gi.Mode(), wi.Mode())
		}
		switch {
		case wi.Mode().IsRegular():
			a, err := os.ReadFile(filepath.Join(want, name))
			if err != nil {
				return err
			}
			b, err := os.ReadFile(filepath.Join(got, name))
			if err != nil {
				return err
			}
			if !bytes.Equal(a, b) {
				return fmt.Errorf("%s: content differs", name)
			}
		case wi.Mode()&fs.ModeSymlink != 0:
			a, _ := os.Readlink(filepath.Join(want, name))
			b, _ := os.Readlink(filepath.Join(got, name))
			if a != b {
				return fmt.Errorf("%s: links to %q, want %q", name, b, a)
			}
		}
	}
	return nil
}
