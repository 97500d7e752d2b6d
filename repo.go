package notsotuf

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Top-level TUF role names.
const (
	RoleRoot      = metadata.ROOT
	RoleTargets   = metadata.TARGETS
	RoleSnapshot  = metadata.SNAPSHOT
	RoleTimestamp = metadata.TIMESTAMP
)

// Roles lists the top-level roles in the order their metadata is written.
var Roles = []string{RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp}

// ConfigFile is the name of the repository configuration file that
// `notsotuf init` writes in the working directory.
const ConfigFile = ".notsotuf.json"

// Config holds a repository's settings. Its JSON field names are those of
// tufup's .tufup-repo-config, so a tufup configuration can be read as it is
// (fields notsotuf does not use are ignored). Directories are relative to
// the working directory unless absolute.
type Config struct {
	AppName        string              `json:"app_name"`
	RepoDir        string              `json:"repo_dir"`        // metadata/ and targets/ below it
	KeysDir        string              `json:"keys_dir"`        // key files
	KeyMap         map[string][]string `json:"key_map"`         // role -> key names
	Thresholds     map[string]int      `json:"thresholds"`      // role -> signatures needed
	ExpirationDays map[string]int      `json:"expiration_days"` // role -> days a new version stays valid
	EncryptedKeys  []string            `json:"encrypted_keys"`  // key names whose private file is encrypted
	// PatchFormat is the format of the patches add makes: "bsdiff"
	// (BSDIFF40, the default, which tufup clients apply too) or "compact"
	// (smaller for executables; notsotuf clients only). "" means bsdiff.
	PatchFormat string `json:"patch_format,omitempty"`
	// ConsistentSnapshot makes Init create the repository with TUF
	// consistent snapshots (see Repository). Root metadata is what counts
	// afterwards: Sign with SignOptions.ConsistentSnapshot turns them on
	// in an existing repository and sets this field to match.
	ConsistentSnapshot bool `json:"consistent_snapshot,omitempty"`
}

// Default expiry of each role's metadata, in days.
var defaultExpirationDays = map[string]int{RoleRoot: 365, RoleTargets: 30, RoleSnapshot: 7, RoleTimestamp: 1}

// DefaultConfig returns the configuration `notsotuf init --app app` uses:
// tufup's layout (repository/ and keystore/), one unencrypted key per role
// named after the role, threshold 1, and expiry root 365 days, targets 30,
// snapshot 7, timestamp 1.
func DefaultConfig(app string) Config {
	c := Config{
		AppName:        app,
		RepoDir:        "repository",
		KeysDir:        "keystore",
		KeyMap:         map[string][]string{},
		Thresholds:     map[string]int{},
		ExpirationDays: map[string]int{},
	}
	for _, r := range Roles {
		c.KeyMap[r] = []string{r}
		c.Thresholds[r] = 1
		c.ExpirationDays[r] = defaultExpirationDays[r]
	}
	return c
}

// Validate reports the first setting that cannot work, naming it.
func (c *Config) Validate() error {
	if err := ValidAppName(c.AppName); err != nil {
		return fmt.Errorf("config app_name: %w", err)
	}
	if c.RepoDir == "" {
		return errors.New("config repo_dir: empty")
	}
	if c.KeysDir == "" {
		return errors.New("config keys_dir: empty")
	}
	for _, r := range Roles {
		names := c.KeyMap[r]
		if len(names) == 0 {
			return fmt.Errorf("config key_map.%s: no keys", r)
		}
		for _, n := range names {
			if err := validKeyName(n); err != nil {
				return fmt.Errorf("config key_map.%s: %w", r, err)
			}
		}
		t := c.Thresholds[r]
		if t < 1 || t > len(names) {
			return fmt.Errorf("config thresholds.%s = %d: want 1 to %d (the number of keys)", r, t, len(names))
		}
		d := c.ExpirationDays[r]
		if d < 1 || d > 100*365 {
			return fmt.Errorf("config expiration_days.%s = %d: want 1 to 36500", r, d)
		}
	}
	for k := range c.KeyMap {
		if !slices.Contains(Roles, k) {
			return fmt.Errorf("config key_map.%s: not a top-level role (root, targets, snapshot, timestamp)", k)
		}
	}
	if c.PatchFormat != "" {
		if err := validPatchFormatName(c.PatchFormat); err != nil {
			return fmt.Errorf("config patch_format: %w", err)
		}
	}
	return nil
}

// maxConfigSize caps the configuration file (a few hundred bytes).
const maxConfigSize = 1 << 20

