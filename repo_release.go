package notsotuf

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Release management on the repository side: yank, unyank, staged
// rollouts, and the patch chain rule they share with Add and Remove.
//
// The patch chain rule: within a platform group (the builds of one
// platform, or the builds for every platform), the patch of a release
// that is not yanked starts from the newest lower release of the group
// that is not yanked; a yanked release has no patch. (The issue that asked
// for hotfixes put it as "the nearest lower release of the same
// major.minor line, else the newest lower one": versions between two
// releases of one line are of that line too, so both say the same.) A
// chain is then a walk down through the releases that are not yanked,
// which is what clients compute (releaseSet.patchBase) and what a tufup
// client, which applies every patch between its version and the target,
// needs. Each change that moves a release's base rebuilds its patch, as
// Remove always did.

// Repatch is a patch rebuilt (or dropped) because the release below it
// changed.
type Repatch struct {
	Name string `json:"name"`           // the patch's target name
	From string `json:"from,omitempty"` // the version it now starts from; "" when dropped (nothing below)
}

// ChangeResult reports what a yank, unyank or rollout change did.
type ChangeResult struct {
	Releases  []string  // the archives whose metadata changed
	Repatched []Repatch // patches rebuilt or dropped on the way
	// Signatures and Threshold of the new targets metadata.
	Signatures, Threshold int
}

// groupOf returns the releases of rels in platform's group, by version.
func groupOf(rels []*release, platform string) []*release {
	var g []*release
	for _, rel := range rels {
		if rel.platform == platform {
			g = append(g, rel)
		}
	}
	return g
}

// prevLive returns the newest release of group below v that is not yanked,
// or nil.
func prevLive(group []*release, v Version) *release {
	for i := len(group) - 1; i >= 0; i-- {
		if group[i].version.Compare(v) < 0 && !group[i].archiveMeta.Yanked {
			return group[i]
		}
	}
	return nil
}

// nextLive returns the oldest release of group above v that is not yanked,
// or nil.
func nextLive(group []*release, v Version) *release {
	for _, rel := range group {
		if rel.version.Compare(v) > 0 && !rel.archiveMeta.Yanked {
			return rel
		}
	}
	return nil
}

// selectReleases returns the releases of version v, of one platform or
// (platform "") of every platform, or an error naming what exists.
func selectReleases(rels []*release, version, platform string) (Version, []*release, error) {
	v, err := ParseVersion(version)
	if err != nil {
		return Version{}, nil, err
	}
	if platform != "" {
		if err := ValidPlatform(platform); err != nil {
			return Version{}, nil, err
		}
	}
	var sel []*release
	var have []string
	for _, rel := range rels {
		if rel.version.Compare(v) == 0 && (platform == "" || rel.platform == platform) {
			sel = append(sel, rel)
		}
		have = append(have, rel.label())
	}
	if len(sel) == 0 {
		what := fmt.Sprintf("version %s", v)
		if platform != "" {
			what += " for platform " + platform
		}
		if len(have) == 0 {
			return Version{}, nil, fmt.Errorf("%s: no such release in targets.json (there are no releases)", what)
		}
		return Version{}, nil, withHint(fmt.Errorf("%s: no such release in targets.json", what), "releases: %s", strings.Join(have, ", "))
	}
	return v, sel, nil
}

// label names a release for messages: "1.2", or "1.2 (linux-amd64)".
func (rel *release) label() string {
	if rel.platform == "" {
		return rel.version.String()
	}
	return rel.version.String() + " (" + rel.platform + ")"
}

// stem returns the part of the release's target names before the version.
func (rel *release) stem(app string) string { return releaseStem(app, rel.platform) }

// setArchiveMeta re-signs rel's archive entry with m (the file is the same).
func (r *Repository) setArchiveMeta(st *state, rel *release, m ArchiveMeta) error {
	custom, err := m.Custom()
	if err != nil {
		return fmt.Errorf("target %s: %w", rel.archive, err)
	}
	tf := *st.targets.Signed.Targets[rel.archive]
	tf.Custom = &custom
	st.targets.Signed.Targets[rel.archive] = &tf
	rel.archiveFile, rel.archiveMeta = &tf, m
	return nil
}

