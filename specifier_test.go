package notsotuf

import (
	"strings"
	"testing"
)

func TestSpecifierContains(t *testing.T) {
	// Cases from PEP 440's text and the Python packaging library's
	// behaviour (SpecifierSet.contains with prereleases=True).
	tests := []struct {
		spec string
		in   []string
		out  []string
	}{
		{"", []string{"0.1", "2.0a1", "1!1.0"}, nil},
		{"~=1.4", []string{"1.4", "1.4.0", "1.4.5", "1.5", "1.9.post1", "1.5a1", "1.4+local"}, []string{"1.3.9", "2.0", "2.0a1", "1.4.dev1", "1.4a1", "1!1.4"}},
		{"~=1.4.5", []string{"1.4.5", "1.4.6", "1.4.5.post1", "1.4.99"}, []string{"1.5", "1.4.4", "1.4.5a1"}},
		{"~=2.2.post3", []string{"2.2.post3", "2.3", "2.9"}, []string{"2.2", "2.2.post2", "3.0"}},
		{"~=1.4.5a4", []string{"1.4.5a4", "1.4.5", "1.4.6"}, []string{"1.4.5a3", "1.5"}},
		{"~=1!1.0", []string{"1!1.0", "1!1.5"}, []string{"1.0", "1!2.0"}},
		{"==1.1", []string{"1.1", "1.1.0", "1.1.0.0", "1.1+local"}, []string{"1.1.1", "1.1a1", "1.1.post1", "1.1.dev1"}},
		{"==1.1+local", []string{"1.1+local"}, []string{"1.1", "1.1+other"}},
		{"==1.1.*", []string{"1.1", "1.1.0", "1.1.9", "1.1a1", "1.1.post1", "1.1.9+x"}, []string{"1.10", "1.2", "1.0", "1!1.1"}},
		{"==1.1.0.*", []string{"1.1", "1.1.0.5"}, []string{"1.1.1"}},
		{"!=1.1.*", []string{"1.0", "1.2", "1.10"}, []string{"1.1", "1.1.3"}},
		{"!=1.1", []string{"1.1.1", "1.0"}, []string{"1.1", "1.1.0", "1.1+x"}},
		{"<=1.1", []string{"1.1", "1.0", "1.1+x", "1.1a1"}, []string{"1.1.post1", "1.2"}},
		{">=1.1", []string{"1.1", "1.2", "1.1+x", "1.1.post1"}, []string{"1.1a1", "1.0", "1.1.dev0"}},
		{"<1.1", []string{"1.0", "1.0.post5", "1.0.9"}, []string{"1.1", "1.1a1", "1.1.dev1", "1.1rc1"}},
		{"<1.1a2", []string{"1.1a1", "1.0"}, []string{"1.1a2", "1.1"}},
		{">1.1", []string{"1.2", "1.1.1", "2.0a1"}, []string{"1.1", "1.1.post1", "1.1+local", "1.0"}},
		{">1.1.post1", []string{"1.1.post2", "1.2"}, []string{"1.1.post1", "1.1"}},
		{"===1.0", []string{"1.0"}, []string{"1.0.0", "1.0+x"}},
		{">=1.0, <2, !=1.3.*", []string{"1.0", "1.2.9", "1.4"}, []string{"1.3", "1.3.1", "2.0", "0.9"}},
		{" >= 1.0 ,< 1.5 ", []string{"1.2"}, []string{"1.5"}},
	}
	for _, tt := range tests {
		sp, err := ParseSpecifier(tt.spec)
		if err != nil {
			t.Errorf("ParseSpecifier(%q): %v", tt.spec, err)
			continue
		}
		for _, s := range tt.in {
			if !sp.Contains(mustVersion(t, s)) {
				t.Errorf("%q does not contain %s", tt.spec, s)
			}
		}
		for _, s := range tt.out {
			if sp.Contains(mustVersion(t, s)) {
				t.Errorf("%q contains %s", tt.spec, s)
			}
		}
	}
}

func mustVersion(t testing.TB, s string) Version {
	t.Helper()
	v, err := ParseVersion(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseSpecifierErrors(t *testing.T) {
	for _, bad := range []string{
		"1.4", "~=1", "~=1.4.*", ">=1.0.*", "<1.0+local", "~=1.4+x", "==1.0a1.*", "==1.0.post1.*",
		"==1.0+x.*", "=>1.0", "== ", ">=1.0,", ",", "~=", "==1.0 1.1", "==x",
		strings.Repeat(">=1,", 65) + ">=1", strings.Repeat("1", 2000),
	} {
		_, err := ParseSpecifier(bad)
		if err == nil {
			t.Errorf("ParseSpecifier(%q) succeeded", bad)
			continue
		}
		if !strings.HasPrefix(err.Error(), "version specifier ") {
			t.Errorf("ParseSpecifier(%q): error %q does not say what it read", bad, err)
		}
	}
	sp, err := ParseSpecifier("  ~=1.4 ,!=1.5.*,  ===foo ")
	if err != nil {
		t.Fatal(err)
	}
	if got := sp.String(); got != "~=1.4, !=1.5.*, ===foo" {
		t.Errorf("String() = %q", got)
	}
	if sp, _ := ParseSpecifier(" "); !sp.IsZero() {
		t.Error("blank specifier is not zero")
	}
}

func FuzzSpecifier(f *testing.F) {
	for _, s := range []string{"~=1.4", ">=1.0, <2, !=1.3.*", "===foo", "==1.1+local", "<1.1a2", ">1.1.post1", "~=1!2.0.post1"} {
		f.Add(s, "1.4.2")
	}
	f.Fuzz(func(t *testing.T, spec, version string) {
		sp, err := ParseSpecifier(spec)
		if err != nil {
			return
		}
		// The normalized form parses to a specifier that decides alike.
		again, err := ParseSpecifier(sp.String())
		if err != nil {
			t.Fatalf("%q: String() %q does not parse: %v", spec, sp.String(), err)
		}
		if again.String() != sp.String() {
			t.Fatalf("%q: String() not stable: %q -> %q", spec, sp.String(), again.String())
		}
		v, err := ParseVersion(version)
		if err != nil {
			return
		}
		if sp.Contains(v) != again.Contains(v) {
			t.Fatalf("%q and %q disagree on %s", spec, again, v)
		}
		// Each clause against its own version: == and >= admit it, != and
		// < do not.
		for _, c := range sp.clauses {
			if c.op == "===" {
				continue
			}
			one := Specifier{clauses: []clause{c}}
			switch c.op {
			case "==", "<=", ">=", "~=":
				if !one.Contains(c.v) {
					t.Fatalf("%s does not contain its own version", one)
				}
			case "!=", "<", ">":
				if one.Contains(c.v) {
					t.Fatalf("%s contains its own version", one)
				}
			}
		}
	})
}
