package notsotuf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// Status is a summary of a repository, for people and for monitoring.
type Status struct {
	App      string          `json:"app"`
	Now      time.Time       `json:"now"`
	Roles    []RoleStatus    `json:"roles"`
	Releases []ReleaseStatus `json:"releases"`
	Warnings []string        `json:"warnings,omitempty"`
	// PatchFormat is the format add makes patches in (Config.PatchFormat),
	// and TufupReadable says whether tufup clients can apply every patch of
	// the repository (false once one is in a format other than bsdiff, or
	// when add would make one).
	PatchFormat   string `json:"patch_format"`
	TufupReadable bool   `json:"tufup_readable"`

	// ConsistentSnapshot says whether root metadata turns on TUF
	// consistent snapshots (versioned metadata, hash-prefixed targets).
	ConsistentSnapshot bool `json:"consistent_snapshot"`
}

// RoleStatus describes one role's current metadata.
type RoleStatus struct {
	Role    string    `json:"role"`
	Version int64     `json:"version"`
	Expires time.Time `json:"expires"` // RFC 3339 in JSON, UTC
	Expired bool      `json:"expired"`
	// ExpiresIn is the time left from Status.Now to Expires, in whole
	// seconds; negative once expired.
	ExpiresIn  int64     `json:"expires_in"`
	Threshold  int       `json:"threshold"`  // signatures the role needs
	Signatures int       `json:"signatures"` // valid signatures by the role's keys
	Keys       []KeyInfo `json:"keys"`
	Warning    string    `json:"warning,omitempty"`
}

// KeyInfo is a key of a role: its ID as metadata lists it (IDs are opaque:
// tufup's are legacy IDs) and its name in the key store, if any.
type KeyInfo struct {
	ID      string `json:"id"`
	Name    string `json:"name,omitempty"`    // "" when the key store does not have it
	Private bool   `json:"private,omitempty"` // the private key is in the key store
}

// ReleaseStatus describes a published release.
type ReleaseStatus struct {
	Version     string          `json:"version"`
	Archive     string          `json:"archive"`
	ArchiveSize int64           `json:"archive_size"`
	Required    bool            `json:"required"`
	Patch       string          `json:"patch,omitempty"`
	PatchSize   int64           `json:"patch_size,omitempty"`
	PatchFormat string          `json:"patch_format,omitempty"`
	TarSize     int64           `json:"tar_size,omitempty"`
	TarHash     string          `json:"tar_hash,omitempty"`
	User        json.RawMessage `json:"user,omitempty"`
	Platform    string          `json:"platform,omitempty"`    // "" for a build for every platform
	Rollout     int             `json:"rollout"`               // percent of installs offered it (100 unless a staged rollout)
	Yanked      bool            `json:"yanked,omitempty"`      // withdrawn: never installed
	YankReason  string          `json:"yank_reason,omitempty"` // why, as published
}

// warnWithin is how long before expiry Status warns about a role: half its
// configured lifetime, at most 30 days.
func (r *Repository) warnWithin(role string) time.Duration {
	days := r.Config.ExpirationDays[role]
	if days <= 0 {
		days = defaultExpirationDays[role]
	}
	return min(30*24*time.Hour, time.Duration(days)*12*time.Hour)
}

