package main

// Attack scenarios: testdata/script/attack_*.txtar, run by TestScripts. Each script builds
// a repository with the notsotuf CLI, serves it from this test process
// through a server the script can turn hostile, plays the attacker (replays,
// tampers, mixes metadata, stalls) and checks that the client refuses with
// a clear error while the install directory and the trusted metadata stay
// as they were.
//
// Commands added for the scripts:
//
//	serve-repo DIR            serve DIR (metadata/, targets/) over loopback HTTP; sets $REPO_URL
//	mirror SRC DST            make DST an exact copy of the tree SRC (scripts serve a
//	                          mirror of the repository and play the attacker on it, so
//	                          the publisher's own repository stays genuine)
//	server-mode MODE [GLOB]   how to answer for files whose base name matches GLOB (default *):
//	                          normal | endless (the file if it exists, then bytes without end) |
//	                          trickle (headers, then one byte per 200 ms) | hang (no answer) |
//	                          missing (404)
//	requests                  print the paths requested since the last call
//	client [flags] CMD [CLI flags]
//	                          run `notsotuf check|update` (the CLI) on the script's app:
//	                          install dir $WORK/install, cache $WORK/cache, trusted root
//	                          $WORK/trusted-root.json, clock $NOTSOTUF_NOW, then the
//	                          CLI flags given; flags: -full, -v, -platform NAME,
//	                          -timeout D (the same through the library, in-process,
//	                          with a context deadline)
//	save-state NAME           record the install dir and the trusted metadata
//	unchanged NAME [PART]     fail unless both (or PART: install or metadata) are as
//	                          recorded by save-state NAME
//	tamper FILE               flip one byte in the middle of FILE
//	append FILE TEXT          append TEXT to FILE
//	replace FILE OLD NEW      replace the first OLD in FILE by NEW (fails if absent)
//	mkapp DIR SEED            write a small application tree derived from SEED
//
// The scripts live in their own directory because TestScripts (main_test.go)
// runs every script of testdata/script without these commands.

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/notsotuf/notsotuf"
	"github.com/rogpeppe/go-internal/testscript"
)

type attackKey struct{}

// attackServer serves a repository directory with a hostile mode.
type attackServer struct {
	mu       sync.Mutex
	dir      string
	mode     string
	glob     string
	requests []string
	srv      *httptest.Server
}

func server(ts *testscript.TestScript) *attackServer {
	return ts.Value(attackKey{}).(*attackServer)
}

func cmdServeRepo(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: serve-repo DIR")
	}
	s := server(ts)
	if s.srv != nil {
		ts.Fatalf("serve-repo: already serving")
	}
	s.dir = ts.MkAbs(args[0])
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	ts.Defer(func() {
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
	ts.Setenv("REPO_URL", s.srv.URL)
}

func (s *attackServer) serve(w http.ResponseWriter, r *http.Request) {
	p := path.Clean("/" + r.URL.Path)
	s.mu.Lock()
	s.requests = append(s.requests, p)
	mode := s.mode
	if ok, _ := path.Match(s.glob, path.Base(p)); !ok {
		mode = "normal"
	}
	s.mu.Unlock()
	file := filepath.Join(s.dir, filepath.FromSlash(p))
	switch mode {
	case "missing":
		http.NotFound(w, r)
		return
	case "hang":
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Minute):
		}
		return
	case "trickle":
		w.WriteHeader(http.StatusOK)
		for {
			if _, err := w.Write([]byte{'{'}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	data, err := os.ReadFile(file)
	if err != nil && mode != "endless" {
		http.NotFound(w, r)
		return
	}
	if mode == "endless" {
		// The real file, then more than any signed length or cap: 1 GiB.
		w.Write(data)
		junk := make([]byte, 32<<10)
		for i := range junk {
			junk[i] = ' '
		}
		for sent := 0; sent < 1<<30; sent += len(junk) {
			if _, err := w.Write(junk); err != nil {
				return
			}
		}
		return
	}
	http.ServeContent(w, r, path.Base(p), time.Time{}, strings.NewReader(string(data)))
}

func cmdServerMode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: server-mode normal|endless|trickle|hang|missing [GLOB]")
	}
	switch args[0] {
	case "normal", "endless", "trickle", "hang", "missing":
	default:
		ts.Fatalf("server-mode: unknown mode %q", args[0])
	}
	s := server(ts)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode, s.glob = args[0], "*"
	if len(args) == 2 {
		if _, err := path.Match(args[1], ""); err != nil {
			ts.Fatalf("server-mode: %v", err)
		}
		s.glob = args[1]
	}
}

