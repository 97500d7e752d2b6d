package notsotuf

// A real crash of a whole update (install_kill_test.go does the same for
// the installer alone): a separate process (this test binary, re-executed) runs
// Client.Update on a real temporary directory and is killed with SIGKILL at
// a random instant. A new client in this process then recovers and must see
// the old version complete or the new version complete, and its next update
// must succeed.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// Environment of the crash helper process.
const (
	crashEnv        = "NOTSOTUF_CRASH_HELPER" // "1" in the helper process
	crashEnvMeta    = "NOTSOTUF_CRASH_METADATA_URL"
	crashEnvTargets = "NOTSOTUF_CRASH_TARGETS_URL"
	crashEnvRoot    = "NOTSOTUF_CRASH_ROOT" // path of the trusted root.json
	crashEnvDir     = "NOTSOTUF_CRASH_DIR"  // holds app/ and cache/
	crashEnvFull    = "NOTSOTUF_CRASH_FULL" // "1": force the full archive
	crashEnvNow     = "NOTSOTUF_CRASH_NOW"  // the client's clock (RFC 3339)
	crashReady      = "ready"               // printed just before Update starts
	crashDone       = "done"                // printed when Update returned nil
	crashIterations = 16
)

// crashConfig is the client configuration shared by the helper process and
// the recovering client.
func crashConfig(t testing.TB, metaURL, targetsURL, rootPath, dir string, full bool, now time.Time) ClientConfig {
	root, err := os.ReadFile(rootPath)
	if err != nil {
		t.Fatal(err)
	}
	return ClientConfig{
		App: "app", CurrentVersion: "1.0",
		InstallDir: filepath.Join(dir, "app"), CacheDir: filepath.Join(dir, "cache"),
		MetadataURL: metaURL, TargetsURL: targetsURL, TrustedRoot: root,
		Fs: afero.NewOsFs(), Now: func() time.Time { return now }, ForceFull: full,
	}
}

// TestCrashHelper is the process that gets killed. It does nothing unless
// started by TestCrashKill.
func TestCrashHelper(t *testing.T) {
	if os.Getenv(crashEnv) != "1" {
		t.Skip("helper process of TestCrashKill")
	}
	now, err := time.Parse(time.RFC3339, os.Getenv(crashEnvNow))
	if err != nil {
		t.Fatal(err)
	}
	cfg := crashConfig(t, os.Getenv(crashEnvMeta), os.Getenv(crashEnvTargets), os.Getenv(crashEnvRoot),
		os.Getenv(crashEnvDir), os.Getenv(crashEnvFull) == "1", now)
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(crashReady)
	if _, err := c.Update(context.Background()); err != nil {
		t.Fatal(err)
	}
	fmt.Println(crashDone)
}

// crashRelease is a release with enough files that installing it takes a
// while (many small files, each written and synced).
func crashRelease(n int) map[string]string {
	files := releaseFiles(n)
	for i := range 40 {
		files[fmt.Sprintf("data/%02d/file-%03d.txt", i%10, i)] = strings.Repeat(fmt.Sprintf("file %d of release %d\n", i, n), 50+i)
	}
	return files
}