// Status reads the repository's metadata and summarizes it. It does not
// check target files (see Verify).
func (r *Repository) Status() (*Status, error) {
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	now := r.now()
	s := &Status{App: r.Config.AppName, Now: now, Releases: []ReleaseStatus{}, ConsistentSnapshot: st.root.Signed.ConsistentSnapshot, PatchFormat: r.Config.PatchFormat}
	if s.PatchFormat == "" {
		s.PatchFormat = PatchFormatBSDiff
	}
	tufupFormat := func(name string) bool {
		f, err := r.patchFormat(name)
		return err == nil && f.Tufup
	}
	s.TufupReadable = tufupFormat(s.PatchFormat)
	kr := r.newKeyring()
	add := func(role string, version int64, expires time.Time, sigs, threshold int) {
		rs := RoleStatus{Role: role, Version: version, Expires: expires.UTC(), Threshold: threshold, Signatures: sigs}
		left := expires.Sub(now)
		rs.ExpiresIn = int64(left / time.Second)
		rs.Expired = left <= 0
		keys, _ := roleKeys(&st.root.Signed, role)
		for _, k := range keys {
			ki := KeyInfo{ID: k.id, Name: kr.nameOf(k.pub)}
			if ki.Name != "" {
				if ok, _ := exists(r.Fs, filepath.Join(r.Config.KeysDir, ki.Name)); ok {
					ki.Private = true
				}
			}
			rs.Keys = append(rs.Keys, ki)
		}
		switch {
		case rs.Expired:
			rs.Warning = "expired: run `notsotuf refresh` where its keys are (or `notsotuf sign " + role + " --expires DAYS`)"
		case left < r.warnWithin(role):
			rs.Warning = "expires in " + formatDuration(left) + ": run `notsotuf refresh` where its keys are"
		}
		if sigs < threshold {
			w := fmt.Sprintf("only %d of the %d signatures needed: clients refuse it until `notsotuf sign %s` is run where the other keys are", sigs, threshold, role)
			if rs.Warning != "" {
				w += "; " + rs.Warning
			}
			rs.Warning = w
		}
		if rs.Warning != "" {
			s.Warnings = append(s.Warnings, role+": "+rs.Warning)
		}
		s.Roles = append(s.Roles, rs)
	}
	root := &st.root.Signed
	n, th := countSignatures(st.root, root, RoleRoot)
	if st.prevRoot != nil {
		n2, th2 := countSignatures(st.root, &st.prevRoot.Signed, RoleRoot)
		n, th = min(n, n2), max(th, th2)
	}
	add(RoleRoot, root.Version, root.Expires, n, th)
	n, th = countSignatures(st.targets, root, RoleTargets)
	add(RoleTargets, st.targets.Signed.Version, st.targets.Signed.Expires, n, th)
	n, th = countSignatures(st.snapshot, root, RoleSnapshot)
	add(RoleSnapshot, st.snapshot.Signed.Version, st.snapshot.Signed.Expires, n, th)
	n, th = countSignatures(st.timestamp, root, RoleTimestamp)
	add(RoleTimestamp, st.timestamp.Signed.Version, st.timestamp.Signed.Expires, n, th)

	rels, others, err := r.releases(&st.targets.Signed)
	if err != nil {
		return nil, err
	}
	for _, rel := range rels {
		rs := ReleaseStatus{Version: rel.version.String(), Archive: rel.archive, ArchiveSize: rel.archiveFile.Length,
			Required: rel.archiveMeta.Required, TarSize: rel.archiveMeta.TarSize, TarHash: rel.archiveMeta.TarHash, User: rel.archiveMeta.User,
			Platform: rel.platform, Rollout: rel.archiveMeta.RolloutPercent(), Yanked: rel.archiveMeta.Yanked, YankReason: rel.archiveMeta.YankReason}
		if rel.patch != "" {
			rs.Patch, rs.PatchSize = rel.patch, rel.patchFile.Length
			rs.PatchFormat = rel.patchMeta.Format
			if rs.PatchFormat == "" {
				rs.PatchFormat = PatchFormatBSDiff
			}
			if !tufupFormat(rel.patchMeta.Format) {
				s.TufupReadable = false
			}
			rs.TarSize, rs.TarHash = rel.patchMeta.TarSize, rel.patchMeta.TarHash
		}
		s.Releases = append(s.Releases, rs)
	}
	for _, o := range others {
		s.Warnings = append(s.Warnings, fmt.Sprintf("target %s: not a release of %s", o, r.Config.AppName))
	}
	return s, nil
}

func formatDuration(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	d = d.Truncate(time.Minute)
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	if days > 0 {
		return fmt.Sprintf("%s%dd%dh", sign, days, d/time.Hour)
	}
	return fmt.Sprintf("%s%dh%dm", sign, d/time.Hour, (d%time.Hour)/time.Minute)
}

// VerifyError lists every problem Verify found.
type VerifyError struct {
	Problems []string
}

