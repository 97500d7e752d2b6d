package notsotuf

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// killVersions returns two versions of an app of many small files, so that
// an install takes long enough to be killed in the middle.
func killVersions(t testing.TB) (v1, v2 []byte) {
	mk := func(ver string, files int) []byte {
		ents := []testEnt{{name: "./", typ: tar.TypeDir}, {name: "./bin/", typ: tar.TypeDir}, {name: "./bin/app", mode: 0o755, body: "app " + ver}}
		for d := 0; d < 10; d++ {
			ents = append(ents, testEnt{name: fmt.Sprintf("./d%d/", d), typ: tar.TypeDir})
			for i := 0; i < files; i++ {
				ents = append(ents, testEnt{name: fmt.Sprintf("./d%d/f%d-%s", d, i, ver), body: strings.Repeat(ver, 100+i)})
			}
		}
		ents = append(ents, testEnt{name: "./link", typ: tar.TypeSymlink, link: "bin/app"})
		return buildTestTar(t, ents...)
	}
	return mk("v1", 8), mk("v2", 6)
}

// TestInstallKillHelper is the child process of TestInstallKilled: it
// installs the two versions alternately until it is killed.
func TestInstallKillHelper(t *testing.T) {
	dir := os.Getenv("NOTSOTUF_KILL_DIR")
	if dir == "" {
		t.Skip("child process of TestInstallKilled")
	}
	goos, exe := os.Getenv("NOTSOTUF_KILL_EXE_GOOS"), os.Getenv("NOTSOTUF_KILL_EXE") != ""
	in := &installer{fs: afero.NewOsFs(), dir: dir, singleExe: exe, goos: goos, app: os.Getenv("NOTSOTUF_KILL_APP")}
	for i := 0; ; i++ {
		in.tag = fmt.Sprint(i%2 + 1) // NOTSOTUF_KILL_TAR1 is version "1"
		data, err := os.ReadFile(os.Getenv(fmt.Sprintf("NOTSOTUF_KILL_TAR%d", i%2+1)))
		if err != nil {
			t.Fatal(err)
		}
		if exe {
			err = in.installExecutable(context.Background(), bytes.NewReader(data), 1<<24) // gzip: limit the uncompressed tar
		} else {
			err = in.installTar(context.Background(), bytes.NewReader(data), int64(len(data)))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestInstallExecutableKilled kills a process that replaces an executable
// in a loop, with the Unix and the Windows strategies: after recover the
// executable is one of the two versions and nothing is left beside it.
func TestInstallExecutableKilled(t *testing.T) {
	if os.Getenv("NOTSOTUF_KILL_DIR") != "" {
		t.Skip("in the child")
	}
	rounds := 10
	if testing.Short() {
		rounds = 3
	}
	for _, goos := range []string{"linux", "windows"} {
		t.Run(goos, func(t *testing.T) {
			root := t.TempDir()
			bodies := []string{strings.Repeat("binary v1 ", 1<<17), strings.Repeat("binary v2 ", 1<<16)}
			var tars []string
			for i, body := range bodies {
				p := filepath.Join(root, fmt.Sprintf("v%d.tar", i+1))
				if err := os.WriteFile(p, exeArchive(t, body), 0o644); err != nil {
					t.Fatal(err)
				}
				tars = append(tars, p)
			}
			bin := filepath.Join(root, "bin")
			os.Mkdir(bin, 0o755)
			exe := filepath.Join(bin, "app")
			if err := os.WriteFile(exe, []byte(bodies[0]), 0o755); err != nil {
				t.Fatal(err)
			}
			in := &installer{fs: afero.NewOsFs(), dir: exe, singleExe: true, goos: goos}
			midway := 0
			for r := 0; r < rounds; r++ {
				cmd := exec.Command(os.Args[0], "-test.run=^TestInstallKillHelper$")
				cmd.Env = append(os.Environ(), "NOTSOTUF_KILL_DIR="+exe, "NOTSOTUF_KILL_EXE=1", "NOTSOTUF_KILL_EXE_GOOS="+goos,
					"NOTSOTUF_KILL_TAR1="+tars[1], "NOTSOTUF_KILL_TAR2="+tars[0])
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(30*time.Millisecond + time.Duration(rand.Int64N(int64(150*time.Millisecond))))
				cmd.Process.Kill()
				cmd.Wait()
				if strings.Contains(out.String(), "FAIL") {
					t.Fatalf("round %d: child failed:\n%s", r, out.String())
				}
				if s := siblingsOf(t, afero.NewOsFs(), bin); len(s) != 1 {
					midway++
				}
				if err := in.recover(); err != nil {
					t.Fatalf("round %d: recover: %v", r, err)
				}
				b, err := os.ReadFile(exe)
				if err != nil || string(b) != bodies[0] && string(b) != bodies[1] {
					t.Fatalf("round %d: executable holds %d bytes, %v", r, len(b), err)
				}
				if s := siblingsOf(t, afero.NewOsFs(), bin); len(s) != 1 {
					t.Fatalf("round %d: leftovers %q", r, s)
				}
			}
			t.Logf("%d rounds, %d killed in the middle of an install", rounds, midway)
		})
	}
}

// TestInstallKilled kills a process that installs in a loop at random
// instants, on a real disk (with the atomic exchange where the system has
// one): every time, recover must leave one of the two versions complete,
// its install manifest (which describes that version), nothing else beside
// it, and the next install must work.
func TestInstallKilled(t *testing.T) {
	if os.Getenv("NOTSOTUF_KILL_DIR") != "" {
		t.Skip("in the child")
	}
	rounds := 20
	if testing.Short() {
		rounds = 4
	}
	fsys, root := tempOsFs(t)
	v1, v2 := killVersions(t)
	tar1, tar2 := filepath.Join(root, "v1.tar"), filepath.Join(root, "v2.tar")
	if err := os.WriteFile(tar1, v1, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tar2, v2, 0o644); err != nil {
		t.Fatal(err)
	}
	apps := filepath.Join(root, "apps")
	dir, want1 := installFixture(t, fsys, apps, v1)
	in := &installer{fs: fsys, dir: dir}
	if err := in.installTar(context.Background(), bytes.NewReader(v2), int64(len(v2))); err != nil {
		t.Fatal(err)
	}
	want2 := treeSnapshot(t, fsys, dir)
	// Time one install to spread the kills over a few of them.
	start := time.Now()
	if err := in.installTar(context.Background(), bytes.NewReader(v1), int64(len(v1))); err != nil {
		t.Fatal(err)
	}
	one := time.Since(start)
	midway := 0
	for r := 0; r < rounds; r++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestInstallKillHelper$")
		cmd.Env = append(os.Environ(), "NOTSOTUF_KILL_DIR="+dir, "NOTSOTUF_KILL_TAR1="+tar2, "NOTSOTUF_KILL_TAR2="+tar1, "NOTSOTUF_KILL_APP=app")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50*time.Millisecond + time.Duration(rand.Int64N(int64(3*one))))
		cmd.Process.Kill()
		err := cmd.Wait()
		if strings.Contains(out.String(), "FAIL") {
			t.Fatalf("round %d: child failed: %v\n%s", r, err, out.String())
		}
		for _, s := range siblingsOf(t, fsys, apps) {
			if strings.Contains(s, suffixJournal) || strings.Contains(s, suffixNew) || strings.Contains(s, suffixOld) {
				midway++
				break
			}
		}
		if err := in.recover(); err != nil {
			t.Fatalf("round %d: recover: %v", r, err)
		}
		got := treeSnapshot(t, fsys, dir)
		if !maps.Equal(got, want1) && !maps.Equal(got, want2) {
			t.Fatalf("round %d: tree is neither v1 nor v2:\n%s", r, describeTree(got))
		}
		// The child installs tar2 (v2) as version "1" and tar1 (v1) as "2".
		mpath := in.manifestPath()
		h, err := readManifest(fsys, mpath, func(manifestHeader, installedEntry) error { return nil })
		switch {
		case errors.Is(err, errNoManifest):
			checkSiblings(t, fsys, apps)
		case err != nil:
			t.Fatalf("round %d: %v", r, err)
		default:
			if ok, why, err := checkTreeManifest(fsys, dir, mpath, "app"); !ok {
				t.Fatalf("round %d: install manifest of %s does not describe the tree: %s %v", r, h.Version, why, err)
			}
			if (h.Version == "1") != maps.Equal(got, want2) {
				t.Fatalf("round %d: install manifest of version %s over the other version", r, h.Version)
			}
			checkSiblings(t, fsys, apps, filepath.Base(mpath))
		}
		next := v1
		if maps.Equal(got, want1) {
			next = v2
		}
		if err := in.installTar(context.Background(), bytes.NewReader(next), int64(len(next))); err != nil {
			t.Fatalf("round %d: next install: %v", r, err)
		}
	}
	t.Logf("%d rounds, %d killed in the middle of an install (one install: %v)", rounds, midway, one)
	if !testing.Short() && midway == 0 {
		t.Errorf("no kill landed in the middle of an install")
	}
}
