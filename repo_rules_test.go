package notsotuf

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/afero"
)

// publishCrafted signs the archive bytes as release version of r (what a
// hostile publisher, or a broken build tool, could do): no patch, the
// signed tar_size and tar_hash are those of tarData.
func publishCrafted(t *testing.T, r *Repository, version string, archive, tarData []byte) {
	t.Helper()
	v, err := ParseVersion(version)
	if err != nil {
		t.Fatal(err)
	}
	st, err := r.load()
	if err != nil {
		t.Fatal(err)
	}
	name := ArchiveName(r.Config.AppName, v)
	if err := afero.WriteFile(r.Fs, filepath.Join(r.targetsDir(), name), archive, 0o644); err != nil {
		t.Fatal(err)
	}
	custom, err := ArchiveMeta{TarSize: int64(len(tarData)), TarHash: sha256hex(tarData)}.Custom()
	if err != nil {
		t.Fatal(err)
	}
	st.targets.Signed.Targets[name] = newTargetFile(name, TargetInfo{Name: name, Length: int64(len(archive)), SHA256: sha256hex(archive)}, custom)
	tx := r.newTxn()
	defer tx.finish("test", &err)
	if _, err = r.publish(st, r.newKeyring(), publishOptions{bump: []string{RoleTargets}}, tx); err != nil {
		t.Fatal(err)
	}
	if err = tx.commit(); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyAppliesClientRules: verify no longer says "ok" for archives
// that every client refuses to install; names only Windows refuses are
// warnings.
func TestVerifyAppliesClientRules(t *testing.T) {
	ctx := context.Background()
	fsys, base := afero.NewMemMapFs(), "/w"
	r := newTestRepository(fsys, base)
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	makeTestBundle(t, fsys, "/w/b", 1)
	if _, err := r.Add(ctx, AddOptions{Version: "1.0", BundleDir: "/w/b"}); err != nil {
		t.Fatal(err)
	}
	bad := map[string]struct {
		tar   []byte
		entry string
	}{
		"1.1": {buildTestTar(t, testEnt{name: "./", typ: tar.TypeDir}, testEnt{name: "./../evil", body: "x"}), `"./../evil"`},
		"1.2": {buildTestTar(t, testEnt{name: "./", typ: tar.TypeDir}, testEnt{name: "./l", typ: tar.TypeSymlink, link: "/etc/passwd"}), `"./l": symbolic link target "/etc/passwd": absolute path`},
		"1.3": {buildTestTar(t, testEnt{name: "./README", body: "x"}, testEnt{name: "./readme", body: "y"}), "differs only in case"},
		"1.4": {sparseTar(t, "pax1.0", 1<<20), "sparse"},
	}
	for v, c := range bad {
		publishCrafted(t, r, v, gzipForTest(t, c.tar), c.tar)
	}
	win := buildTestTar(t, testEnt{name: "./", typ: tar.TypeDir}, testEnt{name: "./aux.txt", body: "x"})
	publishCrafted(t, r, "1.5", gzipForTest(t, win), win)

	rep, err := r.Verify(ctx)
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("verify: %v, want a *VerifyError", err)
	}
	for v, c := range bad {
		found := false
		for _, p := range ve.Problems {
			found = found || strings.Contains(p, "demo-"+v+".tar.gz: clients refuse to install it") && strings.Contains(p, c.entry)
		}
		if !found {
			t.Errorf("release %s: no problem naming %s in\n%s", v, c.entry, strings.Join(ve.Problems, "\n"))
		}
	}
	if len(ve.Problems) != len(bad) {
		t.Errorf("%d problems, want %d:\n%s", len(ve.Problems), len(bad), strings.Join(ve.Problems, "\n"))
	}
	if w := strings.Join(rep.Warnings, "\n"); !strings.Contains(w, `"./aux.txt": clients on Windows refuse it`) {
		t.Errorf("warnings do not name aux.txt:\n%s", w)
	}
}

// TestAddRefusesWhatClientsRefuse: add publishes nothing that clients
// would refuse to install (beyond the entry limit, names differing only
// in case), with a message that says why; a name only Windows refuses is
// published with a warning.
func TestAddRefusesWhatClientsRefuse(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		files  map[string]string
		limits archiveLimits
		want   string
	}{
		{"too many entries", map[string]string{"a": "1", "b": "2", "c/d": "3", "c/e": "4", "f": "5"}, archiveLimits{entries: 5, names: 1 << 20}, "more than 5 entries"},
		{"case collision", map[string]string{"README": "1", "readme": "2"}, archiveLimits{}, `entry "./readme": differs only in case from entry "README"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := afero.NewMemMapFs()
			r := newTestRepository(fsys, "/w")
			r.limits = tc.limits
			if err := r.Init(); err != nil {
				t.Fatal(err)
			}
			writeTree(t, fsys, "/w/b", tc.files)
			before := repoTreeState(t, fsys, r.Config.RepoDir)
			_, err := r.Add(ctx, AddOptions{Version: "1.0", BundleDir: "/w/b"})
			if !errors.Is(err, ErrUnsafeArchive) || !strings.Contains(err.Error(), "clients would refuse to install this release") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("add: %v, want a refusal containing %q", err, tc.want)
			}
			if hint := ErrorHint(err); !strings.Contains(hint, "docs/publishing.md") {
				t.Errorf("hint %q", hint)
			}
			if after := repoTreeState(t, fsys, r.Config.RepoDir); after != before {
				t.Errorf("repository changed:\n%s\nwant\n%s", after, before)
			}
		})
	}
	fsys := afero.NewMemMapFs()
	r := newTestRepository(fsys, "/w")
	var log bytes.Buffer
	r.Logger = slog.New(slog.NewTextHandler(&log, nil))
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	writeTree(t, fsys, "/w/b", map[string]string{"aux.txt": "x"})
	if _, err := r.Add(ctx, AddOptions{Version: "1.0", BundleDir: "/w/b"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "clients on Windows refuse it") {
		t.Errorf("no warning about aux.txt in the log:\n%s", log.String())
	}
}
