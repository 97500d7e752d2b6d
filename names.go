package notsotuf

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// File name extensions of release targets.
const (
	ArchiveExt = ".tar.gz"
	PatchExt   = ".patch"
)

// TargetKind tells an archive from a patch.
type TargetKind int

const (
	KindArchive TargetKind = 1 // <app>-<version>.tar.gz, the full bundle
	KindPatch   TargetKind = 2 // <app>-<version>.patch, from the previous release's tar
)

func (k TargetKind) String() string {
	switch k {
	case KindArchive:
		return "archive"
	case KindPatch:
		return "patch"
	}
	return "unknown"
}

// TargetName is a parsed release target name.
type TargetName struct {
	Name    string // the target name as it appears in targets metadata
	App     string
	Version Version
	Kind    TargetKind
}

// targetRE is tufup's target-name pattern.
var targetRE = regexp.MustCompile(`^([\w-]+)-(.+)(\.tar\.gz|\.patch)$`)

// maxTargetNameLen bounds target names read from metadata.
const maxTargetNameLen = 512

// ParseTargetName parses a target name such as "myapp-1.2.0.tar.gz" or
// "myapp-2.0.0a1.patch", with tufup's rule: the app name is made of letters,
// digits, '_' and '-', and the version is PEP 440.
func ParseTargetName(name string) (TargetName, error) {
	if len(name) > maxTargetNameLen {
		return TargetName{}, fmt.Errorf("target name %.40q...: longer than %d characters", name, maxTargetNameLen)
	}
	m := targetRE.FindStringSubmatch(name)
	if m == nil {
		return TargetName{}, fmt.Errorf("target name %q: want <app>-<version>%s or <app>-<version>%s", name, ArchiveExt, PatchExt)
	}
	v, err := ParseVersion(m[2])
	if err != nil {
		return TargetName{}, fmt.Errorf("target name %q: %w", name, err)
	}
	kind := KindArchive
	if m[3] == PatchExt {
		kind = KindPatch
	}
	return TargetName{Name: name, App: m[1], Version: v, Kind: kind}, nil
}

// ValidAppName reports an error unless app can name releases: letters,
// digits, '_' and '-' (tufup's rule), at most 128 characters.
func ValidAppName(app string) error {
	if app == "" || len(app) > 128 || !appRE.MatchString(app) {
		return fmt.Errorf("app name %q: use letters, digits, '_' and '-' only (at most 128)", app)
	}
	return nil
}

var appRE = regexp.MustCompile(`^[\w-]+$`)

// ArchiveName returns the target name of app's full archive at version v.
func ArchiveName(app string, v Version) string { return app + "-" + v.String() + ArchiveExt }

// PatchName returns the target name of app's patch to version v.
func PatchName(app string, v Version) string { return app + "-" + v.String() + PatchExt }

// ArchiveMeta is the custom metadata of an archive target. On the wire it is
// tufup's {"user": ..., "tufup": {"required": ...}} with notsotuf's own
// fields in an object "notsotuf" inside "tufup":
//
//	{"user": ..., "tufup": {"required": false, "notsotuf": {
//	    "tar_size": N, "tar_hash": "...", "tar_hash_algorithm": "sha256",
//	    "platform": "linux-amd64", "rollout": 50, "yanked": {"reason": "..."}}}}
//
// It has to be inside "tufup": a tufup 0.10 client reads custom metadata
// as {"user", "tufup"} only when those are exactly its keys; with any other
// key beside them it takes the whole object for the publisher's metadata
// of older tufup versions, and loses "required". Keys inside "tufup" that
// it does not know it ignores. Every field of "notsotuf" is optional; a
// field this version does not know makes the archive unusable (a client
// must not install a release under rules it cannot read). Earlier
// notsotuf versions wrote the tar fields in a "notsotuf" key beside
// "tufup" and "user": that is still read.
type ArchiveMeta struct {
	User     json.RawMessage // the publisher's metadata (e.g. a changelog); nil when none
	Required bool            // clients must install this release before any newer one
	TarSize  int64           // size of the uncompressed tar; 0 when unknown (tufup archives)
	TarHash  string          // sha256 of the uncompressed tar, hex; "" when unknown

	// Platform is the platform of this build ("linux-amd64"; see
	// [ValidPlatform]), "" for a release for every platform. A build's
	// targets are named <app>-<platform>-<version>.tar.gz and .patch.
	Platform string
	// Yanked marks a withdrawn release: clients never install it, and
	// those running it go back to the newest release that is not yanked.
	Yanked     bool
	YankReason string // why, in a few words (may be empty)
	// Rollout, when set, is the percent (0 to 100) of installs that are
	// offered the release (a staged rollout; 0 halts it). Nil offers it
	// to every install.
	Rollout *int
}

