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
// tufup's {"user": ..., "tufup": {"required": ...}}, plus notsotuf's
// "notsotuf": {"tar_size", "tar_hash", "tar_hash_algorithm"} describing the
// uncompressed tar, which lets a client check a tar rebuilt from an installed
// tree. tufup clients ignore the extra key.
type ArchiveMeta struct {
	User     json.RawMessage // the publisher's metadata (e.g. a changelog); nil when none
	Required bool            // clients must install this release before any newer one
	TarSize  int64           // size of the uncompressed tar; 0 when unknown (tufup archives)
	TarHash  string          // sha256 of the uncompressed tar, hex; "" when unknown
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

// Custom encodes m as a target's custom metadata. It refuses user metadata
// that canonical JSON cannot sign (floats).
func (m ArchiveMeta) Custom() (json.RawMessage, error) {
	user := m.User
	if len(bytes.TrimSpace(user)) == 0 {
		user = json.RawMessage("null")
	}
	if err := ValidateUserMeta(user); err != nil {
		return nil, err
	}
	out := map[string]any{
		"user":  user,
		"tufup": map[string]any{"required": m.Required},
	}
	if m.TarHash != "" {
		if err := checkTarInfo(m.TarSize, m.TarHash); err != nil {
			return nil, err
		}
		out["notsotuf"] = tarInfoJSON{m.TarSize, m.TarHash, "sha256"}
	}
	return json.Marshal(out)
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
		Required *bool `json:"required"`
	}
	if err := strictDecode(tufup, &t); err != nil {
		return ArchiveMeta{}, fmt.Errorf("archive custom metadata: field tufup: %w", err)
	}
	if t.Required != nil {
		m.Required = *t.Required
	}
	if n, ok := obj["notsotuf"]; ok {
		size, hash, err := parseTarInfo(n)
		if err != nil {
			return ArchiveMeta{}, fmt.Errorf("archive custom metadata: field notsotuf: %w", err)
		}
		m.TarSize, m.TarHash = size, hash
	}
	return m, nil
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
