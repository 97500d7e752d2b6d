package notsotuf

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notsotuf/notsotuf/internal/faultfs"
	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// relSpec describes a release of app "app" for the selection tests:
// "1.2", "1.2 yanked=bad", "1.2 rollout=50", "1.2 required",
// "1.2 platform=linux-amd64", "1.2 platform=linux-amd64 name=windows-amd64"
// (the name says another platform than the signed metadata), "1.2 nopatch".
func fakeTargets(t testing.TB, specs ...string) map[string]*metadata.TargetFiles {
	t.Helper()
	targets := map[string]*metadata.TargetFiles{}
	for _, spec := range specs {
		fields := strings.Fields(spec)
		v := mustVersion(t, fields[0])
		var m ArchiveMeta
		patch, platformInName := true, ""
		for _, f := range fields[1:] {
			k, val, _ := strings.Cut(f, "=")
			switch k {
			case "yanked":
				m.Yanked, m.YankReason = true, strings.ReplaceAll(val, "_", " ")
			case "rollout":
				var p int
				if err := json.Unmarshal([]byte(val), &p); err != nil {
					t.Fatal(err)
				}
				m.Rollout = &p
			case "required":
				m.Required = true
			case "platform":
				m.Platform, platformInName = val, val
			case "name":
				platformInName = val // the name says another platform than the metadata
			case "nopatch":
				patch = false
			default:
				t.Fatalf("bad spec %q", spec)
			}
		}
		custom, err := m.Custom()
		if err != nil {
			t.Fatal(err)
		}
		stem := releaseStem("app", platformInName)
		add := func(name string, c json.RawMessage) {
			cc := c
			targets[name] = &metadata.TargetFiles{Path: name, Length: 100, Hashes: metadata.Hashes{"sha256": make([]byte, 32)}, Custom: &cc}
		}
		add(ArchiveName(stem, v), custom)
		if patch {
			pc, err := PatchMeta{TarSize: 1024, TarHash: strings.Repeat("ab", 32)}.Custom()
			if err != nil {
				t.Fatal(err)
			}
			add(PatchName(stem, v), pc)
		}
	}
	return targets
}

