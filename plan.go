package notsotuf

import (
	"encoding/json"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Update describes the release a client should install, as found by
// [Client.Check].
type Update struct {
	Version  Version         // the release to install
	Required bool            // the publisher marked it required: it is installed before any newer one
	UserMeta json.RawMessage // the publisher's metadata of the release (e.g. a changelog); nil when none
	Plan     Plan            // what Check planned to download
	// Rollback is set when Version is lower than the installed version:
	// the installed version was yanked (withdrawn in the signed metadata)
	// and this is the newest release the client may go back to.
	// RollbackReason says why, with the publisher's words.
	Rollback       bool
	RollbackReason string
	// Result is what Install did, set when it installed this update: it
	// can differ from the plan (patches that failed, then the full
	// archive). It stays nil before, and when Install found the version
	// already installed (by another process, meanwhile).
	Result *InstallResult

	rollback bool             // Rollback as Check decided it (Install trusts this, not the exported field)
	from     Version          // the installed version the plan starts from
	target   *clientRelease   // the release to install
	chain    []*clientRelease // patches to apply, in order, when !Plan.Full
	base     baseSource
	archive  PlannedFile
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

// clientRelease is one version of the application in the repository, for
// one platform or for every platform: its archive and the patch that leads
// to it from the previous release of its platform group that is not yanked
// (see releaseSet.patchBase), either of which may be missing.
type clientRelease struct {
	version   Version
	platform  string // "" for a build for every platform
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
