package notsotuf

import (
	"strings"
	"testing"
)

func TestParseVersionNormalizes(t *testing.T) {
	for in, want := range map[string]string{
		"1.0":              "1.0",
		"1.0.0":            "1.0.0",
		"v2.0.0-alpha":     "2.0.0a0",
		"2.0.0a1":          "2.0.0a1",
		"1.0-RC.1":         "1.0rc1",
		"1.0c2":            "1.0rc2",
		"1.0.preview3":     "1.0rc3",
		"1.0beta":          "1.0b0",
		"1.0-1":            "1.0.post1",
		"1.0.post":         "1.0.post0",
		"1.0r2":            "1.0.post2",
		"1.0.dev":          "1.0.dev0",
		"1!2.0":            "1!2.0",
		"1.0+Ubuntu-1.x":   "1.0+ubuntu.1.x",
		" 1.01 ":           "1.1",
		"1.0a1.post2.dev3": "1.0a1.post2.dev3",
	} {
		v, err := ParseVersion(in)
		if err != nil {
			t.Errorf("ParseVersion(%q): %v", in, err)
			continue
		}
		if got := v.String(); got != want {
			t.Errorf("ParseVersion(%q).String() = %q, want %q", in, got, want)
		}
	}
}

func TestParseVersionRejects(t *testing.T) {
	for _, in := range []string{"", "abc", "1.0.", ".1", "1..0", "1.0-", "1.0+", "1.0+a..b", "1.0 beta 2", "99999999999999999999", "1.0a99999999999999999999", strings.Repeat("1.", 200) + "1"} {
		if v, err := ParseVersion(in); err == nil {
			t.Errorf("ParseVersion(%q) = %v, want an error", in, v)
		} else if in != "" && !strings.Contains(err.Error(), "version") {
			t.Errorf("ParseVersion(%q) error %q does not say what it parsed", in, err)
		}
	}
}

func TestVersionOrder(t *testing.T) {
	// Ascending, as PEP 440 and Python's packaging sort them.
	order := []string{
		"0.9", "1.0.dev0", "1.0.dev1", "1.0a0.dev1", "1.0a1", "1.0a2.dev0", "1.0a2", "1.0a2.post1",
		"1.0b1", "1.0rc1", "1.0", "1.0+abc", "1.0+abc.1", "1.0+1", "1.0.post1.dev0", "1.0.post1",
		"1.0.1", "1.1a1", "1.1", "1.10", "2.0.0a1", "2.0.0", "1!0.1",
	}
	vs := make([]Version, len(order))
	for i, s := range order {
		v, err := ParseVersion(s)
		if err != nil {
			t.Fatal(err)
		}
		vs[i] = v
	}
	for i := range vs {
		for j := range vs {
			want := cmpI(int64(i), int64(j))
			if got := vs[i].Compare(vs[j]); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", order[i], order[j], got, want)
			}
		}
	}
	a, _ := ParseVersion("1.0")
	b, _ := ParseVersion("1.0.0")
	if a.Compare(b) != 0 {
		t.Errorf("1.0 and 1.0.0 should compare equal")
	}
}

func TestOnChannel(t *testing.T) {
	for _, c := range []struct {
		v       string
		allowed string // channels that admit v, "-" for stable
	}{
		{"1.0", "- rc b a"},
		{"1.0.post1", "- rc b a"},
		{"1.0rc1", "rc b a"},
		{"1.0b1", "b a"},
		{"1.0a1", "a"},
		{"1.0.dev1", "a"},
		{"1.0rc1.dev1", "a"},
	} {
		v, err := ParseVersion(c.v)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range []string{"-", "rc", "b", "a"} {
			channel := strings.TrimPrefix(ch, "-")
			want := strings.Contains(" "+c.allowed+" ", " "+ch+" ")
			if got := v.OnChannel(channel); got != want {
				t.Errorf("%s.OnChannel(%q) = %v, want %v", c.v, channel, got, want)
			}
		}
	}
	if ValidChannel("beta") == nil || ValidChannel("a") != nil || ValidChannel("") != nil {
		t.Error("ValidChannel accepts the wrong channels")
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1.0", "2.0.0a1", "1.0rc2", "1.0.post1", "1.0.dev3", "1!1.0+local.7", "v1.0-beta-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			return
		}
		// The normalized form parses back to an equal version.
		w, err := ParseVersion(v.String())
		if err != nil {
			t.Fatalf("ParseVersion(%q) ok but its String %q does not parse: %v", s, v.String(), err)
		}
		if v.Compare(w) != 0 || w.String() != v.String() {
			t.Fatalf("%q -> %q -> %q: not stable", s, v.String(), w.String())
		}
		if v.Compare(v) != 0 {
			t.Fatalf("%q does not equal itself", s)
		}
	})
}