// LoadConfig reads a configuration file written by [Config.Save] (or by
// tufup) and fills missing expiry, threshold and key settings with the
// defaults.
func LoadConfig(fsys afero.Fs, name string) (Config, error) {
	f, err := openRegular(fsys, name)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", name, err)
	}
	if len(data) > maxConfigSize {
		return Config{}, fmt.Errorf("config %s: larger than %d bytes", name, maxConfigSize)
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", name, err)
	}
	def := DefaultConfig(c.AppName)
	if c.RepoDir == "" {
		c.RepoDir = def.RepoDir
	}
	if c.KeysDir == "" {
		c.KeysDir = def.KeysDir
	}
	for _, m := range []*map[string]int{&c.Thresholds, &c.ExpirationDays} {
		if *m == nil {
			*m = map[string]int{}
		}
	}
	if c.KeyMap == nil {
		c.KeyMap = map[string][]string{}
	}
	for _, r := range Roles {
		if _, ok := c.KeyMap[r]; !ok {
			c.KeyMap[r] = def.KeyMap[r]
		}
		if _, ok := c.Thresholds[r]; !ok {
			c.Thresholds[r] = 1
		}
		if _, ok := c.ExpirationDays[r]; !ok {
			c.ExpirationDays[r] = def.ExpirationDays[r]
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// Save writes c to name atomically.
func (c *Config) Save(fsys afero.Fs, name string) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(fsys, name, append(data, '\n'), 0o644)
}

// Repository publishes releases of one application into a TUF repository
// laid out like tufup's: Config.RepoDir/metadata holds N.root.json for every
// root version, root.json (the newest root), targets.json, snapshot.json and
// timestamp.json (consistent_snapshot false); Config.RepoDir/targets holds
// the archives <app>-<version>.tar.gz and patches <app>-<version>.patch
// (<app>-<platform>-<version>.* for a platform's builds, see
// AddOptions.Platform).
// With consistent snapshots (Config.ConsistentSnapshot at Init, or
// SignOptions.ConsistentSnapshot later), metadata/ also holds
// N.targets.json and N.snapshot.json for every version, and each target
// file is stored as targets/<sha256>.<name> instead, so that every name
// but timestamp.json always has the same content (see docs/hosting.md).
//
// Every operation either completes or leaves the repository as it was.
// New files are written under temporary names first; the commit point is a
// journal (.notsotuf-journal.json in Config.RepoDir) listing the renames
// that publish them (target files, then root, targets, snapshot and
// timestamp last). An error undoes the renames done; a crash after the
// commit point is completed by the next operation that reads the
// repository, and Verify refuses to pass while a journal is pending.
//
// A Repository is not safe for concurrent use, and two processes must not
// change the same repository at once.
type Repository struct {
	Fs     afero.Fs
	Config Config

	// Now is the clock; nil means the system clock.
	Now func() time.Time
	// Logger receives progress messages; nil discards them.
	Logger *slog.Logger
	// Passphrase returns the passphrase of the encrypted key named keyName.
	// It is called only when such a key is needed. Nil means encrypted keys
	// cannot be used (nor created).
	Passphrase func(keyName string) ([]byte, error)
	// Rand is the randomness for new keys; nil means crypto/rand.
	Rand io.Reader
	// PatchFormats are patch formats of the program's own, besides the
	// built-in ones (BuiltinPatchFormats); Config.PatchFormat may name one.
	PatchFormats []PatchFormat
	// Progress, if set, is called as Add, Remove and Verify work through
	// the release files, from one goroutine at a time, with the phase and
	// its bytes done so far and in all (a command line tool draws a bar):
	//   - "archive": the release's tar written (total is an estimate from
	//     the bundle's file sizes until the last call);
	//   - "index", "match", "compress": computing a patch: indexing the
	//     previous release's tar (reported at its start and end only),
	//     matching the new tar against it, compressing the patch;
	//   - "check": the tar a patch gives, rebuilt to check it.
	// Each phase starts at 0 and ends with done == total. Calls are coarse
	// (every few MiB), so that reporting costs nothing measurable.
	Progress func(phase string, done, total int64)

	limits archiveLimits // the archive limits add and verify check; zero: the clients' (tests lower them)
}

// patchFormat returns the format named name ("" is bsdiff).
func (r *Repository) patchFormat(name string) (PatchFormat, error) {
	f, err := knownPatchFormats(r.PatchFormats).lookup(name)
	if err != nil {
		return f, withHint(err, "set patch_format in %s to one of: %s", ConfigFile, knownPatchFormats(r.PatchFormats).names())
	}
	return f, nil
}

// progress calls r.Progress when it is set.
func (r *Repository) progress(phase string, done, total int64) {
	if r.Progress != nil {
		r.Progress(phase, done, total)
	}
}

// archiveLimits returns the limits of what clients accept in an archive.
func (r *Repository) archiveLimits() archiveLimits {
	if r.limits == (archiveLimits{}) {
		return clientLimits
	}
	return r.limits
}

// checkClientRules applies the clients' extraction rules (checkTar) to
// the tar at tarPath, which the archive named archive (of archiveLen bytes)
// holds, with the limit a client applies: the signed tar size, or what
// archiveLen bytes of gzip can expand to when none is signed. Names only
// Windows refuses come back as warnings.
func (r *Repository) checkClientRules(ctx context.Context, archive string, archiveLen int64, tarPath string, tarSize int64) ([]string, error) {
	limit := tarSize
	if limit <= 0 {
		limit = archiveLen * maxDeflateRatio
	}
	f, err := r.Fs.Open(tarPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, warnings, err := checkTar(ctx, archive, f, limit, r.archiveLimits())
	return warnings, err
}

func (r *Repository) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC()
	}
	return defaultNow().UTC()
}

