package notsotuf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// SignOptions says how to sign a role.
type SignOptions struct {
	Role string
	// ExpiresDays > 0 publishes a new version of the role expiring that many
	// days from now (and new snapshot and timestamp versions as needed).
	// 0 adds the signatures of the keys available here to the current
	// version (threshold signing by several people in turn).
	ExpiresDays int
	// Partial allows writing metadata that has fewer signatures than the
	// role's threshold, for others to complete with their keys.
	Partial bool
	// ConsistentSnapshot (role root only) turns on TUF consistent
	// snapshots: a new root version (expiring in ExpiresDays, or the
	// configured root lifetime when 0) says consistent_snapshot true, the
	// target files are copied to their hash-prefixed names, and versioned
	// copies of the current targets and snapshot metadata are written.
	// Clients follow at their next refresh. It cannot be turned off.
	ConsistentSnapshot bool
}

// SignResult reports the signatures of the role after signing.
type SignResult struct {
	Role       string
	Version    int64
	Signatures int
	Threshold  int
	Written    []string // roles whose metadata was written
	// Warnings are what the signer must act on although the signatures are
	// written: a role of the repository (root, say) is expired, so clients
	// refuse it until that role is re-signed.
	Warnings []string
}

func checkRole(role string) error {
	if !slices.Contains(Roles, role) {
		return fmt.Errorf("role %q: want root, targets, snapshot or timestamp", role)
	}
	return nil
}

// Sign signs a role's metadata: see SignOptions.
func (r *Repository) Sign(opts SignOptions) (res *SignResult, err error) {
	if err := checkRole(opts.Role); err != nil {
		return nil, err
	}
	if opts.ExpiresDays < 0 || opts.ExpiresDays > 100*365 {
		return nil, fmt.Errorf("--expires %d: want 1 to 36500 days", opts.ExpiresDays)
	}
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	kr := r.newKeyring()
	po := publishOptions{partial: map[string]bool{opts.Role: opts.Partial}}
	if opts.ExpiresDays > 0 || opts.ConsistentSnapshot {
		po.bump = []string{opts.Role}
		po.days = map[string]int{opts.Role: opts.ExpiresDays}
	} else {
		po.resign = []string{opts.Role}
	}
	if opts.ConsistentSnapshot {
		if opts.Role != RoleRoot {
			return nil, fmt.Errorf("consistent snapshots are a setting of root metadata: sign root, not %s", opts.Role)
		}
		if st.root.Signed.ConsistentSnapshot {
			return nil, fmt.Errorf("root version %d already has consistent snapshots on", st.root.Signed.Version)
		}
		if po.newRoot, err = cloneMeta(st.root); err != nil {
			return nil, err
		}
		po.newRoot.Signed.ConsistentSnapshot = true
	}
	t := r.newTxn()
	defer t.finish("sign", &err)
	pr, err := r.publish(st, kr, po, t)
	if err != nil {
		return nil, err
	}
	if err := t.commit(); err != nil {
		return nil, err
	}
	if opts.ConsistentSnapshot {
		r.Config.ConsistentSnapshot = true
	}
	sig := pr.Signatures[opts.Role]
	res = &SignResult{Role: opts.Role, Version: pr.Versions[opts.Role], Signatures: sig[0], Threshold: sig[1], Warnings: r.expiryWarnings(st)}
	for _, role := range Roles {
		if _, ok := pr.Versions[role]; ok {
			res.Written = append(res.Written, role)
		}
	}
	return res, nil
}

// RefreshResult reports what Refresh re-signed.
type RefreshResult struct {
	Resigned []string  // roles with a new version
	Expires  []string  // their new expiry, RFC 3339, same order
	Skipped  []string  // roles that expire soon but whose keys are not here
	Checked  time.Time // the reference time
}

