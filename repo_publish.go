package notsotuf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// txn is one repository change. Before its commit point it only creates
// new files (temporary target and metadata files, keys) that rollback
// removes. Its commit point is a journal file listing renames (temporary
// file -> published name, in the order a client needs: target files, root,
// targets, snapshot, timestamp last) and files to delete; it then performs
// them. A crash after the commit point is rolled forward by the next
// command (see Repository.recoverJournal); an error while performing the
// renames undoes them, restoring the files they replaced.
type txn struct {
	fs        afero.Fs
	journal   string
	steps     []txnStep
	deletes   []string
	created   []string          // files created before the commit point
	dirs      []string          // directories created
	savedData map[string][]byte // published name -> content it had (small files)
	savedFile map[string]string // published name -> copy of the file it replaces
	expect    map[string][]byte // metadata as loaded: commit refuses if it changed since
	temps     []string          // scratch files removed by finish, whatever happens
}

type txnStep struct {
	Src string `json:"src"`
	Dst string `json:"dst"`
}

type journalJSON struct {
	Renames []txnStep `json:"renames"`
	Deletes []string  `json:"deletes"`
}

// journalName is the commit journal, in the repository directory.
const journalName = ".notsotuf-journal.json"

func (r *Repository) newTxn() *txn {
	return &txn{fs: r.Fs, journal: filepath.Join(r.Config.RepoDir, journalName),
		savedData: map[string][]byte{}, savedFile: map[string]string{}}
}

