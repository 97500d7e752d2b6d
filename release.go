package notsotuf

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// This file holds the client's release rules that rest on signed custom
// metadata (see ArchiveMeta): which builds a client sees (platform), which
// release it is offered (channel, version specifier, yanks, staged
// rollouts, required releases) and the patch chain that leads there.

// releaseSet is what a client sees of a repository: the builds for its
// platform and the builds for every platform, one per version.
type releaseSet struct {
	// view has one release per version, sorted: the build for the
	// client's platform when there is one, else the build for every
	// platform.
	view []*clientRelease
	// groups holds every release by platform ("" for every platform),
	// sorted: each patch starts from the release before it in its own
	// group that is not yanked.
	groups map[string][]*clientRelease
	// platforms lists every platform the repository has builds for,
	// sorted (so a client configured with another one can say so).
	platforms []string
}

// releaseSetOf gathers app's releases from the signed targets for a client
// on platform (see releases for what is left out). A build for the
// platform is named <app>-<platform>-<version> and signs that platform; a
// build for every platform is named <app>-<version> and signs none. A
// name and a signed platform that disagree leave the archive out.
func releaseSetOf(targets map[string]*metadata.TargetFiles, app, platform string, log *slog.Logger) *releaseSet {
	own := map[string]string{app: ""} // name stem -> platform
	if platform != "" {
		own[releaseStem(app, platform)] = platform
	}
	type key struct{ platform, version string }
	byKey := map[key]*clientRelease{}
	seen := map[string]bool{}
	for name, tf := range targets {
		tn, err := ParseTargetName(name)
		if err != nil {
			continue
		}
		p, ok := own[tn.App]
		if !ok {
			// Another platform's build? (Only to name it in a warning.)
			if rest, found := strings.CutPrefix(tn.App, app+"-"); found && tn.Kind == KindArchive && ValidPlatform(rest) == nil {
				if m, err := ParseArchiveMeta(tf.Custom); err == nil && m.Platform == rest {
					seen[rest] = true
				}
			}
			continue
		}
		if _, ok := tf.Hashes["sha256"]; !ok {
			log.Warn("ignoring target without sha256 hash", "target", name)
			continue
		}
		k := key{p, tn.Version.String()}
		r := byKey[k]
		if r == nil {
			r = &clientRelease{version: tn.Version, platform: p}
			byKey[k] = r
		}
		switch tn.Kind {
		case KindArchive:
			m, err := ParseArchiveMeta(tf.Custom)
			if err == nil && m.Platform != p {
				err = fmt.Errorf("signed platform %q differs from the name's %q", m.Platform, p)
			}
			if err != nil {
				log.Warn("ignoring archive with bad custom metadata", "target", name, "err", err)
				continue
			}
			r.archive, r.meta = tf, m
		case KindPatch:
			m, err := ParsePatchMeta(tf.Custom)
			if err != nil {
				log.Warn("ignoring patch with bad custom metadata", "target", name, "err", err)
				continue
			}
			r.patch, r.patchMeta = tf, m
		}
	}
	s := &releaseSet{groups: map[string][]*clientRelease{}}
	for p := range seen {
		s.platforms = append(s.platforms, p)
	}
	byVersion := map[string]*clientRelease{}
	for k, r := range byKey {
		if r.archive == nil && r.patch == nil {
			continue
		}
		s.groups[k.platform] = append(s.groups[k.platform], r)
		if k.platform != "" && !slices.Contains(s.platforms, k.platform) {
			s.platforms = append(s.platforms, k.platform)
		}
		// The platform's build wins over the build for every platform
		// (unless it has no usable archive).
		if cur := byVersion[k.version]; cur == nil || (cur.archive == nil && r.archive != nil) ||
			(r.platform != "" && r.archive != nil) {
			byVersion[k.version] = r
		}
	}
	byVer := func(a, b *clientRelease) int { return a.version.Compare(b.version) }
	for p := range s.groups {
		slices.SortFunc(s.groups[p], byVer)
	}
	slices.Sort(s.platforms)
	for _, r := range byVersion {
		s.view = append(s.view, r)
	}
	slices.SortFunc(s.view, byVer)
	return s
}