// Refresh re-signs every role whose metadata expires within the given
// duration (0 means: within half the role's configured lifetime, at most 30
// days), with a fresh expiry, and the roles that depend on it (a new targets
// needs a new snapshot and timestamp). It is meant for cron: with only the
// online keys (snapshot, timestamp) at hand it keeps those fresh, writes
// them, and then reports the roles it could not re-sign as an error.
func (r *Repository) Refresh(within time.Duration) (res *RefreshResult, err error) {
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	now := r.now()
	res = &RefreshResult{Checked: now}
	expires := map[string]time.Time{
		RoleRoot:      st.root.Signed.Expires,
		RoleTargets:   st.targets.Signed.Expires,
		RoleSnapshot:  st.snapshot.Signed.Expires,
		RoleTimestamp: st.timestamp.Signed.Expires,
	}
	kr := r.newKeyring()
	canSign := map[string]error{}
	for _, role := range Roles {
		s, err := kr.signersFor(&st.root.Signed, role)
		if err == nil {
			err = s.enough(kr)
		}
		canSign[role] = err
	}
	// A role can be bumped when it and everything below it can be signed.
	deps := map[string][]string{
		RoleRoot:      {RoleRoot},
		RoleTargets:   {RoleTargets, RoleSnapshot, RoleTimestamp},
		RoleSnapshot:  {RoleSnapshot, RoleTimestamp},
		RoleTimestamp: {RoleTimestamp},
	}
	var bump []string
	var errs []error
	for _, role := range Roles {
		w := within
		if w <= 0 {
			w = r.warnWithin(role)
		}
		if expires[role].Sub(now) >= w {
			continue
		}
		var blocked error
		for _, d := range deps[role] {
			if canSign[d] != nil {
				blocked = canSign[d]
				break
			}
		}
		if blocked != nil {
			res.Skipped = append(res.Skipped, role)
			errs = append(errs, fmt.Errorf("%s expires %s and cannot be re-signed here: %w", role, expires[role].Format(time.RFC3339), blocked))
			continue
		}
		bump = append(bump, role)
	}
	if len(bump) > 0 {
		t := r.newTxn()
		pr, err := r.publish(st, kr, publishOptions{bump: bump}, t)
		if err != nil {
			if rerr := t.rollback(); rerr != nil {
				err = errors.Join(err, rerr)
			}
			return nil, err
		}
		if err := t.commit(); err != nil {
			return nil, err
		}
		for _, role := range Roles {
			if _, ok := pr.Versions[role]; ok {
				res.Resigned = append(res.Resigned, role)
				var e time.Time
				switch role {
				case RoleRoot:
					e = st.root.Signed.Expires
				case RoleTargets:
					e = st.targets.Signed.Expires
				case RoleSnapshot:
					e = st.snapshot.Signed.Expires
				case RoleTimestamp:
					e = st.timestamp.Signed.Expires
				}
				res.Expires = append(res.Expires, e.Format(time.RFC3339))
			}
		}
	}
	if len(errs) > 0 {
		return res, withHint(errors.Join(errs...), "run `notsotuf refresh` (or `notsotuf sign ROLE --expires DAYS`) where the offline keys are")
	}
	return res, nil
}

// CreateKey creates a new key in the key store (encrypted with the
// passphrase from Repository.Passphrase when encrypt is set) and returns its
// key ID. It does not give the key a role: see AddKey.
func (r *Repository) CreateKey(name string, encrypt bool) (string, error) {
	var pass []byte
	if encrypt {
		var err error
		if r.Passphrase != nil {
			if pass, err = r.Passphrase(name); err != nil {
				return "", fmt.Errorf("key %s: %w", name, err)
			}
		}
		if len(pass) == 0 {
			return "", withHint(fmt.Errorf("key %s: encryption asked but %w", name, ErrNoPassphrase),
				"set %s, NOTSOTUF_PASSPHRASE or NOTSOTUF_PASSPHRASE_FILE", PassphraseEnvVar(name))
		}
	}
	k, err := generateKeyFiles(r.Fs, r.Config.KeysDir, name, pass, r.Rand)
	if err != nil {
		return "", err
	}
	if encrypt && !slices.Contains(r.Config.EncryptedKeys, name) {
		r.Config.EncryptedKeys = append(r.Config.EncryptedKeys, name)
	}
	_, id, err := tufKey(k.pub)
	return id, err
}

// changeRoot publishes a new root version made by edit, signed by the
// current root's keys and by the new root's keys. When role is not root,
// that role is re-signed too (its keys changed). r.Config (key_map,
// thresholds) is updated on success; the caller saves it.
func (r *Repository) changeRoot(role string, edit func(root *metadata.RootType, kr *keyring) error) (err error) {
	if err := checkRole(role); err != nil {
		return err
	}
	st, err := r.load()
	if err != nil {
		return err
	}
	newRoot, err := cloneMeta(st.root)
	if err != nil {
		return err
	}
	kr := r.newKeyring()
	if err := edit(&newRoot.Signed, kr); err != nil {
		return err
	}
	rl := newRoot.Signed.Roles[role]
	if rl.Threshold < 1 || rl.Threshold > len(rl.KeyIDs) {
		return fmt.Errorf("role %s: threshold %d with %d keys: want 1 to %d", role, rl.Threshold, len(rl.KeyIDs), len(rl.KeyIDs))
	}
	bump := []string{RoleRoot}
	if role != RoleRoot {
		bump = append(bump, role)
	}
	t := r.newTxn()
	defer t.finish("key change", &err)
	if _, err := r.publish(st, kr, publishOptions{bump: bump, newRoot: newRoot}, t); err != nil {
		return err
	}
	// Mirror the new root in the configuration.
	var names []string
	for _, id := range rl.KeyIDs {
		if k := newRoot.Signed.Keys[id]; k != nil {
			if n := kr.nameOf(k.Value.PublicKey); n != "" {
				names = append(names, n)
			}
		}
	}
	r.Config.KeyMap[role] = names
	r.Config.Thresholds[role] = rl.Threshold
	return t.commit()
}

