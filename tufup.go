package notsotuf

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TufupConfigFile is the name of the configuration file tufup writes in the
// directory where its repository commands run.
const TufupConfigFile = ".tufup-repo-config"

// TufupImport says where a tufup repository is and how to read its keys.
type TufupImport struct {
	// Config is tufup's configuration file (.tufup-repo-config, JSON).
	// Relative repo_dir and keys_dir in it are taken relative to the
	// directory holding this file (tufup runs in that directory).
	Config string
	// RepoDir and KeysDir, when set, replace the configuration's repo_dir
	// and keys_dir (for a repository or key store that was moved).
	RepoDir, KeysDir string
	// NewKeysDir is where keys are written when some private keys must be
	// converted (securesystemslib's encrypted format, which notsotuf
	// re-encrypts in its own format with the same passphrase). "" means
	// the key store's path with "-notsotuf" appended. The tufup key store
	// itself is never modified.
	NewKeysDir string
	// Passphrase returns the passphrase of an encrypted key; nil (or a nil
	// result) means none is available and importing an encrypted key fails
	// with an error wrapping ErrNoPassphrase.
	Passphrase func(keyName string) ([]byte, error)
	// Rand is the randomness for re-encrypting keys; nil means crypto/rand.
	Rand io.Reader
}

// TufupKey describes one key of an imported repository.
type TufupKey struct {
	Name      string   // key name in the key store (file name)
	Roles     []string // roles whose key_map lists it
	ID        string   // key id in root metadata, "" if root does not list it
	Private   bool     // the private key file is present (online key)
	Encrypted bool     // the private key was encrypted by securesystemslib
	Converted string   // path of the private key file written in notsotuf's format, or ""
}

// TufupImportResult is what [ImportTufup] found and wrote.
type TufupImportResult struct {
	// Config is the notsotuf configuration to save (with [Config.Save]):
	// the same repository and keys, expiry days and thresholds as tufup's.
	Config Config
	// TufupKeysDir is tufup's key store as read (Config.KeysDir differs
	// from it when keys were converted).
	TufupKeysDir string
	Keys         []TufupKey
	// Written lists the key files written to Config.KeysDir (empty when
	// tufup's key store is used as it is).
	Written []string
	// Warnings are things the publisher should know: offline keys,
	// tufup settings that notsotuf does not use, key_map entries that
	// root does not list.
	Warnings []string
}

// tufupRepoConfig is tufup's .tufup-repo-config.
type tufupRepoConfig struct {
	AppName        *string             `json:"app_name"`
	AppVersionAttr any                 `json:"app_version_attr"`
	BinaryDiff     any                 `json:"binary_diff"`
	RepoDir        string              `json:"repo_dir"`
	KeysDir        string              `json:"keys_dir"`
	KeyMap         map[string][]string `json:"key_map"`
	EncryptedKeys  []string            `json:"encrypted_keys"`
	ExpirationDays map[string]int      `json:"expiration_days"`
	Thresholds     map[string]int      `json:"thresholds"`
}

// maxTufupConfigSize bounds the tufup configuration file.
const maxTufupConfigSize = 1 << 20