// RolloutPercent returns the share of installs offered the release, in
// percent: 100 unless a staged rollout is set.
func (m ArchiveMeta) RolloutPercent() int {
	if m.Rollout == nil {
		return 100
	}
	return *m.Rollout
}

// Limits of the release management fields.
const (
	maxPlatformLen   = 64
	maxYankReasonLen = 1000
)

var platformRE = regexp.MustCompile(`^[a-z][a-z0-9_]*(?:-[a-z0-9_]+)*$`)

// ValidPlatform reports an error unless name can name a platform:
// lower-case letters, digits and '_' in parts joined by '-', starting with
// a letter, at most 64 characters ("linux-amd64", "windows-arm64",
// "linux-x86_64").
func ValidPlatform(name string) error {
	if len(name) > maxPlatformLen || !platformRE.MatchString(name) {
		return fmt.Errorf("platform %.80q: use lower-case letters, digits and '_' in parts joined by '-', starting with a letter, at most %d characters (e.g. linux-amd64)", name, maxPlatformLen)
	}
	return nil
}

// ValidYankReason reports an error unless s can be published as the
// reason of a yank: at most 1000 bytes of UTF-8 text without control
// characters (clients print it in terminals).
func ValidYankReason(s string) error {
	if len(s) > maxYankReasonLen {
		return fmt.Errorf("yank reason: longer than %d bytes", maxYankReasonLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("yank reason: not UTF-8 text")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("yank reason %.40q: control characters are not allowed", s)
		}
	}
	return nil
}

func validRollout(p int) error {
	if p < 0 || p > 100 {
		return fmt.Errorf("rollout %d: want a percentage from 0 to 100", p)
	}
	return nil
}

// releaseStem is the part of a release's target names before
// "-<version>": the app name, and the platform when the build has one.
func releaseStem(app, platform string) string {
	if platform == "" {
		return app
	}
	return app + "-" + platform
}

// PatchMeta is the custom metadata of a patch target (tufup's format):
// the size and sha256 of the uncompressed tar that applying the patch
// yields, and, for a format other than bsdiff, notsotuf's
// "notsotuf": {"patch_format": NAME}. bsdiff patches carry no "notsotuf"
// key: tufup clients read a custom object with keys other than "user" and
// "tufup" as legacy metadata and would no longer find tar_hash.
type PatchMeta struct {
	TarSize int64
	TarHash string
	Format  string // patch format name; "" means bsdiff (BSDIFF40)
}

type tarInfoJSON struct {
	TarSize          int64  `json:"tar_size"`
	TarHash          string `json:"tar_hash"`
	TarHashAlgorithm string `json:"tar_hash_algorithm"`
}

// archiveJSON is the "notsotuf" object of an archive's custom metadata.
type archiveJSON struct {
	TarSize          *int64    `json:"tar_size,omitempty"`
	TarHash          string    `json:"tar_hash,omitempty"`
	TarHashAlgorithm string    `json:"tar_hash_algorithm,omitempty"`
	Platform         string    `json:"platform,omitempty"`
	Rollout          *int      `json:"rollout,omitempty"`
	Yanked           *yankJSON `json:"yanked,omitempty"`
}

type yankJSON struct {
	Reason string `json:"reason"`
}

// Custom encodes m as a target's custom metadata. It refuses user metadata
// that canonical JSON cannot sign (floats) and fields out of range.
func (m ArchiveMeta) Custom() (json.RawMessage, error) {
	user := m.User
	if len(bytes.TrimSpace(user)) == 0 {
		user = json.RawMessage("null")
	}
	if err := ValidateUserMeta(user); err != nil {
		return nil, err
	}
	tufup := map[string]any{"required": m.Required}
	var own archiveJSON
	if m.TarHash != "" {
		if err := checkTarInfo(m.TarSize, m.TarHash); err != nil {
			return nil, err
		}
		own.TarSize, own.TarHash, own.TarHashAlgorithm = &m.TarSize, m.TarHash, "sha256"
	}
	if m.Platform != "" {
		if err := ValidPlatform(m.Platform); err != nil {
			return nil, err
		}
		own.Platform = m.Platform
	}
	if m.Rollout != nil {
		if err := validRollout(*m.Rollout); err != nil {
			return nil, err
		}
		own.Rollout = m.Rollout
	}
	if m.Yanked {
		if err := ValidYankReason(m.YankReason); err != nil {
			return nil, err
		}
		own.Yanked = &yankJSON{m.YankReason}
	}
	if own != (archiveJSON{}) {
		tufup["notsotuf"] = own
	}
	return json.Marshal(map[string]any{"user": user, "tufup": tufup})
}

