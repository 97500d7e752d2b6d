package notsotuf

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// ErrSecurity is matched (errors.Is) by every *SecurityError.
var ErrSecurity = errors.New("security check failed")

// SecurityError reports metadata or a file that failed a TUF check: a bad
// or missing signature, an expired role, a rolled-back version, a length or
// hash that does not match the signed one. It means the repository is broken
// or someone tampers with the connection, not that the network is down.
// Err is go-tuf's error (metadata.ErrRepository family), reachable with
// errors.As.
type SecurityError struct {
	File string // the metadata or target file, e.g. "timestamp.json"
	Err  error
}

func (e *SecurityError) Error() string {
	return fmt.Sprintf("security: %s %s: %v", e.File, securityWords(e.Err), e.Err)
}

func (e *SecurityError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrSecurity) true.
func (e *SecurityError) Is(target error) bool { return target == ErrSecurity }

// securityWords says in plain words what a go-tuf verification error means.
func securityWords(err error) string {
	switch {
	case errors.Is(err, &metadata.ErrExpiredMetadata{}):
		return "has expired (the repository must sign it again)"
	case errors.Is(err, &metadata.ErrEqualVersionNumber{}), errors.Is(err, &metadata.ErrBadVersionNumber{}):
		return "was rolled back or has an unexpected version"
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		return "is not signed by enough trusted keys (tampered, or signed with other keys)"
	case errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		return "does not match its signed length or hash (tampered or corrupted)"
	case errors.Is(err, &metadata.ErrRepository{}):
		return "was rejected"
	}
	return "is malformed"
}

// Size caps for metadata whose length is not signed by its parent role.
const (
	maxRootLength      = 512 << 10
	maxTimestampLength = 16 << 10
	maxSnapshotLength  = 2 << 20
	maxTargetsLength   = 5 << 20
	maxDelegations     = 32
)

// maxRootRotations bounds the new root versions one refresh follows (as in
// python-tuf and go-tuf); a client further behind continues from the last
// one it verified at its next refresh.
const maxRootRotations = 256

// tufClient keeps a TUF repository's trusted metadata up to date, following
// the "detailed client workflow" of the TUF specification over go-tuf's
// trustedmetadata: root rotation, timestamp, snapshot, targets, each file
// verified and then persisted atomically in dir so that rollback protection
// holds across restarts. Trusted metadata is stored unversioned as
// dir/<role>.json (what the TUF conformance client CLI expects).
type tufClient struct {
	fs          afero.Fs
	dir         string // trusted metadata directory
	metadataURL string // base URL of the repository's metadata, no trailing slash
	remote      *remote
	now         func() time.Time
	log         *slog.Logger
	bootstrap   []byte // trusted root used when dir has none (or an older one)

	trusted *trustedmetadata.TrustedMetadata
}

func (c *tufClient) metaPath(role string) string {
	return filepath.Join(c.dir, url.PathEscape(role)+".json")
}

// readLocal reads the persisted metadata of role: a regular file (never
// through a symbolic link) within the role's size cap.
func (c *tufClient) readLocal(role string) ([]byte, error) {
	max := int64(maxTargetsLength)
	switch role {
	case metadata.ROOT:
		max = maxRootLength
	case metadata.TIMESTAMP:
		max = maxTimestampLength
	case metadata.SNAPSHOT:
		max = maxSnapshotLength
	}
	return readCacheFile(c.fs, c.metaPath(role), max)
}

func (c *tufClient) persist(role string, data []byte) error {
	if err := c.fs.MkdirAll(c.dir, 0o755); err != nil {
		return fmt.Errorf("save trusted %s.json: %w", role, err)
	}
	if err := writeFileAtomic(c.fs, c.metaPath(role), data, 0o644); err != nil {
		return fmt.Errorf("save trusted %s.json: %w", role, err)
	}
	return nil
}

func secErr(file string, err error) error {
	var se *SecurityError
	if errors.As(err, &se) {
		return err
	}
	return &SecurityError{File: file, Err: err}
}

