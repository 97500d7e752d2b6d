package notsotuf

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Update describes the release a client should install, as found by
// [Client.Check].
type Update struct {
	Version  Version         // the release to install
	Required bool            // the publisher marked it required: it is installed before any newer one
	UserMeta json.RawMessage // the publisher's metadata of the release (e.g. a changelog); nil when none
	Plan     Plan            // what Check planned to download
	// Result is what Install did, set when it installed this update: it
	// can differ from the plan (patches that failed, then the full
	// archive). It stays nil before, and when Install found the version
	// already installed (by another process, meanwhile).
	Result *InstallResult

	from    Version         // the installed version the plan starts from
	target  *clientRelease  // the release to install
	chain   []clientRelease // patches to apply, in order, when !Plan.Full
	base    baseSource
	archive PlannedFile
}

// Plan is how an update is fetched: a chain of patches applied to the
// installed version, or the full archive.
type Plan struct {
	Full   bool          // download the full archive (else the patch chain in Files)
	Files  []PlannedFile // the files to download, in order
	Bytes  int64         // their total size
	Reason string        // why the full archive was chosen, in plain words; "" for patches
}

// InstallResult is what [Client.Install] did.
type InstallResult struct {
	Full bool // installed from the full archive (planned, or after the patches failed)
	// Files are the files the new version was built from: the patch
	// chain, or the archive.
	Files []PlannedFile
	// Downloaded is the number of bytes received from the server (a
	// download resumed from an earlier run counts only the rest).
	Downloaded int64
	// Fallback says why the planned patches were given up for the full
	// archive (the error, naming the file); "" when the plan was followed.
	Fallback string
	// BadPatch is the target name of the patch at fault, when one is:
	// its copy on the server did not match its signed length and hash,
	// it was missing on the server, or it did not apply.
	BadPatch string
}

// PlannedFile is one file of a Plan, with its signed length and hash.
type PlannedFile struct {
	Name   string // target name, e.g. "myapp-1.2.0.patch"
	Length int64
	SHA256 string // hex
}

// DefaultPatchRatio is the default of ClientConfig.PatchRatio: patches are used
// when their total size is at most this fraction of the full archive (as in
// tufup).
const DefaultPatchRatio = 0.8

// clientRelease is one version of the application in the repository: its archive
// and the patch that leads to it from the previous version, either of which
// may be missing.
type clientRelease struct {
	version   Version
	archive   *metadata.TargetFiles
	meta      ArchiveMeta
	patch     *metadata.TargetFiles
	patchMeta PatchMeta
}

// tarHash returns the signed size and sha256 of the uncompressed tar of the
// release, when the repository signed them (notsotuf archives, or any
// release that has a patch); "" when unknown (tufup archives without patch).
func (r *clientRelease) tarHash() (int64, string) {
	if r.meta.TarHash != "" {
		return r.meta.TarSize, r.meta.TarHash
	}
	if r.patch != nil {
		return r.patchMeta.TarSize, r.patchMeta.TarHash
	}
	return 0, ""
}

func plannedFile(tf *metadata.TargetFiles) PlannedFile {
	return PlannedFile{Name: tf.Path, Length: tf.Length, SHA256: tf.Hashes["sha256"].String()}
}

// releases gathers app's releases from the signed targets, sorted by
// version. Targets of other apps or with other names are ignored; a target
// whose custom metadata does not parse is left out (and logged): an archive
// without usable metadata is never offered, a patch without it is never
// applied.
func releases(targets map[string]*metadata.TargetFiles, app string, log *slog.Logger) []clientRelease {
	byVersion := map[string]*clientRelease{}
	var list []*clientRelease
	for name, tf := range targets {
		tn, err := ParseTargetName(name)
		if err != nil || tn.App != app {
			continue
		}
		if _, ok := tf.Hashes["sha256"]; !ok {
			log.Warn("ignoring target without sha256 hash", "target", name)
			continue
		}
		key := tn.Version.String()
		r := byVersion[key]
		if r == nil {
			r = &clientRelease{version: tn.Version}
			byVersion[key] = r
			list = append(list, r)
		}
		switch tn.Kind {
		case KindArchive:
			m, err := ParseArchiveMeta(tf.Custom)
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
	slices.SortFunc(list, func(a, b *clientRelease) int { return a.version.Compare(b.version) })
	out := make([]clientRelease, 0, len(list))
	for _, r := range list {
		if r.archive != nil || r.patch != nil {
			out = append(out, *r)
		}
	}
	return out
}

// selectTarget applies tufup's rule: among the archives newer than current
// on the channel, in version order, the first required one, else the
// newest. It returns -1 when there is none.
func selectTarget(rels []clientRelease, current Version, channel string) int {
	best := -1
	for i, r := range rels {
		if r.archive == nil || r.version.Compare(current) <= 0 || !r.version.OnChannel(channel) {
			continue
		}
		best = i
		if r.meta.Required {
			break
		}
	}
	return best
}

// patchChain returns the releases whose patches lead from current to
// rels[target], checking that the chain is contiguous: current is a release
// of the repository and every release after it up to the target has a
// patch (each patch starts from the release before it). Otherwise it
// returns the reason it cannot be used.
func patchChain(rels []clientRelease, current Version, target int) ([]clientRelease, string) {
	start := -1
	for i, r := range rels[:target] {
		if r.version.Compare(current) == 0 {
			start = i
		}
	}
	if start < 0 {
		return nil, fmt.Sprintf("the installed version %s is not in the repository", current)
	}
	chain := rels[start+1 : target+1]
	for _, r := range chain {
		if r.patch == nil {
			return nil, fmt.Sprintf("there is no patch to %s", r.version)
		}
	}
	return chain, ""
}
