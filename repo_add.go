package notsotuf

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// AddOptions describes a release to add.
type AddOptions struct {
	Version   string          // PEP 440; not yet published (for this platform)
	BundleDir string          // the directory tree to release (read through Repository.Fs)
	Required  bool            // clients must install this release before newer ones
	UserMeta  json.RawMessage // published as custom.user (no floats); nil for none
	SkipPatch bool            // publish the archive only
	// PatchFormat is the format of the patch ("bsdiff", "compact", or one
	// of Repository.PatchFormats); "" means Config.PatchFormat.
	PatchFormat string
	// Partial publishes targets metadata with the signatures of the keys
	// available here even when they are fewer than the targets threshold;
	// the other key holders complete it with `notsotuf sign targets`.
	// Clients see the release only then.
	Partial bool
	// Platform, when set, publishes a build for one platform (see
	// ValidPlatform) as <app>-<platform>-<version>.tar.gz, with its own
	// patch chain; clients configured with that platform install it.
	// "" publishes a build for every platform, named as tufup names them.
	Platform string
	// Rollout, when set, starts a staged rollout: the percent (0 to 100)
	// of installs offered the release (see Repository.SetRollout).
	Rollout *int
}

// TargetInfo describes a published target file.
type TargetInfo struct {
	Name    string `json:"name"`
	Length  int64  `json:"length"`
	SHA256  string `json:"sha256"`
	TarSize int64  `json:"tar_size,omitempty"` // size of the uncompressed tar it gives
	TarHash string `json:"tar_hash,omitempty"` // sha256 of that tar
}

// AddResult reports a published release.
type AddResult struct {
	Version Version
	Archive TargetInfo
	Patch   *TargetInfo // nil for the first release or with SkipPatch
	From    string      // version the patch applies to
	// PatchFormat is the patch's format (see Config.PatchFormat).
	PatchFormat string
	// Repatched lists the patches of other releases rebuilt because this
	// one now stands below them (a hotfix below a newer release).
	Repatched []Repatch
	// Signatures and Threshold of the new targets metadata (Signatures is
	// below Threshold only with AddOptions.Partial).
	Signatures, Threshold int
	// Warnings are what the publisher must act on although the release is
	// published: a role of the repository (root, say) is expired, so clients
	// refuse every release until it is re-signed.
	Warnings []string
}

// release is one version in targets metadata, for one platform or for
// every platform.
type release struct {
	version     Version
	platform    string // "" for a build for every platform
	archive     string
	archiveFile *metadata.TargetFiles
	archiveMeta ArchiveMeta
	patch       string // "" when none
	patchFile   *metadata.TargetFiles
	patchMeta   PatchMeta
}

// releases lists the app's releases in targets metadata, sorted by version
// then platform. Other targets (other apps, unparsable names, patches
// without their archive) are returned as names in others. An archive
// named <app>-<version>.tar.gz is a build for every platform; one named
// <app>-<platform>-<version>.tar.gz is a platform's build when its signed
// metadata names that platform (else it is another app's: "demo-tools" is
// not the platform "tools" of "demo"). A patch belongs to the archive of
// the same name.
func (r *Repository) releases(t *metadata.TargetsType) (rels []*release, others []string, err error) {
	app := r.Config.AppName
	type key struct{ stem, version string }
	byKey := map[key]*release{}
	names := make([]string, 0, len(t.Targets))
	for n := range t.Targets {
		names = append(names, n)
	}
	slices.Sort(names)
	var patches []TargetName
	for _, n := range names {
		tf := t.Targets[n]
		tn, perr := ParseTargetName(n)
		if perr != nil {
			others = append(others, n)
			continue
		}
		if tn.Kind == KindPatch {
			patches = append(patches, tn)
			continue
		}
		platform, ok := strings.CutPrefix(tn.App, app+"-")
		if tn.App == app {
			platform, ok = "", true
		}
		if !ok {
			others = append(others, n)
			continue
		}
		m, err := ParseArchiveMeta(tf.Custom)
		if err != nil {
			if platform != "" {
				others = append(others, n)
				continue
			}
			return nil, nil, fmt.Errorf("targets.json: target %s: %w", n, err)
		}
		switch {
		case m.Platform == platform:
		case platform != "" && m.Platform == "":
			others = append(others, n) // another app's
			continue
		default:
			return nil, nil, fmt.Errorf("targets.json: target %s: its metadata signs platform %q", n, m.Platform)
		}
		rel := &release{version: tn.Version, platform: platform, archive: n, archiveFile: tf, archiveMeta: m}
		byKey[key{tn.App, tn.Version.String()}] = rel
		rels = append(rels, rel)
	}
	for _, tn := range patches {
		rel := byKey[key{tn.App, tn.Version.String()}]
		if rel == nil {
			others = append(others, tn.Name)
			continue
		}
		tf := t.Targets[tn.Name]
		rel.patch, rel.patchFile = tn.Name, tf
		if rel.patchMeta, err = ParsePatchMeta(tf.Custom); err != nil {
			return nil, nil, fmt.Errorf("targets.json: target %s: %w", tn.Name, err)
		}
	}
	slices.SortFunc(rels, func(a, b *release) int {
		if c := a.version.Compare(b.version); c != 0 {
			return c
		}
		return strings.Compare(a.platform, b.platform)
	})
	slices.Sort(others)
	return rels, others, nil
}

