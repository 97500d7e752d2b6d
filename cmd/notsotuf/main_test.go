package main

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	// The scenarios rehearse expiry on the client side too (freeze attacks).
	clientClockFromEnv = true
	testscript.Main(m, map[string]func(){
		"notsotuf": func() {
			os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
		},
	})
}

// TestScripts runs the scenarios in testdata/script at the module root:
// repository commands (repo_*, deploy, import_tufup*), full
// publish-then-update cycles through loopback HTTP (client_*), and the
// attacks a client must refuse (attack_*, see attack_test.go).
// Set NOTSOTUF_UPDATE_SCRIPTS=1 to rewrite cmp'd golden files in place.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("..", "..", "testdata", "script"),
		RequireExplicitExec: true,
		UpdateScripts:       os.Getenv("NOTSOTUF_UPDATE_SCRIPTS") == "1",
		Setup: func(env *testscript.Env) error {
			// A fixed clock, so expiry dates in outputs are stable; the
			// repository commands and the client share it, and attack
			// scripts move it forward to play a freeze attack.
			env.Setenv("NOTSOTUF_NOW", "2026-01-01T00:00:00Z")
			env.Setenv("GOOS_TEST", runtime.GOOS)
			env.Setenv("TUFUP_FIXTURE", tufupFixture())
			env.Values[attackKey{}] = &attackServer{mode: "normal", glob: "*"}
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "symlinks":
				return runtime.GOOS != "windows", nil
			case "go":
				_, err := exec.LookPath("go")
				return err == nil, nil
			case "tufup":
				_, err := os.Stat(filepath.Join(tufupFixture(), "metadata", "root.json"))
				return err == nil, nil
			case "versitygw": // s3_test.go
				return versitygwCondition()
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// main_test.go
			"mkbundle": cmdMkbundle,
			"dirhash":  cmdDirhash,
			"corrupt":  cmdCorrupt,
			"copytree": cmdCopytree,
			"freeport": cmdFreeport,
			"waithttp": cmdWaithttp,
			// clientcmd_test.go
			"httpserve": cmdHTTPServe,
			"httpmode":  cmdHTTPMode,
			"httplog":   cmdHTTPLog,
			"untar":     cmdUntar,
			// attack_test.go
			"serve-repo":  cmdServeRepo,
			"mirror":      cmdMirror,
			"server-mode": cmdServerMode,
			"requests":    cmdRequests,
			"client":      cmdClient,
			"save-state":  cmdSaveState,
			"unchanged":   cmdUnchanged,
			"tamper":      cmdTamper,
			"append":      cmdAppend,
			"replace":     cmdReplace,
			"mkapp":       cmdMkapp,
			// goexe_test.go
			"goexe": cmdGoexe,
			// s3_test.go
			"s3server": cmdS3Server,
			// mirror_test.go
			"mirrorserve": cmdMirrorServe,
			"mirrormode":  cmdMirrorMode,
			"mirrorlog":   cmdMirrorLog,
			"proxyserve":  cmdProxyServe,
			"proxylog":    cmdProxyLog,
			// mkfifo_*_test.go
			"mkfifo": cmdMkfifo,
			// releasecmd_test.go
			"clients": cmdClients,
			// handoff_*_test.go
			"spawn":       cmdSpawn,
			"endproc":     cmdEndproc,
			"waitfile":    cmdWaitfile,
			"waithelper":  cmdWaithelper,
			"setnow":      cmdSetnow,
			"handoffkill": cmdHandoffkill,
			"pause":       cmdPause,
		},
	})
}

// mkbundle DIR SEED [SIZE]: makes an application bundle whose content is
// derived from SEED: an executable, a SIZE-byte data file (default 64 KiB,
// mostly shared between seeds so patches are small), a config file, an empty
// directory and (where possible) a relative symlink.
func cmdMkbundle(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: mkbundle DIR SEED [SIZE]")
	}
	dir := ts.MkAbs(args[0])
	seed, err := strconv.ParseUint(args[1], 10, 64)
	ts.Check(err)
	size := 64 << 10
	if len(args) == 3 {
		size, err = strconv.Atoi(args[2])
		ts.Check(err)
	}
	must := func(err error) { ts.Check(err) }
	must(os.MkdirAll(filepath.Join(dir, "lib"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "share", "empty"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "app"), fmt.Appendf(nil, "#!/bin/sh\necho version %d\n", seed), 0o755))
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2)) // shared base content
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	rng = rand.New(rand.NewPCG(seed, seed)) // a few changed bytes per seed
	for i := 0; i < 16 && size > 0; i++ {
		data[rng.IntN(size)] = byte(seed)
	}
	must(os.WriteFile(filepath.Join(dir, "lib", "libapp.so.1"), data, 0o644))
	must(os.WriteFile(filepath.Join(dir, "share", "config.json"), fmt.Appendf(nil, "{\"build\": %d}\n", seed), 0o644))
	if runtime.GOOS != "windows" {
		must(os.Symlink("libapp.so.1", filepath.Join(dir, "lib", "libapp.so")))
	}
}

// dirhash DIR: prints one line per file under DIR (path, mode, sha256) and
// a final digest, so scripts can check that a failed command changed
// nothing (`dirhash repo; cp stdout before; ...; dirhash repo; cmp stdout before`).
func cmdDirhash(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: dirhash DIR")
	}
	root := ts.MkAbs(args[0])
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			lines = append(lines, filepath.ToSlash(rel)+"/")
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("%s %x", filepath.ToSlash(rel), sha256.Sum256(data)))
		return nil
	})
	ts.Check(err)
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(ts.Stdout(), l)
	}
}

// corrupt FILE [OFFSET]: flips one byte of FILE (default: the middle).
func cmdCorrupt(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: corrupt FILE [OFFSET]")
	}
	p := ts.MkAbs(args[0])
	data, err := os.ReadFile(p)
	ts.Check(err)
	if len(data) == 0 {
		ts.Fatalf("corrupt: %s is empty", p)
	}
	off := len(data) / 2
	if len(args) == 2 {
		off, err = strconv.Atoi(args[1])
		ts.Check(err)
	}
	data[off] ^= 0xff
	ts.Check(os.WriteFile(p, data, 0o644))
}

// copytree SRC DST: copies a directory tree (files made writable).
func cmdCopytree(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: copytree SRC DST")
	}
	src, dst := ts.MkAbs(args[0]), ts.MkAbs(args[1])
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, data, 0o644)
	})
	ts.Check(err)
}

// tufupFixture returns the absolute path of the repository made by tufup
// (testdata/tufup-demoapp at the module root), or $NOTSOTUF_TUFUP_FIXTURE.
func tufupFixture() string {
	if f := os.Getenv("NOTSOTUF_TUFUP_FIXTURE"); f != "" {
		return f
	}
	abs, err := filepath.Abs(filepath.Join("..", "..", "testdata", "tufup-demoapp"))
	if err != nil {
		return ""
	}
	return abs
}

// freeport VAR: sets $VAR to a TCP port free on 127.0.0.1 right now.
func cmdFreeport(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeport VAR")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	port := ln.Addr().(*net.TCPAddr).Port
	ts.Check(ln.Close())
	ts.Setenv(args[0], strconv.Itoa(port))
}

// waithttp URL: waits (up to 20 s) until GET URL answers 200, for a server
// started in the background.
func cmdWaithttp(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waithttp URL")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(args[0])
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s: %v", args[0], err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