func (e *VerifyError) Error() string {
	if len(e.Problems) == 1 {
		return "verify: " + e.Problems[0]
	}
	return fmt.Sprintf("verify: %d problems:\n  %s", len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// VerifyReport says what Verify checked.
type VerifyReport struct {
	RootVersions int64    // root versions verified, 1.root.json to N.root.json
	Targets      int      // target files whose length and hash matched
	Patches      int      // patches applied and checked
	Warnings     []string // not errors: stray files, releases without a patch
}

// Verify checks the repository as a client would: starting from
// 1.root.json it verifies every root version in turn (each signed by the
// previous and by itself), then timestamp, snapshot and targets with go-tuf's
// trustedmetadata at the current time (Repository.Now); then every target
// file's length and sha256, every archive's uncompressed tar against its
// recorded tar hash and against the rules clients extract archives with
// (no ".." or absolute names, no links leaving the tree, no devices or
// sparse files, no case collisions, the entry limits...; names only
// Windows refuses are warnings), and every patch of the chain: applying it
// to the previous release's tar must give the signed tar_size and
// tar_hash. A failure is a *VerifyError listing every problem found.
func (r *Repository) Verify(ctx context.Context) (*VerifyReport, error) {
	rep := &VerifyReport{}
	if ok, err := exists(r.Fs, filepath.Join(r.Config.RepoDir, journalName)); err != nil {
		return nil, err
	} else if ok {
		return nil, withHint(fmt.Errorf("verify %s: a change was interrupted (journal %s)", r.Config.RepoDir, journalName),
			"run `notsotuf status` to complete it, then verify again")
	}
	first, err := r.readMeta("1.root.json")
	if err != nil {
		return nil, err
	}
	trusted, err := trustedmetadata.New(first)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", r.metaPath("1.root.json"), err)
	}
	trusted.RefTime = r.now()
	var last []byte = first
	for v := int64(2); ; v++ {
		name := fmt.Sprintf("%d.root.json", v)
		data, err := r.readMeta(name)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, err
		}
		if _, err := trusted.UpdateRoot(data); err != nil {
			return nil, fmt.Errorf("verify %s: %w", r.metaPath(name), err)
		}
		last = data
	}
	rep.RootVersions = trusted.Root.Signed.Version
	cur, err := r.readMeta("root.json")
	if err != nil {
		return nil, err
	}
	if string(cur) != string(last) {
		return nil, fmt.Errorf("verify %s: differs from %d.root.json, the newest root version", r.metaPath("root.json"), rep.RootVersions)
	}
	top := map[string][]byte{}
	for _, name := range []string{"timestamp.json", "snapshot.json", "targets.json"} {
		if top[name], err = r.readMeta(name); err != nil {
			return nil, err
		}
	}
	if err := r.checkExpiry(&trusted.Root.Signed, top); err != nil {
		return nil, err
	}
	// With consistent snapshots, clients read N.snapshot.json and
	// N.targets.json (the versions that timestamp and snapshot name): check
	// those, and that the unversioned copies are the same files.
	consistent := trusted.Root.Signed.ConsistentSnapshot
	versioned := func(role string, meta map[string]*metadata.MetaFiles) string {
		if m := meta[role+".json"]; consistent && m != nil {
			return fmt.Sprintf("%d.%s.json", m.Version, role)
		}
		return role + ".json"
	}
	for _, step := range []struct {
		name func() string
		load func([]byte) error
	}{
		{func() string { return "timestamp.json" }, func(b []byte) error { _, err := trusted.UpdateTimestamp(b); return err }},
		{func() string { return versioned("snapshot", trusted.Timestamp.Signed.Meta) },
			func(b []byte) error { _, err := trusted.UpdateSnapshot(b, false); return err }},
		{func() string { return versioned("targets", trusted.Snapshot.Signed.Meta) },
			func(b []byte) error { _, err := trusted.UpdateTargets(b); return err }},
	} {
		name := step.name()
		data, err := r.readMeta(name)
		if err != nil {
			return nil, err
		}
		if err := step.load(data); err != nil {
			err = fmt.Errorf("verify %s: %w", r.metaPath(name), err)
			if errors.Is(err, &metadata.ErrExpiredMetadata{}) {
				return nil, withHint(err, "run `notsotuf refresh` to re-sign expiring metadata")
			}
			return nil, err
		}
		if _, base, ok := strings.Cut(name, "."); ok && versionedName.MatchString(name) {
			plain, err := r.readMeta(base)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(plain, data) {
				return nil, fmt.Errorf("verify %s: differs from %s, the version clients read", r.metaPath(base), name)
			}
		}
	}
	targets := trusted.Targets[metadata.TARGETS]
	var problems []string
	names := make([]string, 0, len(targets.Signed.Targets))
	for n := range targets.Signed.Targets {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := r.checkTargetFile(n, targets.Signed.Targets[n], consistent); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		rep.Targets++
	}
	// Stray files in targets/ (temporary files of an interrupted run, or
	// files nobody signed).
	stored := map[string]bool{}
	for _, n := range names {
		if p, err := r.storedTarget(n, targets.Signed.Targets[n], consistent); err == nil {
			stored[filepath.Base(p)] = true
		}
	}
	if entries, err := afero.ReadDir(r.Fs, r.targetsDir()); err == nil {
		for _, e := range entries {
			if !stored[e.Name()] {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("file %s is not in targets.json", filepath.Join(r.targetsDir(), e.Name())))
			}
		}
	}
	if len(problems) > 0 {
		return rep, &VerifyError{Problems: problems}
	}

	// The patch chain.
	rr := r
	if r.Config.AppName == "" {
		// No configuration (a repository made elsewhere): the app is the
		// one the target names give.
		copied := *r
		copied.Config.AppName = inferApp(names)
		rr = &copied
	}
	rels, others, err := rr.releases(&targets.Signed)
	if err != nil {
		return rep, &VerifyError{Problems: []string{err.Error()}}
	}
	for _, o := range others {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("target %s is not a release of %s", o, rr.Config.AppName))
	}
	work, cleanup, err := r.workDir()
	if err != nil {
		return rep, err
	}
	defer cleanup()
	// Each platform group is a chain: a patch starts from the newest
	// lower release of its group that is not yanked (see repo_release.go).
	var platforms []string
	for _, rel := range rels {
		if !slices.Contains(platforms, rel.platform) {
			platforms = append(platforms, rel.platform)
		}
	}
	slices.Sort(platforms)
	n := 0
	for _, platform := range platforms {
		prevTar := ""
		var prev *release // the newest release so far that is not yanked
		for _, rel := range groupOf(rels, platform) {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			curTar := filepath.Join(work, fmt.Sprintf("%d.tar", n))
			n++
			size, sum, err := r.extractRelease(rel, curTar, false, consistent)
			if err != nil {
				problems = append(problems, err.Error())
				if !rel.archiveMeta.Yanked {
					prevTar, prev = "", rel
				}
				continue
			}
			// What a client does with the archive: extract it under the
			// same rules (checked without writing anything).
			ap, _ := r.targetPath(rel.archive)
			warnings, err := r.checkClientRules(ctx, ap, rel.archiveFile.Length, curTar, rel.archiveMeta.TarSize)
			if err != nil {
				problems = append(problems, fmt.Sprintf("archive %s: clients refuse to install it: %v", rel.archive, err))
			}
			rep.Warnings = append(rep.Warnings, warnings...)
			if rel.patch != "" {
				pm := rel.patchMeta
				switch {
				case rel.archiveMeta.Yanked:
					rep.Warnings = append(rep.Warnings, fmt.Sprintf("patch %s: release %s is yanked, clients never use it", rel.patch, rel.label()))
				case prev == nil:
					rep.Warnings = append(rep.Warnings, fmt.Sprintf("patch %s: no older release to apply it to", rel.patch))
				case prevTar == "":
					problems = append(problems, fmt.Sprintf("patch %s: not checked, the previous release's archive is broken", rel.patch))
				default:
					pp, _ := r.storedTarget(rel.patch, rel.patchFile, consistent)
					if f, err := r.patchFormat(pm.Format); err != nil {
						problems = append(problems, fmt.Sprintf("patch %s: %v", rel.patch, err))
					} else if err := r.checkPatch(f, prevTar, pp, pm.TarSize, pm.TarHash); err != nil {
						problems = append(problems, fmt.Sprintf("patch %s from %s: %v", rel.patch, prev.archive, err))
					} else {
						rep.Patches++
					}
				}
				if size != pm.TarSize || sum != pm.TarHash {
					problems = append(problems, fmt.Sprintf("archive %s: its tar (%d bytes, sha256 %s) differs from what patch %s gives (%d bytes, sha256 %s)",
						rel.archive, size, sum, rel.patch, pm.TarSize, pm.TarHash))
				}
			} else if prev != nil && !rel.archiveMeta.Yanked {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("release %s has no patch: clients download the full archive", rel.label()))
			}
			if rel.archiveMeta.Yanked {
				r.Fs.Remove(curTar)
				continue
			}
			if prevTar != "" {
				r.Fs.Remove(prevTar)
			}
			prevTar, prev = curTar, rel
		}
	}
	if len(problems) > 0 {
		return rep, &VerifyError{Problems: problems}
	}
	return rep, nil
}