func cmdRequests(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: requests")
	}
	s := server(ts)
	s.mu.Lock()
	reqs := s.requests
	s.requests = nil
	s.mu.Unlock()
	for _, r := range reqs {
		fmt.Fprintln(ts.Stdout(), r)
	}
}

// cmdClient runs the client as an application would meet it: `notsotuf
// check|update` (the real CLI, in a child process) with the script's
// install dir, cache, trusted root, repository URL and clock. With
// -timeout the same steps run in-process through the library with a
// context deadline (the caller's, not ClientConfig.Timeout), printing what
// the CLI prints.
func cmdClient(ts *testscript.TestScript, neg bool, args []string) {
	fl := flag.NewFlagSet("client", flag.ContinueOnError)
	timeout := fl.Duration("timeout", 0, "context deadline (runs the library in-process)")
	full := fl.Bool("full", false, "force the full archive")
	verbose := fl.Bool("v", false, "log to stderr")
	platform := fl.String("platform", "", "the client's platform (--platform)")
	if err := fl.Parse(args); err != nil || fl.NArg() < 1 || (fl.Arg(0) != "check" && fl.Arg(0) != "update") ||
		(fl.NArg() > 1 && *timeout != 0) {
		ts.Fatalf("usage: client [-timeout D] [-full] [-v] [-platform NAME] check|update [CLI flags]")
	}
	work := ts.Getenv("WORK")
	cmd := fl.Arg(0)
	if *timeout == 0 {
		cli := []string{cmd, "--app", "demo", "--current", "0.0",
			"--install-dir", filepath.Join(work, "install"), "--cache-dir", filepath.Join(work, "cache"),
			"--metadata-url", ts.Getenv("REPO_URL") + "/metadata", "--root", filepath.Join(work, "trusted-root.json")}
		if *full {
			cli = append(cli, "--full")
		}
		if *platform != "" {
			cli = append(cli, "--platform", *platform)
		}
		if *verbose {
			cli = append([]string{"-v"}, cli...)
		}
		cli = append(cli, fl.Args()[1:]...)
		err := ts.Exec("notsotuf", cli...)
		if err != nil && !neg {
			ts.Fatalf("notsotuf %s: %v", cmd, err)
		}
		if err == nil && neg {
			ts.Fatalf("notsotuf %s succeeded", cmd)
		}
		return
	}

	root, err := os.ReadFile(filepath.Join(work, "trusted-root.json"))
	ts.Check(err)
	cfg := notsotuf.ClientConfig{
		App: "demo", CurrentVersion: "0.0",
		InstallDir:  filepath.Join(work, "install"),
		CacheDir:    filepath.Join(work, "cache"),
		MetadataURL: ts.Getenv("REPO_URL") + "/metadata",
		TargetsURL:  ts.Getenv("REPO_URL") + "/targets",
		TrustedRoot: root,
		ForceFull:   *full,
		Platform:    *platform,
	}
	if s := ts.Getenv("NOTSOTUF_NOW"); s != "" {
		now, err := time.Parse(time.RFC3339, s)
		ts.Check(err)
		cfg.Now = func() time.Time { return now }
	}
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(ts.Stderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()
	err = runClient(ctx, cfg, cmd, ts.Stdout())
	// The deadline is honoured: no hang beyond it (plus slack for cleanup
	// on a loaded machine).
	if took := time.Since(start); took > *timeout+5*time.Second {
		ts.Fatalf("client took %v with a %v deadline", took.Round(time.Millisecond), *timeout)
	}
	if err != nil {
		for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
			fmt.Fprintf(ts.Stderr(), "notsotuf: error: %s\n", line)
		}
		if hint := notsotuf.ErrorHint(err); hint != "" {
			fmt.Fprintf(ts.Stderr(), "notsotuf: hint: %s\n", hint)
		}
		if !neg {
			ts.Fatalf("client %s failed", cmd)
		}
		return
	}
	if neg {
		ts.Fatalf("client %s succeeded", cmd)
	}
}

// runClient is check or update through the library, printing the first
// line the CLI prints.
func runClient(ctx context.Context, cfg notsotuf.ClientConfig, cmd string, stdout io.Writer) error {
	c, err := notsotuf.NewClient(cfg)
	if err != nil {
		return err
	}
	from := c.Current()
	var u *notsotuf.Update
	if cmd == "check" {
		u, err = c.Check(ctx)
	} else {
		if err := c.Recover(); err != nil {
			return err
		}
		u, err = c.Update(ctx)
	}
	switch {
	case err != nil:
		return err
	case u == nil:
		fmt.Fprintf(stdout, "%s %s is up to date\n", cfg.App, from)
	case cmd == "check":
		fmt.Fprintf(stdout, "%s %s is available (installed: %s)\n", cfg.App, u.Version, from)
	case u.Result.Full:
		fmt.Fprintf(stdout, "updated %s %s -> %s (full archive)\n", cfg.App, from, u.Version)
	default:
		fmt.Fprintf(stdout, "updated %s %s -> %s (%d patch(es))\n", cfg.App, from, u.Version, len(u.Result.Files))
	}
	return nil
}

