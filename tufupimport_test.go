package notsotuf

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// testdata/tufup-encrypted-keys holds the fixture's keys with root and
// targets encrypted by securesystemslib's keys.encrypt_key (see its
// README.md) with this passphrase.
const (
	tufupEncryptedKeys = "testdata/tufup-encrypted-keys"
	tufupPassphrase    = "tufup demo passphrase"
)

// tufupBuildDir lays out the fixture the way tufup's build directory is:
// .tufup-repo-config, repository/{metadata,targets} and keystore/, in a
// real temporary directory. keys is the key store to copy.
func tufupBuildDir(t testing.TB, keys string) (afero.Fs, string) {
	t.Helper()
	fsys := afero.NewOsFs()
	dir := t.TempDir()
	copyDir := func(src, dst string) {
		entries, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			copyToFs(t, fsys, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
		}
	}
	copyDir(filepath.Join(tufupDir, "metadata"), filepath.Join(dir, "repository", "metadata"))
	copyDir(filepath.Join(tufupDir, "targets"), filepath.Join(dir, "repository", "targets"))
	copyDir(keys, filepath.Join(dir, "keystore"))
	copyToFs(t, fsys, filepath.Join(tufupDir, "tufup-repo-config.json"), filepath.Join(dir, TufupConfigFile))
	return fsys, dir
}

func TestDecryptSSLibKey(t *testing.T) {
	for _, name := range []string{"root", "targets"} {
		enc, err := os.ReadFile(filepath.Join(tufupEncryptedKeys, name))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := decryptSSLibKey(enc, []byte(tufupPassphrase))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		seed, pub, err := parseSSLibPrivateKey(plain)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, err := readSigningKey(afero.NewOsFs(), filepath.Join(tufupDir, "keys"), name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(seed, want.priv.Seed()) || !bytes.Equal(pub, want.pub) {
			t.Errorf("%s: decrypted key differs from the unencrypted fixture key", name)
		}
		if _, err := decryptSSLibKey(enc, []byte("wrong")); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
			t.Errorf("%s: wrong passphrase: %v", name, err)
		}
		// A flipped ciphertext byte fails the HMAC, never yields a key.
		bad := bytes.TrimSpace(bytes.Clone(enc))
		if last := len(bad) - 1; bad[last] == '0' {
			bad[last] = '1'
		} else {
			bad[last] = '0'
		}
		if _, err := decryptSSLibKey(bad, []byte(tufupPassphrase)); err == nil {
			t.Errorf("%s: modified ciphertext accepted", name)
		}
	}
}