func (r *Repository) workDir() (string, func(), error) {
	d, err := afero.TempDir(r.Fs, "", "notsotuf-work-")
	if err != nil {
		return "", nil, fmt.Errorf("work directory: %w", err)
	}
	return d, func() { r.Fs.RemoveAll(d) }, nil
}

// checkSigners fails early, before any expensive work, when the keys of a
// role that will be re-signed are not all here.
func (r *Repository) checkSigners(st *state, kr *keyring, roles ...string) error {
	for _, role := range roles {
		s, err := kr.signersFor(&st.root.Signed, role)
		if err != nil {
			return err
		}
		if err := s.enough(kr); err != nil {
			return err
		}
	}
	return nil
}

// Add publishes a release: the deterministic archive of the bundle
// (<app>-<version>.tar.gz, or <app>-<platform>-<version>.tar.gz for a
// platform's build), a patch from the tar of the newest lower release of
// its platform group that is not yanked (verified by applying it), and new
// targets, snapshot and timestamp metadata. Any version not yet published
// is accepted, not only a newer one: a hotfix 1.4.1 after 2.0 patches from
// 1.4, and the release above it (2.0) gets a new patch from the hotfix, so
// that each chain steps through every release (see repo_release.go). The
// target files are written under temporary names and renamed into place
// before the metadata, timestamp last; on any error everything it wrote is
// removed and the repository is as it was.
func (r *Repository) Add(ctx context.Context, opts AddOptions) (res *AddResult, err error) {
	v, err := ParseVersion(opts.Version)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(opts.UserMeta)) > 0 {
		if err := checkUserMeta(opts.UserMeta); err != nil {
			return nil, err
		}
	}
	fi, err := r.Fs.Stat(opts.BundleDir)
	if err != nil {
		return nil, withHint(fmt.Errorf("bundle directory %s: %w", opts.BundleDir, err), "give the directory holding the built application")
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("bundle directory %s: not a directory", opts.BundleDir)
	}
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	rels, _, err := r.releases(&st.targets.Signed)
	if err != nil {
		return nil, err
	}
	if opts.Platform != "" {
		if err := ValidPlatform(opts.Platform); err != nil {
			return nil, withHint(fmt.Errorf("--platform: %w", err), "name platforms as GOOS-GOARCH does: linux-amd64, darwin-arm64, windows-amd64")
		}
	}
	rollout := opts.Rollout
	if rollout != nil {
		if err := validRollout(*rollout); err != nil {
			return nil, err
		}
		if *rollout == 100 {
			rollout = nil
		}
	}
	group := groupOf(rels, opts.Platform)
	for _, rel := range group {
		if rel.version.Compare(v) == 0 {
			return nil, withHint(fmt.Errorf("release %s is already published (%s)", rel.label(), rel.archive),
				"a published release is never replaced: publish a new version (and `notsotuf yank %s` if this one is bad)", rel.version)
		}
	}
	prev, next := prevLive(group, v), nextLive(group, v)
	stem := releaseStem(r.Config.AppName, opts.Platform)
	archiveName := ArchiveName(stem, v)
	patchName := PatchName(stem, v)
	for _, n := range []string{archiveName, patchName} {
		p := filepath.Join(r.targetsDir(), n)
		if ok, err := exists(r.Fs, p); err != nil {
			return nil, err
		} else if ok {
			return nil, withHint(fmt.Errorf("target file %s already exists but is not in targets.json", p), "remove the stray file")
		}
	}
	if opts.PatchFormat == "" {
		opts.PatchFormat = r.Config.PatchFormat
	}
	pformat, err := r.patchFormat(opts.PatchFormat)
	if err != nil {
		return nil, err
	}
	consistent := st.root.Signed.ConsistentSnapshot
	kr := r.newKeyring()
	roles := []string{RoleTargets, RoleSnapshot, RoleTimestamp}
	if opts.Partial {
		roles = roles[1:]
	}
	if err := r.checkSigners(st, kr, roles...); err != nil {
		return nil, err
	}
	work, cleanup, err := r.workDir()
	if err != nil {
		return nil, err
	}
	defer cleanup()
	t := r.newTxn()
	defer t.finish("add", &err)
	if err := t.mkdirAll(r.targetsDir()); err != nil {
		return nil, err
	}

	// Archive, and the raw tar for the patch, in one pass.
	r.log().Info("writing archive", "name", archiveName, "bundle", opts.BundleDir)
	archTmp, err := afero.TempFile(r.Fs, r.targetsDir(), "."+archiveName+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("create archive in %s: %w", r.targetsDir(), err)
	}
	t.temps = append(t.temps, archTmp.Name())
	newTar := filepath.Join(work, "new.tar")
	tarFile, err := r.Fs.Create(newTar)
	if err != nil {
		archTmp.Close()
		return nil, fmt.Errorf("create %s: %w", newTar, err)
	}
	tarOut, archived := r.archiveProgress(opts.BundleDir, tarFile)
	tarSize, tarHash, err := writeArchive(r.Fs, opts.BundleDir, archTmp, tarOut)
	err = errors.Join(err, closeSync(archTmp), tarFile.Close())
	if err != nil {
		return nil, err
	}
	archived(tarSize)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res = &AddResult{Version: v}
	res.Archive, err = targetInfo(r.Fs, archTmp.Name(), archiveName)
	if err != nil {
		return nil, err
	}
	// Publish nothing a client would refuse to install.
	warnings, err := r.checkClientRules(ctx, archiveName, res.Archive.Length, newTar, tarSize)
	if err != nil {
		return nil, withHint(fmt.Errorf("bundle %s: clients would refuse to install this release (nothing was published): %w", opts.BundleDir, err),
			"rename or remove the entries named (the rules: docs/publishing.md, \"What clients accept in an archive\")")
	}
	for _, w := range warnings {
		r.log().Warn("bundle entry", "warning", w)
	}
	res.Archive.TarSize, res.Archive.TarHash = tarSize, tarHash
	p := r.newPatcher(st, t, work)
	added := &release{version: v, platform: opts.Platform, archive: archiveName}
	p.tars[added] = newTar

	var patchTmp string
	if prev != nil && !opts.SkipPatch {
		prevTar := filepath.Join(work, "prev.tar")
		if _, _, err := r.extractRelease(prev, prevTar, true, consistent); err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r.log().Info("computing patch", "name", patchName, "from", prev.version.String(), "format", pformat.Name)
		pf, err := afero.TempFile(r.Fs, r.targetsDir(), "."+patchName+".tmp-*")
		if err != nil {
			return nil, fmt.Errorf("create patch in %s: %w", r.targetsDir(), err)
		}
		patchTmp = pf.Name()
		t.temps = append(t.temps, patchTmp)
		err = diffTarFiles(ctx, r.Fs, pformat, prevTar, newTar, pf, r.Progress)
		if err = errors.Join(err, closeSync(pf)); err != nil {
			return nil, fmt.Errorf("patch %s: %w", patchName, err)
		}
		if err := r.checkPatch(pformat, prevTar, patchTmp, tarSize, tarHash); err != nil {
			return nil, fmt.Errorf("patch %s failed its check (nothing was published): %w", patchName, err)
		}
		pi, err := targetInfo(r.Fs, patchTmp, patchName)
		if err != nil {
			return nil, err
		}
		pi.TarSize, pi.TarHash = tarSize, tarHash
		res.Patch, res.From, res.PatchFormat = &pi, prev.version.String(), pformat.Name
	}

	// The release above now patches from this one.
	if next != nil && next.patch != "" {
		if err := p.rebuild(ctx, next, added); err != nil {
			return nil, err
		}
		res.Repatched = p.done
	}

	// Metadata entries.
	am := ArchiveMeta{User: opts.UserMeta, Required: opts.Required, TarSize: tarSize, TarHash: tarHash,
		Platform: opts.Platform, Rollout: rollout}
	custom, err := am.Custom()
	if err != nil {
		return nil, fmt.Errorf("--meta: %w", err)
	}
	st.targets.Signed.Targets[archiveName] = newTargetFile(archiveName, res.Archive, custom)
	if res.Patch != nil {
		pc, err := PatchMeta{TarSize: tarSize, TarHash: tarHash, Format: res.PatchFormat}.Custom()
		if err != nil {
			return nil, err
		}
		st.targets.Signed.Targets[patchName] = newTargetFile(patchName, *res.Patch, pc)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Publish: target files first, then metadata.
	archPath, err := r.storedTarget(archiveName, st.targets.Signed.Targets[archiveName], consistent)
	if err != nil {
		return nil, err
	}
	if err := t.install(archTmp.Name(), archPath); err != nil {
		return nil, err
	}
	if patchTmp != "" {
		patchPath, err := r.storedTarget(patchName, st.targets.Signed.Targets[patchName], consistent)
		if err != nil {
			return nil, err
		}
		if err := t.install(patchTmp, patchPath); err != nil {
			return nil, err
		}
	}
	pr, err := r.publish(st, kr, publishOptions{bump: []string{RoleTargets}, partial: map[string]bool{RoleTargets: opts.Partial}}, t)
	if err != nil {
		return nil, err
	}
	if err := t.commit(); err != nil {
		return nil, err
	}
	res.Signatures, res.Threshold = pr.Signatures[RoleTargets][0], pr.Signatures[RoleTargets][1]
	res.Warnings = r.expiryWarnings(st)
	return res, nil
}