// mkdirAll creates dir (and parents) and remembers what it created.
func (t *txn) mkdirAll(dir string) error {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		ok, err := exists(t.fs, d)
		if err != nil {
			return err
		}
		if ok {
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := t.fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	t.dirs = append(t.dirs, missing...) // deepest first
	return nil
}

// stage writes data to a temporary file beside name, to be renamed to name
// at commit. The current content of name is kept for undo.
func (t *txn) stage(name string, data []byte, perm os.FileMode) error {
	old, err := afero.ReadFile(t.fs, name)
	switch {
	case err == nil:
		if _, ok := t.savedData[name]; !ok {
			t.savedData[name] = old
		}
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("read %s: %w", name, err)
	}
	dir, base := filepath.Split(name)
	f, err := afero.TempFile(t.fs, dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	t.created = append(t.created, f.Name())
	_, err = f.Write(data)
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := t.fs.Chmod(f.Name(), perm); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	t.steps = append(t.steps, txnStep{f.Name(), name})
	return nil
}

// install schedules the finished temporary file tmp to become final. When
// final exists, a copy of it is kept for undo.
func (t *txn) install(tmp, final string) error {
	t.created = append(t.created, tmp)
	// Temporary files are created 0600; published files are world-readable.
	if err := t.fs.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	ok, err := exists(t.fs, final)
	if err != nil {
		return err
	}
	if ok {
		backup := tmp + ".old"
		t.created = append(t.created, backup)
		if err := copyFile(t.fs, final, backup); err != nil {
			return err
		}
		t.savedFile[final] = backup
		t.deletes = append(t.deletes, backup)
	}
	t.steps = append(t.steps, txnStep{tmp, final})
	return nil
}

func copyFile(fsys afero.Fs, src, dst string) error {
	in, err := fsys.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := fsys.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	_, err = io.Copy(out, in)
	if err = errors.Join(err, out.Sync(), out.Close()); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

// deleteOnCommit schedules name for removal once everything else is done.
func (t *txn) deleteOnCommit(name string) { t.deletes = append(t.deletes, name) }

// finish is deferred by every operation that uses t (op names it in
// errors): it removes the scratch files in t.temps and, when *err is set,
// rolls t back, joining a failure to undo to *err.
func (t *txn) finish(op string, err *error) {
	for _, p := range t.temps {
		t.fs.Remove(p)
	}
	if *err != nil {
		if rerr := t.rollback(); rerr != nil {
			*err = errors.Join(*err, fmt.Errorf("undoing %s: %w", op, rerr))
		}
	}
}

// rollback removes what was created before the commit point. It returns
// the errors it met.
func (t *txn) rollback() error {
	var errs []error
	for i := len(t.created) - 1; i >= 0; i-- {
		if err := t.fs.Remove(t.created[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, d := range t.dirs {
		t.fs.Remove(d) // only succeeds when empty
	}
	t.created, t.dirs = nil, nil
	return errors.Join(errs...)
}

// commit writes the journal (the commit point), performs its renames and
// deletions, and removes it. If a rename fails, the renames done are undone
// and the error returned; the caller then calls rollback.
func (t *txn) commit() error {
	if len(t.steps) == 0 && len(t.deletes) == 0 {
		return nil
	}
	for name, want := range t.expect {
		got, err := afero.ReadFile(t.fs, name)
		if err != nil || !bytes.Equal(got, want) {
			return &hintError{fmt.Errorf("%s changed while this command ran; nothing was published", name),
				"another notsotuf (a cron `notsotuf refresh`?) changed the repository at the same time: run the command again"}
		}
	}
	data, err := json.MarshalIndent(journalJSON{Renames: t.steps, Deletes: t.deletes}, "", " ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(t.fs, t.journal, data, 0o644); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	for i, s := range t.steps {
		if err := t.fs.Rename(s.Src, s.Dst); err != nil {
			err = fmt.Errorf("rename %s to %s: %w", s.Src, s.Dst, err)
			if uerr := t.undo(i); uerr != nil {
				t.created = nil // the journal needs them to roll forward
				return errors.Join(err, fmt.Errorf("undoing it failed (the next notsotuf command will complete the change from %s): %w", t.journal, uerr))
			}
			return err
		}
	}
	t.created = nil // now published
	for _, name := range t.deletes {
		if err := t.fs.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			// The change is complete; a leftover file is only untidy.
			continue
		}
	}
	// The change is complete. A journal left behind (if this fails) is
	// harmless: replaying it finds nothing left to do.
	t.fs.Remove(t.journal)
	return nil
}

// undo reverts the first n renames, newest first, and removes the journal.
func (t *txn) undo(n int) error {
	var errs []error
	for i := n - 1; i >= 0; i-- {
		s := t.steps[i]
		if err := t.fs.Rename(s.Dst, s.Src); err != nil {
			errs = append(errs, err)
			continue
		}
		if old, ok := t.savedData[s.Dst]; ok {
			if err := writeFileAtomic(t.fs, s.Dst, old, 0o644); err != nil {
				errs = append(errs, err)
			}
		} else if b, ok := t.savedFile[s.Dst]; ok {
			if err := copyFile(t.fs, b, s.Dst); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := t.fs.Remove(t.journal); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// recoverJournal completes a change interrupted after its commit point (a
// crash, a power cut): the renames still to do are done (a rename whose
// source is gone was done), then the deletions. Every command that reads the
// repository's metadata calls it first.
func (r *Repository) recoverJournal() error {
	p := filepath.Join(r.Config.RepoDir, journalName)
	data, err := afero.ReadFile(r.Fs, p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("journal %s: %w", p, err)
	}
	var j journalJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("journal %s: %w", p, err)
	}
	r.log().Warn("completing an interrupted change", "journal", p)
	for _, s := range j.Renames {
		ok, err := exists(r.Fs, s.Src)
		if err != nil {
			return fmt.Errorf("journal %s: %w", p, err)
		}
		if !ok {
			continue
		}
		if err := r.Fs.Rename(s.Src, s.Dst); err != nil {
			return fmt.Errorf("journal %s: rename %s to %s: %w", p, s.Src, s.Dst, err)
		}
	}
	for _, name := range j.Deletes {
		r.Fs.Remove(name)
	}
	if err := r.Fs.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal %s: %w", p, err)
	}
	return nil
}

// publishOptions says which metadata a repository change produces.
type publishOptions struct {
	// bump lists roles that get a new version (with a fresh expiry and new
	// signatures). targets implies snapshot, snapshot implies timestamp.
	bump []string
	// days overrides the expiry (in days from now) of bumped roles.
	days map[string]int
	// resign lists roles whose current version only gets the signatures of
	// the keys available here added (threshold signing).
	resign []string
	// newRoot is the next root version when root is bumped (already
	// changed by the caller: keys, thresholds); nil means a copy of the
	// current root.
	newRoot *metadata.Metadata[metadata.RootType]
	// partial lists roles whose metadata may be written with fewer
	// signatures than the threshold, for other key holders to complete with
	// `notsotuf sign ROLE` (roles it cascades to are not partial).
	partial map[string]bool
}

// publishResult reports what was signed.
type publishResult struct {
	Versions   map[string]int64
	Signatures map[string][2]int // role -> {valid signatures, threshold}
}

// publish signs new metadata and stages it in t, in the order a client reads
// it backwards: root, targets, snapshot, timestamp last. The caller commits
// t (or rolls it back on error).
func (r *Repository) publish(st *state, kr *keyring, opts publishOptions, t *txn) (*publishResult, error) {
	bump := map[string]bool{}
	for _, role := range opts.bump {
		bump[role] = true
	}
	if bump[RoleTargets] {
		bump[RoleSnapshot] = true
	}
	if bump[RoleSnapshot] {
		bump[RoleTimestamp] = true
	}
	resign := map[string]bool{}
	for _, role := range opts.resign {
		if !bump[role] {
			resign[role] = true
		}
	}
	res := &publishResult{Versions: map[string]int64{}, Signatures: map[string][2]int{}}

	trusted := &st.root.Signed // signs the next root
	root := st.root
	if bump[RoleRoot] {
		if opts.newRoot != nil {
			root = opts.newRoot
		} else {
			var err error
			if root, err = cloneMeta(st.root); err != nil {
				return nil, err
			}
		}
		root.Signed.Version = st.root.Signed.Version + 1
		root.Signed.Expires = r.expiry(RoleRoot, opts.days[RoleRoot])
	}
	files := map[string][]byte{}

	// Root: signed by the keys of the root that trusts it and of itself.
	if bump[RoleRoot] || resign[RoleRoot] {
		signedBy := trusted
		if resign[RoleRoot] && st.prevRoot != nil {
			signedBy = &st.prevRoot.Signed
		}
		var sets []*signerSet
		for _, rt := range []*metadata.RootType{signedBy, &root.Signed} {
			s, err := kr.signersFor(rt, RoleRoot)
			if err != nil {
				return nil, err
			}
			if !opts.partial[RoleRoot] && bump[RoleRoot] {
				if err := s.enough(kr); err != nil {
					if rt == signedBy && rt != &root.Signed {
						return nil, fmt.Errorf("root version %d must be signed by the keys of root version %d: %w", root.Signed.Version, signedBy.Version, err)
					}
					return nil, err
				}
			}
			sets = append(sets, s)
		}
		if err := signMeta(root, resign[RoleRoot], sets...); err != nil {
			return nil, fmt.Errorf("sign root: %w", err)
		}
		data, err := encodeMeta(root)
		if err != nil {
			return nil, err
		}
		files[fmt.Sprintf("%d.root.json", root.Signed.Version)] = data
		files["root.json"] = data
		n1, th1 := countSignatures(root, signedBy, RoleRoot)
		n2, th2 := countSignatures(root, &root.Signed, RoleRoot)
		if !opts.partial[RoleRoot] && (n1 < th1 || n2 < th2) {
			return nil, stillShort(RoleRoot, min(n1, n2), max(th1, th2))
		}
		res.Signatures[RoleRoot] = [2]int{min(n1, n2), max(th1, th2)}
		res.Versions[RoleRoot] = root.Signed.Version
	}

	sign := func(role string, md interface {
		encode() ([]byte, error)
		sign(keep bool, s *signerSet) error
		count(root *metadata.RootType) (int, int)
		version() int64
	}) error {
		s, err := kr.signersFor(&root.Signed, role)
		if err != nil {
			return err
		}
		// A new version needs the threshold of keys here; adding signatures
		// to the current version needs the threshold in total.
		if !opts.partial[role] && !resign[role] {
			if err := s.enough(kr); err != nil {
				return err
			}
		}
		if err := md.sign(resign[role], s); err != nil {
			return fmt.Errorf("sign %s: %w", role, err)
		}
		data, err := md.encode()
		if err != nil {
			return err
		}
		files[role+".json"] = data
		n, th := md.count(&root.Signed)
		if !opts.partial[role] && n < th {
			return stillShort(role, n, th)
		}
		res.Signatures[role] = [2]int{n, th}
		res.Versions[role] = md.version()
		return nil
	}
	if bump[RoleTargets] {
		st.targets.Signed.Version++
		st.targets.Signed.Expires = r.expiry(RoleTargets, opts.days[RoleTargets])
	}
	if bump[RoleTargets] || resign[RoleTargets] {
		if err := sign(RoleTargets, metaOps[metadata.TargetsType]{st.targets, RoleTargets}); err != nil {
			return nil, err
		}
	}
	if bump[RoleSnapshot] {
		st.snapshot.Signed.Version++
		st.snapshot.Signed.Expires = r.expiry(RoleSnapshot, opts.days[RoleSnapshot])
		st.snapshot.Signed.Meta = map[string]*metadata.MetaFiles{"targets.json": metadata.MetaFile(st.targets.Signed.Version)}
	}
	if bump[RoleSnapshot] || resign[RoleSnapshot] {
		if err := sign(RoleSnapshot, metaOps[metadata.SnapshotType]{st.snapshot, RoleSnapshot}); err != nil {
			return nil, err
		}
	}
	if bump[RoleTimestamp] {
		st.timestamp.Signed.Version++
		st.timestamp.Signed.Expires = r.expiry(RoleTimestamp, opts.days[RoleTimestamp])
		st.timestamp.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": metadata.MetaFile(st.snapshot.Signed.Version)}
	}
	if bump[RoleTimestamp] || resign[RoleTimestamp] {
		if err := sign(RoleTimestamp, metaOps[metadata.TimestampType]{st.timestamp, RoleTimestamp}); err != nil {
			return nil, err
		}
	}

	t.expect = st.raw
	// With consistent snapshots: versioned targets and snapshot metadata,
	// and the target files under hash-prefixed names when this root turns
	// them on (repo_consistent.go).
	versioned, err := r.consistentFiles(st, root, files, t)
	if err != nil {
		return nil, err
	}
	// Everything is signed: stage the files, to be renamed into place at
	// commit in this order, timestamp last.
	if err := t.mkdirAll(r.metaDir()); err != nil {
		return nil, err
	}
	var order []string
	if v := res.Versions[RoleRoot]; v > 0 {
		order = append(order, fmt.Sprintf("%d.root.json", v), "root.json")
	}
	order = append(order, versioned[RoleTargets], "targets.json", versioned[RoleSnapshot], "snapshot.json", "timestamp.json")
	for _, name := range order {
		data, ok := files[name]
		if !ok {
			continue
		}
		if err := t.stage(r.metaPath(name), data, 0o644); err != nil {
			return nil, err
		}
	}
	if bump[RoleRoot] {
		st.prevRoot, st.root = st.root, root
	}
	return res, nil
}

func stillShort(role string, n, threshold int) error {
	return withHint(fmt.Errorf("role %s: %d of %d signatures with the keys here", role, n, threshold),
		"pass --partial to write it anyway, and run `notsotuf sign %s` where the other keys are", role)
}

// metaOps adapts a Metadata[T] to publish's signing steps.
type metaOps[T metadata.Roles] struct {
	md   *metadata.Metadata[T]
	role string
}

func (m metaOps[T]) encode() ([]byte, error) { return encodeMeta(m.md) }
func (m metaOps[T]) sign(keep bool, s *signerSet) error {
	return signMeta(m.md, keep, s)
}
func (m metaOps[T]) count(root *metadata.RootType) (int, int) {
	return countSignatures(m.md, root, m.role)
}
func (m metaOps[T]) version() int64 {
	switch s := any(&m.md.Signed).(type) {
	case *metadata.TargetsType:
		return s.Version
	case *metadata.SnapshotType:
		return s.Version
	case *metadata.TimestampType:
		return s.Version
	case *metadata.RootType:
		return s.Version
	}
	return 0
}

func cloneMeta[T metadata.Roles](md *metadata.Metadata[T]) (*metadata.Metadata[T], error) {
	data, err := encodeMeta(md)
	if err != nil {
		return nil, err
	}
	return (&metadata.Metadata[T]{}).FromBytes(data)
}

// Init creates the repository: the keys named in Config.KeyMap (a key file
// that already exists is used as it is; keys listed in
// Config.EncryptedKeys are encrypted with the passphrase from
// r.Passphrase), and metadata version 1 of every role: 1.root.json,
// root.json, targets.json (no targets), snapshot.json and timestamp.json,
// with consistent_snapshot as Config.ConsistentSnapshot says (then also
// 1.targets.json and 1.snapshot.json). It refuses to overwrite an existing
// repository. On failure, the keys and files it created are removed.
func (r *Repository) Init() (err error) {
	if err := r.Config.Validate(); err != nil {
		return err
	}
	rootPath := r.metaPath("root.json")
	if ok, err := exists(r.Fs, rootPath); err != nil {
		return err
	} else if ok {
		return withHint(fmt.Errorf("repository %s already exists (%s)", r.Config.RepoDir, rootPath),
			"use `notsotuf keys` to change keys, or init in an empty directory")
	}
	t := r.newTxn()
	defer t.finish("init", &err)
	kr := r.newKeyring()
	if err := t.mkdirAll(r.Config.KeysDir); err != nil {
		return err
	}
	root := metadata.Root(r.expiry(RoleRoot, 0))
	root.Signed.ConsistentSnapshot = r.Config.ConsistentSnapshot
	// Create or reuse keys, in a stable order.
	var names []string
	for _, role := range Roles {
		for _, n := range r.Config.KeyMap[role] {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	pubs := map[string]*metadata.Key{}
	for _, n := range names {
		pub, err := readPublicKey(r.Fs, r.Config.KeysDir, n)
		if err == nil {
			r.log().Info("using existing key", "name", n)
			kr.byPub[publicKeyHex(pub)] = n
		} else if errors.Is(err, os.ErrNotExist) {
			var pass []byte
			if slices.Contains(r.Config.EncryptedKeys, n) {
				if r.Passphrase == nil {
					return withHint(fmt.Errorf("key %s: encryption asked but %w", n, ErrNoPassphrase),
						"set %s, NOTSOTUF_PASSPHRASE or NOTSOTUF_PASSPHRASE_FILE", PassphraseEnvVar(n))
				}
				if pass, err = r.Passphrase(n); err != nil {
					return fmt.Errorf("key %s: %w", n, err)
				}
				if len(pass) == 0 {
					return withHint(fmt.Errorf("key %s: encryption asked but %w", n, ErrNoPassphrase),
						"set %s, NOTSOTUF_PASSPHRASE or NOTSOTUF_PASSPHRASE_FILE", PassphraseEnvVar(n))
				}
			}
			k, err := generateKeyFiles(r.Fs, r.Config.KeysDir, n, pass, r.Rand)
			if err != nil {
				return err
			}
			p := filepath.Join(r.Config.KeysDir, n)
			t.created = append(t.created, p, p+".pub")
			kr.add(k)
			pub = k.pub
			r.log().Info("created key", "name", n, "encrypted", pass != nil)
		} else {
			return err
		}
		k, _, err := tufKey(pub)
		if err != nil {
			return err
		}
		pubs[n] = k
	}
	for _, role := range Roles {
		for _, n := range r.Config.KeyMap[role] {
			if err := root.Signed.AddKey(pubs[n], role); err != nil {
				return fmt.Errorf("role %s: key %s: %w", role, n, err)
			}
		}
		root.Signed.Roles[role].Threshold = r.Config.Thresholds[role]
	}
	st := &state{
		root:      root,
		targets:   metadata.Targets(r.expiry(RoleTargets, 0)),
		snapshot:  metadata.Snapshot(r.expiry(RoleSnapshot, 0)),
		timestamp: metadata.Timestamp(r.expiry(RoleTimestamp, 0)),
	}
	if err := t.mkdirAll(r.targetsDir()); err != nil {
		return err
	}
	// Version 1 of everything: publish bumps versions, so start from 0.
	st.targets.Signed.Version = 0
	st.snapshot.Signed.Version = 0
	st.timestamp.Signed.Version = 0
	initial := &metadata.Metadata[metadata.RootType]{Signed: root.Signed, Signatures: []metadata.Signature{}}
	initial.Signed.Version = 0
	st.root = initial
	if _, err := r.publish(st, kr, publishOptions{bump: Roles, newRoot: root}, t); err != nil {
		return err
	}
	return t.commit()
}