// startRoot picks the root to start from: the persisted one, or the
// bootstrap root when none is persisted, the persisted one is unreadable or
// the bootstrap root is newer (an app shipping a rotated root).
func (c *tufClient) startRoot() ([]byte, error) {
	local, err := c.readLocal(metadata.ROOT)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read trusted root.json: %w", err)
	}
	if local == nil {
		if c.bootstrap == nil {
			return nil, fmt.Errorf("no trusted root: %s does not exist and none was configured", c.metaPath(metadata.ROOT))
		}
		return c.bootstrap, nil
	}
	if c.bootstrap == nil {
		return local, nil
	}
	lr, lerr := metadata.Root().FromBytes(local)
	br, berr := metadata.Root().FromBytes(c.bootstrap)
	switch {
	case berr != nil:
		return nil, fmt.Errorf("configured trusted root: %w", berr)
	case lerr != nil:
		c.log.Warn("ignoring unreadable persisted root", "file", c.metaPath(metadata.ROOT), "err", lerr)
		return c.bootstrap, nil
	case br.Signed.Version > lr.Signed.Version:
		return c.bootstrap, nil
	}
	return local, nil
}

// refresh runs the TUF client workflow once and leaves the verified
// top-level metadata in c.trusted.
func (c *tufClient) refresh(ctx context.Context) error {
	rootData, err := c.startRoot()
	if err != nil {
		return err
	}
	trusted, err := trustedmetadata.New(rootData)
	if err != nil {
		return secErr("root.json", err)
	}
	trusted.RefTime = c.now().UTC() // 5.3.1: fixed for the whole refresh
	c.trusted = trusted
	if err := c.updateRoot(ctx, rootData); err != nil {
		return err
	}
	if err := c.updateTimestamp(ctx); err != nil {
		return err
	}
	if err := c.updateSnapshot(ctx); err != nil {
		return err
	}
	_, err = c.loadTargets(ctx, metadata.TARGETS, metadata.ROOT)
	return err
}

// updateRoot is steps 5.3.2-5.3.9: fetch root N+1, N+2... until the
// repository has none (404 or 403), verifying and persisting each.
func (c *tufClient) updateRoot(ctx context.Context, startData []byte) error {
	if err := c.persistIfNew(startData); err != nil {
		return err
	}
	start := c.trusted.Root.Signed.Version
	for next := start + 1; next <= start+maxRootRotations; next++ {
		name := strconv.FormatInt(next, 10) + ".root.json"
		data, err := c.remote.fetchBytes(ctx, c.metadataURL+"/"+name, maxRootLength)
		if err != nil {
			var he *metadata.ErrDownloadHTTP
			if errors.As(err, &he) && (he.StatusCode == http.StatusNotFound || he.StatusCode == http.StatusForbidden) {
				break
			}
			return fmt.Errorf("update root: %w", err)
		}
		if _, err := c.trusted.UpdateRoot(data); err != nil {
			return secErr(name, err)
		}
		c.log.Info("rotated root", "version", next)
		if err := c.persist(metadata.ROOT, data); err != nil {
			return err
		}
	}
	return nil
}

// persistIfNew saves the starting root when it is not the persisted one
// (first run, or a newer bootstrap root).
func (c *tufClient) persistIfNew(data []byte) error {
	if local, err := c.readLocal(metadata.ROOT); err == nil && bytes.Equal(local, data) {
		return nil
	}
	return c.persist(metadata.ROOT, data)
}