func readLimited(fsys afero.Fs, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

// parseTufupConfig reads tufup's configuration into a notsotuf Config
// (directories as written in the file).
func parseTufupConfig(data []byte) (Config, []string, error) {
	var tc tufupRepoConfig
	if err := json.Unmarshal(data, &tc); err != nil {
		return Config{}, nil, err
	}
	if tc.AppName == nil {
		return Config{}, nil, errors.New("app_name: missing")
	}
	var ignored []string
	if tc.AppVersionAttr != nil {
		ignored = append(ignored, "app_version_attr (notsotuf takes the version on the command line)")
	}
	if b, ok := tc.BinaryDiff.(bool); ok && !b {
		ignored = append(ignored, "binary_diff false (notsotuf makes patches unless `add --skip-patch`)")
	}
	def := DefaultConfig(*tc.AppName)
	c := Config{
		AppName:        *tc.AppName,
		RepoDir:        tc.RepoDir,
		KeysDir:        tc.KeysDir,
		KeyMap:         map[string][]string{},
		Thresholds:     map[string]int{},
		ExpirationDays: map[string]int{},
	}
	if c.RepoDir == "" {
		c.RepoDir = def.RepoDir
	}
	if c.KeysDir == "" {
		c.KeysDir = def.KeysDir
	}
	for _, r := range Roles {
		c.KeyMap[r] = def.KeyMap[r]
		if ks, ok := tc.KeyMap[r]; ok {
			c.KeyMap[r] = slices.Clone(ks)
		}
		c.Thresholds[r] = 1
		if t, ok := tc.Thresholds[r]; ok {
			c.Thresholds[r] = t
		}
		c.ExpirationDays[r] = def.ExpirationDays[r]
		if d, ok := tc.ExpirationDays[r]; ok {
			c.ExpirationDays[r] = d
		}
	}
	for k := range tc.KeyMap {
		if !slices.Contains(Roles, k) {
			return Config{}, nil, fmt.Errorf("key_map.%s: not a top-level role", k)
		}
	}
	c.EncryptedKeys = slices.Clone(tc.EncryptedKeys)
	if err := c.Validate(); err != nil {
		return Config{}, nil, err
	}
	return c, ignored, nil
}

// ImportTufup reads a tufup repository's configuration, root metadata and
// key store, and returns the notsotuf configuration that publishes into the
// same repository with the same keys, so that `notsotuf add` continues the
// release history and tufup clients in the field keep updating.
//
// Key files in tufup's unencrypted format are notsotuf's format already:
// when no key is encrypted, the configuration points at tufup's key store.
// Private keys encrypted by securesystemslib (PBKDF2-HMAC-SHA256, AES-256-CTR
// and an HMAC-SHA256 of the ciphertext) are decrypted with imp.Passphrase,
// checked against their public key and written, re-encrypted with the same
// passphrase in notsotuf's format, to imp.NewKeysDir together with copies
// of the other key files. Keys whose private file is absent (an offline
// root key, for instance) are fine: the commands that need them say so.
//
// Nothing is written when an error is returned, except key files already
// complete in NewKeysDir. Call [Repository.Verify] on the result to check
// the whole repository.
func ImportTufup(fsys afero.Fs, imp TufupImport) (*TufupImportResult, error) {
	if imp.Config == "" {
		imp.Config = TufupConfigFile
	}
	data, err := readLimited(fsys, imp.Config, maxTufupConfigSize)
	if err != nil {
		return nil, fmt.Errorf("tufup config %s: %w", imp.Config, err)
	}
	cfg, ignored, err := parseTufupConfig(data)
	if err != nil {
		return nil, fmt.Errorf("tufup config %s: %w", imp.Config, err)
	}
	base := filepath.Dir(imp.Config)
	rel := func(p string) string {
		if filepath.IsAbs(p) {
			return filepath.Clean(p)
		}
		return filepath.Join(base, filepath.FromSlash(p))
	}
	cfg.RepoDir, cfg.KeysDir = rel(cfg.RepoDir), rel(cfg.KeysDir)
	if imp.RepoDir != "" {
		cfg.RepoDir = filepath.Clean(imp.RepoDir)
	}
	if imp.KeysDir != "" {
		cfg.KeysDir = filepath.Clean(imp.KeysDir)
	}
	res := &TufupImportResult{TufupKeysDir: cfg.KeysDir}
	for _, s := range ignored {
		res.Warnings = append(res.Warnings, "tufup setting ignored: "+s)
	}

	probe := &Repository{Fs: fsys, Config: cfg}
	root, err := loadMeta[metadata.RootType](probe, "root.json")
	if err != nil {
		return nil, fmt.Errorf("tufup repository %s: %w", cfg.RepoDir, err)
	}
	for _, name := range []string{"1.root.json", "targets.json", "snapshot.json", "timestamp.json"} {
		if ok, err := exists(fsys, probe.metaPath(name)); err != nil {
			return nil, err
		} else if !ok {
			return nil, fmt.Errorf("tufup repository %s: metadata/%s missing", cfg.RepoDir, name)
		}
	}
	if ok, _ := exists(fsys, probe.targetsDir()); !ok {
		return nil, fmt.Errorf("tufup repository %s: targets directory missing", cfg.RepoDir)
	}

	// Every key named in key_map, in role order.
	var names []string
	roles := map[string][]string{}
	for _, r := range Roles {
		for _, n := range cfg.KeyMap[r] {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
			roles[n] = append(roles[n], r)
		}
	}
	type keyState struct {
		TufupKey
		pub  ed25519.PublicKey
		seed []byte // decrypted seed of a securesystemslib-encrypted key
	}
	var keys []*keyState
	for _, n := range names {
		pub, err := readPublicKey(fsys, cfg.KeysDir, n)
		if err != nil {
			return nil, fmt.Errorf("tufup key %s: %w", n, err)
		}
		ks := &keyState{TufupKey: TufupKey{Name: n, Roles: roles[n]}, pub: pub}
		for _, r := range ks.Roles {
			id := rootKeyID(&root.Signed, r, pub)
			if id == "" {
				res.Warnings = append(res.Warnings, fmt.Sprintf("key %s: key_map lists it for %s but root version %d does not; it will not sign %s", n, r, root.Signed.Version, r))
				continue
			}
			ks.ID = id
		}
		privPath := filepath.Join(cfg.KeysDir, n)
		raw, err := readLimited(fsys, privPath, maxKeyFileSize)
		switch {
		case errors.Is(err, os.ErrNotExist):
			res.Warnings = append(res.Warnings, fmt.Sprintf("key %s: no private key file in %s (offline key): commands that sign %s need it", n, cfg.KeysDir, strings.Join(ks.Roles, ", ")))
		case err != nil:
			return nil, fmt.Errorf("tufup key file %s: %w", privPath, err)
		case isSSLibEncrypted(raw):
			ks.Private, ks.Encrypted = true, true
			var pass []byte
			if imp.Passphrase != nil {
				if pass, err = imp.Passphrase(n); err != nil {
					return nil, fmt.Errorf("tufup key file %s: %w", privPath, err)
				}
			}
			if pass == nil {
				return nil, withHint(fmt.Errorf("tufup key file %s is encrypted: %w", privPath, ErrNoPassphrase),
					"set %s (or NOTSOTUF_PASSPHRASE, or NOTSOTUF_PASSPHRASE_FILE) to the key's tufup passphrase", PassphraseEnvVar(n))
			}
			plain, err := decryptSSLibKey(raw, pass)
			if err != nil {
				return nil, fmt.Errorf("tufup key file %s: %w", privPath, err)
			}
			seed, kpub, err := parseSSLibPrivateKey(plain)
			if err != nil {
				return nil, fmt.Errorf("tufup key file %s (decrypted): %w", privPath, err)
			}
			if !bytes.Equal(kpub, pub) {
				return nil, fmt.Errorf("tufup key file %s: private key does not match %s.pub", privPath, n)
			}
			ks.seed = seed
		default:
			k, err := readSigningKey(fsys, cfg.KeysDir, n, nil)
			if errors.Is(err, ErrNoPassphrase) {
				ks.Private = true // already in notsotuf's encrypted format
				break
			}
			if err != nil {
				return nil, fmt.Errorf("tufup key %s: %w", n, err)
			}
			if !bytes.Equal(k.pub, pub) {
				return nil, fmt.Errorf("tufup key file %s: private key does not match %s.pub", privPath, n)
			}
			ks.Private = true
		}
		keys = append(keys, ks)
	}
	for _, r := range Roles {
		if root.Signed.Roles[r] == nil {
			return nil, fmt.Errorf("tufup repository %s: root has no role %s", cfg.RepoDir, r)
		}
		online := 0
		for _, ks := range keys {
			if ks.Private && slices.Contains(ks.Roles, r) && rootKeyID(&root.Signed, r, ks.pub) != "" {
				online++
			}
		}
		if t := root.Signed.Roles[r].Threshold; online < t && r != RoleRoot {
			res.Warnings = append(res.Warnings, fmt.Sprintf("role %s: %d private keys here, threshold %d: `notsotuf add` and `refresh` need them", r, online, t))
		}
		// Thresholds come from root, which is what clients check.
		if t := root.Signed.Roles[r].Threshold; t != cfg.Thresholds[r] {
			res.Warnings = append(res.Warnings, fmt.Sprintf("thresholds.%s: tufup config says %d, root says %d; using %d", r, cfg.Thresholds[r], t, t))
			cfg.Thresholds[r] = t
		}
	}

	convert := slices.ContainsFunc(keys, func(ks *keyState) bool { return ks.seed != nil })
	if convert {
		dst := imp.NewKeysDir
		if dst == "" {
			dst = filepath.Clean(cfg.KeysDir) + "-notsotuf"
		}
		if filepath.Clean(dst) == filepath.Clean(cfg.KeysDir) {
			return nil, fmt.Errorf("new key directory %s is tufup's key store: choose another one", dst)
		}
		rnd := imp.Rand
		if rnd == nil {
			rnd = rand.Reader
		}
		// Prepare every file first, then write, so a bad key writes nothing.
		type out struct {
			name string
			data []byte
			perm os.FileMode
		}
		var files []out
		for _, ks := range keys {
			pubData, err := readLimited(fsys, filepath.Join(cfg.KeysDir, ks.Name+".pub"), maxKeyFileSize)
			if err != nil {
				return nil, fmt.Errorf("tufup key %s: %w", ks.Name, err)
			}
			files = append(files, out{ks.Name + ".pub", pubData, 0o644})
			switch {
			case ks.seed != nil:
				pass, _ := imp.Passphrase(ks.Name)
				enc, err := sealSeed(ks.seed, pass, rnd)
				if err != nil {
					return nil, fmt.Errorf("key %s: %w", ks.Name, err)
				}
				_, id, err := tufKey(ks.pub)
				if err != nil {
					return nil, err
				}
				if ks.ID != "" {
					id = ks.ID
				}
				kf := keyFileJSON{KeyType: metadata.KeyTypeEd25519, Scheme: metadata.KeySchemeEd25519, KeyID: id,
					KeyIDHashAlgorithms: []string{"sha256", "sha512"},
					KeyVal:              keyValJSON{Public: publicKeyHex(ks.pub)}, Encrypted: enc}
				data, err := json.MarshalIndent(kf, "", " ")
				if err != nil {
					return nil, err
				}
				files = append(files, out{ks.Name, data, 0o600})
				ks.Converted = filepath.Join(dst, ks.Name)
			case ks.Private:
				data, err := readLimited(fsys, filepath.Join(cfg.KeysDir, ks.Name), maxKeyFileSize)
				if err != nil {
					return nil, fmt.Errorf("tufup key %s: %w", ks.Name, err)
				}
				files = append(files, out{ks.Name, data, 0o600})
			}
		}
		for _, f := range files {
			p := filepath.Join(dst, f.name)
			if ok, err := exists(fsys, p); err != nil {
				return nil, err
			} else if ok {
				if old, err := readLimited(fsys, p, maxKeyFileSize); err == nil && sameKeyFile(old, f.data) {
					continue // an earlier import wrote it
				}
				return nil, withHint(fmt.Errorf("key file %s already exists", p), "remove %s or choose another directory for the converted keys", dst)
			}
		}
		if err := fsys.MkdirAll(dst, 0o700); err != nil {
			return nil, fmt.Errorf("key directory %s: %w", dst, err)
		}
		for _, f := range files {
			p := filepath.Join(dst, f.name)
			if ok, _ := exists(fsys, p); ok {
				continue
			}
			if err := writeFileAtomic(fsys, p, f.data, f.perm); err != nil {
				return nil, err
			}
			res.Written = append(res.Written, p)
		}
		cfg.KeysDir = dst
	}
	enc := map[string]bool{}
	for _, n := range cfg.EncryptedKeys {
		enc[n] = true
	}
	for _, ks := range keys {
		if ks.Encrypted {
			enc[ks.Name] = true
		}
		res.Keys = append(res.Keys, ks.TufupKey)
	}
	cfg.EncryptedKeys = nil
	for n := range enc {
		cfg.EncryptedKeys = append(cfg.EncryptedKeys, n)
	}
	sort.Strings(cfg.EncryptedKeys)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	res.Config = cfg
	return res, nil
}

// sameKeyFile reports whether two key files hold the same public key and,
// for private files, are both private (a converted key is re-encrypted
// with a new salt each time, so bytes differ between imports).
func sameKeyFile(a, b []byte) bool {
	var ka, kb keyFileJSON
	if json.Unmarshal(a, &ka) != nil || json.Unmarshal(b, &kb) != nil {
		return false
	}
	hasPriv := func(k keyFileJSON) bool { return k.KeyVal.Private != "" || k.Encrypted != nil }
	return strings.EqualFold(ka.KeyVal.Public, kb.KeyVal.Public) && hasPriv(ka) == hasPriv(kb)
}

// rootKeyID returns the id under which root lists pub for role, or "".
func rootKeyID(root *metadata.RootType, role string, pub ed25519.PublicKey) string {
	keys, _ := roleKeys(root, role)
	h := publicKeyHex(pub)
	for _, k := range keys {
		if k.pub == h {
			return k.id
		}
	}
	return ""
}

// securesystemslib's encrypted key files (securesystemslib.keys.encrypt_key,
// used by tufup through generate_and_write_ed25519_keypair with a password)
// are one line of five fields separated by "@@@@":
//
//	hex(salt) @@@@ decimal PBKDF2 iterations @@@@ hex(HMAC-SHA256(key, ciphertext))
//	@@@@ hex(16-byte AES-CTR IV) @@@@ hex(ciphertext)
//
// key is PBKDF2-HMAC-SHA256(passphrase, salt, iterations, 32 bytes); the
// ciphertext is AES-256-CTR of the key object's JSON (json.dumps of
// {"keytype", "scheme", "keyid", "keyid_hash_algorithms", "keyval":
// {"public", "private"}}).
const sslibDelimiter = "@@@@"

// Bounds on what an encrypted key file may ask for: securesystemslib writes
// 16-byte salts and 100000 iterations.
const (
	sslibMaxIterations = 10_000_000
	sslibMaxSalt       = 1024
)

type sslibEncrypted struct {
	salt       []byte
	iterations int
	mac        []byte
	iv         []byte
	ciphertext []byte
}

// isSSLibEncrypted reports whether a key file looks like securesystemslib's
// encrypted format (rather than JSON).
func isSSLibEncrypted(data []byte) bool {
	return bytes.Count(data, []byte(sslibDelimiter)) == 4
}

// parseSSLibEncrypted splits and decodes an encrypted key file, checking
// every field before any work is done.
func parseSSLibEncrypted(data []byte) (*sslibEncrypted, error) {
	parts := strings.Split(strings.TrimSpace(string(data)), sslibDelimiter)
	if len(parts) != 5 {
		return nil, fmt.Errorf("securesystemslib encrypted key: want 5 fields separated by %q, got %d", sslibDelimiter, len(parts))
	}
	field := func(name, s string) ([]byte, error) {
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("securesystemslib encrypted key: %s: not hex", name)
		}
		return b, nil
	}
	var e sslibEncrypted
	var err error
	if e.salt, err = field("salt", parts[0]); err != nil {
		return nil, err
	}
	if len(e.salt) == 0 || len(e.salt) > sslibMaxSalt {
		return nil, fmt.Errorf("securesystemslib encrypted key: salt of %d bytes (want 1 to %d)", len(e.salt), sslibMaxSalt)
	}
	e.iterations, err = strconv.Atoi(parts[1])
	if err != nil || e.iterations < 1 || e.iterations > sslibMaxIterations {
		return nil, fmt.Errorf("securesystemslib encrypted key: iterations %q: want 1 to %d", parts[1], sslibMaxIterations)
	}
	if e.mac, err = field("hmac", parts[2]); err != nil {
		return nil, err
	}
	if len(e.mac) != sha256.Size {
		return nil, fmt.Errorf("securesystemslib encrypted key: hmac of %d bytes, want %d", len(e.mac), sha256.Size)
	}
	if e.iv, err = field("iv", parts[3]); err != nil {
		return nil, err
	}
	if len(e.iv) != aes.BlockSize {
		return nil, fmt.Errorf("securesystemslib encrypted key: iv of %d bytes, want %d", len(e.iv), aes.BlockSize)
	}
	if e.ciphertext, err = field("ciphertext", parts[4]); err != nil {
		return nil, err
	}
	if len(e.ciphertext) == 0 {
		return nil, errors.New("securesystemslib encrypted key: empty ciphertext")
	}
	return &e, nil
}