// checkExpiry reports every expired role (root as the chain of root
// versions ended; the others as their files say) by its file, with what to
// run. go-tuf's trustedmetadata checks expiry too, but reports an expired
// root while loading timestamp.json, and an expired snapshot while loading
// targets.json. Files that do not parse are left to trustedmetadata.
func (r *Repository) checkExpiry(root *metadata.RootType, top map[string][]byte) error {
	ex := []roleExpiry{{RoleRoot, root.Version, root.Expires}}
	if ts, err := metadata.Timestamp().FromBytes(top["timestamp.json"]); err == nil {
		ex = append(ex, roleExpiry{RoleTimestamp, ts.Signed.Version, ts.Signed.Expires})
	}
	if sn, err := metadata.Snapshot().FromBytes(top["snapshot.json"]); err == nil {
		ex = append(ex, roleExpiry{RoleSnapshot, sn.Signed.Version, sn.Signed.Expires})
	}
	if tg, err := metadata.Targets().FromBytes(top["targets.json"]); err == nil {
		ex = append(ex, roleExpiry{RoleTargets, tg.Signed.Version, tg.Signed.Expires})
	}
	problems, roles := r.expired(ex)
	if len(problems) == 0 {
		return nil
	}
	return withHint(&expiredError{VerifyError{Problems: problems}}, "%s", resignHint(roles))
}