// archiveProgress wraps w, which receives the release's tar as it is
// written, so that it reports the "archive" phase to Repository.Progress
// every MiB; done reports the end with the real size. The total is
// estimated from the bundle's file sizes until then.
func (r *Repository) archiveProgress(bundleDir string, w io.Writer) (_ io.Writer, done func(size int64)) {
	if r.Progress == nil {
		return w, func(int64) {}
	}
	total := int64(1024) // the two zero blocks that end a tar
	afero.Walk(r.Fs, bundleDir, func(_ string, fi fs.FileInfo, err error) error {
		if err == nil {
			total += 512 // the entry's header
			if fi.Mode().IsRegular() {
				total += (fi.Size() + 511) / 512 * 512
			}
		}
		return nil
	})
	r.progress("archive", 0, total)
	tp := &tarProgress{w: w, report: func(n int64) { r.progress("archive", min(n, total), total) }}
	return tp, func(size int64) { r.progress("archive", size, size) }
}

// tarProgress passes writes to w and reports the bytes written every MiB.
type tarProgress struct {
	w       io.Writer
	n, last int64
	report  func(n int64)
}

func (p *tarProgress) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	if p.n-p.last >= 1<<20 {
		p.last = p.n
		p.report(p.n)
	}
	return n, err
}

// checkUserMeta checks the release's custom metadata, with advice that fits
// the mistake: JSON that does not parse (often a shell quoting problem)
// or a number canonical JSON cannot sign.
func checkUserMeta(raw json.RawMessage) error {
	var v any
	if err := strictDecode(raw, &v); err != nil {
		shown := string(raw)
		if len(shown) > 60 {
			shown = shown[:57] + "..."
		}
		return withHint(fmt.Errorf("--meta %q: not valid JSON: %v", shown, err),
			"give one JSON value, quoted for the shell, e.g. --meta '{\"changes\": [\"faster startup\"]}'")
	}
	if err := ValidateUserMeta(raw); err != nil {
		return withHint(fmt.Errorf("--meta: %w", err), "write numbers as integers or strings, e.g. {\"size\": \"1.5\"}")
	}
	return nil
}