// at returns the release the client sees at version v, or nil.
func (s *releaseSet) at(v Version) *clientRelease {
	for _, r := range s.view {
		if r.version.Compare(v) == 0 {
			return r
		}
	}
	return nil
}

// patchBase returns the release r's patch starts from: the newest release
// below r in r's platform group that has an archive and is not yanked, as
// the repository builds them (see Repository.Add). Nil when there is none.
func (s *releaseSet) patchBase(r *clientRelease) *clientRelease {
	g := s.groups[r.platform]
	for i := len(g) - 1; i >= 0; i-- {
		b := g[i]
		if b.version.Compare(r.version) < 0 && b.archive != nil && !b.meta.Yanked {
			return b
		}
	}
	return nil
}

// patchChain returns the releases whose patches lead from the installed
// release cur to target, in the order they apply: each patch starts from
// the release before it in its platform group that is not yanked, so the
// chain walks back from the target to cur. Otherwise it returns why the
// patches cannot be used.
func (s *releaseSet) patchChain(cur, target *clientRelease, current Version) ([]*clientRelease, string) {
	if cur == nil || cur.archive == nil && cur.patch == nil {
		return nil, fmt.Sprintf("the installed version %s is not in the repository", current)
	}
	var chain []*clientRelease
	for r := target; r != cur; {
		if r.patch == nil {
			return nil, fmt.Sprintf("there is no patch to %s", r.version)
		}
		chain = append(chain, r)
		b := s.patchBase(r)
		if b == nil || b.version.Compare(current) < 0 || (b.version.Compare(current) == 0 && b != cur) {
			return nil, fmt.Sprintf("no patch chain leads from %s to %s", current, target.version)
		}
		r = b
	}
	slices.Reverse(chain)
	return chain, ""
}

// Withheld is a release newer than the one a client is offered (or than
// the installed one, when none is) that the client is not offered, and why.
type Withheld struct {
	Version  Version
	Platform string // the build's platform; "" for a build for every platform
	Reason   string // e.g. "yanked: crashes on start", "staged rollout to 20% of installs (this install's bucket: 53.17)"
}

// selectOptions are the client's rules for choosing a release.
type selectOptions struct {
	channel  string
	versions Specifier
	// bucket returns the install's rollout bucket in units of 1/10000 of
	// a percent, [0, 1000000); called only for a staged rollout.
	bucket func() (int, error)
}

// selection is what selectRelease decided.
type selection struct {
	target   *clientRelease // nil: nothing to install
	rollback bool           // target is lower than the installed version, which is yanked
	reason   string         // rollback: why
	withheld []Withheld
}

