package notsotuf

import (
	"fmt"
	"regexp"
	"strings"
)

// Specifier is a PEP 440 version specifier ("~=1.4", ">=1.0, !=1.3.*,
// <2"): a comma-separated list of clauses that a version must all
// satisfy. The zero Specifier (from "") matches every version.
//
// Pre-releases are not special here: a client's channel decides whether
// it is offered them (see [Version.OnChannel]); the specifier only bounds
// the versions, so "~=1.4" on channel "a" admits 1.5a1 but not 2.0a1.
type Specifier struct {
	clauses []clause
}

type clause struct {
	op       string  // ~= == != <= >= < > ===
	v        Version // unset for ===
	wildcard bool    // == and != only: "1.4.*"
	raw      string  // the version text as written (=== compares it)
}

// Limits on a specifier read from a configuration or a command line.
const (
	maxSpecifierLen     = 1024
	maxSpecifierClauses = 64
)

// clauseRE splits a clause into its operator and version, as PEP 440
// spells them (spaces allowed between).
var clauseRE = regexp.MustCompile(`^(~=|===|==|!=|<=|>=|<|>)\s*(\S+)$`)

// ParseSpecifier parses a PEP 440 version specifier: clauses separated by
// commas, each an operator (~=, ==, !=, <=, >=, <, >, ===) and a version;
// == and != accept a trailing ".*" (prefix match, release numbers only).
// It follows PEP 440's rules on what each operator admits: ~= needs at
// least two release numbers, the ordered comparisons and ~= take no local
// label (+...). An empty string gives the specifier that matches every
// version.
func ParseSpecifier(s string) (Specifier, error) {
	if len(s) > maxSpecifierLen {
		return Specifier{}, fmt.Errorf("version specifier %.40q...: longer than %d characters", s, maxSpecifierLen)
	}
	if strings.TrimSpace(s) == "" {
		return Specifier{}, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > maxSpecifierClauses {
		return Specifier{}, fmt.Errorf("version specifier %.40q...: more than %d clauses", s, maxSpecifierClauses)
	}
	var sp Specifier
	for _, part := range parts {
		c, err := parseClause(strings.TrimSpace(part))
		if err != nil {
			return Specifier{}, fmt.Errorf("version specifier %q: %w", s, err)
		}
		sp.clauses = append(sp.clauses, c)
	}
	return sp, nil
}

func parseClause(s string) (clause, error) {
	m := clauseRE.FindStringSubmatch(s)
	if m == nil {
		return clause{}, fmt.Errorf("clause %q: want an operator (~=, ==, !=, <=, >=, <, >, ===) and a version, e.g. ~=1.4", s)
	}
	c := clause{op: m[1], raw: m[2]}
	if c.op == "===" {
		return c, nil // arbitrary equality: any string, compared as text
	}
	text := c.raw
	if strings.HasSuffix(text, ".*") {
		if c.op != "==" && c.op != "!=" {
			return clause{}, fmt.Errorf("clause %q: only == and != take a .* prefix", s)
		}
		c.wildcard = true
		text = strings.TrimSuffix(text, ".*")
	}
	v, err := ParseVersion(text)
	if err != nil {
		return clause{}, fmt.Errorf("clause %q: %w", s, err)
	}
	c.v = v
	switch {
	case c.wildcard && (v.preL != "" || v.post >= 0 || v.dev >= 0 || len(v.local) > 0):
		return clause{}, fmt.Errorf("clause %q: a .* prefix takes release numbers only (e.g. ==1.4.*)", s)
	case c.op != "==" && c.op != "!=" && len(v.local) > 0:
		return clause{}, fmt.Errorf("clause %q: %s takes no local version label (+...)", s, c.op)
	case c.op == "~=" && len(v.release) < 2:
		return clause{}, fmt.Errorf("clause %q: ~= needs at least two release numbers (e.g. ~=1.4)", s)
	}
	return c, nil
}

// String returns the specifier in a normalized form: clauses joined by
// ", ", versions normalized (=== keeps its text).
func (sp Specifier) String() string {
	parts := make([]string, len(sp.clauses))
	for i, c := range sp.clauses {
		switch {
		case c.op == "===":
			parts[i] = c.op + c.raw
		case c.wildcard:
			parts[i] = c.op + c.v.String() + ".*"
		default:
			parts[i] = c.op + c.v.String()
		}
	}
	return strings.Join(parts, ", ")
}

// IsZero reports whether sp matches every version (it has no clause).
func (sp Specifier) IsZero() bool { return len(sp.clauses) == 0 }

// Contains reports whether v satisfies every clause of sp.
func (sp Specifier) Contains(v Version) bool {
	if v.IsZero() {
		return false
	}
	for _, c := range sp.clauses {
		if !c.contains(v) {
			return false
		}
	}
	return true
}

func (c clause) contains(v Version) bool {
	switch c.op {
	case "===":
		return strings.EqualFold(v.String(), c.raw)
	case "==":
		return c.equal(v)
	case "!=":
		return !c.equal(v)
	case "~=":
		// ~=V.N means >=V.N and ==V.* (the last release number dropped,
		// and with it any pre, post or dev part).
		prefix := Version{epoch: c.v.epoch, release: c.v.release[:len(c.v.release)-1]}
		return v.public().Compare(c.v) >= 0 && prefixMatch(v, prefix)
	case "<=":
		return v.public().Compare(c.v) <= 0
	case ">=":
		return v.public().Compare(c.v) >= 0
	case "<":
		// "<V" does not admit a pre-release of V itself unless V is one.
		if v.public().Compare(c.v) >= 0 {
			return false
		}
		return c.v.IsPrerelease() || !v.IsPrerelease() || v.base().Compare(c.v.base()) != 0
	case ">":
		// ">V" admits neither a post-release of V (unless V is one) nor
		// V with a local label.
		if v.public().Compare(c.v) <= 0 {
			return false
		}
		if c.v.post < 0 && v.post >= 0 && v.base().Compare(c.v.base()) == 0 {
			return false
		}
		return len(v.local) == 0 || v.base().Compare(c.v.base()) != 0
	}
	return false
}

// equal is PEP 440's version matching: with .*, a prefix match on the
// release numbers; else equality, ignoring v's local label when the
// clause has none.
func (c clause) equal(v Version) bool {
	if c.wildcard {
		return prefixMatch(v, c.v)
	}
	if len(c.v.local) == 0 {
		return v.public().Compare(c.v) == 0
	}
	return v.Compare(c.v) == 0
}

// prefixMatch reports whether v's epoch is p's and v's release numbers,
// padded with zeros or cut to the length of p's, are p's.
func prefixMatch(v, p Version) bool {
	if v.epoch != p.epoch {
		return false
	}
	for i, n := range p.release {
		var x uint64
		if i < len(v.release) {
			x = v.release[i]
		}
		if x != n {
			return false
		}
	}
	return true
}

// public returns v without its local label.
func (v Version) public() Version {
	v.local = nil
	return v
}

// base returns v's epoch and release numbers only (1!2.0rc1.post3 -> 1!2.0).
func (v Version) base() Version {
	return Version{epoch: v.epoch, release: v.release, post: -1, dev: -1}
}