func (r *Repository) log() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (r *Repository) metaDir() string    { return filepath.Join(r.Config.RepoDir, "metadata") }
func (r *Repository) targetsDir() string { return filepath.Join(r.Config.RepoDir, "targets") }
func (r *Repository) metaPath(name string) string {
	return filepath.Join(r.metaDir(), name)
}

// expiry returns the expiry of a new version of role, whole seconds in UTC
// (python-tuf rejects fractional seconds).
func (r *Repository) expiry(role string, days int) time.Time {
	if days <= 0 {
		days = r.Config.ExpirationDays[role]
		if days <= 0 {
			days = defaultExpirationDays[role]
		}
	}
	return r.now().Add(time.Duration(days) * 24 * time.Hour).Truncate(time.Second)
}

// hintError carries advice for the user of a command line tool.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }
func (e *hintError) Hint() string  { return e.hint }

func withHint(err error, format string, args ...any) error {
	return &hintError{err: err, hint: fmt.Sprintf(format, args...)}
}

// ErrorHint returns the advice attached to err (or to an error it wraps), or
// "" when there is none. Command line tools print it after the error.
func ErrorHint(err error) string {
	var h interface{ Hint() string }
	if errors.As(err, &h) {
		return h.Hint()
	}
	return ""
}

// state is the repository's current metadata.
type state struct {
	root      *metadata.Metadata[metadata.RootType]
	prevRoot  *metadata.Metadata[metadata.RootType] // root version N-1, nil when N == 1
	targets   *metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	// raw is the content of the metadata files as loaded (path -> bytes):
	// a change commits only if they are still the same, so that two
	// notsotuf processes (an add and a cron refresh) cannot both publish
	// the same version numbers.
	raw map[string][]byte
}

// maxMetadataSize bounds metadata files read from the repository.
const maxMetadataSize = 64 << 20

func (r *Repository) readMeta(name string) ([]byte, error) {
	p := r.metaPath(name)
	f, err := openRegular(r.Fs, p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && name == "root.json" {
			return nil, withHint(fmt.Errorf("metadata %s: %w", p, err), "run `notsotuf init --app NAME` first, or run notsotuf in the directory holding %s", ConfigFile)
		}
		return nil, fmt.Errorf("metadata %s: %w", p, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("metadata %s: %w", p, err)
	}
	if len(data) > maxMetadataSize {
		return nil, fmt.Errorf("metadata %s: larger than %d bytes", p, maxMetadataSize)
	}
	return data, nil
}

func loadMeta[T metadata.Roles](r *Repository, name string) (*metadata.Metadata[T], error) {
	return loadStateMeta[T](r, nil, name)
}

// loadStateMeta is loadMeta that also records the bytes read in st.raw.
func loadStateMeta[T metadata.Roles](r *Repository, st *state, name string) (*metadata.Metadata[T], error) {
	data, err := r.readMeta(name)
	if err != nil {
		return nil, err
	}
	if st != nil {
		st.raw[r.metaPath(name)] = data
	}
	md, err := (&metadata.Metadata[T]{}).FromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("metadata %s: %w", r.metaPath(name), err)
	}
	return md, nil
}

