package notsotuf

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseTargetName(t *testing.T) {
	for _, c := range []struct {
		name, app, version string
		kind               TargetKind
	}{
		{"demoapp-1.0.0.tar.gz", "demoapp", "1.0.0", KindArchive},
		{"demoapp-2.0.0a1.patch", "demoapp", "2.0.0a1", KindPatch},
		{"my-app-1.0rc2.tar.gz", "my-app", "1.0rc2", KindArchive},
		{"my_app-1!2.0.post1.patch", "my_app", "1!2.0.post1", KindPatch},
	} {
		tn, err := ParseTargetName(c.name)
		if err != nil {
			t.Errorf("ParseTargetName(%q): %v", c.name, err)
			continue
		}
		if tn.App != c.app || tn.Version.String() != c.version || tn.Kind != c.kind || tn.Name != c.name {
			t.Errorf("ParseTargetName(%q) = %+v", c.name, tn)
		}
		var again string
		if c.kind == KindArchive {
			again = ArchiveName(tn.App, tn.Version)
		} else {
			again = PatchName(tn.App, tn.Version)
		}
		if again != c.name {
			t.Errorf("name round trip %q -> %q", c.name, again)
		}
	}
	for _, bad := range []string{"demoapp.tar.gz", "demoapp-1.0.zip", "../x-1.0.tar.gz", "demo app-1.0.tar.gz", "demoapp-x.y.patch", "demoapp-1.0.tar.gz/x"} {
		if _, err := ParseTargetName(bad); err == nil {
			t.Errorf("ParseTargetName(%q) succeeded", bad)
		} else if !strings.Contains(err.Error(), bad) {
			t.Errorf("error %q does not name %q", err, bad)
		}
	}
	if ValidAppName("demo-app_2") != nil || ValidAppName("a/b") == nil || ValidAppName("") == nil {
		t.Error("ValidAppName")
	}
}

func raw(s string) *json.RawMessage { r := json.RawMessage(s); return &r }

func TestArchiveMeta(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	m := ArchiveMeta{User: json.RawMessage(`{"changes":["x"],"n":3}`), Required: true, TarSize: 10240, TarHash: hash}
	c, err := m.Custom()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseArchiveMeta(&c)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Required || got.TarSize != 10240 || got.TarHash != hash || string(got.User) != `{"changes":["x"],"n":3}` {
		t.Errorf("round trip: %s -> %+v", c, got)
	}
	// tufup's formats, current and legacy.
	got, err = ParseArchiveMeta(raw(`{"tufup": {"required": false}, "user": null}`))
	if err != nil || got.Required || got.User != nil {
		t.Errorf("tufup current: %+v %v", got, err)
	}
	got, err = ParseArchiveMeta(raw(`{"changelog": "fixed"}`))
	if err != nil || string(got.User) != `{"changelog": "fixed"}` {
		t.Errorf("tufup legacy: %+v %v", got, err)
	}
	if got, err := ParseArchiveMeta(nil); err != nil || got.Required {
		t.Errorf("nil custom: %+v %v", got, err)
	}
	for _, bad := range []string{`{"tufup": {"required": "yes"}}`, `{"tufup": 3}`, `{"tufup": {}, "notsotuf": {"tar_size": -1, "tar_hash": "` + hash + `"}}`, `{`} {
		if _, err := ParseArchiveMeta(raw(bad)); err == nil {
			t.Errorf("ParseArchiveMeta(%s) succeeded", bad)
		}
	}
	if _, err := (ArchiveMeta{User: json.RawMessage(`{"pi": 3.14}`)}).Custom(); err == nil || !strings.Contains(err.Error(), "float") {
		t.Errorf("float in user metadata: %v", err)
	}
}