// patcher rebuilds patches within one repository change, extracting each
// release's tar at most once.
type patcher struct {
	r    *Repository
	st   *state
	t    *txn
	work string
	tars map[*release]string // release -> its verified tar in work
	done []Repatch

	consistent bool // consistent snapshots: target files are stored as <sha256>.<name>
}

func (r *Repository) newPatcher(st *state, t *txn, work string) *patcher {
	return &patcher{r: r, st: st, t: t, work: work, tars: map[*release]string{}, consistent: st.root.Signed.ConsistentSnapshot}
}

// stored is the file holding target name (see Repository.storedTarget).
func (p *patcher) stored(name string, tf *metadata.TargetFiles) (string, error) {
	return p.r.storedTarget(name, tf, p.consistent)
}

// tar returns the path of rel's tar, extracted from its archive (checked
// against its metadata) on first use.
func (p *patcher) tar(rel *release) (string, int64, string, error) {
	if path, ok := p.tars[rel]; ok {
		n, sum, err := hashFile(p.r.Fs, path)
		return path, n, sum, err
	}
	path := filepath.Join(p.work, fmt.Sprintf("%d.tar", len(p.tars)))
	n, sum, err := p.r.extractRelease(rel, path, true, p.consistent)
	if err != nil {
		return "", 0, "", err
	}
	if rel.patch != "" && (n != rel.patchMeta.TarSize || sum != rel.patchMeta.TarHash) {
		return "", 0, "", fmt.Errorf("release %s: its archive's tar (%d bytes, sha256 %s) differs from what its patch gives (%d bytes, sha256 %s)",
			rel.label(), n, sum, rel.patchMeta.TarSize, rel.patchMeta.TarHash)
	}
	p.tars[rel] = path
	return path, n, sum, nil
}

// drop removes rel's patch, if it has one, reporting it as a repair
// (nothing below rel to patch from any more).
func (p *patcher) drop(rel *release) error {
	if rel.patch != "" {
		p.done = append(p.done, Repatch{Name: rel.patch})
	}
	return p.withdraw(rel)
}

// withdraw removes rel's patch, if it has one.
func (p *patcher) withdraw(rel *release) error {
	if rel.patch == "" {
		return nil
	}
	path, err := p.stored(rel.patch, rel.patchFile)
	if err != nil {
		return err
	}
	delete(p.st.targets.Signed.Targets, rel.patch)
	p.t.deleteOnCommit(path)
	rel.patch, rel.patchFile, rel.patchMeta = "", nil, PatchMeta{}
	return nil
}

// rebuild gives rel a new patch from base (nil: drops rel's patch),
// checked by applying it, to be published with the change.
func (p *patcher) rebuild(ctx context.Context, rel, base *release) error {
	if base == nil {
		return p.drop(rel)
	}
	baseTar, _, _, err := p.tar(base)
	if err != nil {
		return err
	}
	relTar, n, sum, err := p.tar(rel)
	if err != nil {
		return err
	}
	// The patch keeps its format; a release without one gets the
	// configured format.
	formatName := rel.patchMeta.Format
	if rel.patch == "" {
		formatName = p.r.Config.PatchFormat
	}
	pformat, err := p.r.patchFormat(formatName)
	if err != nil {
		return err
	}
	name := PatchName(rel.stem(p.r.Config.AppName), rel.version)
	p.r.log().Info("computing patch", "name", name, "from", base.version.String(), "format", pformat.Name)
	pf, err := afero.TempFile(p.r.Fs, p.r.targetsDir(), "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("create patch in %s: %w", p.r.targetsDir(), err)
	}
	p.t.temps = append(p.t.temps, pf.Name())
	err = diffTarFiles(ctx, p.r.Fs, pformat, baseTar, relTar, pf, p.r.Progress)
	if err = errors.Join(err, closeSync(pf)); err != nil {
		return fmt.Errorf("patch %s: %w", name, err)
	}
	if err := p.r.checkPatch(pformat, baseTar, pf.Name(), n, sum); err != nil {
		return fmt.Errorf("patch %s failed its check (nothing was changed): %w", name, err)
	}
	pi, err := targetInfo(p.r.Fs, pf.Name(), name)
	if err != nil {
		return err
	}
	pm := PatchMeta{TarSize: n, TarHash: sum, Format: pformat.Name}
	if pm.Format == PatchFormatBSDiff {
		pm.Format = ""
	}
	custom, err := pm.Custom()
	if err != nil {
		return err
	}
	// With consistent snapshots the old patch's file has another name than
	// the new one's: it goes after the metadata. (Without, the new file
	// replaces it in place.)
	var old string
	if rel.patch != "" {
		if old, err = p.stored(rel.patch, rel.patchFile); err != nil {
			return err
		}
	}
	tf := newTargetFile(name, pi, custom)
	p.st.targets.Signed.Targets[name] = tf
	final, err := p.stored(name, tf)
	if err != nil {
		return err
	}
	if err := p.t.install(pf.Name(), final); err != nil {
		return err
	}
	if old != "" && old != final {
		p.t.deleteOnCommit(old)
	}
	rel.patch, rel.patchFile, rel.patchMeta = name, tf, pm
	p.done = append(p.done, Repatch{Name: name, From: base.version.String()})
	return nil
}