// load reads the repository's current metadata (without verifying it: see
// Verify).
func (r *Repository) load() (*state, error) {
	if err := r.recoverJournal(); err != nil {
		return nil, err
	}
	st := state{raw: map[string][]byte{}}
	var err error
	if st.root, err = loadStateMeta[metadata.RootType](r, &st, "root.json"); err != nil {
		return nil, err
	}
	if v := st.root.Signed.Version; v > 1 {
		if st.prevRoot, err = loadStateMeta[metadata.RootType](r, &st, fmt.Sprintf("%d.root.json", v-1)); err != nil {
			return nil, err
		}
	}
	if st.targets, err = loadStateMeta[metadata.TargetsType](r, &st, "targets.json"); err != nil {
		return nil, err
	}
	if st.snapshot, err = loadStateMeta[metadata.SnapshotType](r, &st, "snapshot.json"); err != nil {
		return nil, err
	}
	if st.timestamp, err = loadStateMeta[metadata.TimestampType](r, &st, "timestamp.json"); err != nil {
		return nil, err
	}
	return &st, nil
}

// encodeMeta serializes metadata like python-tuf (sorted keys, one-space
// indent, no trailing newline). Signatures cover the canonical JSON of
// "signed", so the layout does not matter to verifiers.
func encodeMeta[T metadata.Roles](md *metadata.Metadata[T]) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(md); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// roleKey is a key of a role as root metadata lists it.
type roleKey struct {
	id  string
	pub string // hex
}

func roleKeys(root *metadata.RootType, role string) ([]roleKey, int) {
	rl := root.Roles[role]
	if rl == nil {
		return nil, 0
	}
	var out []roleKey
	for _, id := range rl.KeyIDs {
		if k := root.Keys[id]; k != nil && k.Type == metadata.KeyTypeEd25519 {
			out = append(out, roleKey{id, strings.ToLower(k.Value.PublicKey)})
		}
	}
	return out, rl.Threshold
}

// keyring finds and caches private keys in the key store by public key.
type keyring struct {
	r       *Repository
	byPub   map[string]string // public hex -> key name in the key store
	scanned bool
	loaded  map[string]*signingKey // by key name
}

func (r *Repository) newKeyring() *keyring {
	return &keyring{r: r, byPub: map[string]string{}, loaded: map[string]*signingKey{}}
}

// add makes a key known (a key just generated).
func (kr *keyring) add(k *signingKey) {
	kr.byPub[publicKeyHex(k.pub)] = k.name
	kr.loaded[k.name] = k
}

// scan reads the public halves of the keys named in the configuration and of
// any other key file in the key store.
func (kr *keyring) scan() {
	if kr.scanned {
		return
	}
	kr.scanned = true
	names := map[string]bool{}
	for _, ns := range kr.r.Config.KeyMap {
		for _, n := range ns {
			names[n] = true
		}
	}
	if entries, err := afero.ReadDir(kr.r.Fs, kr.r.Config.KeysDir); err == nil {
		for _, e := range entries {
			n := strings.TrimSuffix(e.Name(), ".pub")
			if !e.IsDir() && !strings.HasPrefix(n, ".") && validKeyName(n) == nil {
				names[n] = true
			}
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		pub, err := readPublicKey(kr.r.Fs, kr.r.Config.KeysDir, n)
		if err != nil {
			continue
		}
		h := publicKeyHex(pub)
		if _, dup := kr.byPub[h]; !dup {
			kr.byPub[h] = n
		}
	}
}

// nameOf returns the key store name of a public key, or "".
func (kr *keyring) nameOf(pubHex string) string {
	kr.scan()
	return kr.byPub[strings.ToLower(pubHex)]
}

// signer returns the private key for a public key, nil when the key store
// does not hold it (another person holds it), or an error when it is there
// but cannot be used (wrong passphrase, corrupt file).
func (kr *keyring) signer(pubHex string) (*signingKey, error) {
	name := kr.nameOf(pubHex)
	if name == "" {
		return nil, nil
	}
	if k := kr.loaded[name]; k != nil {
		return k, nil
	}
	k, err := readSigningKey(kr.r.Fs, kr.r.Config.KeysDir, name, kr.r.Passphrase)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // only the .pub is here
	}
	if err != nil {
		if errors.Is(err, ErrNoPassphrase) {
			return nil, withHint(err, "set %s (or NOTSOTUF_PASSPHRASE, or NOTSOTUF_PASSPHRASE_FILE)", PassphraseEnvVar(name))
		}
		return nil, err
	}
	kr.loaded[name] = k
	return k, nil
}