// Custom encodes m as a patch target's custom metadata.
func (m PatchMeta) Custom() (json.RawMessage, error) {
	if err := checkTarInfo(m.TarSize, m.TarHash); err != nil {
		return nil, err
	}
	out := map[string]any{
		"user":  nil,
		"tufup": tarInfoJSON{m.TarSize, m.TarHash, "sha256"},
	}
	if m.Format != "" && m.Format != PatchFormatBSDiff {
		if err := validPatchFormatName(m.Format); err != nil {
			return nil, err
		}
		out["notsotuf"] = patchInfoJSON{m.Format}
	}
	return json.Marshal(out)
}

type patchInfoJSON struct {
	PatchFormat string `json:"patch_format"`
}

// ParseArchiveMeta decodes an archive target's custom metadata. It accepts
// tufup's current format and its older one, where the publisher's metadata
// stood directly in custom. A nil custom gives the zero ArchiveMeta.
func ParseArchiveMeta(custom *json.RawMessage) (ArchiveMeta, error) {
	if custom == nil || len(bytes.TrimSpace(*custom)) == 0 || string(bytes.TrimSpace(*custom)) == "null" {
		return ArchiveMeta{}, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(*custom, &obj); err != nil {
		// Not an object: legacy user metadata of another JSON type.
		if !json.Valid(*custom) {
			return ArchiveMeta{}, fmt.Errorf("archive custom metadata: %w", err)
		}
		return ArchiveMeta{User: *custom}, nil
	}
	tufup, ok := obj["tufup"]
	if !ok {
		return ArchiveMeta{User: *custom}, nil // legacy tufup format
	}
	var m ArchiveMeta
	if u, ok := obj["user"]; ok && string(bytes.TrimSpace(u)) != "null" {
		m.User = u
	}
	var t struct {
		Required *bool            `json:"required"`
		Notsotuf *json.RawMessage `json:"notsotuf"`
	}
	if err := strictDecode(tufup, &t); err != nil {
		return ArchiveMeta{}, fmt.Errorf("archive custom metadata: field tufup: %w", err)
	}
	if t.Required != nil {
		m.Required = *t.Required
	}
	n, old := obj["notsotuf"]
	switch {
	case old && t.Notsotuf != nil:
		return ArchiveMeta{}, errors.New("archive custom metadata: both notsotuf and tufup.notsotuf")
	case old:
		// Written by earlier notsotuf versions: the tar fields only.
		size, hash, err := parseTarInfo(n)
		if err != nil {
			return ArchiveMeta{}, fmt.Errorf("archive custom metadata: field notsotuf: %w", err)
		}
		m.TarSize, m.TarHash = size, hash
	case t.Notsotuf != nil:
		if err := parseArchiveJSON(*t.Notsotuf, &m); err != nil {
			return ArchiveMeta{}, fmt.Errorf("archive custom metadata: field tufup.notsotuf: %w", err)
		}
	}
	return m, nil
}

// parseArchiveJSON reads the "notsotuf" object of an archive's custom
// metadata into m, strictly: unknown fields, wrong types, numbers out of
// range and a tar size without a hash (or the reverse) are errors.
func parseArchiveJSON(raw json.RawMessage, m *ArchiveMeta) error {
	var a struct {
		TarSize          json.RawMessage `json:"tar_size"`
		TarHash          *string         `json:"tar_hash"`
		TarHashAlgorithm *string         `json:"tar_hash_algorithm"`
		Platform         *string         `json:"platform"`
		Rollout          json.RawMessage `json:"rollout"`
		Yanked           json.RawMessage `json:"yanked"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after JSON value")
	}
	if a.TarSize != nil || a.TarHash != nil || a.TarHashAlgorithm != nil {
		size, hash, err := parseTarInfo(raw)
		if err != nil {
			return err
		}
		m.TarSize, m.TarHash = size, hash
	}
	if a.Platform != nil {
		if err := ValidPlatform(*a.Platform); err != nil {
			return err
		}
		m.Platform = *a.Platform
	}
	if a.Rollout != nil {
		p, err := strconv.Atoi(string(a.Rollout)) // refuses strings, floats, null
		if err != nil {
			return fmt.Errorf("rollout %.40s: not an integer", a.Rollout)
		}
		if err := validRollout(p); err != nil {
			return err
		}
		m.Rollout = &p
	}
	if a.Yanked != nil {
		var y struct {
			Reason *string `json:"reason"`
		}
		dec := json.NewDecoder(bytes.NewReader(a.Yanked))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&y); err != nil || y.Reason == nil {
			return fmt.Errorf("yanked %.40s: want {\"reason\": TEXT}", a.Yanked)
		}
		if err := ValidYankReason(*y.Reason); err != nil {
			return err
		}
		m.Yanked, m.YankReason = true, *y.Reason
	}
	return nil
}

// ParsePatchMeta decodes a patch target's custom metadata (tufup's
// {"tufup": {"tar_size", "tar_hash", "tar_hash_algorithm"}}, or the same
// fields directly in custom as older tufup wrote them), with notsotuf's
// {"notsotuf": {"patch_format": NAME}} when present. It checks the name's
// syntax, not that the format is known.
func ParsePatchMeta(custom *json.RawMessage) (PatchMeta, error) {
	if custom == nil {
		return PatchMeta{}, errors.New("patch custom metadata: missing (want tar_size and tar_hash)")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(*custom, &obj); err != nil {
		return PatchMeta{}, fmt.Errorf("patch custom metadata: %w", err)
	}
	info, ok := obj["tufup"]
	if !ok {
		info = *custom
	}
	size, hash, err := parseTarInfo(info)
	if err != nil {
		return PatchMeta{}, fmt.Errorf("patch custom metadata: %w", err)
	}
	m := PatchMeta{TarSize: size, TarHash: hash}
	if n, ok := obj["notsotuf"]; ok {
		var p struct {
			PatchFormat *string `json:"patch_format"`
		}
		if err := strictDecode(n, &p); err != nil {
			return PatchMeta{}, fmt.Errorf("patch custom metadata: field notsotuf: %w", err)
		}
		if p.PatchFormat != nil {
			if err := validPatchFormatName(*p.PatchFormat); err != nil {
				return PatchMeta{}, fmt.Errorf("patch custom metadata: field notsotuf: %w", err)
			}
			if *p.PatchFormat != PatchFormatBSDiff {
				m.Format = *p.PatchFormat
			}
		}
	}
	return m, nil
}

func parseTarInfo(raw json.RawMessage) (int64, string, error) {
	var t struct {
		TarSize          json.RawMessage `json:"tar_size"`
		TarHash          *string         `json:"tar_hash"`
		TarHashAlgorithm *string         `json:"tar_hash_algorithm"`
	}
	if err := strictDecode(raw, &t); err != nil {
		return 0, "", err
	}
	if t.TarSize == nil || t.TarHash == nil {
		return 0, "", errors.New("want tar_size and tar_hash")
	}
	if t.TarHashAlgorithm != nil && *t.TarHashAlgorithm != "sha256" {
		return 0, "", fmt.Errorf("tar_hash_algorithm %q: only sha256 is supported", *t.TarHashAlgorithm)
	}
	size, err := strconv.ParseInt(string(t.TarSize), 10, 64) // refuses strings, floats, overflow
	if err != nil {
		return 0, "", fmt.Errorf("tar_size %.40s: not a non-negative 64-bit integer", t.TarSize)
	}
	hash := strings.ToLower(*t.TarHash)
	if err := checkTarInfo(size, hash); err != nil {
		return 0, "", err
	}
	return size, hash, nil
}

func checkTarInfo(size int64, hash string) error {
	if size < 0 {
		return fmt.Errorf("tar_size %d: negative", size)
	}
	if b, err := hex.DecodeString(hash); err != nil || len(b) != 32 {
		return fmt.Errorf("tar_hash %q: want 64 hex digits (sha256)", hash)
	}
	return nil
}

// strictDecode decodes JSON keeping numbers as json.Number, so that a float
// or an out-of-range number is reported rather than rounded.
func strictDecode(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

// ValidateUserMeta checks that raw is one JSON value that canonical JSON can
// sign: no floats (1.5, 1e3) and integers within 64 bits.
func ValidateUserMeta(raw json.RawMessage) error {
	var v any
	if err := strictDecode(raw, &v); err != nil {
		return fmt.Errorf("custom metadata: not valid JSON: %w", err)
	}
	return checkNumbers(v, "$")
}

func checkNumbers(v any, path string) error {
	switch v := v.(type) {
	case json.Number:
		s := v.String()
		if strings.ContainsAny(s, ".eE") {
			return fmt.Errorf("custom metadata: %s = %s: floats cannot be signed (canonical JSON has no floats); use an integer or a string", path, s)
		}
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return fmt.Errorf("custom metadata: %s = %s: integer out of range (at most %d)", path, s, int64(math.MaxInt64))
		}
	case []any:
		for i, e := range v {
			if err := checkNumbers(e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case map[string]any:
		for k, e := range v {
			if err := checkNumbers(e, path+"."+k); err != nil {
				return err
			}
		}
	}
	return nil
}