// selectRelease chooses the release a client at current installs: among
// the releases above current on its channel that its version specifier
// allows, not yanked and within their staged rollout for this install, in
// version order, the first required one, else the newest (tufup's rule,
// with yanks and rollouts). A required release the client may not have
// yet (its rollout) stops the search there. When nothing is newer and the
// installed version is yanked, it chooses the newest lower release that
// passes the same rules: a downgrade the publisher signed (rollback). A
// lower version is never chosen otherwise.
func selectRelease(s *releaseSet, current Version, o selectOptions) selection {
	var sel selection
	var held []Withheld
	hold := func(r *clientRelease, why string) {
		held = append(held, Withheld{Version: r.version, Platform: r.platform, Reason: why})
	}
	// eligible reports whether r may be offered, or why not.
	eligible := func(r *clientRelease) (bool, string) {
		switch {
		case r.meta.Yanked:
			if r.meta.YankReason != "" {
				return false, "yanked: " + r.meta.YankReason
			}
			return false, "yanked"
		case !o.versions.Contains(r.version):
			return false, "outside the versions allowed (" + o.versions.String() + ")"
		}
		p := r.meta.RolloutPercent()
		switch {
		case p >= 100:
			return true, ""
		case p <= 0:
			return false, "its rollout is halted"
		}
		b, err := o.bucket()
		if err != nil {
			return false, fmt.Sprintf("staged rollout to %d%% of installs, and this install has no rollout bucket (%v)", p, err)
		}
		if b < p*10000 {
			return true, ""
		}
		return false, fmt.Sprintf("staged rollout to %d%% of installs (this install's bucket: %s)", p, formatBucket(b))
	}
	var blocker *clientRelease // a required release the client cannot have yet
	for _, r := range s.view {
		if r.archive == nil || r.version.Compare(current) <= 0 || !r.version.OnChannel(o.channel) {
			continue
		}
		if blocker != nil {
			if !r.meta.Yanked {
				hold(r, fmt.Sprintf("the required release %s comes first", blocker.version))
			}
			continue
		}
		ok, why := eligible(r)
		if !ok {
			hold(r, why)
			if r.meta.Required && !r.meta.Yanked {
				blocker = r
			}
			continue
		}
		sel.target = r
		if r.meta.Required {
			blocker = r
		}
	}
	floor := current
	if sel.target != nil {
		floor = sel.target.version
	}
	for _, w := range held {
		if w.Version.Compare(floor) > 0 {
			sel.withheld = append(sel.withheld, w)
		}
	}
	if sel.target != nil {
		return sel
	}
	cur := s.at(current)
	if cur == nil || cur.archive == nil || !cur.meta.Yanked {
		return sel
	}
	for i := len(s.view) - 1; i >= 0; i-- {
		r := s.view[i]
		if r.archive == nil || r.version.Compare(current) >= 0 || !r.version.OnChannel(o.channel) {
			continue
		}
		if ok, _ := eligible(r); ok {
			sel.target, sel.rollback = r, true
			sel.reason = fmt.Sprintf("the installed version %s was yanked", current)
			if cur.meta.YankReason != "" {
				sel.reason += ": " + cur.meta.YankReason
			}
			return sel
		}
	}
	return sel
}

// formatBucket prints a rollout bucket as a percentage.
func formatBucket(b int) string {
	return fmt.Sprintf("%d.%04d", b/10000, b%10000)
}

// bucketFile is the install's rollout bucket, in the cache directory.
const bucketFile = "rollout-bucket"

// bucketRange is the number of rollout buckets: a bucket is a percentage
// with four decimals.
const bucketRange = 100 * 10000

// rolloutBucket returns the install's rollout bucket, [0, bucketRange):
// a random number drawn once and kept in CacheDir/rollout-bucket, so an
// install stays on the same side of a staged rollout as it widens. A
// missing or unreadable file is replaced by a new draw, written
// atomically.
func rolloutBucket(fsys afero.Fs, cacheDir string, log *slog.Logger) (int, error) {
	p := filepath.Join(cacheDir, bucketFile)
	if data, err := afero.ReadFile(fsys, p); err == nil {
		if b, err := parseBucket(data); err == nil {
			return b, nil
		}
		log.Warn("rollout bucket file is corrupt: drawing a new one", "file", p)
	}
	n, err := rand.Int(rand.Reader, big.NewInt(bucketRange))
	if err != nil {
		return 0, fmt.Errorf("rollout bucket: %w", err)
	}
	b := int(n.Int64())
	if err := fsys.MkdirAll(cacheDir, 0o755); err != nil {
		return 0, fmt.Errorf("rollout bucket %s: %w", p, err)
	}
	if err := writeFileAtomic(fsys, p, []byte(strconv.Itoa(b)+"\n"), 0o644); err != nil {
		return 0, fmt.Errorf("rollout bucket %s: %w", p, err)
	}
	return b, nil
}

func parseBucket(data []byte) (int, error) {
	s := strings.TrimSuffix(string(data), "\n")
	if s == "" || len(s) > 7 || strings.Trim(s, "0123456789") != "" {
		return 0, errors.New("not a bucket number")
	}
	b, err := strconv.Atoi(s)
	if err != nil || b >= bucketRange {
		return 0, errors.New("not a bucket number")
	}
	return b, nil
}