// roleExpiry is the version and expiry of a role's metadata.
type roleExpiry struct {
	role    string
	version int64
	expires time.Time
}

// expired describes each of the roles that has expired (at Repository.Now)
// by its file, and returns their names.
func (r *Repository) expired(ex []roleExpiry) (problems, roles []string) {
	now := r.now()
	for _, e := range ex {
		if now.Before(e.expires) {
			continue
		}
		roles = append(roles, e.role)
		problems = append(problems, fmt.Sprintf("%s (%s version %d) expired %s: clients refuse it",
			r.metaPath(e.role+".json"), e.role, e.version, e.expires.UTC().Format(time.RFC3339)))
	}
	return problems, roles
}

// expiryWarnings are the warnings of a change that published metadata
// (add, sign) while a role of the repository is expired: the change is
// signed and written, but clients refuse the whole repository until the
// expired role is re-signed.
func (r *Repository) expiryWarnings(st *state) []string {
	problems, roles := r.expired([]roleExpiry{
		{RoleRoot, st.root.Signed.Version, st.root.Signed.Expires},
		{RoleTargets, st.targets.Signed.Version, st.targets.Signed.Expires},
		{RoleSnapshot, st.snapshot.Signed.Version, st.snapshot.Signed.Expires},
		{RoleTimestamp, st.timestamp.Signed.Version, st.timestamp.Signed.Expires},
	})
	for i := range problems {
		problems[i] += "; " + resignHint(roles[i:i+1])
	}
	return problems
}

// expiredError is a VerifyError about expired metadata; it also matches
// go-tuf's *metadata.ErrExpiredMetadata.
type expiredError struct{ VerifyError }

func (e *expiredError) Is(target error) bool {
	_, ok := target.(*metadata.ErrExpiredMetadata)
	return ok
}

func (e *expiredError) As(target any) bool {
	if t, ok := target.(**VerifyError); ok {
		*t = &e.VerifyError
		return true
	}
	return false
}

// resignHint says how to give expired (or soon expiring) roles a new
// expiry: a new version signed where their keys are, then deployed.
func resignHint(roles []string) string {
	if len(roles) == 1 {
		return fmt.Sprintf("re-sign %s where its keys are: `notsotuf refresh` (or `notsotuf sign %[1]s --expires DAYS`), then deploy", roles[0])
	}
	return fmt.Sprintf("re-sign %s where their keys are: `notsotuf refresh` (or `notsotuf sign ROLE --expires DAYS` for each), then deploy",
		strings.Join(roles, ", "))
}

// versionedName is a versioned metadata file name, "3.snapshot.json".
var versionedName = regexp.MustCompile(`^[0-9]+\.[^/]+\.json$`)

// inferApp returns the app name of the first release target name.
func inferApp(names []string) string {
	for _, n := range names {
		if tn, err := ParseTargetName(n); err == nil {
			return tn.App
		}
	}
	return ""
}