func TestCrashKill(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("SIGKILL of a child process: Unix only")
	}
	if os.Getenv(crashEnv) == "1" {
		t.Skip("already in the helper process")
	}
	iterations := crashIterations
	if testing.Short() {
		iterations = 4
	}
	repo := newTestRepo(t, false)
	v1 := buildRelease(t, "1.0", crashRelease(1))
	v2 := buildRelease(t, "2.0", crashRelease(2))
	repo.publishRelease("app", v1, nil, false, "")
	repo.publishRelease("app", v2, makePatch(t, v1, v2), false, "")

	fsys := afero.NewOsFs()
	work := t.TempDir()
	rootPath := filepath.Join(work, "root.json")
	if err := os.WriteFile(rootPath, repo.rootBytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	writeTree(t, fsys, filepath.Join(work, "ref1"), v1.files)
	writeTree(t, fsys, filepath.Join(work, "ref2"), v2.files)
	want1 := treeManifest(t, fsys, filepath.Join(work, "ref1"))
	want2 := treeManifest(t, fsys, filepath.Join(work, "ref2"))

	// run starts the helper on dir; kill < 0 lets it finish. It returns how
	// long Update ran (from "ready" to the end) and whether it completed.
	run := func(dir string, full bool, kill time.Duration) (time.Duration, bool) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(),
			crashEnv+"=1",
			crashEnvMeta+"="+repo.metadataURL(),
			crashEnvTargets+"="+repo.targetsURL(),
			crashEnvRoot+"="+rootPath,
			crashEnvDir+"="+dir,
			crashEnvFull+"="+map[bool]string{true: "1", false: "0"}[full],
			crashEnvNow+"="+testNow.Format(time.RFC3339),
		)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 100)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		var log []string
		var start time.Time
		done := false
		for line := range lines {
			log = append(log, line)
			switch line {
			case crashReady:
				start = time.Now()
				if kill >= 0 {
					time.AfterFunc(kill, func() { cmd.Process.Signal(os.Kill) })
				}
			case crashDone:
				done = true
			}
		}
		err = cmd.Wait()
		took := time.Since(start)
		if kill < 0 && (err != nil || !done) {
			t.Fatalf("helper failed: %v\n%s", err, strings.Join(log, "\n"))
		}
		if start.IsZero() {
			t.Fatalf("helper never started the update: %v\n%s", err, strings.Join(log, "\n"))
		}
		return took, done
	}

	// Calibrate: how long an uninterrupted update takes, patch and full.
	span := map[bool]time.Duration{}
	for _, full := range []bool{false, true} {
		dir := filepath.Join(work, fmt.Sprintf("calibrate-%v", full))
		writeTree(t, fsys, filepath.Join(dir, "app"), v1.files)
		took, _ := run(dir, full, -1)
		diffManifests(t, treeManifest(t, fsys, filepath.Join(dir, "app")), want2)
		span[full] = took
	}
	t.Logf("an uninterrupted update takes %v (patch), %v (full archive)", span[false], span[true])

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	counts := map[string]int{}
	for i := range iterations {
		full := i%2 == 1
		dir := filepath.Join(work, "run-"+strconv.Itoa(i))
		writeTree(t, fsys, filepath.Join(dir, "app"), v1.files)
		kill := time.Duration(rng.Int64N(int64(span[full])*11/10 + 1))
		_, completed := run(dir, full, kill)

		// A new client recovers: old complete or new complete.
		if pending, _ := filepath.Glob(filepath.Join(dir, ".app.notsotuf-*")); len(pending) > 0 {
			counts["interrupted install"]++
		}
		cfg := crashConfig(t, repo.metadataURL(), repo.targetsURL(), rootPath, dir, false, testNow)
		c, err := NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Recover(); err != nil {
			t.Fatalf("run %d (killed after %v): recover: %v", i, kill, err)
		}
		got := treeManifest(t, fsys, cfg.InstallDir)
		state := ""
		switch {
		case maps.Equal(got, want1):
			state = "old"
		case maps.Equal(got, want2):
			state = "new"
		default:
			t.Errorf("run %d (full=%v, killed after %v): install dir is neither version:", i, full, kill)
			diffManifests(t, got, want2)
			continue
		}
		if completed && state != "new" {
			t.Errorf("run %d: update reported done but the old version is installed", i)
		}
		counts[state]++
		// The install manifest, if any, describes the tree that is there:
		// only a completed install of 2.0 writes one (1.0 was copied by hand).
		mpath := filepath.Join(dir, ".app"+suffixManifest)
		h, err := readManifest(fsys, mpath, func(manifestHeader, installedEntry) error { return nil })
		switch {
		case errors.Is(err, errNoManifest):
			if state == "new" {
				t.Errorf("run %d: new version installed without its install manifest", i)
			}
		case err != nil:
			t.Errorf("run %d: %v", i, err)
		case h.Version != "2.0" || state != "new":
			t.Errorf("run %d: install manifest of %s with the %s version installed", i, h.Version, state)
		default:
			if ok, why, err := checkTreeManifest(fsys, cfg.InstallDir, mpath, "app"); !ok {
				t.Errorf("run %d: install manifest does not match the tree: %s %v", i, why, err)
			}
		}
		leftovers, _ := filepath.Glob(filepath.Join(dir, ".app.notsotuf-*"))
		for _, l := range leftovers {
			if l != filepath.Join(dir, ".app"+suffixLock) && l != mpath {
				t.Errorf("run %d: recover left %v", i, leftovers)
				break
			}
		}

		// The next update succeeds and installs the new version.
		if _, err := c.Update(context.Background()); err != nil {
			t.Fatalf("run %d (full=%v, killed after %v, %s version after recover): next update: %v", i, full, kill, state, err)
		}
		if got := treeManifest(t, fsys, cfg.InstallDir); !maps.Equal(got, want2) {
			t.Errorf("run %d: after the next update the install dir is not the new version", i)
			diffManifests(t, got, want2)
		}
		if v := c.Current().String(); v != "2.0" {
			t.Errorf("run %d: current version after the next update is %s", i, v)
		}
	}
	t.Logf("%d kills: %d left the old version, %d the new one; %d interrupted the install itself (staged tree or journal left for recover)",
		iterations, counts["old"], counts["new"], counts["interrupted install"])
}