// change runs one change of release metadata: it loads the state, lets
// edit change it (with a patcher for the patches it moves), signs new
// targets, snapshot and timestamp and commits, or changes nothing.
func (r *Repository) change(ctx context.Context, op string, edit func(rels []*release, st *state, p *patcher) ([]string, error)) (res *ChangeResult, err error) {
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	rels, _, err := r.releases(&st.targets.Signed)
	if err != nil {
		return nil, err
	}
	kr := r.newKeyring()
	if err := r.checkSigners(st, kr, RoleTargets, RoleSnapshot, RoleTimestamp); err != nil {
		return nil, err
	}
	work, cleanup, err := r.workDir()
	if err != nil {
		return nil, err
	}
	defer cleanup()
	t := r.newTxn()
	defer t.finish(op, &err)
	p := r.newPatcher(st, t, work)
	changed, err := edit(rels, st, p)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pr, err := r.publish(st, kr, publishOptions{bump: []string{RoleTargets}}, t)
	if err != nil {
		return nil, err
	}
	if err := t.commit(); err != nil {
		return nil, err
	}
	s := pr.Signatures[RoleTargets]
	return &ChangeResult{Releases: changed, Repatched: p.done, Signatures: s[0], Threshold: s[1]}, nil
}

// Yank withdraws a release without deleting it: its archive stays, marked
// yanked (with reason, which clients show) in signed metadata. Clients
// never install a yanked release, and those running it go back to the
// newest release of their channel that is not yanked (see Client.Decide).
// The patch chain routes around it: its own patch is dropped and the
// patch of the release above it now starts from the release below it.
// platform "" yanks the version's builds for every platform and of each
// platform.
func (r *Repository) Yank(ctx context.Context, version, platform, reason string) (*ChangeResult, error) {
	if err := ValidYankReason(reason); err != nil {
		return nil, err
	}
	return r.change(ctx, "yank", func(rels []*release, st *state, p *patcher) ([]string, error) {
		v, sel, err := selectReleases(rels, version, platform)
		if err != nil {
			return nil, err
		}
		var changed []string
		for _, rel := range sel {
			if rel.archiveMeta.Yanked {
				if len(sel) == 1 {
					return nil, withHint(fmt.Errorf("release %s is already yanked", rel.label()), "`notsotuf unyank %s` publishes it again", v)
				}
				continue
			}
			m := rel.archiveMeta
			m.Yanked, m.YankReason = true, reason
			if err := r.setArchiveMeta(st, rel, m); err != nil {
				return nil, err
			}
			if err := p.withdraw(rel); err != nil { // a yanked release has no patch
				return nil, err
			}
			group := groupOf(rels, rel.platform)
			if next := nextLive(group, v); next != nil && next.patch != "" {
				if err := p.rebuild(ctx, next, prevLive(group, v)); err != nil {
					return nil, err
				}
			}
			changed = append(changed, rel.archive)
		}
		if len(changed) == 0 {
			return nil, fmt.Errorf("version %s: every build is already yanked", v)
		}
		return changed, nil
	})
}

