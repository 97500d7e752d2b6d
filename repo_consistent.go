package notsotuf

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TUF consistent snapshots (TUF specification, "Consistent snapshots"):
// when root metadata says consistent_snapshot true, clients read
// N.snapshot.json and N.targets.json (the versions that timestamp and
// snapshot name) instead of the unversioned files, and download a target
// from targets/<sha256>.<name>. Every name then changes with its content,
// so a cache (a CDN) may keep every file but timestamp.json forever: a
// stale timestamp.json only points to an older, complete set of files.
//
// A repository with consistent snapshots keeps every version of the
// targets and snapshot metadata (they are small; a client holding an older
// timestamp.json still finds what it names) and, beside them, the
// unversioned targets.json and snapshot.json as copies of the newest (what
// notsotuf itself loads, and tools that predate consistent snapshots read).
// Its target files exist only under their hash-prefixed names.

// consistentFiles adds to files, when root (the root being published) has
// consistent snapshots, the versioned copies N.targets.json and
// N.snapshot.json of the targets and snapshot metadata being written. On
// the root version that turns consistent snapshots on, it also writes
// versioned copies of the current targets and snapshot metadata and stages
// in t a copy of every target file under its hash-prefixed name (the
// unversioned ones are removed once the metadata is in place). It returns
// the versioned names by role, in the order they are to be written.
func (r *Repository) consistentFiles(st *state, root *metadata.Metadata[metadata.RootType], files map[string][]byte, t *txn) (map[string]string, error) {
	if !root.Signed.ConsistentSnapshot {
		return nil, nil
	}
	turningOn := !st.root.Signed.ConsistentSnapshot
	names := map[string]string{}
	for _, role := range []string{RoleTargets, RoleSnapshot} {
		version := st.targets.Signed.Version
		if role == RoleSnapshot {
			version = st.snapshot.Signed.Version
		}
		data, ok := files[role+".json"]
		if !ok && turningOn {
			data, ok = st.raw[r.metaPath(role+".json")]
		}
		if !ok {
			continue
		}
		name := fmt.Sprintf("%d.%s.json", version, role)
		files[name] = data
		names[role] = name
	}
	if !turningOn {
		return names, nil
	}
	if err := t.mkdirAll(r.targetsDir()); err != nil {
		return nil, err
	}
	targets := st.targets.Signed.Targets
	for _, name := range slices.Sorted(maps.Keys(targets)) {
		if err := r.stageHashPrefixed(name, targets[name], t); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// stageHashPrefixed stages a copy of target name's file under its
// hash-prefixed name, checked against its signed length and sha256, and
// schedules the unversioned file for removal after the metadata.
func (r *Repository) stageHashPrefixed(name string, tf *metadata.TargetFiles, t *txn) (err error) {
	plain, err := r.storedTarget(name, tf, false)
	if err != nil {
		return err
	}
	prefixed, err := r.storedTarget(name, tf, true)
	if err != nil {
		return err
	}
	in, err := r.Fs.Open(plain)
	if err != nil {
		return withHint(fmt.Errorf("target %s: %w", name, err), "run `notsotuf verify` to see what the repository lacks")
	}
	defer in.Close()
	out, err := afero.TempFile(r.Fs, r.targetsDir(), "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("copy %s: %w", plain, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if err = errors.Join(err, closeSync(out)); err != nil {
		t.created = append(t.created, out.Name())
		return fmt.Errorf("copy %s: %w", plain, err)
	}
	if sum := h.Sum(nil); n != tf.Length || hex.EncodeToString(sum) != hex.EncodeToString(tf.Hashes["sha256"]) {
		t.created = append(t.created, out.Name())
		return withHint(fmt.Errorf("target file %s: %d bytes sha256 %x, targets.json says %d bytes sha256 %x", plain, n, sum, tf.Length, []byte(tf.Hashes["sha256"])),
			"run `notsotuf verify`; nothing was changed")
	}
	if err := t.install(out.Name(), prefixed); err != nil {
		return err
	}
	t.deleteOnCommit(plain)
	return nil
}