func TestPatchMeta(t *testing.T) {
	hash := strings.Repeat("0f", 32)
	c, err := PatchMeta{TarSize: 99, TarHash: hash}.Custom()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParsePatchMeta(&c); err != nil || got.TarSize != 99 || got.TarHash != hash {
		t.Errorf("round trip %s: %+v %v", c, got, err)
	}
	// As tufup 0.10 writes it, and as older tufup did.
	for _, ok := range []string{
		`{"tufup": {"tar_hash": "` + hash + `", "tar_hash_algorithm": "sha256", "tar_size": 99}, "user": null}`,
		`{"tar_hash": "` + strings.ToUpper(hash) + `", "tar_size": 99}`,
	} {
		if got, err := ParsePatchMeta(raw(ok)); err != nil || got.TarSize != 99 || got.TarHash != hash {
			t.Errorf("ParsePatchMeta(%s) = %+v, %v", ok, got, err)
		}
	}
	for _, bad := range []string{
		`{"tufup": {"tar_size": 1.5, "tar_hash": "` + hash + `"}}`,
		`{"tufup": {"tar_size": 99999999999999999999999, "tar_hash": "` + hash + `"}}`,
		`{"tufup": {"tar_size": "99", "tar_hash": "` + hash + `"}}`,
		`{"tufup": {"tar_size": 9, "tar_hash": "abc"}}`,
		`{"tufup": {"tar_size": 9, "tar_hash": "` + hash + `", "tar_hash_algorithm": "md5"}}`,
		`{"tufup": {"tar_size": 9}}`,
		`[]`,
	} {
		if _, err := ParsePatchMeta(raw(bad)); err == nil {
			t.Errorf("ParsePatchMeta(%s) succeeded", bad)
		}
	}
	if _, err := ParsePatchMeta(nil); err == nil {
		t.Error("ParsePatchMeta(nil) succeeded")
	}
}

func TestValidateUserMeta(t *testing.T) {
	for _, ok := range []string{`null`, `{"a": [1, "x", true, {"b": -9223372036854775808}]}`, `"text"`} {
		if err := ValidateUserMeta(json.RawMessage(ok)); err != nil {
			t.Errorf("ValidateUserMeta(%s): %v", ok, err)
		}
	}
	for _, bad := range []string{`{"a": [1.0]}`, `1e3`, `{"a": 9223372036854775808}`, `{`, `{} {}`, ``} {
		if err := ValidateUserMeta(json.RawMessage(bad)); err == nil {
			t.Errorf("ValidateUserMeta(%s) succeeded", bad)
		}
	}
}

func FuzzParseTargetName(f *testing.F) {
	for _, s := range []string{"demoapp-1.0.0.tar.gz", "demoapp-2.0.0a1.patch", "a-b-1-2.0.tar.gz", "x-.patch"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tn, err := ParseTargetName(s)
		if err != nil {
			return
		}
		if ValidAppName(tn.App) != nil {
			t.Fatalf("%q: app %q is not a valid app name", s, tn.App)
		}
		if tn.Kind != KindArchive && tn.Kind != KindPatch {
			t.Fatalf("%q: kind %v", s, tn.Kind)
		}
	})
}

func FuzzCustomMetadata(f *testing.F) {
	for _, s := range []string{
		`{"tufup": {"required": true}, "user": {"x": 1}}`,
		`{"tufup": {"tar_hash": "` + strings.Repeat("ab", 32) + `", "tar_hash_algorithm": "sha256", "tar_size": 99}, "user": null}`,
		`{"legacy": 1.5}`, `null`, `[1,2]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := json.RawMessage(b)
		if m, err := ParseArchiveMeta(&r); err == nil && m.TarHash != "" {
			if err := checkTarInfo(m.TarSize, m.TarHash); err != nil {
				t.Fatalf("ParseArchiveMeta accepted bad tar info: %v", err)
			}
		}
		if m, err := ParsePatchMeta(&r); err == nil {
			if err := checkTarInfo(m.TarSize, m.TarHash); err != nil {
				t.Fatalf("ParsePatchMeta accepted bad tar info: %v", err)
			}
			if _, err := m.Custom(); err != nil {
				t.Fatalf("accepted patch meta does not encode: %v", err)
			}
		}
		_ = ValidateUserMeta(r)
	})
}
