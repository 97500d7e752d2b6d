package notsotuf

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// maxVersionLen bounds the length of a version string accepted by
// [ParseVersion]; PEP 440 sets no limit, but no real version comes close.
const maxVersionLen = 256

// Version is a PEP 440 version, as tufup names its releases: release numbers
// (1.2.3), an optional epoch (1!2.0), pre-release (a1, b2, rc3), post-release
// (.post1), development release (.dev1) and local label (+ubuntu.1).
// The zero Version is not valid; obtain one from [ParseVersion].
type Version struct {
	epoch   uint64
	release []uint64
	preL    string // "a", "b", "rc" or "" for none
	preN    uint64
	post    int64 // -1 when absent
	dev     int64 // -1 when absent
	local   []string
}

// pep440 is the regular expression of PEP 440's appendix B, as the Python
// packaging library uses it (matched case-insensitively, surrounding spaces
// stripped).
var pep440 = regexp.MustCompile(`^(?i)v?` +
	`(?:([0-9]+)!)?` + // epoch
	`([0-9]+(?:\.[0-9]+)*)` + // release
	`(?:[-_.]?(alpha|a|beta|b|preview|pre|c|rc)[-_.]?([0-9]+)?)?` + // pre
	`(?:-([0-9]+)|[-_.]?(post|rev|r)[-_.]?([0-9]+)?)?` + // post
	`(?:[-_.]?(dev)[-_.]?([0-9]+)?)?` + // dev
	`(?:\+([a-z0-9]+(?:[-_.][a-z0-9]+)*))?$`) // local

// ParseVersion parses s as a PEP 440 version. Every spelling PEP 440 accepts
// is accepted ("1.0-RC.1", "v2.0.0-alpha") and [Version.String] gives the
// normalized form ("1.0rc1", "2.0.0a0").
func ParseVersion(s string) (Version, error) {
	if len(s) > maxVersionLen {
		return Version{}, fmt.Errorf("version %.20q...: longer than %d characters", s, maxVersionLen)
	}
	m := pep440.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Version{}, fmt.Errorf("version %q: not a PEP 440 version (examples: 1.0, 2.0.0a1, 1.0rc2, 1.0.post1)", s)
	}
	num := func(str, what string) (uint64, error) {
		if str == "" {
			return 0, nil
		}
		n, err := strconv.ParseUint(str, 10, 63)
		if err != nil {
			return 0, fmt.Errorf("version %q: %s number %s is too large", s, what, str)
		}
		return n, nil
	}
	var v Version
	var err error
	if v.epoch, err = num(m[1], "epoch"); err != nil {
		return Version{}, err
	}
	for _, part := range strings.Split(m[2], ".") {
		n, err := num(part, "release")
		if err != nil {
			return Version{}, err
		}
		v.release = append(v.release, n)
	}
	if m[3] != "" {
		switch strings.ToLower(m[3]) {
		case "a", "alpha":
			v.preL = "a"
		case "b", "beta":
			v.preL = "b"
		default: // c, rc, pre, preview
			v.preL = "rc"
		}
		if v.preN, err = num(m[4], "pre-release"); err != nil {
			return Version{}, err
		}
	}
	v.post, v.dev = -1, -1
	switch {
	case m[5] != "":
		n, err := num(m[5], "post-release")
		if err != nil {
			return Version{}, err
		}
		v.post = int64(n)
	case m[6] != "":
		n, err := num(m[7], "post-release")
		if err != nil {
			return Version{}, err
		}
		v.post = int64(n)
	}
	if m[8] != "" {
		n, err := num(m[9], "dev-release")
		if err != nil {
			return Version{}, err
		}
		v.dev = int64(n)
	}
	if m[10] != "" {
		v.local = strings.FieldsFunc(strings.ToLower(m[10]), func(r rune) bool {
			return r == '-' || r == '_' || r == '.'
		})
	}
	return v, nil
}

