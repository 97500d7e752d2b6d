package notsotuf

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/afero"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/scrypt"
)

// Key files
//
// A key named NAME lives in the keys directory as two files, in the format of
// securesystemslib (what tufup writes), so that tufup's key store can be used
// as it is:
//
//	NAME      {"keytype": "ed25519", "scheme": "ed25519", "keyid": ...,
//	           "keyval": {"public": hex, "private": hex(32-byte seed)}}   (0600)
//	NAME.pub  the same without "private"                                   (0644)
//
// An encrypted private key file has no "private" value; instead it carries
// "notsotuf_encrypted": {"kdf": "scrypt", "n", "r", "p", "salt",
// "cipher": "nacl-secretbox", "nonce", "box"}, where box is the seed sealed
// with a key derived from the passphrase by scrypt.

// ErrNoPassphrase is returned (wrapped) when an encrypted key is needed and
// no passphrase was provided.
var ErrNoPassphrase = errors.New("no passphrase")

// scrypt parameters for new encrypted keys: 2^15 costs about 32 MiB and a
// tenth of a second, the interactive recommendation of the scrypt paper.
const (
	scryptN = 1 << 15
	scryptR = 8
	scryptP = 1
)

// maxKeyFileSize bounds key files read from the key store.
const maxKeyFileSize = 64 << 10

type keyFileJSON struct {
	KeyType             string         `json:"keytype"`
	Scheme              string         `json:"scheme"`
	KeyID               string         `json:"keyid,omitempty"`
	KeyIDHashAlgorithms []string       `json:"keyid_hash_algorithms,omitempty"`
	KeyVal              keyValJSON     `json:"keyval"`
	Encrypted           *encryptedJSON `json:"notsotuf_encrypted,omitempty"`
}

type keyValJSON struct {
	Public  string `json:"public"`
	Private string `json:"private,omitempty"`
}

type encryptedJSON struct {
	KDF    string `json:"kdf"`
	N      int    `json:"n"`
	R      int    `json:"r"`
	P      int    `json:"p"`
	Salt   string `json:"salt"`
	Cipher string `json:"cipher"`
	Nonce  string `json:"nonce"`
	Box    string `json:"box"`
}

// signingKey is a private key loaded from the key store.
type signingKey struct {
	name string
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

// publicKeyHex is how TUF metadata spells an ed25519 public key.
func publicKeyHex(pub ed25519.PublicKey) string { return hex.EncodeToString(pub) }

// tufKey returns the metadata key of pub. Its ID is computed the modern way
// (sha256 of the canonical key); existing keys keep whatever ID their
// metadata gives them.
func tufKey(pub ed25519.PublicKey) (*metadata.Key, string, error) {
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, "", err
	}
	id, err := k.ID()
	if err != nil {
		return nil, "", err
	}
	return k, id, nil
}

