package notsotuf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
}

// RoleStatus describes one role's current metadata.
type RoleStatus struct {
	Role       string    `json:"role"`
	Version    int64     `json:"version"`
	Expires    time.Time `json:"expires"`
	Expired    bool      `json:"expired"`
	ExpiresIn  string    `json:"expires_in"` // e.g. "6d23h"; negative when expired
	Threshold  int       `json:"threshold"`
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
	s := &Status{App: r.Config.AppName, Now: now, PatchFormat: r.Config.PatchFormat}
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
		rs.ExpiresIn = formatDuration(left)
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
			rs.Warning = "expired: run `notsotuf refresh` (or `notsotuf sign " + role + "`)"
		case left < r.warnWithin(role):
			rs.Warning = "expires in " + rs.ExpiresIn + ": run `notsotuf refresh`"
		}
		if sigs < threshold {
			w := fmt.Sprintf("%d of %d signatures", sigs, threshold)
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
			Required: rel.archiveMeta.Required, TarSize: rel.archiveMeta.TarSize, TarHash: rel.archiveMeta.TarHash, User: rel.archiveMeta.User}
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
// recorded tar hash, and every patch of the chain: applying it to the
// previous release's tar must give the signed tar_size and tar_hash. A
// failure is a *VerifyError listing every problem found.
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
	for _, step := range []struct {
		name string
		load func([]byte) error
	}{
		{"timestamp.json", func(b []byte) error { _, err := trusted.UpdateTimestamp(b); return err }},
		{"snapshot.json", func(b []byte) error { _, err := trusted.UpdateSnapshot(b, false); return err }},
		{"targets.json", func(b []byte) error { _, err := trusted.UpdateTargets(b); return err }},
	} {
		data, err := r.readMeta(step.name)
		if err != nil {
			return nil, err
		}
		if err := step.load(data); err != nil {
			err = fmt.Errorf("verify %s: %w", r.metaPath(step.name), err)
			if errors.Is(err, &metadata.ErrExpiredMetadata{}) {
				return nil, withHint(err, "run `notsotuf refresh` to re-sign expiring metadata")
			}
			return nil, err
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
		if err := r.checkTargetFile(n, targets.Signed.Targets[n]); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		rep.Targets++
	}
	// Stray files in targets/ (temporary files of an interrupted run, or
	// files nobody signed).
	if entries, err := afero.ReadDir(r.Fs, r.targetsDir()); err == nil {
		for _, e := range entries {
			if _, ok := targets.Signed.Targets[e.Name()]; !ok {
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
	prevTar := ""
	for i, rel := range rels {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		curTar := filepath.Join(work, fmt.Sprintf("%d.tar", i))
		n, sum, err := r.extractRelease(rel, curTar, false)
		if err != nil {
			problems = append(problems, err.Error())
			prevTar = ""
			continue
		}
		if rel.patch != "" {
			pm := rel.patchMeta
			switch {
			case i == 0:
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("patch %s: no older release to apply it to", rel.patch))
			case prevTar == "":
				problems = append(problems, fmt.Sprintf("patch %s: not checked, the previous release's archive is broken", rel.patch))
			default:
				pp, _ := r.targetPath(rel.patch)
				if f, err := r.patchFormat(pm.Format); err != nil {
					problems = append(problems, fmt.Sprintf("patch %s: %v", rel.patch, err))
				} else if err := r.checkPatch(f, prevTar, pp, pm.TarSize, pm.TarHash); err != nil {
					problems = append(problems, fmt.Sprintf("patch %s from %s: %v", rel.patch, rels[i-1].archive, err))
				} else {
					rep.Patches++
				}
			}
			if n != pm.TarSize || sum != pm.TarHash {
				problems = append(problems, fmt.Sprintf("archive %s: its tar (%d bytes, sha256 %s) differs from what patch %s gives (%d bytes, sha256 %s)",
					rel.archive, n, sum, rel.patch, pm.TarSize, pm.TarHash))
			}
		} else if i > 0 {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("release %s has no patch: clients download the full archive", rel.version))
		}
		if prevTar != "" {
			r.Fs.Remove(prevTar)
		}
		prevTar = curTar
	}
	if len(problems) > 0 {
		return rep, &VerifyError{Problems: problems}
	}
	return rep, nil
}

// inferApp returns the app name of the first release target name.
func inferApp(names []string) string {
	for _, n := range names {
		if tn, err := ParseTargetName(n); err == nil {
			return tn.App
		}
	}
	return ""
}