func closeSync(f afero.File) error {
	return errors.Join(f.Sync(), f.Close())
}

func targetInfo(fsys afero.Fs, path, name string) (TargetInfo, error) {
	n, sum, err := hashFile(fsys, path)
	if err != nil {
		return TargetInfo{}, err
	}
	return TargetInfo{Name: name, Length: n, SHA256: sum}, nil
}

func newTargetFile(name string, ti TargetInfo, custom json.RawMessage) *metadata.TargetFiles {
	sum, _ := hex.DecodeString(ti.SHA256)
	c := custom
	return &metadata.TargetFiles{Length: ti.Length, Hashes: metadata.Hashes{"sha256": sum}, Custom: &c, Path: name}
}

// targetPath returns the file of a target, refusing names that are not
// plain file names.
func (r *Repository) targetPath(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." || filepath.IsAbs(name) {
		return "", fmt.Errorf("target name %q: not a plain file name", name)
	}
	return filepath.Join(r.targetsDir(), name), nil
}

// storedTarget returns the file that holds target name in the
// repository: targets/<name>, or in a repository with consistent snapshots
// targets/<sha256>.<name>, where the TUF specification has clients look
// for it.
func (r *Repository) storedTarget(name string, tf *metadata.TargetFiles, consistent bool) (string, error) {
	p, err := r.targetPath(name)
	if err != nil || !consistent {
		return p, err
	}
	h, ok := tf.Hashes["sha256"]
	if !ok {
		return "", fmt.Errorf("target %s: no sha256 hash in targets.json", name)
	}
	return filepath.Join(r.targetsDir(), hex.EncodeToString(h)+"."+name), nil
}