func TestSelectRelease(t *testing.T) {
	bucketAt := func(b int) func() (int, error) { return func() (int, error) { return b, nil } }
	tests := []struct {
		name     string
		rels     []string
		current  string
		channel  string
		versions string
		bucket   func() (int, error)
		want     string // version offered, "" for none; "<" prefix: a rollback
		withheld string // "version: reason" joined by "; "
	}{
		{name: "newest", rels: []string{"1.0", "1.1", "1.2"}, current: "1.0", want: "1.2"},
		{name: "yanked newest skipped", rels: []string{"1.0", "1.1", "1.2 yanked=crashes"}, current: "1.0", want: "1.1", withheld: "1.2: yanked: crashes"},
		{name: "on the yanked release: rollback", rels: []string{"1.0", "1.1", "1.2 yanked=crashes"}, current: "1.2", want: "<1.1"},
		{name: "rollback skips yanked and other channels", rels: []string{"1.0", "1.1a1", "1.1 yanked", "1.2 yanked"}, current: "1.2", want: "<1.0"},
		{name: "no yank: never down", rels: []string{"1.0", "1.1"}, current: "1.2", want: ""},
		{name: "not in the repository: never down", rels: []string{"1.0", "1.1 yanked"}, current: "1.1.5", want: ""},
		{name: "yanked, a newer release: up", rels: []string{"1.0", "1.1 yanked", "1.2"}, current: "1.1", want: "1.2"},
		{name: "yanked, nothing to go back to", rels: []string{"1.0 yanked", "1.1 yanked"}, current: "1.1", want: ""},
		{name: "rollout in", rels: []string{"1.0", "1.1 rollout=50"}, current: "1.0", bucket: bucketAt(499999), want: "1.1"},
		{name: "rollout out", rels: []string{"1.0", "1.1 rollout=50"}, current: "1.0", bucket: bucketAt(500000), want: "",
			withheld: "1.1: staged rollout to 50% of installs (this install's bucket: 50.0000)"},
		{name: "rollout out, an older one in", rels: []string{"1.0", "1.1", "1.2 rollout=10"}, current: "1.0", bucket: bucketAt(100000), want: "1.1",
			withheld: "1.2: staged rollout to 10% of installs (this install's bucket: 10.0000)"},
		{name: "halted", rels: []string{"1.0", "1.1 rollout=0"}, current: "1.0", bucket: bucketAt(0), want: "", withheld: "1.1: its rollout is halted"},
		{name: "halted: those on it stay", rels: []string{"1.0", "1.1 rollout=0"}, current: "1.1", want: ""},
		{name: "full rollout needs no bucket", rels: []string{"1.0", "1.1 rollout=100"}, current: "1.0", want: "1.1"},
		{name: "no bucket", rels: []string{"1.0", "1.1 rollout=99"}, current: "1.0", bucket: func() (int, error) { return 0, errors.New("read-only") }, want: "",
			withheld: "1.1: staged rollout to 99% of installs, and this install has no rollout bucket (read-only)"},
		{name: "required first", rels: []string{"1.0", "1.1 required", "1.2"}, current: "1.0", want: "1.1", withheld: "1.2: the required release 1.1 comes first"},
		{name: "required not rolled out yet stops", rels: []string{"1.0", "1.1 required rollout=0", "1.2"}, current: "1.0", want: "",
			withheld: "1.1: its rollout is halted; 1.2: the required release 1.1 comes first"},
		{name: "yanked required does not stop", rels: []string{"1.0", "1.1 required yanked", "1.2"}, current: "1.0", want: "1.2"},
		{name: "hotfix, stable", rels: []string{"1.1.0", "1.1.1", "2.0.0a1"}, current: "1.1.0", want: "1.1.1"},
		{name: "hotfix, channel a", rels: []string{"1.1.0", "1.1.1", "2.0.0a1"}, current: "1.1.0", channel: "a", want: "2.0.0a1"},
		{name: "pinned line", rels: []string{"1.1.0", "1.1.1", "2.0.0"}, current: "1.1.0", versions: "~=1.1", want: "1.1.1",
			withheld: "2.0.0: outside the versions allowed (~=1.1)"},
		{name: "pinned line, nothing", rels: []string{"1.1.1", "2.0.0"}, current: "1.1.1", versions: "~=1.1", want: "",
			withheld: "2.0.0: outside the versions allowed (~=1.1)"},
		{name: "pinned rollback stays in line", rels: []string{"0.9", "1.1.0", "1.1.1 yanked"}, current: "1.1.1", versions: "~=1.1", want: "<1.1.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := releaseSetOf(fakeTargets(t, tt.rels...), "app", "linux-amd64", discardLogger())
			sp, err := ParseSpecifier(tt.versions)
			if err != nil {
				t.Fatal(err)
			}
			bucket := tt.bucket
			if bucket == nil {
				bucket = func() (int, error) { t.Fatal("bucket drawn for a release without a staged rollout"); return 0, nil }
			}
			sel := selectRelease(set, mustVersion(t, tt.current), selectOptions{channel: tt.channel, versions: sp, bucket: bucket})
			got := ""
			if sel.target != nil {
				got = sel.target.version.String()
				if sel.rollback {
					got = "<" + got
				}
			}
			if got != tt.want {
				t.Errorf("offered %q, want %q", got, tt.want)
			}
			if sel.rollback && !strings.Contains(sel.reason, "the installed version "+tt.current+" was yanked") {
				t.Errorf("rollback reason %q", sel.reason)
			}
			var held []string
			for _, w := range sel.withheld {
				held = append(held, w.Version.String()+": "+w.Reason)
			}
			if g := strings.Join(held, "; "); g != tt.withheld {
				t.Errorf("withheld %q, want %q", g, tt.withheld)
			}
		})
	}
}