// decryptSSLibKey decrypts a securesystemslib encrypted key file and
// returns the key object's JSON. A wrong passphrase (or a modified file)
// fails the HMAC check.
func decryptSSLibKey(data, passphrase []byte) ([]byte, error) {
	e, err := parseSSLibEncrypted(data)
	if err != nil {
		return nil, err
	}
	key, err := pbkdf2.Key(sha256.New, string(passphrase), e.salt, e.iterations, 32)
	if err != nil {
		return nil, fmt.Errorf("securesystemslib encrypted key: %w", err)
	}
	m := hmac.New(sha256.New, key)
	m.Write(e.ciphertext)
	if !hmac.Equal(m.Sum(nil), e.mac) {
		return nil, errors.New("wrong passphrase (or corrupt key file): HMAC mismatch")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	plain := make([]byte, len(e.ciphertext))
	cipher.NewCTR(block, e.iv).XORKeyStream(plain, e.ciphertext)
	return plain, nil
}

// parseSSLibPrivateKey reads a securesystemslib ed25519 key object with its
// private part and returns the seed and the public key.
func parseSSLibPrivateKey(data []byte) (seed []byte, pub ed25519.PublicKey, err error) {
	var kf keyFileJSON
	if err := json.Unmarshal(data, &kf); err != nil {
		return nil, nil, fmt.Errorf("key object: %w", err)
	}
	if kf.KeyType != metadata.KeyTypeEd25519 || kf.Scheme != metadata.KeySchemeEd25519 {
		return nil, nil, fmt.Errorf("key type %q scheme %q: only ed25519 keys are supported", kf.KeyType, kf.Scheme)
	}
	p, err := hex.DecodeString(kf.KeyVal.Public)
	if err != nil || len(p) != ed25519.PublicKeySize {
		return nil, nil, fmt.Errorf("keyval.public: want %d hex-encoded bytes", ed25519.PublicKeySize)
	}
	s, err := hex.DecodeString(kf.KeyVal.Private)
	if err != nil || (len(s) != ed25519.SeedSize && len(s) != ed25519.PrivateKeySize) {
		return nil, nil, fmt.Errorf("keyval.private: want %d hex-encoded bytes", ed25519.SeedSize)
	}
	s = s[:ed25519.SeedSize]
	derived := ed25519.NewKeyFromSeed(s).Public().(ed25519.PublicKey)
	if !bytes.Equal(derived, p) {
		return nil, nil, errors.New("keyval.private does not match keyval.public")
	}
	return s, ed25519.PublicKey(p), nil
}