// stateOf describes the install dir (every entry with its type, mode and
// content hash) and the trusted metadata (every file of cache/metadata).
func stateOf(ts *testscript.TestScript) string {
	work := ts.Getenv("WORK")
	var lines []string
	for _, d := range []string{"install", filepath.Join("cache", "metadata")} {
		root := filepath.Join(work, d)
		err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				lines = append(lines, d+": missing")
				return nil
			}
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(work, p)
			rel = filepath.ToSlash(rel)
			info, err := e.Info()
			if err != nil {
				return err
			}
			switch {
			case e.Type()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				lines = append(lines, fmt.Sprintf("%s -> %s", rel, target))
			case e.IsDir():
				lines = append(lines, rel+"/")
			default:
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				lines = append(lines, fmt.Sprintf("%s %v %x", rel, info.Mode().Perm(), sha256.Sum256(data)))
			}
			return nil
		})
		ts.Check(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

func cmdSaveState(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: save-state NAME")
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(stateOf(ts)), 0o644))
}

func cmdUnchanged(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: unchanged NAME [install|metadata]")
	}
	part := func(state string) string { return state }
	if len(args) == 2 {
		prefix := map[string]string{"install": "install", "metadata": "cache/metadata"}[args[1]]
		if prefix == "" {
			ts.Fatalf("unchanged: part %q: want install or metadata", args[1])
		}
		part = func(state string) string {
			var keep []string
			for _, l := range strings.SplitAfter(state, "\n") {
				if strings.HasPrefix(l, prefix) {
					keep = append(keep, l)
				}
			}
			return strings.Join(keep, "")
		}
	}
	want := part(ts.ReadFile(args[0]))
	got := part(stateOf(ts))
	switch {
	case neg && got == want:
		ts.Fatalf("unchanged since save-state %s", args[0])
	case !neg && got != want:
		ts.Fatalf("changed since save-state %s:\nnow:\n%swas:\n%s", args[0], got, want)
	}
}

func cmdMirror(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: mirror SRC DST")
	}
	ts.Check(os.RemoveAll(ts.MkAbs(args[1])))
	cmdCopytree(ts, false, args)
}

func cmdTamper(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: tamper FILE")
	}
	p := ts.MkAbs(args[0])
	data, err := os.ReadFile(p)
	ts.Check(err)
	if len(data) == 0 {
		ts.Fatalf("tamper: %s is empty", p)
	}
	data[len(data)/2] ^= 0x01
	ts.Check(os.WriteFile(p, data, 0o644))
}

func cmdAppend(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: append FILE TEXT")
	}
	f, err := os.OpenFile(ts.MkAbs(args[0]), os.O_WRONLY|os.O_APPEND, 0)
	ts.Check(err)
	_, err = f.WriteString(args[1])
	ts.Check(errors.Join(err, f.Close()))
}

func cmdReplace(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: replace FILE OLD NEW")
	}
	p := ts.MkAbs(args[0])
	data, err := os.ReadFile(p)
	ts.Check(err)
	if !strings.Contains(string(data), args[1]) {
		ts.Fatalf("replace: %q not in %s", args[1], p)
	}
	ts.Check(os.WriteFile(p, []byte(strings.Replace(string(data), args[1], args[2], 1)), 0o644))
}

func cmdMkapp(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: mkapp DIR SEED")
	}
	dir := ts.MkAbs(args[0])
	var seed uint64
	_, err := fmt.Sscan(args[1], &seed)
	ts.Check(err)
	ts.Check(os.MkdirAll(filepath.Join(dir, "lib"), 0o755))
	ts.Check(os.WriteFile(filepath.Join(dir, "app"), fmt.Appendf(nil, "#!/bin/sh\necho version %d\n", seed), 0o755))
	data := make([]byte, 48<<10)
	rng := rand.New(rand.NewPCG(1, 2)) // the same base in every version
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	rng = rand.New(rand.NewPCG(seed, seed))
	for range 8 {
		data[rng.IntN(len(data))] = byte(seed)
	}
	ts.Check(os.WriteFile(filepath.Join(dir, "lib", "data.bin"), data, 0o644))
	ts.Check(os.WriteFile(filepath.Join(dir, "README"), fmt.Appendf(nil, "release %d\n", seed), 0o644))
}