func TestParseSSLibEncryptedRejects(t *testing.T) {
	good := strings.Repeat("ab", 16) + "@@@@100000@@@@" + strings.Repeat("cd", 32) + "@@@@" + strings.Repeat("ef", 16) + "@@@@0011"
	if _, err := parseSSLibEncrypted([]byte(good)); err != nil {
		t.Fatalf("good: %v", err)
	}
	for _, tc := range []struct{ in, want string }{
		{"{}", "want 5 fields"},
		{strings.Replace(good, "100000", "99999999999", 1), "iterations"},
		{strings.Replace(good, "100000", "0", 1), "iterations"},
		{strings.Replace(good, "100000", "-5", 1), "iterations"},
		{"@@@@1@@@@" + strings.Repeat("cd", 32) + "@@@@" + strings.Repeat("ef", 16) + "@@@@00", "salt of 0 bytes"},
		{strings.Replace(good, strings.Repeat("ef", 16), "ef", 1), "iv of 1 bytes"},
		{strings.Replace(good, strings.Repeat("cd", 32), "zz", 1), "hmac: not hex"},
		{strings.TrimSuffix(good, "0011"), "empty ciphertext"},
	} {
		_, err := parseSSLibEncrypted([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.40q: got %v, want %q", tc.in, err, tc.want)
		}
	}
}

// TestImportTufup imports the tufup fixture, publishes 2.0.0 into it with
// notsotuf, verifies the repository and updates a 1.1.0 install to 2.0.0
// with the client.
func TestImportTufup(t *testing.T) {
	fsys, dir := tufupBuildDir(t, filepath.Join(tufupDir, "keys"))
	before := repoTreeState(t, fsys, filepath.Join(dir, "keystore"))

	res, err := ImportTufup(fsys, TufupImport{Config: filepath.Join(dir, TufupConfigFile)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := res.Config
	if cfg.AppName != "demoapp" || cfg.RepoDir != filepath.Join(dir, "repository") || cfg.KeysDir != filepath.Join(dir, "keystore") {
		t.Fatalf("config %+v", cfg)
	}
	if cfg.ExpirationDays[RoleTimestamp] != 10000 || cfg.Thresholds[RoleRoot] != 1 || len(cfg.EncryptedKeys) != 0 {
		t.Errorf("config %+v", cfg)
	}
	if len(res.Written) != 0 || len(res.Keys) != 4 {
		t.Errorf("written %v keys %+v", res.Written, res.Keys)
	}
	for _, k := range res.Keys {
		if !k.Private || k.Encrypted || k.ID == "" {
			t.Errorf("key %+v", k)
		}
	}
	if got := repoTreeState(t, fsys, filepath.Join(dir, "keystore")); got != before {
		t.Error("import changed tufup's key store")
	}
	publishAndUpdate(t, fsys, dir, cfg, nil)
}

// TestImportTufupEncrypted imports a key store whose root and targets keys
// securesystemslib encrypted: they are re-encrypted in notsotuf's format in
// a new directory and notsotuf signs with them.
func TestImportTufupEncrypted(t *testing.T) {
	fsys, dir := tufupBuildDir(t, tufupEncryptedKeys)
	cfgPath := filepath.Join(dir, TufupConfigFile)
	keystore := filepath.Join(dir, "keystore")
	before := repoTreeState(t, fsys, dir)
	keystoreBefore := repoTreeState(t, fsys, keystore)

	// No passphrase, then a wrong one: an error and nothing written.
	_, err := ImportTufup(fsys, TufupImport{Config: cfgPath})
	if !errors.Is(err, ErrNoPassphrase) || !strings.Contains(ErrorHint(err), "NOTSOTUF_PASSPHRASE_ROOT") {
		t.Fatalf("no passphrase: %v (hint %q)", err, ErrorHint(err))
	}
	wrong := func(string) ([]byte, error) { return []byte("nope"), nil }
	if _, err := ImportTufup(fsys, TufupImport{Config: cfgPath, Passphrase: wrong}); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if got := repoTreeState(t, fsys, dir); got != before {
		t.Fatal("a failed import wrote files")
	}

	var asked []string
	pass := func(name string) ([]byte, error) {
		asked = append(asked, name)
		return []byte(tufupPassphrase), nil
	}
	res, err := ImportTufup(fsys, TufupImport{Config: cfgPath, Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	newKeys := keystore + "-notsotuf"
	if res.Config.KeysDir != newKeys || strings.Join(res.Config.EncryptedKeys, ",") != "root,targets" {
		t.Fatalf("config %+v", res.Config)
	}
	if len(res.Written) != 8 {
		t.Errorf("written %v", res.Written)
	}
	if got := repoTreeState(t, fsys, keystore); got != keystoreBefore {
		t.Error("import changed tufup's key store")
	}
	if !strings.Contains(strings.Join(asked, ","), "root") || !strings.Contains(strings.Join(asked, ","), "targets") {
		t.Errorf("passphrases asked for %v", asked)
	}
	for _, name := range []string{"root", "targets"} {
		if kf, err := readKeyFile(fsys, filepath.Join(newKeys, name)); err != nil || kf.Encrypted == nil || kf.KeyVal.Private != "" {
			t.Errorf("%s: converted key not encrypted (err %v)", name, err)
		}
		k, err := readSigningKey(fsys, newKeys, name, pass)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, _ := readSigningKey(afero.NewOsFs(), filepath.Join(tufupDir, "keys"), name, nil)
		if !bytes.Equal(k.priv, want.priv) {
			t.Errorf("%s: converted key differs", name)
		}
	}
	// Importing again finds the converted keys in place.
	if _, err := ImportTufup(fsys, TufupImport{Config: cfgPath, Passphrase: pass}); err != nil {
		t.Fatalf("second import: %v", err)
	}
	publishAndUpdate(t, fsys, dir, res.Config, pass)
}

func TestImportTufupOfflineRoot(t *testing.T) {
	fsys, dir := tufupBuildDir(t, filepath.Join(tufupDir, "keys"))
	if err := fsys.Remove(filepath.Join(dir, "keystore", "root")); err != nil {
		t.Fatal(err)
	}
	res, err := ImportTufup(fsys, TufupImport{Config: filepath.Join(dir, TufupConfigFile)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(res.Warnings, "\n"), "key root: no private key file") {
		t.Errorf("warnings %q", res.Warnings)
	}
	for _, k := range res.Keys {
		if (k.Name == "root") == k.Private {
			t.Errorf("key %+v", k)
		}
	}
}

func TestImportTufupErrors(t *testing.T) {
	fsys, dir := tufupBuildDir(t, filepath.Join(tufupDir, "keys"))
	cfgPath := filepath.Join(dir, TufupConfigFile)
	for _, tc := range []struct {
		name, config, want string
		imp                TufupImport
	}{
		{name: "missing config", imp: TufupImport{Config: filepath.Join(dir, "nope")}, want: "tufup config"},
		{name: "bad json", config: "{", want: "tufup config"},
		{name: "no app", config: `{"repo_dir": "repository"}`, want: "app_name: missing"},
		{name: "bad role", config: `{"app_name": "demoapp", "key_map": {"bogus": ["x"]}}`, want: "key_map.bogus"},
		{name: "threshold", config: `{"app_name": "demoapp", "thresholds": {"root": 2}}`, want: "thresholds.root"},
		{name: "no repository", imp: TufupImport{Config: cfgPath, RepoDir: filepath.Join(dir, "elsewhere")}, want: "root.json"},
		{name: "no keys", imp: TufupImport{Config: cfgPath, KeysDir: filepath.Join(dir, "elsewhere")}, want: "tufup key root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			imp := tc.imp
			if tc.config != "" {
				p := filepath.Join(t.TempDir(), TufupConfigFile)
				if err := os.WriteFile(p, []byte(tc.config), 0o644); err != nil {
					t.Fatal(err)
				}
				imp.Config = p
			}
			_, err := ImportTufup(fsys, imp)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}

	// A private key that does not match its .pub is refused.
	ks := filepath.Join(dir, "keystore")
	other, err := os.ReadFile(filepath.Join(ks, "snapshot"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ks, "targets"), other, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ImportTufup(fsys, TufupImport{Config: cfgPath}); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched key: %v", err)
	}
}

// publishAndUpdate adds 2.0.0 to the imported repository, verifies it, and
// updates an install of 1.1.0 to it over HTTP with the tufup fixture's
// trusted root.
func publishAndUpdate(t *testing.T, fsys afero.Fs, dir string, cfg Config, pass func(string) ([]byte, error)) {
	t.Helper()
	ctx := context.Background()
	now := func() time.Time { return tufupNow.Add(24 * time.Hour) }
	bundle := filepath.Join(dir, "bundle-2.0.0")
	if err := copyTree(afero.NewOsFs(), filepath.Join(tufupDir, "bundles", "demoapp-2.0.0a1"), fsys, bundle); err != nil {
		t.Fatal(err)
	}
	if err := afero.WriteFile(fsys, filepath.Join(bundle, "VERSION"), []byte("2.0.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := &Repository{Fs: fsys, Config: cfg, Now: now, Passphrase: pass}
	added, err := repo.Add(ctx, AddOptions{Version: "2.0.0", BundleDir: bundle})
	if err != nil {
		t.Fatal(err)
	}
	if added.Patch == nil || added.From != "2.0.0a1" {
		t.Errorf("add: %+v", added)
	}
	rep, err := repo.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Targets != 7 || rep.Patches != 3 {
		t.Errorf("verify: %+v", rep)
	}
	// The targets key keeps tufup's (legacy) key id.
	tj, err := afero.ReadFile(fsys, filepath.Join(cfg.RepoDir, "metadata", "targets.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(tj, []byte(`"keyid": "62b4819ce6cf8c95b7f968878534806f339c2e0031314e778d166f568c61fa29"`)) {
		t.Error("targets.json is not signed with tufup's targets key id")
	}

	srv := httptest.NewServer(http.FileServer(http.Dir(cfg.RepoDir)))
	defer srv.Close()
	trusted, err := os.ReadFile(filepath.Join(tufupDir, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	// 1.1.0 installed by hand from its archive (the bundle directory of the
	// fixture is not the release: git keeps its symbolic link as a file).
	install := filepath.Join(dir, "client", "app")
	a110, err := os.ReadFile(filepath.Join(tufupDir, "targets", "demoapp-1.1.0.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if err := (&installer{fs: fsys, dir: install}).installTar(ctx, bytes.NewReader(a110), 1<<30); err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ClientConfig{
		App: "demoapp", CurrentVersion: "1.1.0", InstallDir: install, CacheDir: filepath.Join(dir, "client", "cache"),
		MetadataURL: srv.URL + "/metadata", TargetsURL: srv.URL + "/targets", TrustedRoot: trusted,
		Fs: fsys, HTTPClient: srv.Client(), Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	u, err := c.Update(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u == nil || u.Version.String() != "2.0.0" {
		t.Fatalf("update: %+v", u)
	}
	got, err := afero.ReadFile(fsys, filepath.Join(install, "VERSION"))
	if err != nil || string(got) != "2.0.0\n" {
		t.Errorf("installed VERSION %q, %v", got, err)
	}
	if want, got := treeManifest(t, fsys, bundle), treeManifest(t, fsys, install); !maps.Equal(want, got) {
		t.Errorf("installed tree differs from the 2.0.0 bundle:\n got %v\nwant %v", got, want)
	}
}

// copyTree copies a directory tree (files, dirs, symlinks) between file
// systems.
func copyTree(src afero.Fs, from string, dst afero.Fs, to string) error {
	return afero.Walk(src, from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		out := filepath.Join(to, rel)
		if l, ok := src.(afero.Lstater); ok {
			if fi, _, err = l.LstatIfPossible(p); err != nil {
				return err
			}
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := src.(afero.LinkReader).ReadlinkIfPossible(p)
			if err != nil {
				return err
			}
			return dst.(afero.Linker).SymlinkIfPossible(target, out)
		case fi.IsDir():
			return dst.MkdirAll(out, 0o755)
		default:
			data, err := afero.ReadFile(src, p)
			if err != nil {
				return err
			}
			return afero.WriteFile(dst, out, data, fi.Mode().Perm())
		}
	})
}

func FuzzParseSSLibEncrypted(f *testing.F) {
	for _, name := range []string{"root", "targets"} {
		if data, err := os.ReadFile(filepath.Join(tufupEncryptedKeys, name)); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("00@@@@1@@@@" + strings.Repeat("00", 32) + "@@@@" + strings.Repeat("00", 16) + "@@@@00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := parseSSLibEncrypted(data)
		if err != nil {
			return
		}
		if e.iterations < 1 || e.iterations > sslibMaxIterations || len(e.iv) != 16 || len(e.mac) != 32 || len(e.salt) == 0 {
			t.Fatalf("accepted out-of-range fields: %+v", e)
		}
		if e.iterations <= 1000 {
			// Decrypting with small work must fail cleanly (the HMAC
			// cannot match by chance).
			if _, err := decryptSSLibKey(data, []byte("x")); err == nil {
				t.Fatalf("decrypted %q", data)
			}
		}
	})
}

func FuzzParseSSLibPrivateKey(f *testing.F) {
	if data, err := os.ReadFile(filepath.Join(tufupDir, "keys", "root")); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"00","private":"00"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		seed, pub, err := parseSSLibPrivateKey(data)
		if err != nil {
			return
		}
		if len(seed) != 32 || len(pub) != 32 {
			t.Fatalf("seed %d bytes, public %d bytes", len(seed), len(pub))
		}
	})
}

func FuzzParseTufupConfig(f *testing.F) {
	if data, err := os.ReadFile(filepath.Join(tufupDir, "tufup-repo-config.json")); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"app_name": "a", "thresholds": {"root": 0}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _, err := parseTufupConfig(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parseTufupConfig returned an invalid config: %v", err)
		}
	})
}
