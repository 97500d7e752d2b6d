package notsotuf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// newMsgTestRepo is an initialized repository in memory with release 1.0,
// whose clock the test moves through *now.
func newMsgTestRepo(t *testing.T, now *time.Time) *Repository {
	t.Helper()
	*now = repoTestNow
	fsys := afero.NewMemMapFs()
	r := newTestRepository(fsys, "/w")
	r.Now = func() time.Time { return *now }
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	makeTestBundle(t, fsys, "/w/b1", 1)
	if _, err := r.Add(context.Background(), AddOptions{Version: "1.0", BundleDir: "/w/b1"}); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRepositoryProgress: Add reports each phase of its work (the archive,
// the patch engine's three phases, the patch check) from 0 to its total,
// never backwards; Verify reports its patch checks.
func TestRepositoryProgress(t *testing.T) {
	var now time.Time
	r := newMsgTestRepo(t, &now)
	makeTestBundle(t, r.Fs, "/w/b2", 2)
	type call struct {
		phase       string
		done, total int64
	}
	var calls []call
	r.Progress = func(phase string, done, total int64) { calls = append(calls, call{phase, done, total}) }
	res, err := r.Add(context.Background(), AddOptions{Version: "1.1", BundleDir: "/w/b2"})
	if err != nil {
		t.Fatal(err)
	}
	phases := func() []string {
		var ps []string
		start := 0
		for i, c := range calls {
			if i > 0 && c.phase != calls[i-1].phase {
				start = i
			}
			if i == start {
				if c.done != 0 {
					t.Errorf("phase %s starts at %d: %v", c.phase, c.done, calls)
				}
				ps = append(ps, c.phase)
				continue
			}
			if c.done < calls[i-1].done || c.done > c.total {
				t.Errorf("phase %s goes from %d to %d of %d", c.phase, calls[i-1].done, c.done, c.total)
			}
			if last := i+1 == len(calls) || calls[i+1].phase != c.phase; last && c.done != c.total {
				t.Errorf("phase %s ends at %d of %d", c.phase, c.done, c.total)
			}
		}
		return ps
	}
	got := strings.Join(phases(), " ")
	if got != "archive index match compress check" {
		t.Errorf("Add reported phases %q, want archive index match compress check", got)
	}
	for _, c := range calls {
		if c.phase == "check" && c.total != res.Archive.TarSize {
			t.Errorf("check phase total %d, want the tar size %d", c.total, res.Archive.TarSize)
		}
	}

	calls = nil
	if _, err := r.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(phases(), " "); got != "check" {
		t.Errorf("Verify reported phases %q, want check", got)
	}
}

// TestExpiredRootWarnings: add and sign under an expired root still
// publish, and say that clients refuse the repository until root is
// re-signed, naming the file and the command.
func TestExpiredRootWarnings(t *testing.T) {
	var now time.Time
	r := newMsgTestRepo(t, &now)
	res, err := r.Add(context.Background(), AddOptions{Version: "1.1", BundleDir: "/w/b1"})
	if err != nil || len(res.Warnings) != 0 {
		t.Fatalf("Add before any expiry: warnings %q, err %v", res.Warnings, err)
	}

	now = repoTestNow.Add(400 * 24 * time.Hour) // root lasts 365 days
	want := fmt.Sprintf("%s (root version 1) expired 2027-01-01T00:00:00Z: clients refuse it; re-sign root where its keys are: `notsotuf refresh` (or `notsotuf sign root --expires DAYS`), then deploy",
		r.metaPath("root.json"))
	res, err = r.Add(context.Background(), AddOptions{Version: "1.2", BundleDir: "/w/b1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || res.Warnings[0] != want {
		t.Errorf("Add under an expired root: warnings %q\nwant [%q]", res.Warnings, want)
	}
	sr, err := r.Sign(SignOptions{Role: RoleTargets})
	if err != nil {
		t.Fatal(err)
	}
	if len(sr.Warnings) != 1 || sr.Warnings[0] != want {
		t.Errorf("Sign targets under an expired root: warnings %q\nwant [%q]", sr.Warnings, want)
	}

	// verify names root, not the timestamp.json go-tuf was loading.
	_, err = r.Verify(context.Background())
	var ve *VerifyError
	if !errors.Is(err, &metadata.ErrExpiredMetadata{}) || !errors.As(err, &ve) ||
		len(ve.Problems) != 1 || !strings.HasPrefix(ve.Problems[0], r.metaPath("root.json")+" (root version 1) expired") {
		t.Errorf("Verify under an expired root: %v; want a VerifyError naming root.json, matching ErrExpiredMetadata", err)
	}
	if h := ErrorHint(err); !strings.Contains(h, "`notsotuf sign root --expires DAYS`") {
		t.Errorf("Verify hint %q does not say how to re-sign root", h)
	}

	// A new root version ends the warnings.
	if sr, err = r.Sign(SignOptions{Role: RoleRoot, ExpiresDays: 365}); err != nil || len(sr.Warnings) != 0 {
		t.Errorf("Sign root --expires 365: warnings %q, err %v", sr.Warnings, err)
	}
	if _, err := r.Verify(context.Background()); err != nil {
		t.Errorf("Verify after re-signing root: %v", err)
	}
}

// TestStatusJSONExpiry: expires is an RFC 3339 time and expires_in whole
// seconds (negative once expired), for monitoring scripts.
func TestStatusJSONExpiry(t *testing.T) {
	var now time.Time
	r := newMsgTestRepo(t, &now)
	now = repoTestNow.Add(36 * time.Hour) // the timestamp (1 day) expired 12 h ago
	st, err := r.Status()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Roles []struct {
			Role      string          `json:"role"`
			Expires   string          `json:"expires"`
			ExpiresIn json.RawMessage `json:"expires_in"`
			Expired   bool            `json:"expired"`
		} `json:"roles"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		RoleRoot:      "2027-01-01T00:00:00Z " + fmt.Sprint(365*86400-36*3600),
		RoleTimestamp: "2026-01-02T00:00:00Z -43200",
	}
	for _, rs := range got.Roles {
		if w, ok := want[rs.Role]; ok {
			if g := rs.Expires + " " + string(rs.ExpiresIn); g != w {
				t.Errorf("%s: expires, expires_in = %s; want %s", rs.Role, g, w)
			}
		}
		if rs.Role == RoleTimestamp && !rs.Expired {
			t.Errorf("timestamp: expired = false")
		}
	}
}