func TestReleaseSetPatchChain(t *testing.T) {
	chainOf := func(platform, current, target string, rels ...string) string {
		t.Helper()
		set := releaseSetOf(fakeTargets(t, rels...), "app", platform, discardLogger())
		cur := mustVersion(t, current)
		tgt := set.at(mustVersion(t, target))
		if tgt == nil || tgt.archive == nil {
			return "no target"
		}
		chain, why := set.patchChain(set.at(cur), tgt, cur)
		if why != "" {
			return why
		}
		var names []string
		for _, r := range chain {
			names = append(names, r.patch.Path)
		}
		return strings.Join(names, " ")
	}
	tests := []struct {
		name, platform, current, target string
		rels                            []string
		want                            string
	}{
		{"linear", "", "1.0", "1.2", []string{"1.0", "1.1", "1.2"}, "app-1.1.patch app-1.2.patch"},
		{"around a yank", "", "1.0", "1.2", []string{"1.0 nopatch", "1.1 yanked nopatch", "1.2"}, "app-1.2.patch"},
		{"from the yanked one", "", "1.1", "1.2", []string{"1.0", "1.1 yanked", "1.2"}, "no patch chain leads from 1.1 to 1.2"},
		{"hotfix below a pre-release", "", "1.1.0", "2.0.0a1", []string{"1.1.0", "1.1.1", "2.0.0a1"}, "app-1.1.1.patch app-2.0.0a1.patch"},
		{"missing patch", "", "1.0", "1.2", []string{"1.0", "1.1 nopatch", "1.2"}, "there is no patch to 1.1"},
		{"not in the repository", "", "0.9", "1.2", []string{"1.0", "1.2"}, "the installed version 0.9 is not in the repository"},
		{"own platform", "linux-amd64", "1.0", "1.1",
			[]string{"1.0 platform=linux-amd64", "1.1 platform=linux-amd64", "1.0 platform=windows-amd64", "1.1 platform=windows-amd64"},
			"app-linux-amd64-1.1.patch"},
		{"platform build over the common one", "linux-amd64", "1.0", "1.1",
			[]string{"1.0", "1.0 platform=linux-amd64", "1.1 platform=linux-amd64"}, "app-linux-amd64-1.1.patch"},
		{"common build for another platform", "darwin-arm64", "1.0", "1.1",
			[]string{"1.0", "1.1", "1.1 platform=linux-amd64"}, "app-1.1.patch"},
		{"no chain across platform groups", "linux-amd64", "1.0", "1.1",
			[]string{"1.0", "1.1 platform=linux-amd64"}, "no patch chain leads from 1.0 to 1.1"},
		{"name and signed platform disagree", "linux-amd64", "1.0", "1.1",
			[]string{"1.0 platform=linux-amd64", "1.1 platform=windows-amd64 name=linux-amd64"}, "no target"},
	}
	for _, tt := range tests {
		if got := chainOf(tt.platform, tt.current, tt.target, tt.rels...); got != tt.want {
			t.Errorf("%s: chain %q, want %q", tt.name, got, tt.want)
		}
	}
	// A build for every platform must not sign one.
	set := releaseSetOf(fakeTargets(t, "1.0 platform=linux-amd64 name="), "app", "linux-amd64", discardLogger())
	if len(set.view) != 1 || set.view[0].archive != nil {
		t.Errorf("an archive named for every platform but signed for one is used: %+v", set.view)
	}
}

func TestRolloutBucket(t *testing.T) {
	for _, fsys := range []afero.Fs{afero.NewMemMapFs(), afero.NewBasePathFs(afero.NewOsFs(), t.TempDir())} {
		b, err := rolloutBucket(fsys, "/cache", discardLogger())
		if err != nil {
			t.Fatal(err)
		}
		if b < 0 || b >= bucketRange {
			t.Fatalf("bucket %d", b)
		}
		if again, err := rolloutBucket(fsys, "/cache", discardLogger()); err != nil || again != b {
			t.Fatalf("bucket not kept: %d then %d (%v)", b, again, err)
		}
		p := filepath.Join("/cache", bucketFile)
		for _, bad := range []string{"", "-1", "1000000", "12.5\n", "0x10", "99999999", "abc"} {
			afero.WriteFile(fsys, p, []byte(bad), 0o644)
			b, err := rolloutBucket(fsys, "/cache", discardLogger())
			if err != nil || b < 0 || b >= bucketRange {
				t.Fatalf("corrupt %q: %d %v", bad, b, err)
			}
			data, _ := afero.ReadFile(fsys, p)
			if got, err := parseBucket(data); err != nil || got != b {
				t.Fatalf("corrupt %q not replaced: file %q, bucket %d", bad, data, b)
			}
		}
	}
	// Draws spread over the range (a stuck or biased draw would not).
	fsys := afero.NewMemMapFs()
	below := 0
	for i := range 400 {
		dir := filepath.Join("/c", string(rune('a'+i%26)), filepath.Base(t.Name())+string(rune('0'+i/26)))
		b, err := rolloutBucket(fsys, dir, discardLogger())
		if err != nil {
			t.Fatal(err)
		}
		if b < bucketRange/2 {
			below++
		}
	}
	if below < 140 || below > 260 {
		t.Errorf("%d of 400 buckets below 50%%", below)
	}
	if _, err := rolloutBucket(afero.NewReadOnlyFs(afero.NewMemMapFs()), "/cache", discardLogger()); err == nil || !strings.Contains(err.Error(), "rollout bucket") {
		t.Errorf("read-only cache: %v", err)
	}
}

func TestCurrentAfterRollback(t *testing.T) {
	fsys := afero.NewMemMapFs()
	afero.WriteFile(fsys, "/cache/installed.json", []byte(`{"app":"app","version":"1.1","replaced":"1.2"}`), 0o644)
	for _, tt := range []struct{ config, want string }{
		{"1.2", "1.1"}, // the yanked 1.2 still runs: 1.1 is installed
		{"1.1", "1.1"},
		{"1.3", "1.3"}, // installed by hand since
		{"1.0", "1.1"},
	} {
		c := newClientForTest(t, fsys, tt.config)
		if got := c.Current().String(); got != tt.want {
			t.Errorf("config %s: Current() = %s, want %s", tt.config, got, tt.want)
		}
	}
}