// validKeyName refuses key names that are not plain file names.
func validKeyName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\:`) || strings.HasSuffix(name, ".pub") || len(name) > 128 {
		return fmt.Errorf("key name %q: use a plain file name (letters, digits, '-', '_'), not ending in .pub", name)
	}
	return nil
}

// generateKeyFiles creates a new ed25519 key named name in dir. When
// passphrase is not nil the private key file is encrypted with it. It
// refuses to overwrite an existing key.
func generateKeyFiles(fsys afero.Fs, dir, name string, passphrase []byte, rnd io.Reader) (*signingKey, error) {
	if err := validKeyName(name); err != nil {
		return nil, err
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	pub, priv, err := ed25519.GenerateKey(rnd)
	if err != nil {
		return nil, fmt.Errorf("generate key %s: %w", name, err)
	}
	privPath := filepath.Join(dir, name)
	pubPath := privPath + ".pub"
	for _, p := range []string{privPath, pubPath} {
		ok, err := exists(fsys, p)
		if err != nil {
			return nil, err
		}
		if ok {
			return nil, fmt.Errorf("key file %s already exists", p)
		}
	}
	_, id, err := tufKey(pub)
	if err != nil {
		return nil, err
	}
	kf := keyFileJSON{KeyType: metadata.KeyTypeEd25519, Scheme: metadata.KeySchemeEd25519, KeyID: id,
		KeyVal: keyValJSON{Public: publicKeyHex(pub)}}
	pubData, err := json.MarshalIndent(kf, "", " ")
	if err != nil {
		return nil, err
	}
	if passphrase != nil {
		enc, err := sealSeed(priv.Seed(), passphrase, rnd)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", name, err)
		}
		kf.Encrypted = enc
	} else {
		kf.KeyVal.Private = hex.EncodeToString(priv.Seed())
	}
	privData, err := json.MarshalIndent(kf, "", " ")
	if err != nil {
		return nil, err
	}
	if err := fsys.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("key directory %s: %w", dir, err)
	}
	if err := writeFileAtomic(fsys, privPath, privData, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(fsys, pubPath, pubData, 0o644); err != nil {
		fsys.Remove(privPath)
		return nil, err
	}
	return &signingKey{name: name, pub: pub, priv: priv}, nil
}

func sealSeed(seed, passphrase []byte, rnd io.Reader) (*encryptedJSON, error) {
	salt := make([]byte, 32)
	var nonce [24]byte
	if _, err := io.ReadFull(rnd, salt); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(rnd, nonce[:]); err != nil {
		return nil, err
	}
	k, err := scrypt.Key(passphrase, salt, scryptN, scryptR, scryptP, 32)
	if err != nil {
		return nil, err
	}
	var key [32]byte
	copy(key[:], k)
	box := secretbox.Seal(nil, seed, &nonce, &key)
	return &encryptedJSON{KDF: "scrypt", N: scryptN, R: scryptR, P: scryptP, Salt: hex.EncodeToString(salt),
		Cipher: "nacl-secretbox", Nonce: hex.EncodeToString(nonce[:]), Box: hex.EncodeToString(box)}, nil
}

func openSeed(enc *encryptedJSON, passphrase []byte) ([]byte, error) {
	if enc.KDF != "scrypt" || enc.Cipher != "nacl-secretbox" {
		return nil, fmt.Errorf("unsupported encryption %s/%s", enc.KDF, enc.Cipher)
	}
	// Bound the work an edited key file can ask for: scrypt needs 128*N*r
	// bytes, at most 1 GiB here.
	if enc.N < 2 || enc.N > 1<<20 || enc.N&(enc.N-1) != 0 || enc.R < 1 || enc.R > 32 || enc.P < 1 || enc.P > 4 ||
		int64(enc.N)*int64(enc.R) > 1<<23 {
		return nil, fmt.Errorf("scrypt parameters n=%d r=%d p=%d out of range", enc.N, enc.R, enc.P)
	}
	salt, err1 := hex.DecodeString(enc.Salt)
	nonce, err2 := hex.DecodeString(enc.Nonce)
	box, err3 := hex.DecodeString(enc.Box)
	if err := errors.Join(err1, err2, err3); err != nil || len(nonce) != 24 || len(salt) == 0 {
		return nil, errors.New("malformed notsotuf_encrypted field")
	}
	k, err := scrypt.Key(passphrase, salt, enc.N, enc.R, enc.P, 32)
	if err != nil {
		return nil, err
	}
	var key [32]byte
	var n [24]byte
	copy(key[:], k)
	copy(n[:], nonce)
	seed, ok := secretbox.Open(nil, box, &n, &key)
	if !ok {
		return nil, errors.New("wrong passphrase (or corrupt key file)")
	}
	if len(seed) != ed25519.SeedSize {
		return nil, errors.New("decrypted key has the wrong size")
	}
	return seed, nil
}

func readKeyFile(fsys afero.Fs, path string) (*keyFileJSON, error) {
	f, err := fsys.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("key file %s: larger than %d bytes", path, maxKeyFileSize)
	}
	var kf keyFileJSON
	if err := json.Unmarshal(bytes.TrimSpace(data), &kf); err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if kf.KeyType != metadata.KeyTypeEd25519 || kf.Scheme != metadata.KeySchemeEd25519 {
		return nil, fmt.Errorf("key file %s: key type %q scheme %q: only ed25519 keys are supported", path, kf.KeyType, kf.Scheme)
	}
	pub, err := hex.DecodeString(kf.KeyVal.Public)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("key file %s: keyval.public: want %d hex-encoded bytes", path, ed25519.PublicKeySize)
	}
	return &kf, nil
}

// readPublicKey returns the public key named name: from NAME.pub, or from the
// private key file when there is no .pub.
func readPublicKey(fsys afero.Fs, dir, name string) (ed25519.PublicKey, error) {
	if err := validKeyName(name); err != nil {
		return nil, err
	}
	p := filepath.Join(dir, name)
	kf, err := readKeyFile(fsys, p+".pub")
	if errors.Is(err, os.ErrNotExist) {
		kf, err = readKeyFile(fsys, p)
	}
	if err != nil {
		return nil, err
	}
	pub, _ := hex.DecodeString(kf.KeyVal.Public)
	return ed25519.PublicKey(pub), nil
}

// readSigningKey loads the private key named name, decrypting it with the
// passphrase given by pass when it is encrypted. A missing file gives an
// error matching os.ErrNotExist.
func readSigningKey(fsys afero.Fs, dir, name string, pass func(name string) ([]byte, error)) (*signingKey, error) {
	if err := validKeyName(name); err != nil {
		return nil, err
	}
	p := filepath.Join(dir, name)
	kf, err := readKeyFile(fsys, p)
	if err != nil {
		return nil, err
	}
	pub, _ := hex.DecodeString(kf.KeyVal.Public)
	var seed []byte
	switch {
	case kf.Encrypted != nil:
		if pass == nil {
			return nil, fmt.Errorf("key file %s is encrypted: %w", p, ErrNoPassphrase)
		}
		pp, err := pass(name)
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", p, err)
		}
		if pp == nil {
			return nil, fmt.Errorf("key file %s is encrypted: %w", p, ErrNoPassphrase)
		}
		seed, err = openSeed(kf.Encrypted, pp)
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", p, err)
		}
	case kf.KeyVal.Private != "":
		b, err := hex.DecodeString(kf.KeyVal.Private)
		if err != nil {
			return nil, fmt.Errorf("key file %s: keyval.private: not hex", p)
		}
		switch len(b) {
		case ed25519.SeedSize:
			seed = b
		case ed25519.PrivateKeySize: // seed followed by public key
			seed = b[:ed25519.SeedSize]
		default:
			return nil, fmt.Errorf("key file %s: keyval.private: want %d bytes, got %d", p, ed25519.SeedSize, len(b))
		}
	default:
		return nil, fmt.Errorf("key file %s: no private key (is it a .pub file?)", p)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	if !bytes.Equal(priv.Public().(ed25519.PublicKey), pub) {
		return nil, fmt.Errorf("key file %s: private key does not match keyval.public", p)
	}
	return &signingKey{name: name, pub: ed25519.PublicKey(pub), priv: priv}, nil
}
