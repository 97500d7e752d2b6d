package notsotuf

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/afero"
)

func TestKeyFilesRoundTrip(t *testing.T) {
	fsys := afero.NewMemMapFs()
	plain, err := generateKeyFiles(fsys, "/k", "plain", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := generateKeyFiles(fsys, "/k", "enc", []byte("s3cret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := generateKeyFiles(fsys, "/k", "plain", nil, nil); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("overwrite: %v", err)
	}
	data, _ := afero.ReadFile(fsys, "/k/enc")
	if bytes.Contains(data, []byte(`"private"`)) || !bytes.Contains(data, []byte("notsotuf_encrypted")) {
		t.Fatalf("encrypted key file holds a private key:\n%s", data)
	}
	if fi, _ := fsys.Stat("/k/enc"); fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %o", fi.Mode().Perm())
	}
	pass := func(p string) func(string) ([]byte, error) {
		return func(string) ([]byte, error) { return []byte(p), nil }
	}
	k, err := readSigningKey(fsys, "/k", "plain", nil)
	if err != nil || !k.priv.Equal(plain.priv) {
		t.Fatalf("plain: %v", err)
	}
	k, err = readSigningKey(fsys, "/k", "enc", pass("s3cret"))
	if err != nil || !k.priv.Equal(enc.priv) {
		t.Fatalf("enc: %v", err)
	}
	if _, err := readSigningKey(fsys, "/k", "enc", pass("wrong")); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := readSigningKey(fsys, "/k", "enc", nil); !errors.Is(err, ErrNoPassphrase) {
		t.Fatalf("no passphrase: %v", err)
	}
	if _, err := readSigningKey(fsys, "/k", "missing", nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	pub, err := readPublicKey(fsys, "/k", "enc")
	if err != nil || !pub.Equal(enc.pub) {
		t.Fatalf("public: %v", err)
	}
	for _, bad := range []string{"", "../x", "a/b", "x.pub", `a\b`} {
		if _, err := generateKeyFiles(fsys, "/k", bad, nil, nil); err == nil {
			t.Errorf("key name %q accepted", bad)
		}
	}
}

// tufup's key store (securesystemslib format, legacy key IDs) loads as is.
func TestReadTufupKeys(t *testing.T) {
	dir := filepath.Join(tufupFixtureDir(t), "keys")
	for _, role := range Roles {
		k, err := readSigningKey(afero.NewOsFs(), dir, role, nil)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := readPublicKey(afero.NewOsFs(), dir, role)
		if err != nil || !pub.Equal(k.pub) {
			t.Fatalf("%s: public key mismatch (%v)", role, err)
		}
	}
	// ed25519 signatures are deterministic: signing tufup's targets metadata
	// with tufup's key must give the very signature tufup wrote, under the
	// legacy key ID that root lists.
	r := &Repository{Fs: afero.NewOsFs(), Config: DefaultConfig("demoapp")}
	r.Config.RepoDir = filepath.Dir(dir)
	r.Config.KeysDir = dir
	st, err := r.load()
	if err != nil {
		t.Fatal(err)
	}
	want := st.targets.Signatures
	kr := r.newKeyring()
	set, err := kr.signersFor(&st.root.Signed, RoleTargets)
	if err != nil {
		t.Fatal(err)
	}
	if err := signMeta(st.targets, false, set); err != nil {
		t.Fatal(err)
	}
	if len(want) != 1 || len(st.targets.Signatures) != 1 || want[0].KeyID != st.targets.Signatures[0].KeyID ||
		!bytes.Equal(want[0].Signature, st.targets.Signatures[0].Signature) {
		t.Fatalf("re-signed targets: %+v, tufup wrote %+v", st.targets.Signatures, want)
	}
}

// FuzzReadKeyFile feeds arbitrary key files (the key store is local but may
// be hand-edited or corrupt): errors name the file, never a panic, and the
// scrypt work a file can ask for is bounded.
func FuzzReadKeyFile(f *testing.F) {
	fsys := afero.NewMemMapFs()
	if _, err := generateKeyFiles(fsys, "/seed", "a", nil, nil); err != nil {
		f.Fatal(err)
	}
	if _, err := generateKeyFiles(fsys, "/seed", "b", []byte("pw"), nil); err != nil {
		f.Fatal(err)
	}
	for _, n := range []string{"a", "a.pub", "b"} {
		data, _ := afero.ReadFile(fsys, "/seed/"+n)
		f.Add(data)
	}
	f.Add([]byte(`{"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "00", "private": "zz"}}`))
	f.Add([]byte(`{"keytype": "rsa"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		mem := afero.NewMemMapFs()
		if err := afero.WriteFile(mem, "/k/x", data, 0o600); err != nil {
			t.Fatal(err)
		}
		k, err := readSigningKey(mem, "/k", "x", func(string) ([]byte, error) { return []byte("pw"), nil })
		if err != nil {
			if !strings.Contains(err.Error(), "/k/x") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if !bytes.Equal(k.priv.Public().(ed25519.PublicKey), k.pub) {
			t.Fatal("loaded a key whose halves do not match")
		}
	})
}

func FuzzLoadConfig(f *testing.F) {
	def := DefaultConfig("demo")
	fsys := afero.NewMemMapFs()
	if err := def.Save(fsys, "/c.json"); err != nil {
		f.Fatal(err)
	}
	data, _ := afero.ReadFile(fsys, "/c.json")
	f.Add(data)
	f.Add([]byte(`{"app_name": "x", "thresholds": {"root": 5}}`))
	f.Add([]byte(`{"app_name": "x", "key_map": {"root": ["../evil"]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		mem := afero.NewMemMapFs()
		_ = afero.WriteFile(mem, "/c.json", data, 0o644)
		c, err := LoadConfig(mem, "/c.json")
		if err != nil {
			if !strings.Contains(err.Error(), "/c.json") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("LoadConfig returned an invalid config: %v", err)
		}
	})
}