// checkTargetFile checks a target file's length and sha256 against its
// metadata, streaming it.
func (r *Repository) checkTargetFile(name string, tf *metadata.TargetFiles, consistent bool) error {
	p, err := r.storedTarget(name, tf, consistent)
	if err != nil {
		return err
	}
	want, ok := tf.Hashes["sha256"]
	if !ok {
		return fmt.Errorf("target %s: no sha256 hash in targets.json", name)
	}
	n, sum, err := hashFile(r.Fs, p)
	if err != nil {
		return fmt.Errorf("target %s: %w", name, err)
	}
	if n != tf.Length {
		return fmt.Errorf("target file %s: %d bytes, targets.json says %d", p, n, tf.Length)
	}
	if sum != hex.EncodeToString(want) {
		return fmt.Errorf("target file %s: sha256 %s, targets.json says %x", p, sum, []byte(want))
	}
	return nil
}

// extractRelease decompresses a release's archive into dst (after checking
// the archive against its metadata when check is set) and returns the
// uncompressed tar's size and sha256. When the release's metadata records
// its tar hash, a mismatch is an error. consistent says where the archive
// is (see storedTarget).
func (r *Repository) extractRelease(rel *release, dst string, check, consistent bool) (int64, string, error) {
	if check {
		if err := r.checkTargetFile(rel.archive, rel.archiveFile, consistent); err != nil {
			return 0, "", err
		}
	}
	p, err := r.storedTarget(rel.archive, rel.archiveFile, consistent)
	if err != nil {
		return 0, "", err
	}
	f, err := r.Fs.Open(p)
	if err != nil {
		return 0, "", fmt.Errorf("archive %s: %w", p, err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0, "", fmt.Errorf("archive %s: %w", p, err)
	}
	out, err := r.Fs.Create(dst)
	if err != nil {
		return 0, "", fmt.Errorf("create %s: %w", dst, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), zr)
	err = errors.Join(err, out.Close())
	if err != nil {
		return 0, "", fmt.Errorf("archive %s: decompressing: %w", p, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if rel.archiveMeta.TarHash != "" && (rel.archiveMeta.TarHash != sum || rel.archiveMeta.TarSize != n) {
		return 0, "", fmt.Errorf("archive %s: uncompressed tar is %d bytes sha256 %s, its metadata says %d bytes sha256 %s",
			p, n, sum, rel.archiveMeta.TarSize, rel.archiveMeta.TarHash)
	}
	return n, sum, nil
}

// checkPatch applies the patch file, in format f, to the tar oldTar and
// compares the result with the expected size and sha256.
func (r *Repository) checkPatch(f PatchFormat, oldTar, patchPath string, wantSize int64, wantHash string) error {
	old, err := r.Fs.Open(oldTar)
	if err != nil {
		return err
	}
	defer old.Close()
	ofi, err := old.Stat()
	if err != nil {
		return err
	}
	pf, err := r.Fs.Open(patchPath)
	if err != nil {
		return err
	}
	defer pf.Close()
	h := sha256.New()
	r.progress("check", 0, wantSize)
	n, err := applyPatchStream(r.Fs, filepath.Dir(oldTar), f, old, ofi.Size(), pf, h, func(done, total int64) { r.progress("check", done, total) })
	if err != nil {
		return err
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != wantSize || sum != wantHash {
		return fmt.Errorf("applying it gives %d bytes sha256 %s, want %d bytes sha256 %s", n, sum, wantSize, wantHash)
	}
	return nil
}
