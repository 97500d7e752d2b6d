package notsotuf

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// A macOS application bundle, as the tests below build it: what a real
// Foo.app holds (Info.plist, the main executable, resources, a framework
// with its Versions symbolic links, a nested helper app, code signature
// seals), with a stand-in for codesign: fakeSeal writes
// _CodeSignature/CodeResources the way codesign seals a bundle (every
// file's hash, every symbolic link's target, nested bundles sealed on their
// own), and fakeVerify checks a tree against it as `codesign --verify
// --deep --strict` would: a changed, missing or added file, or a link
// pointing elsewhere, breaks the signature. (The real codesign never ran
// here: see docs/macos.md.)

// appBundleFiles is release n of Foo.app: path -> content, mode; a
// content starting with "->" is a symbolic link to the rest.
func appBundleFiles(n int) map[string]bundleEntry {
	exe := randomBytes(300<<10, 11)
	copy(exe[4096:], fmt.Sprintf("Foo version 1.%d", n))
	fw := randomBytes(200<<10, 12)
	copy(fw[777:], fmt.Sprintf("Bar framework 1.%d", n))
	plist := func(id, v string) string {
		return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
<key>CFBundleIdentifier</key><string>` + id + `</string>
<key>CFBundleShortVersionString</key><string>` + v + `</string>
</dict></plist>
`
	}
	v := fmt.Sprintf("1.%d", n)
	e := map[string]bundleEntry{
		"Contents/Info.plist":                                                {plist("com.example.foo", v), 0o644},
		"Contents/PkgInfo":                                                   {"APPL????", 0o644},
		"Contents/MacOS/Foo":                                                 {string(exe), 0o755},
		"Contents/MacOS/foo-helper":                                          {"#!/bin/sh\nexec \"$(dirname \"$0\")/Foo\" --helper\n", 0o755},
		"Contents/Resources/AppIcon.icns":                                    {string(randomBytes(40<<10, 13)), 0o644},
		"Contents/Resources/en.lproj/InfoPlist.strings":                      {"CFBundleName = \"Foo\";\n", 0o644},
		"Contents/Resources/licenses.txt":                                    {"read-only in the bundle\n", 0o444},
		"Contents/PlugIns/":                                                  {"", 0o755}, // an empty directory
		"Contents/Frameworks/Bar.framework/Versions/A/Bar":                   {string(fw), 0o755},
		"Contents/Frameworks/Bar.framework/Versions/A/Resources/Info.plist":  {plist("com.example.bar", v), 0o644},
		"Contents/Frameworks/Bar.framework/Versions/Current":                 {"->A", 0},
		"Contents/Frameworks/Bar.framework/Bar":                              {"->Versions/Current/Bar", 0},
		"Contents/Frameworks/Bar.framework/Resources":                        {"->Versions/Current/Resources", 0},
		"Contents/Library/LoginItems/FooHelper.app/Contents/Info.plist":      {plist("com.example.foo.helper", v), 0o644},
		"Contents/Library/LoginItems/FooHelper.app/Contents/MacOS/FooHelper": {string(randomBytes(50<<10, uint64(14+n))), 0o755},
	}
	switch n {
	case 1:
		e["Contents/Resources/old-only.txt"] = bundleEntry{"dropped by 1.2\n", 0o644}
	case 2:
		e["Contents/Resources/de.lproj/InfoPlist.strings"] = bundleEntry{"CFBundleName = \"Foo\";\n", 0o644}
	case 3:
		// The framework moves to version B: Current points elsewhere.
		delete(e, "Contents/Frameworks/Bar.framework/Versions/A/Bar")
		delete(e, "Contents/Frameworks/Bar.framework/Versions/A/Resources/Info.plist")
		e["Contents/Frameworks/Bar.framework/Versions/B/Bar"] = bundleEntry{string(fw), 0o755}
		e["Contents/Frameworks/Bar.framework/Versions/B/Resources/Info.plist"] = bundleEntry{plist("com.example.bar", v), 0o644}
		e["Contents/Frameworks/Bar.framework/Versions/Current"] = bundleEntry{"->B", 0}
	}
	return e
}

type bundleEntry struct {
	content string
	mode    fs.FileMode
}

// writeAppBundle writes the bundle files at dir (Foo.app) and seals it,
// and its nested bundles, as codesign would.
func writeAppBundle(t *testing.T, dir string, files map[string]bundleEntry) {
	t.Helper()
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range files {
			if !yield(k) {
				return
			}
		}
	})
	for _, name := range names {
		e := files[name]
		p := filepath.Join(dir, filepath.FromSlash(strings.TrimSuffix(name, "/")))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(name, "/"):
			if err := os.MkdirAll(p, e.mode); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(e.content, "->"):
			if err := os.Symlink(e.content[2:], p); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(p, []byte(e.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, e.mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Nested bundles first, as codesign signs inside out.
	fakeSeal(t, filepath.Join(dir, "Contents/Library/LoginItems/FooHelper.app"))
	fakeSeal(t, filepath.Join(dir, "Contents/Frameworks/Bar.framework/Versions/Current/"))
	fakeSeal(t, dir)
}

// sealPath is where a bundle's seal is: Contents/_CodeSignature for an app,
// _CodeSignature in a framework version.
func sealPath(bundle string) string {
	if _, err := os.Stat(filepath.Join(bundle, "Contents")); err == nil {
		return filepath.Join(bundle, "Contents", "_CodeSignature", "CodeResources")
	}
	return filepath.Join(bundle, "_CodeSignature", "CodeResources")
}

// sealLines lists what the seal of bundle covers: every file with its
// sha256 and every symbolic link with its target, nested bundles (.app,
// .framework) by the hash of their own seal.
func sealLines(t *testing.T, bundle string) []string {
	t.Helper()
	seal := sealPath(bundle)
	var lines []string
	err := filepath.WalkDir(bundle, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(bundle, p)
		rel = filepath.ToSlash(rel)
		switch {
		case p == bundle || p == seal || d.IsDir() && d.Name() == "_CodeSignature" && filepath.Dir(seal) == p:
			return nil
		case d.IsDir() && (strings.HasSuffix(d.Name(), ".app") || strings.HasSuffix(d.Name(), ".framework")):
			inner := p
			if strings.HasSuffix(d.Name(), ".framework") {
				inner = filepath.Join(p, "Versions", "Current")
			}
			b, err := os.ReadFile(sealPath(inner))
			if err != nil {
				return fmt.Errorf("nested bundle %s: %w", rel, err)
			}
			s := sha256.Sum256(b)
			lines = append(lines, "nested "+rel+" "+hex.EncodeToString(s[:]))
			if inner != p {
				// A framework's structure: its top-level links and
				// Versions/Current, outside the version it seals.
				for _, sub := range []string{"", "Versions"} {
					entries, err := os.ReadDir(filepath.Join(p, sub))
					if err != nil {
						return err
					}
					for _, e := range entries {
						if e.Type()&fs.ModeSymlink != 0 {
							target, err := os.Readlink(filepath.Join(p, sub, e.Name()))
							if err != nil {
								return err
							}
							lines = append(lines, "symlink "+path.Join(rel, sub, e.Name())+" "+target)
						}
					}
				}
			}
			return filepath.SkipDir
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			lines = append(lines, "symlink "+rel+" "+target)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			lines = append(lines, "file "+rel+" "+hex.EncodeToString(s[:]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

func fakeSeal(t *testing.T, bundle string) {
	t.Helper()
	bundle, err := filepath.EvalSymlinks(bundle) // Versions/Current: seal the version itself
	if err != nil {
		t.Fatal(err)
	}
	lines := sealLines(t, bundle)
	seal := sealPath(bundle)
	if err := os.MkdirAll(filepath.Dir(seal), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seal, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeVerify fails unless bundle and its nested bundles match their seals.
func fakeVerify(t *testing.T, bundle string) {
	t.Helper()
	for _, b := range []string{bundle, filepath.Join(bundle, "Contents/Library/LoginItems/FooHelper.app"), filepath.Join(bundle, "Contents/Frameworks/Bar.framework/Versions/Current")} {
		real, err := filepath.EvalSymlinks(b)
		if err != nil {
			t.Fatalf("signature: %v", err)
		}
		seal, err := os.ReadFile(sealPath(real))
		if err != nil {
			t.Fatalf("signature: %v", err)
		}
		if got := strings.Join(sealLines(t, real), "\n") + "\n"; got != string(seal) {
			t.Errorf("signature of %s broken: sealed\n%s\nfound\n%s", b, seal, got)
		}
	}
}

// bundleEntries describes every entry under dir: type, permission bits,
// content hash or link target. Nothing of the file system's own is left
// out, so an extra file (a manifest of ours) shows.
func bundleEntries(t *testing.T, dir string, skip func(rel string) bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "symlink -> " + target
		case fi.IsDir():
			out[rel] = fmt.Sprintf("dir %04o", fi.Mode().Perm())
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			out[rel] = fmt.Sprintf("file %04o %s", fi.Mode().Perm(), hex.EncodeToString(s[:]))
		default:
			out[rel] = "other " + fi.Mode().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantSameTree fails unless got holds exactly want's entries: the same
// types, permission bits, bytes and link targets (skip leaves some out of
// got).
func wantSameTree(t *testing.T, want, got string, skip func(string) bool) {
	t.Helper()
	w, g := bundleEntries(t, want, nil), bundleEntries(t, got, skip)
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range w {
			yield(k)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				yield(k)
			}
		}
	}) {
		if w[k] != g[k] {
			t.Errorf("%s: release has %q, installed %q", k, w[k], g[k])
		}
	}
}

// macBundleRepo is a repository of the app "foo" whose releases are
// Foo.app bundles, served on loopback, and a client that installs into
// Applications/Foo.app.
type macBundleRepo struct {
	t       *testing.T
	base    string
	r       *Repository
	srv     *loggedFileServer
	apps    string // the Applications directory
	bundles map[string]string
}

func newMacBundleRepo(t *testing.T) *macBundleRepo {
	base := t.TempDir()
	cfg := DefaultConfig("foo")
	cfg.RepoDir = filepath.Join(base, "repository")
	cfg.KeysDir = filepath.Join(base, "keystore")
	r := &Repository{Fs: afero.NewOsFs(), Config: cfg, Now: func() time.Time { return repoTestNow }}
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	m := &macBundleRepo{t: t, base: base, r: r, apps: filepath.Join(base, "Applications"), bundles: map[string]string{}}
	m.srv = newLoggedFileServer(t, cfg.RepoDir)
	if err := os.MkdirAll(m.apps, 0o755); err != nil {
		t.Fatal(err)
	}
	return m
}

// add builds release n of Foo.app as version v and publishes it with
// `notsotuf add`'s code (the archive builder included).
func (m *macBundleRepo) add(v string, n int) *AddResult {
	m.t.Helper()
	dir := filepath.Join(m.base, "build-"+v, "Foo.app")
	writeAppBundle(m.t, dir, appBundleFiles(n))
	fakeVerify(m.t, dir)
	res, err := m.r.Add(context.Background(), AddOptions{Version: v, BundleDir: dir})
	if err != nil {
		m.t.Fatal(err)
	}
	m.bundles[v] = dir
	return res
}

func (m *macBundleRepo) config(current string) ClientConfig {
	root, err := os.ReadFile(filepath.Join(m.r.Config.RepoDir, "metadata", "1.root.json"))
	if err != nil {
		m.t.Fatal(err)
	}
	return ClientConfig{
		App: "foo", CurrentVersion: current, InstallDir: filepath.Join(m.apps, "Foo.app"), CacheDir: filepath.Join(m.base, "cache"),
		MetadataURL: m.srv.URL + "/metadata", TargetsURL: m.srv.URL + "/targets", TrustedRoot: root,
		Fs: afero.NewOsFs(), HTTPClient: m.srv.Client(), Now: func() time.Time { return repoTestNow },
	}
}

func (m *macBundleRepo) update(cfg ClientConfig, want string, full bool) *Update {
	m.t.Helper()
	u, err := newTestClient(m.t, cfg).Update(context.Background())
	if err != nil {
		m.t.Fatal(err)
	}
	if u == nil || u.Version.String() != want || u.Result == nil || u.Result.Full != full {
		m.t.Fatalf("update to %s (full %v): %+v", want, full, u)
	}
	return u
}

// TestMacAppBundle: an install directory that is a macOS application
// bundle (Foo.app in an Applications directory) is installed and updated,
// by patch and by full archive, to a tree byte-identical to the release
// the publisher signed: every file's bytes and permission bits, every
// symbolic link of the framework's Versions structure as a link with the
// same target (also when Versions/Current moves), empty directories, and
// nothing else inside the bundle (no file of ours), so its code signature
// stays valid. Beside the bundle, only the install manifest and lock.
// On a real temp dir.
func TestMacAppBundle(t *testing.T) {
	m := newMacBundleRepo(t)
	m.add("1.1", 1)
	cfg := m.config("0")
	app := cfg.InstallDir

	// First install: the full archive into a missing Foo.app.
	m.update(cfg, "1.1", true)
	wantSameTree(t, m.bundles["1.1"], app, nil)
	fakeVerify(t, app)

	// 1.2 by patch (a localization added, a file dropped).
	if res := m.add("1.2", 2); res.Patch == nil {
		t.Fatal("1.2 was published without a patch")
	}
	cfg.CurrentVersion = "1.1"
	m.update(cfg, "1.2", false)
	wantSameTree(t, m.bundles["1.2"], app, nil)
	fakeVerify(t, app)

	// 1.3 by full archive (the framework's Current moves from A to B).
	m.add("1.3", 3)
	cfg.CurrentVersion = "1.2"
	cfg.ForceFull = true
	m.update(cfg, "1.3", true)
	wantSameTree(t, m.bundles["1.3"], app, nil)
	fakeVerify(t, app)
	if target, err := os.Readlink(filepath.Join(app, "Contents/Frameworks/Bar.framework/Versions/Current")); err != nil || target != "B" {
		t.Errorf("Versions/Current -> %q, %v; want B", target, err)
	}

	// 1.4 by patch from 1.3 again, to check a patch across the move.
	m.add("1.4", 3)
	cfg.CurrentVersion, cfg.ForceFull = "1.3", false
	m.update(cfg, "1.4", false)
	wantSameTree(t, m.bundles["1.4"], app, nil)
	fakeVerify(t, app)

	// Beside the bundle: only what docs/client.md lists.
	var names []string
	entries, err := os.ReadDir(m.apps)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{".Foo.app.notsotuf-lock", ".Foo.app.notsotuf-manifest", "Foo.app"}; !slices.Equal(names, want) {
		t.Errorf("Applications holds %v, want %v", names, want)
	}
}

// TestMacAppBundleArchive: the archive `notsotuf add` builds from a
// bundle stores what codesign sealed as it is: symbolic links as links
// with their relative targets, permission bits, empty directories.
func TestMacAppBundleArchive(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Foo.app")
	writeAppBundle(t, dir, appBundleFiles(1))
	var tarBuf bytes.Buffer
	if err := WriteTar(afero.NewOsFs(), dir, &tarBuf); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "x")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := extractTar(context.Background(), afero.NewOsFs(), out, "Foo.tar", &tarBuf, int64(tarBuf.Len())); err != nil {
		t.Fatal(err)
	}
	wantSameTree(t, dir, out, nil)
	fakeVerify(t, out)
}