// newClientForTest is a client that never reaches a network.
func newClientForTest(t testing.TB, fsys afero.Fs, current string) *Client {
	t.Helper()
	repo := newTestRepo(t, false)
	cfg := repo.config(fsys, current)
	return newTestClient(t, cfg)
}

// yankInTestRepo re-publishes rel's archive entry marked yanked.
func yankInTestRepo(t testing.TB, repo *testRepo, rel appRelease, reason string) {
	t.Helper()
	v := mustVersion(t, rel.version)
	c, err := ArchiveMeta{TarSize: int64(len(rel.tar)), TarHash: sha256hex(rel.tar), Yanked: true, YankReason: reason}.Custom()
	if err != nil {
		t.Fatal(err)
	}
	repo.addTarget(ArchiveName("app", v), rel.archive, json.RawMessage(c))
	repo.publish()
}

// TestRollbackInstall: on a real disk, a client running a yanked release
// installs the newest release that is not yanked, records the rollback,
// and neither installs it again nor goes further down.
func TestRollbackInstall(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	yankInTestRepo(t, repo, rels[2], "crashes on start")
	fsys, cfg := osClientConfig(t, repo, "1.2")
	writeTree(t, fsys, cfg.InstallDir, rels[2].files)
	ctx := context.Background()

	c := newTestClient(t, cfg)
	u, err := c.Update(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u == nil || u.Version.String() != "1.1" || !u.Rollback || !u.Plan.Full ||
		u.RollbackReason != "the installed version 1.2 was yanked: crashes on start" {
		t.Fatalf("update %+v", u)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[1].files)
	if got := c.Current().String(); got != "1.1" {
		t.Fatalf("Current() = %s after the rollback, want 1.1", got)
	}
	// The same process (still "1.2") and a restarted one (1.1) are done.
	for _, current := range []string{"1.2", "1.1"} {
		cfg.CurrentVersion = current
		if u, err := newTestClient(t, cfg).Update(ctx); err != nil || u != nil {
			t.Fatalf("current %s: update again: %+v, %v", current, u, err)
		}
	}
	// Installing the rollback again (an Update value kept by the caller)
	// changes nothing.
	cfg.CurrentVersion = "1.2"
	if err := newTestClient(t, cfg).Install(ctx, u); err != nil {
		t.Fatal(err)
	}
	wantTree(t, fsys, cfg.InstallDir, rels[1].files)
	// 1.1 is not yanked: no further rollback, and 1.2 stays withheld.
	cfg.CurrentVersion = "1.1"
	d, err := newTestClient(t, cfg).Decide(ctx)
	if err != nil || d.Update != nil || len(d.Withheld) != 1 || d.Withheld[0].Reason != "yanked: crashes on start" {
		t.Fatalf("decision %+v, %v", d, err)
	}
}

// TestRecoverRecordsRollback: a crash at every write of a rollback; after
// the next start's Recover, the tree is 1.2 or 1.1, complete, and once it
// is 1.1 the client knows it (Current, no second rollback).
func TestRecoverRecordsRollback(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	yankInTestRepo(t, repo, rels[2], "bad")
	recorded := 0
	for n := 1; n < 300; n++ {
		base, cfg := osClientConfig(t, repo, "1.2")
		writeTree(t, base, cfg.InstallDir, rels[2].files)
		cfg.Fs = faultfs.New(base, n, true)
		_, err := newTestClient(t, cfg).Update(context.Background())
		if err == nil {
			break // n passed the last write
		}
		journal := filepath.Join(filepath.Dir(cfg.InstallDir), "."+filepath.Base(cfg.InstallDir)+".notsotuf-journal")
		committed, _ := afero.Exists(base, journal)
		cfg.Fs = base
		c := newTestClient(t, cfg)
		if err := c.Recover(); err != nil {
			t.Fatalf("crash at write %d: recover: %v", n, err)
		}
		if committed {
			recorded++
			wantTree(t, base, cfg.InstallDir, rels[1].files)
			if got := c.Current().String(); got != "1.1" {
				t.Fatalf("crash at write %d after the commit: Current() = %s after Recover, want 1.1", n, got)
			}
			if u, err := c.Check(context.Background()); err != nil || u != nil {
				t.Fatalf("crash at write %d after the commit: check offers %+v, %v", n, u, err)
			}
		} else if got := c.Current().String(); got != "1.2" && got != "1.1" {
			t.Fatalf("crash at write %d: Current() = %s", n, got)
		}
	}
	if recorded == 0 {
		t.Fatal("no crash point fell after the commit: the test checked nothing")
	}
}