// AddKey gives the key named name (created in the key store when it does not
// exist, encrypted when encrypt is set) to role, sets the role's threshold
// when threshold > 0, and publishes a new root version signed by the old and
// the new root keys.
func (r *Repository) AddKey(role, name string, threshold int, encrypt bool) error {
	if err := validKeyName(name); err != nil {
		return err
	}
	created := false
	if _, err := readPublicKey(r.Fs, r.Config.KeysDir, name); errors.Is(err, os.ErrNotExist) {
		if _, err := r.CreateKey(name, encrypt); err != nil {
			return err
		}
		created = true
	} else if err != nil {
		return err
	}
	err := r.changeRoot(role, func(root *metadata.RootType, kr *keyring) error {
		pub, err := readPublicKey(r.Fs, r.Config.KeysDir, name)
		if err != nil {
			return err
		}
		for _, id := range root.Roles[role].KeyIDs {
			if k := root.Keys[id]; k != nil && strings.EqualFold(k.Value.PublicKey, publicKeyHex(pub)) {
				return fmt.Errorf("role %s: key %s is already one of its keys (id %s)", role, name, shortID(id))
			}
		}
		// Reuse the ID root already gives this public key (tufup's legacy IDs).
		id := ""
		for kid, k := range root.Keys {
			if strings.EqualFold(k.Value.PublicKey, publicKeyHex(pub)) {
				id = kid
			}
		}
		if id == "" {
			var k *metadata.Key
			if k, id, err = tufKey(pub); err != nil {
				return err
			}
			root.Keys[id] = k
		}
		root.Roles[role].KeyIDs = append(root.Roles[role].KeyIDs, id)
		if threshold > 0 {
			root.Roles[role].Threshold = threshold
		}
		return nil
	})
	if err != nil && created {
		p := filepath.Join(r.Config.KeysDir, name)
		r.Fs.Remove(p)
		r.Fs.Remove(p + ".pub")
	}
	return err
}

// findRoleKey returns the ID of the key of role named by nameOrID: a key
// store name, a key ID, or a unique key ID prefix of at least 8 digits.
func findRoleKey(root *metadata.RootType, role, nameOrID string, kr *keyring) (string, error) {
	ids := root.Roles[role].KeyIDs
	var matches []string
	for _, id := range ids {
		k := root.Keys[id]
		if id == nameOrID || (k != nil && kr.nameOf(k.Value.PublicKey) == nameOrID) {
			return id, nil
		}
		if len(nameOrID) >= 8 && strings.HasPrefix(id, nameOrID) {
			matches = append(matches, id)
		}
	}
	if len(matches) == 1 {
		return matches[0], nil
	}
	return "", withHint(fmt.Errorf("role %s: no key %q", role, nameOrID), "`notsotuf keys list` shows each role's keys")
}

// RevokeKey removes a key (by key store name or key ID) from role, sets the
// threshold when threshold > 0, and publishes a new root version. It refuses
// to leave fewer keys than the threshold.
func (r *Repository) RevokeKey(role, nameOrID string, threshold int) error {
	return r.changeRoot(role, func(root *metadata.RootType, kr *keyring) error {
		id, err := findRoleKey(root, role, nameOrID, kr)
		if err != nil {
			return err
		}
		if err := root.RevokeKey(id, role); err != nil {
			return fmt.Errorf("role %s: %w", role, err)
		}
		if threshold > 0 {
			root.Roles[role].Threshold = threshold
		}
		if n, th := len(root.Roles[role].KeyIDs), root.Roles[role].Threshold; n < th {
			return withHint(fmt.Errorf("role %s: revoking %s leaves %d keys, fewer than the threshold %d", role, nameOrID, n, th),
				"add a key first (`notsotuf keys add %s NAME`), use `notsotuf keys replace`, or lower the threshold with --threshold", role)
		}
		return nil
	})
}

// ReplaceKey swaps a key of role (by name or ID) for the key named newName
// (created when it does not exist) in one new root version, signed by the
// old and the new keys.
func (r *Repository) ReplaceKey(role, oldNameOrID, newName string, encrypt bool) error {
	if err := validKeyName(newName); err != nil {
		return err
	}
	created := false
	if _, err := readPublicKey(r.Fs, r.Config.KeysDir, newName); errors.Is(err, os.ErrNotExist) {
		if _, err := r.CreateKey(newName, encrypt); err != nil {
			return err
		}
		created = true
	} else if err != nil {
		return err
	}
	err := r.changeRoot(role, func(root *metadata.RootType, kr *keyring) error {
		oldID, err := findRoleKey(root, role, oldNameOrID, kr)
		if err != nil {
			return err
		}
		pub, err := readPublicKey(r.Fs, r.Config.KeysDir, newName)
		if err != nil {
			return err
		}
		k, id, err := tufKey(pub)
		if err != nil {
			return err
		}
		if slices.Contains(root.Roles[role].KeyIDs, id) {
			return fmt.Errorf("role %s: key %s is already one of its keys", role, newName)
		}
		if err := root.RevokeKey(oldID, role); err != nil {
			return fmt.Errorf("role %s: %w", role, err)
		}
		if _, ok := root.Keys[id]; !ok {
			root.Keys[id] = k
		}
		root.Roles[role].KeyIDs = append(root.Roles[role].KeyIDs, id)
		return nil
	})
	if err != nil && created {
		p := filepath.Join(r.Config.KeysDir, newName)
		r.Fs.Remove(p)
		r.Fs.Remove(p + ".pub")
	}
	return err
}