// updateTimestamp is step 5.4: the persisted timestamp, if it still
// verifies, is the rollback floor for the one downloaded.
func (c *tufClient) updateTimestamp(ctx context.Context) error {
	if c.trusted.Root.Signed.IsExpired(c.trusted.RefTime) { // 5.3.10
		return secErr("root.json", &metadata.ErrExpiredMetadata{Msg: "final root.json is expired"})
	}
	if local, err := c.readLocal(metadata.TIMESTAMP); err == nil {
		if _, err := c.trusted.UpdateTimestamp(local); err != nil {
			if !errors.Is(err, &metadata.ErrRepository{}) {
				return secErr("timestamp.json", err)
			}
			c.log.Info("persisted timestamp not usable", "err", err)
		}
	}
	data, err := c.remote.fetchBytes(ctx, c.metadataURL+"/timestamp.json", maxTimestampLength)
	if err != nil {
		return fmt.Errorf("update timestamp: %w", err)
	}
	if _, err := c.trusted.UpdateTimestamp(data); err != nil {
		if !errors.Is(err, &metadata.ErrEqualVersionNumber{}) {
			return secErr("timestamp.json", err)
		}
		data = nil // nothing new: keep the persisted one
	}
	// 5.4.5, checked here so that the error names the right file.
	if c.trusted.Timestamp.Signed.IsExpired(c.trusted.RefTime) {
		return secErr("timestamp.json", &metadata.ErrExpiredMetadata{Msg: "timestamp.json is expired"})
	}
	if data == nil {
		return nil
	}
	return c.persist(metadata.TIMESTAMP, data)
}

// updateSnapshot is step 5.5.
func (c *tufClient) updateSnapshot(ctx context.Context) error {
	if local, err := c.readLocal(metadata.SNAPSHOT); err == nil {
		_, err := c.trusted.UpdateSnapshot(local, true)
		if err == nil {
			return nil // the persisted snapshot is the current one
		}
		if !errors.Is(err, &metadata.ErrRepository{}) {
			return secErr("snapshot.json", err)
		}
		c.log.Info("persisted snapshot not usable", "err", err)
	}
	meta := c.trusted.Timestamp.Signed.Meta["snapshot.json"]
	if meta == nil {
		return secErr("timestamp.json", &metadata.ErrRepository{Msg: "no snapshot.json in timestamp meta"})
	}
	max := meta.Length
	if max <= 0 {
		max = maxSnapshotLength
	}
	name := "snapshot.json"
	if c.trusted.Root.Signed.ConsistentSnapshot {
		name = strconv.FormatInt(meta.Version, 10) + "." + name
	}
	data, err := c.remote.fetchBytes(ctx, c.metadataURL+"/"+name, max)
	if err != nil {
		return fmt.Errorf("update snapshot: %w", err)
	}
	if _, err := c.trusted.UpdateSnapshot(data, false); err != nil {
		return secErr(name, err)
	}
	return c.persist(metadata.SNAPSHOT, data)
}

// loadTargets is step 5.6 for role (delegated by parent): the persisted
// file if it is still the one snapshot names, else a download.
func (c *tufClient) loadTargets(ctx context.Context, role, parent string) (*metadata.Metadata[metadata.TargetsType], error) {
	if t, ok := c.trusted.Targets[role]; ok {
		return t, nil
	}
	file := role + ".json"
	if local, err := c.readLocal(role); err == nil {
		t, err := c.trusted.UpdateDelegatedTargets(local, role, parent)
		if err == nil {
			return t, nil
		}
		if !errors.Is(err, &metadata.ErrRepository{}) {
			return nil, secErr(file, err)
		}
		c.log.Info("persisted targets not usable", "role", role, "err", err)
	}
	meta := c.trusted.Snapshot.Signed.Meta[file]
	if meta == nil {
		return nil, secErr("snapshot.json", &metadata.ErrRepository{Msg: "no " + file + " in snapshot meta"})
	}
	max := meta.Length
	if max <= 0 {
		max = maxTargetsLength
	}
	name := url.PathEscape(role) + ".json"
	if c.trusted.Root.Signed.ConsistentSnapshot {
		name = strconv.FormatInt(meta.Version, 10) + "." + name
	}
	data, err := c.remote.fetchBytes(ctx, c.metadataURL+"/"+name, max)
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", file, err)
	}
	t, err := c.trusted.UpdateDelegatedTargets(data, role, parent)
	if err != nil {
		return nil, secErr(name, err)
	}
	if err := c.persist(role, data); err != nil {
		return nil, err
	}
	return t, nil
}