// PassphraseEnvVar is the environment variable that holds the passphrase of
// the encrypted key named name: NOTSOTUF_PASSPHRASE_ and the name in upper
// case, other characters than letters and digits turned into '_'. The CLI
// reads it (then NOTSOTUF_PASSPHRASE, then NOTSOTUF_PASSPHRASE_FILE).
func PassphraseEnvVar(name string) string {
	return "NOTSOTUF_PASSPHRASE_" + strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, name)
}

// signerSet is the keys that sign one role's metadata.
type signerSet struct {
	role      string
	threshold int
	keys      []roleKey
	signers   map[string]*signingKey // key id -> private key
}

// signersFor collects the available private keys of role as root lists it.
func (kr *keyring) signersFor(root *metadata.RootType, role string) (*signerSet, error) {
	keys, threshold := roleKeys(root, role)
	s := &signerSet{role: role, threshold: threshold, keys: keys, signers: map[string]*signingKey{}}
	for _, k := range keys {
		sk, err := kr.signer(k.pub)
		if err != nil {
			return nil, fmt.Errorf("role %s: %w", role, err)
		}
		if sk != nil {
			s.signers[k.id] = sk
		}
	}
	return s, nil
}

// enough returns an error unless the available keys reach the threshold.
func (s *signerSet) enough(kr *keyring) error {
	if len(s.signers) >= s.threshold {
		return nil
	}
	var missing []string
	for _, k := range s.keys {
		if s.signers[k.id] == nil {
			n := kr.nameOf(k.pub)
			if n == "" {
				n = "key " + shortID(k.id)
			}
			missing = append(missing, n)
		}
	}
	return withHint(
		fmt.Errorf("role %s: %d of its signing keys available in %s, threshold is %d (missing: %s)",
			s.role, len(s.signers), kr.r.Config.KeysDir, s.threshold, strings.Join(missing, ", ")),
		"copy the missing private keys into %s, or sign in several steps with `notsotuf sign %s --partial`", kr.r.Config.KeysDir, s.role)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// signMeta signs md with every key of sets (several sets for a root that
// must satisfy the old and the new root). With keep, valid existing
// signatures are kept and only missing ones added; otherwise signatures are
// cleared first.
func signMeta[T metadata.Roles](md *metadata.Metadata[T], keep bool, sets ...*signerSet) error {
	payload, err := cjson.EncodeCanonical(md.Signed)
	if err != nil {
		return fmt.Errorf("canonical JSON: %w", err)
	}
	if !keep {
		md.ClearSignatures()
	}
	have := map[string]bool{}
	kept := md.Signatures[:0]
	for _, s := range md.Signatures {
		if have[s.KeyID] || !validSignature(md, s, payload, sets) {
			continue
		}
		have[s.KeyID] = true
		kept = append(kept, s)
	}
	md.Signatures = kept
	for _, set := range sets {
		ids := make([]string, 0, len(set.signers))
		for id := range set.signers {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			if have[id] {
				continue
			}
			have[id] = true
			sig := ed25519.Sign(set.signers[id].priv, payload)
			md.Signatures = append(md.Signatures, metadata.Signature{KeyID: id, Signature: sig})
		}
	}
	if md.Signatures == nil {
		md.Signatures = []metadata.Signature{}
	}
	return nil
}

// validSignature checks an existing signature against the keys the sets
// know; signatures by unknown keys are dropped.
func validSignature[T metadata.Roles](_ *metadata.Metadata[T], s metadata.Signature, payload []byte, sets []*signerSet) bool {
	for _, set := range sets {
		for _, k := range set.keys {
			if k.id == s.KeyID {
				pub, err := hex.DecodeString(k.pub)
				return err == nil && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, payload, s.Signature)
			}
		}
	}
	return false
}

// countSignatures returns how many distinct keys of role (as root lists it)
// validly signed md.
func countSignatures[T metadata.Roles](md *metadata.Metadata[T], root *metadata.RootType, role string) (int, int) {
	keys, threshold := roleKeys(root, role)
	payload, err := cjson.EncodeCanonical(md.Signed)
	if err != nil {
		return 0, threshold
	}
	set := &signerSet{keys: keys}
	n := 0
	seen := map[string]bool{}
	for _, s := range md.Signatures {
		if !seen[s.KeyID] && validSignature(md, s, payload, []*signerSet{set}) {
			seen[s.KeyID] = true
			n++
		}
	}
	return n, threshold
}