// String returns the normalized PEP 440 form of v, the form tufup uses in
// target names (str(Version) in Python's packaging library).
func (v Version) String() string {
	if len(v.release) == 0 {
		return "<invalid version>"
	}
	var b strings.Builder
	if v.epoch != 0 {
		fmt.Fprintf(&b, "%d!", v.epoch)
	}
	for i, n := range v.release {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.FormatUint(n, 10))
	}
	if v.preL != "" {
		fmt.Fprintf(&b, "%s%d", v.preL, v.preN)
	}
	if v.post >= 0 {
		fmt.Fprintf(&b, ".post%d", v.post)
	}
	if v.dev >= 0 {
		fmt.Fprintf(&b, ".dev%d", v.dev)
	}
	if len(v.local) > 0 {
		b.WriteByte('+')
		b.WriteString(strings.Join(v.local, "."))
	}
	return b.String()
}

// IsZero reports whether v is the zero Version (not parsed).
func (v Version) IsZero() bool { return len(v.release) == 0 }

// IsPrerelease reports whether v is a pre-release (a, b, rc) or a
// development release.
func (v Version) IsPrerelease() bool { return v.preL != "" || v.dev >= 0 }

// OnChannel reports whether v may be offered to a client that follows the
// given pre-release channel, with tufup's rule: "" admits final releases
// only, "rc" also admits release candidates, "b" betas and release
// candidates, "a" alphas, betas and release candidates. Unlike tufup, a
// development release (1.0.dev1, 1.0a1.dev2) is never offered on the
// stable channel; channel "a" admits it.
func (v Version) OnChannel(channel string) bool {
	if v.dev >= 0 && channel != "a" {
		return false
	}
	switch v.preL {
	case "":
		return true
	case "a":
		return channel == "a"
	case "b":
		return channel == "a" || channel == "b"
	default: // rc
		return channel == "a" || channel == "b" || channel == "rc"
	}
}

// ValidChannel reports an error unless channel is "", "a", "b" or "rc".
func ValidChannel(channel string) error {
	switch channel {
	case "", "a", "b", "rc":
		return nil
	}
	return fmt.Errorf("pre-release channel %q: want a, b or rc (or empty for final releases only)", channel)
}

// Compare returns -1, 0 or +1 as v sorts before, equal to or after o in
// PEP 440 order (1.0.dev0 < 1.0a1 < 1.0b1 < 1.0rc1 < 1.0 < 1.0.post1 < 1.1).
// Trailing zeros of the release do not matter: 1.0 == 1.0.0.
func (v Version) Compare(o Version) int {
	if c := cmpU(v.epoch, o.epoch); c != 0 {
		return c
	}
	n := max(len(v.release), len(o.release))
	for i := range n {
		var a, b uint64
		if i < len(v.release) {
			a = v.release[i]
		}
		if i < len(o.release) {
			b = o.release[i]
		}
		if c := cmpU(a, b); c != 0 {
			return c
		}
	}
	if c := cmpI(v.preRank(), o.preRank()); c != 0 {
		return c
	}
	if v.preL != "" && o.preL != "" {
		if c := cmpU(v.preN, o.preN); c != 0 {
			return c
		}
	}
	if c := cmpI(v.post, o.post); c != 0 { // absent (-1) sorts first
		return c
	}
	if c := cmpI(devKey(v.dev), devKey(o.dev)); c != 0 { // absent sorts last
		return c
	}
	return cmpLocal(v.local, o.local)
}

// preRank orders the pre-release part: a dev release of a final version
// (1.0.dev1) sorts before every pre-release, a final release after them.
func (v Version) preRank() int64 {
	switch v.preL {
	case "a":
		return 1
	case "b":
		return 2
	case "rc":
		return 3
	}
	if v.post < 0 && v.dev >= 0 {
		return 0
	}
	return 4
}

func devKey(dev int64) int64 {
	if dev < 0 {
		return 1<<63 - 1
	}
	return dev
}

// cmpLocal compares local labels: none sorts first; numeric segments sort
// after alphanumeric ones and compare as numbers; a longer label wins a tie.
func cmpLocal(a, b []string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, xerr := strconv.ParseUint(a[i], 10, 64)
		y, yerr := strconv.ParseUint(b[i], 10, 64)
		var c int
		switch {
		case xerr == nil && yerr == nil:
			c = cmpU(x, y)
		case xerr == nil:
			c = 1
		case yerr == nil:
			c = -1
		default:
			c = strings.Compare(a[i], b[i])
		}
		if c != 0 {
			return c
		}
	}
	return cmpI(int64(len(a)), int64(len(b)))
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpI(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