// Unyank publishes a yanked release again: its patch from the release
// below it is rebuilt, and the release above it patches from it again.
// platform "" unyanks every yanked build of the version.
func (r *Repository) Unyank(ctx context.Context, version, platform string) (*ChangeResult, error) {
	return r.change(ctx, "unyank", func(rels []*release, st *state, p *patcher) ([]string, error) {
		v, sel, err := selectReleases(rels, version, platform)
		if err != nil {
			return nil, err
		}
		var changed []string
		for _, rel := range sel {
			if !rel.archiveMeta.Yanked {
				continue
			}
			m := rel.archiveMeta
			m.Yanked, m.YankReason = false, ""
			if err := r.setArchiveMeta(st, rel, m); err != nil {
				return nil, err
			}
			group := groupOf(rels, rel.platform)
			if base := prevLive(group, v); base != nil {
				if err := p.rebuild(ctx, rel, base); err != nil {
					return nil, err
				}
			}
			if next := nextLive(group, v); next != nil && next.patch != "" {
				if err := p.rebuild(ctx, next, rel); err != nil {
					return nil, err
				}
			}
			changed = append(changed, rel.archive)
		}
		if len(changed) == 0 {
			return nil, fmt.Errorf("version %s: not yanked", v)
		}
		return changed, nil
	})
}

// SetRollout sets the staged rollout of a release: the percent of installs
// (0 to 100) that are offered it. Each install has a random, persistent
// bucket; it is offered the release when its bucket is below the percent,
// so raising the percent only adds installs. 0 halts the rollout (installs
// already on the release stay), 100 completes it. platform "" sets it for
// every build of the version.
func (r *Repository) SetRollout(ctx context.Context, version, platform string, percent int) (*ChangeResult, error) {
	if err := validRollout(percent); err != nil {
		return nil, err
	}
	return r.change(ctx, "rollout", func(rels []*release, st *state, p *patcher) ([]string, error) {
		_, sel, err := selectReleases(rels, version, platform)
		if err != nil {
			return nil, err
		}
		var changed []string
		for _, rel := range sel {
			m := rel.archiveMeta
			m.Rollout = nil
			if percent < 100 {
				m.Rollout = &percent
			}
			if err := r.setArchiveMeta(st, rel, m); err != nil {
				return nil, err
			}
			changed = append(changed, rel.archive)
		}
		return changed, nil
	})
}

// Remove withdraws the release version (any release, not only the newest):
// the archives and patches of its builds leave targets metadata and the
// targets directory. When the release above a removed build (that was not
// yanked) has a patch from it, that patch is rebuilt from the release below
// (or dropped when there is none), so the patch chain stays unbroken.
func (r *Repository) Remove(ctx context.Context, version string) error {
	_, err := r.RemoveBuild(ctx, version, "")
	return err
}

// RemoveBuild is Remove for the build of one platform; platform "" removes
// every build of the version.
func (r *Repository) RemoveBuild(ctx context.Context, version, platform string) (*ChangeResult, error) {
	return r.change(ctx, "remove", func(rels []*release, st *state, p *patcher) ([]string, error) {
		v, sel, err := selectReleases(rels, version, platform)
		if err != nil {
			return nil, err
		}
		var changed []string
		for _, gone := range sel {
			group := groupOf(rels, gone.platform)
			next := nextLive(group, v)
			for _, n := range []string{gone.archive, gone.patch} {
				if n == "" {
					continue
				}
				path, err := p.stored(n, st.targets.Signed.Targets[n])
				if err != nil {
					return nil, err
				}
				delete(st.targets.Signed.Targets, n)
				p.t.deleteOnCommit(path)
			}
			if !gone.archiveMeta.Yanked && next != nil && next.patch != "" {
				rest := slices.DeleteFunc(slices.Clone(group), func(rel *release) bool { return rel == gone })
				if err := p.rebuild(ctx, next, prevLive(rest, v)); err != nil {
					return nil, err
				}
			}
			changed = append(changed, gone.archive)
		}
		return changed, nil
	})
}
