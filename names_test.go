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
	// A tufup 0.10 client reads the same user metadata and "required"
	// (the tar fields must not stand beside "user" and "tufup").
	if user, internal := tufupView(t, c); string(user) != `{"changes":["x"],"n":3}` || internal["required"] != true {
		t.Errorf("tufup reads %s as user %s, tufup fields %v", c, user, internal)
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

func TestArchiveMetaRelease(t *testing.T) {
	hash := strings.Repeat("cd", 32)
	fifty, zero := 50, 0
	for _, m := range []ArchiveMeta{
		{Platform: "linux-amd64"},
		{TarSize: 2048, TarHash: hash, Platform: "windows-arm64", Rollout: &fifty},
		{Yanked: true, YankReason: "crashes on start: see #12", Rollout: &zero, Required: true},
		{Yanked: true, User: json.RawMessage(`[1,"x"]`)},
	} {
		c, err := m.Custom()
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		got, err := ParseArchiveMeta(&c)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if got.Platform != m.Platform || got.Yanked != m.Yanked || got.YankReason != m.YankReason ||
			got.RolloutPercent() != m.RolloutPercent() || (got.Rollout == nil) != (m.Rollout == nil) ||
			got.TarHash != m.TarHash || got.TarSize != m.TarSize || got.Required != m.Required {
			t.Errorf("round trip %+v -> %s -> %+v", m, c, got)
		}
		// What a tufup 0.10 client reads of it: the user metadata and
		// "required" as written.
		user, internal := tufupView(t, c)
		if want := string(compact(m.User)); want != "" && string(compact(user)) != want {
			t.Errorf("%s: tufup reads user metadata %s, want %s", c, user, want)
		}
		if req, _ := internal["required"].(bool); req != m.Required {
			t.Errorf("%s: tufup reads required %v, want %v", c, internal["required"], m.Required)
		}
	}
	// Strict: wrong types, ranges, unknown fields, inconsistent fields.
	for _, bad := range []string{
		`{"tufup": {"notsotuf": {"platform": "Linux"}}}`,
		`{"tufup": {"notsotuf": {"platform": "a/b"}}}`,
		`{"tufup": {"notsotuf": {"platform": 7}}}`,
		`{"tufup": {"notsotuf": {"rollout": 101}}}`,
		`{"tufup": {"notsotuf": {"rollout": -1}}}`,
		`{"tufup": {"notsotuf": {"rollout": 50.5}}}`,
		`{"tufup": {"notsotuf": {"rollout": "50"}}}`,
		`{"tufup": {"notsotuf": {"rollout": null}}}`,
		`{"tufup": {"notsotuf": {"yanked": true}}}`,
		`{"tufup": {"notsotuf": {"yanked": {}}}}`,
		`{"tufup": {"notsotuf": {"yanked": {"reason": "x", "by": "me"}}}}`,
		`{"tufup": {"notsotuf": {"yanked": {"reason": "line\nbreak"}}}}`,
		`{"tufup": {"notsotuf": {"yanked": {"reason": "` + strings.Repeat("x", 1001) + `"}}}}`,
		`{"tufup": {"notsotuf": {"tar_size": 3}}}`,
		`{"tufup": {"notsotuf": {"halted": true}}}`,
		`{"tufup": {"notsotuf": []}}`,
		`{"tufup": {"notsotuf": {}}, "notsotuf": {"tar_size": 3, "tar_hash": "` + hash + `"}}`,
	} {
		if m, err := ParseArchiveMeta(raw(bad)); err == nil {
			t.Errorf("ParseArchiveMeta(%s) = %+v, want an error", bad, m)
		}
	}
	// What earlier notsotuf versions wrote is still read.
	got, err := ParseArchiveMeta(raw(`{"user": null, "tufup": {"required": true}, "notsotuf": {"tar_size": 3, "tar_hash": "` + hash + `", "tar_hash_algorithm": "sha256"}}`))
	if err != nil || got.TarSize != 3 || got.TarHash != hash || !got.Required {
		t.Errorf("earlier format: %+v %v", got, err)
	}
	for _, bad := range []ArchiveMeta{{Platform: "-x"}, {Rollout: new(int)}, {Yanked: true, YankReason: "\x1b[31m"}} {
		if bad.Rollout != nil {
			*bad.Rollout = 200
		}
		if _, err := bad.Custom(); err == nil {
			t.Errorf("Custom(%+v) succeeded", bad)
		}
	}
	for _, ok := range []string{"linux-amd64", "darwin-arm64", "windows-amd64", "linux-x86_64", "web"} {
		if err := ValidPlatform(ok); err != nil {
			t.Error(err)
		}
	}
	for _, bad := range []string{"", "Linux", "linux-", "-linux", "linux--amd64", "1linux", "linux.amd64", "linux/amd64", strings.Repeat("a", 65)} {
		if ValidPlatform(bad) == nil {
			t.Errorf("ValidPlatform(%q) succeeded", bad)
		}
	}
}

// tufupView reads custom metadata as tufup 0.10's TargetMeta does
// (common.py, _get_custom_metadata): {"user", "tufup"} only when those are
// exactly the object's keys, else the whole object for both.
func tufupView(t testing.TB, c json.RawMessage) (user json.RawMessage, internal map[string]any) {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(c, &obj); err != nil {
		t.Fatalf("%s: %v", c, err)
	}
	_, hasUser := obj["user"]
	_, hasTufup := obj["tufup"]
	if len(obj) != 2 || !hasUser || !hasTufup {
		json.Unmarshal(c, &internal)
		return c, internal
	}
	json.Unmarshal(obj["tufup"], &internal)
	return obj["user"], internal
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
	// tufup verifies a patched tar with the patch's tufup fields.
	if _, internal := tufupView(t, c); internal["tar_size"] != float64(99) || internal["tar_hash"] != hash || internal["tar_hash_algorithm"] != "sha256" {
		t.Errorf("tufup reads %s as %v", c, internal)
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
		`{"tufup": {"required": false, "notsotuf": {"platform": "linux-amd64", "rollout": 5, "yanked": {"reason": "bad"}}}, "user": null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := json.RawMessage(b)
		if m, err := ParseArchiveMeta(&r); err == nil {
			if m.TarHash != "" {
				if err := checkTarInfo(m.TarSize, m.TarHash); err != nil {
					t.Fatalf("ParseArchiveMeta accepted bad tar info: %v", err)
				}
			}
			if (m.Platform != "" && ValidPlatform(m.Platform) != nil) || validRollout(m.RolloutPercent()) != nil || ValidYankReason(m.YankReason) != nil {
				t.Fatalf("ParseArchiveMeta accepted bad release fields: %+v", m)
			}
			// What is accepted encodes, and reads back the same; tufup
			// sees exactly {"user", "tufup"} in it.
			if m.User == nil || ValidateUserMeta(m.User) == nil {
				c, err := m.Custom()
				if err != nil {
					t.Fatalf("accepted archive meta %+v does not encode: %v", m, err)
				}
				again, err := ParseArchiveMeta(&c)
				if err != nil || again.Platform != m.Platform || again.Yanked != m.Yanked || again.YankReason != m.YankReason ||
					again.RolloutPercent() != m.RolloutPercent() || again.TarHash != m.TarHash || again.Required != m.Required {
					t.Fatalf("round trip %+v -> %s -> %+v, %v", m, c, again, err)
				}
				var keys map[string]json.RawMessage
				if json.Unmarshal(c, &keys) != nil || len(keys) != 2 || keys["tufup"] == nil {
					t.Fatalf("%s: a tufup client would not read it", c)
				}
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
