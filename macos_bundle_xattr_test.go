//go:build linux || darwin

package notsotuf

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testXattr is an extended attribute a user, Finder or another program
// could put on a file (on macOS: com.apple.metadata:..., tags; Linux
// lets unprivileged programs set the user namespace only).
const testXattr = "user.notsotuf.test"

func setXattr(t *testing.T, p, value string) {
	t.Helper()
	if err := unix.Setxattr(p, testXattr, []byte(value), 0); err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			t.Skipf("extended attributes not supported here: %v", err)
		}
		t.Fatal(err)
	}
}

func getTestXattr(p string) (string, error) {
	buf := make([]byte, 256)
	n, err := unix.Getxattr(p, testXattr, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// TestMacAppBundleKeepsUserFiles: files and directories inside the bundle
// that no release shipped (a settings file, a plug-in directory) are
// carried into the new bundle with their bytes, modes, modification times
// and extended attributes, by patch and by full archive; the release's
// own files are the release's, byte for byte. (Adding a file to a signed
// bundle breaks its seal: docs/macos.md tells apps to keep their data
// elsewhere; this is about not destroying what is there.)
func TestMacAppBundleKeepsUserFiles(t *testing.T) {
	m := newMacBundleRepo(t)
	m.add("1.1", 1)
	cfg := m.config("0")
	app := cfg.InstallDir
	m.update(cfg, "1.1", true)

	mtime := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	user := map[string]struct {
		content string
		mode    os.FileMode
	}{
		"Contents/Resources/user.cfg":           {"theme = dark\n", 0o600},
		"Contents/PlugIns/Extra/plugin.dat":     {"a plug-in the user added\n", 0o644},
		"Contents/Resources/en.lproj/notes.txt": {"in a directory the release ships\n", 0o640},
	}
	isUser := func(rel string) bool {
		return rel == "Contents/PlugIns/Extra" || user[rel].content != ""
	}
	for rel, f := range user {
		p := filepath.Join(app, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.content), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
		setXattr(t, p, "kept "+rel)
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	check := func(v string) {
		t.Helper()
		wantSameTree(t, m.bundles[v], app, isUser)
		for rel, f := range user {
			p := filepath.Join(app, filepath.FromSlash(rel))
			fi, err := os.Lstat(p)
			if err != nil {
				t.Errorf("%s %s: %v", v, rel, err)
				continue
			}
			b, _ := os.ReadFile(p)
			if string(b) != f.content || fi.Mode().Perm() != f.mode || !fi.ModTime().Equal(mtime) {
				t.Errorf("%s %s: %q, mode %v, mtime %v; want %q, %v, %v", v, rel, b, fi.Mode().Perm(), fi.ModTime(), f.content, f.mode, mtime)
			}
			if x, err := getTestXattr(p); err != nil || x != "kept "+rel {
				t.Errorf("%s %s: extended attribute %q, %v", v, rel, x, err)
			}
		}
	}

	m.add("1.2", 2)
	cfg.CurrentVersion = "1.1"
	m.update(cfg, "1.2", false)
	check("1.2")

	m.add("1.3", 3)
	cfg.CurrentVersion, cfg.ForceFull = "1.2", true
	m.update(cfg, "1.3", true)
	check("1.3")
}