// targets returns the top-level targets role's target files (after
// refresh). notsotuf and tufup repositories list every target there.
func (c *tufClient) targets() map[string]*metadata.TargetFiles {
	return c.trusted.Targets[metadata.TARGETS].Signed.Targets
}

// targetInfo finds name by a pre-order depth-first walk of the targets
// delegation graph (5.7), loading delegated roles as needed. It returns
// nil, nil when no role lists name.
func (c *tufClient) targetInfo(ctx context.Context, name string) (*metadata.TargetFiles, error) {
	type visit struct{ role, parent string }
	stack := []visit{{metadata.TARGETS, metadata.ROOT}}
	seen := map[string]bool{}
	for len(stack) > 0 && len(seen) <= maxDelegations {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[v.role] {
			continue
		}
		t, err := c.loadTargets(ctx, v.role, v.parent)
		if err != nil {
			return nil, err
		}
		if tf, ok := t.Signed.Targets[name]; ok {
			return tf, nil
		}
		seen[v.role] = true
		if t.Signed.Delegations == nil {
			continue
		}
		var children []visit
		for _, r := range rolesForTarget(t.Signed.Delegations, name) {
			children = append(children, visit{r.Name, v.role})
			if r.Terminating {
				stack = nil
				break
			}
		}
		slices.Reverse(children)
		stack = append(stack, children...)
	}
	return nil, nil
}

// rolesForTarget is go-tuf's Delegations.GetRolesForTarget (the delegated
// roles trusted for name, in the delegator's order), except that
// path_hash_prefixes are matched against the hex SHA-256 of name, as the TUF
// specification says: go-tuf v2.4.2 matches them against its base64 form, so
// the wrong bin would answer for a target and the right one never would.
func rolesForTarget(d *metadata.Delegations, name string) []metadata.RoleResult {
	if d.Roles == nil {
		return d.GetRolesForTarget(name) // succinct roles (TAP 15)
	}
	sum := sha256.Sum256([]byte(name))
	hexSum := hex.EncodeToString(sum[:])
	var res []metadata.RoleResult
	for i := range d.Roles {
		r := &d.Roles[i]
		ok := false
		if len(r.Paths) > 0 {
			m, err := r.IsDelegatedPath(name)
			ok = err == nil && m
		} else {
			for _, p := range r.PathHashPrefixes {
				if strings.HasPrefix(hexSum, p) {
					ok = true
					break
				}
			}
		}
		if ok {
			res = append(res, metadata.RoleResult{Name: r.Name, Terminating: r.Terminating})
		}
	}
	return res
}

// targetURL is where a target is downloaded from: base/name, or with
// consistent snapshots base/dir/<sha256>.<file>.
func (c *tufClient) targetURL(base string, tf *metadata.TargetFiles) string {
	name := tf.Path
	if c.trusted.Root.Signed.ConsistentSnapshot {
		dir, file := path.Split(name)
		alg := "sha256"
		if _, ok := tf.Hashes[alg]; !ok && len(tf.Hashes) > 0 {
			algs := slices.Sorted(maps.Keys(tf.Hashes))
			alg = algs[0]
		}
		if h, ok := tf.Hashes[alg]; ok {
			name = dir + h.String() + "." + file
		}
	}
	return base + "/" + name
}

// discardLogger is the logger of a client given none: the library is silent
// by default.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Hint gives advice on a security error (the CLI prints it).
func (e *SecurityError) Hint() string {
	switch {
	case errors.Is(e.Err, &metadata.ErrExpiredMetadata{}):
		return "the repository's maintainer must re-sign its metadata (notsotuf refresh); check this computer's clock too"
	case errors.Is(e.Err, &metadata.ErrBadVersionNumber{}):
		return "the server sent metadata older than this client has already seen: a stale mirror or a replay"
	case errors.Is(e.Err, &metadata.ErrUnsignedMetadata{}):
		return "the metadata is not signed by keys the trusted root names: check the trusted root (--root) and the repository URL"
	}
	return "do not install from this repository until its maintainer checks it (notsotuf verify)"
}
