package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/notsotuf/notsotuf"
	"github.com/spf13/afero"
)

// TestSelfUpdateCycle publishes builds of this program, serves them on
// loopback and runs them: version 1.0 installs 2.0 (full archive) over its
// own executable and re-executes into it; then 3.0 is published with a
// patch, and 2.0 installs it by patch, from the archive the first update
// left in the cache; then 4.0, whose code changed, is published with a
// compact patch, and 3.0 installs it by that patch.
func TestSelfUpdateCycle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example three times")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	tmp := t.TempDir()
	ctx := context.Background()
	exeName := appName
	if runtime.GOOS == "windows" {
		exeName += ".exe"
	}

	// A repository, whose root the builds embed (through a build overlay,
	// so this directory's root.json stays as it is).
	cfg := notsotuf.DefaultConfig(appName)
	cfg.RepoDir, cfg.KeysDir = filepath.Join(tmp, "repository"), filepath.Join(tmp, "keystore")
	repo := &notsotuf.Repository{Fs: afero.NewOsFs(), Config: cfg}
	if err := repo.Init(); err != nil {
		t.Fatal(err)
	}
	here, err := filepath.Abs("root.json")
	if err != nil {
		t.Fatal(err)
	}
	overlay, err := json.Marshal(map[string]any{"Replace": map[string]string{here: filepath.Join(cfg.RepoDir, "metadata", "root.json")}})
	if err != nil {
		t.Fatal(err)
	}
	overlayPath := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(overlayPath, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	// A source file that release 4.0 adds (through a second overlay): new
	// code, which moves the code and data after it, as a real change does.
	extra := filepath.Join(tmp, "extra.go")
	if err := os.WriteFile(extra, []byte("package main\n\nimport \"os\"\n\nfunc init() {\n\tif os.Getenv(\"SELFUPDATE_DEBUG\") != \"\" {\n\t\tos.Stderr.WriteString(\"debug on\\n\")\n\t}\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	here4, err := filepath.Abs("extra_4_0.go")
	if err != nil {
		t.Fatal(err)
	}
	overlay4, err := json.Marshal(map[string]any{"Replace": map[string]string{here: filepath.Join(cfg.RepoDir, "metadata", "root.json"), here4: extra}})
	if err != nil {
		t.Fatal(err)
	}
	overlay4Path := filepath.Join(tmp, "overlay4.json")
	if err := os.WriteFile(overlay4Path, overlay4, 0o644); err != nil {
		t.Fatal(err)
	}
	// publish builds version v into bundle-v (which holds only the
	// executable) and adds it to the repository, with a patch in format
	// (none when "").
	publish := func(v, format string) *notsotuf.AddResult {
		t.Helper()
		bundle := filepath.Join(tmp, "bundle-"+v)
		ov := overlayPath
		if v == "4.0" {
			ov = overlay4Path
		}
		cmd := exec.Command(goBin, "build", "-overlay", ov, "-ldflags", "-s -w -X main.version="+v, "-o", filepath.Join(bundle, exeName), ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", v, err, out)
		}
		start := time.Now()
		res, err := repo.Add(ctx, notsotuf.AddOptions{Version: v, BundleDir: bundle, SkipPatch: format == "", PatchFormat: format})
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start).Round(time.Millisecond)
		if res.Patch != nil {
			t.Logf("published %s in %v: archive %d bytes, %s patch from %s %d bytes", v, took, res.Archive.Length, res.PatchFormat, res.From, res.Patch.Length)
		} else {
			t.Logf("published %s in %v: archive %d bytes", v, took, res.Archive.Length)
		}
		return res
	}
	publish("1.0", "")
	publish("2.0", "")
	srv := httptest.NewServer(http.FileServer(http.Dir(cfg.RepoDir)))
	defer srv.Close()

	// Install 1.0 (a plain copy of the executable) and run it.
	install := filepath.Join(tmp, "app")
	if err := os.MkdirAll(install, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(tmp, "bundle-1.0", exeName))
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(install, exeName)
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	runApp := func() string {
		t.Helper()
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), "SELFUPDATE_URL="+srv.URL, "SELFUPDATE_CACHE="+filepath.Join(tmp, "cache"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", exe, err, out)
		}
		if strings.Contains(string(out), "level=WARN") {
			t.Fatalf("warnings: %s", out)
		}
		return string(out)
	}
	// updated checks that out is an update from one version to the next
	// by the expected kind of download, followed by the new version's run.
	updated := func(out, from, to, how string) {
		t.Helper()
		re := regexp.MustCompile(`^selfupdate ` + regexp.QuoteMeta(from) +
			`\nupdating selfupdate ` + regexp.QuoteMeta(from) + ` -> ` + regexp.QuoteMeta(to) + ` \((` + regexp.QuoteMeta(how) + `), ([0-9]+) bytes\)` +
			`\nselfupdate ` + regexp.QuoteMeta(to) + `\nhello from selfupdate ` + regexp.QuoteMeta(to) + `\n$`)
		m := re.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("run of %s:\n%s\nwant an update to %s by %s", from, out, to, how)
		}
		t.Logf("%s -> %s: %s, %s bytes", from, to, m[1], m[2])
	}
	upToDate := func(v string) {
		t.Helper()
		if out, want := runApp(), "selfupdate "+v+"\nhello from selfupdate "+v+"\n"; out != want {
			t.Fatalf("run of %s, up to date:\n%s\nwant:\n%s", v, out, want)
		}
	}

	updated(runApp(), "1.0", "2.0", "full archive")
	upToDate("2.0")

	// 3.0 comes with a patch from 2.0, applied to the verified archive of
	// 2.0 that the first update left in the cache.
	publish("3.0", notsotuf.PatchFormatBSDiff)
	updated(runApp(), "2.0", "3.0", "1 patch(es)")
	upToDate("3.0")

	// 4.0 changes code, and comes with a patch in the compact format
	// (notsotuf's, for executables), which the client applies as well.
	res := publish("4.0", notsotuf.PatchFormatCompact)
	if res.PatchFormat != notsotuf.PatchFormatCompact {
		t.Fatalf("4.0 patch format %q", res.PatchFormat)
	}
	old3, err := os.ReadFile(filepath.Join(tmp, "bundle-3.0", exeName))
	if err != nil {
		t.Fatal(err)
	}
	new4, err := os.ReadFile(filepath.Join(tmp, "bundle-4.0", exeName))
	if err != nil {
		t.Fatal(err)
	}
	var plain strings.Builder
	if err := notsotuf.Diff(old3, new4, &plain, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("3.0 -> 4.0 executable: compact patch of the tar %d bytes, bsdiff of the executable %d bytes", res.Patch.Length, plain.Len())
	if res.Patch.Length >= int64(plain.Len()) {
		t.Errorf("compact patch %d bytes, not smaller than bsdiff's %d", res.Patch.Length, plain.Len())
	}
	updated(runApp(), "3.0", "4.0", "1 patch(es)")
	upToDate("4.0")

	// Nothing is left beside the executable (on Windows the executables
	// renamed aside are removed by the starts that follow).
	entries, err := os.ReadDir(install)
	if err != nil {
		t.Fatal(err)
	}
	// The executable, its install lock and its install manifest (kept:
	// see docs/client.md).
	if len(entries) != 3 || entries[0].Name() != exeName || entries[1].Name() != exeName+".notsotuf-lock" || entries[2].Name() != exeName+".notsotuf-manifest" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("install directory holds %v, want only %s, its lock and its install manifest", names, exeName)
	}
	got, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(tmp, "bundle-4.0", exeName))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Error("the installed executable is not the 4.0 build")
	}
}
