package notsotuf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/afero"

	"github.com/notsotuf/notsotuf/internal/bsdiff"
	cpatch "github.com/notsotuf/notsotuf/internal/compact"
)

// Patch formats. A repository makes its patches in one format, chosen with
// Config.PatchFormat (`notsotuf add --patch-format NAME`); BSDIFF40 is the
// default and the only format tufup clients can apply. The format of a patch
// other than bsdiff is named in its signed custom metadata
// ({"notsotuf": {"patch_format": NAME}}), and every patch starts with its
// format's magic, which `notsotuf patch` uses to recognise it.
const (
	// PatchFormatBSDiff is BSDIFF40, the format of bsdiff 4.x and of
	// Python's bsdiff4, which tufup clients apply.
	PatchFormatBSDiff = "bsdiff"
	// PatchFormatCompact is notsotuf's format for executables: ELF, PE and
	// Mach-O files for x86-64 and arm64, alone or as tar members, have their
	// compressed debug sections decompressed and their code references
	// rewritten before the BSDIFF40 matcher runs, which makes patches of
	// rebuilt executables several times smaller; other bytes are diffed as
	// bsdiff does. Only notsotuf applies it (docs/patch-format.md).
	PatchFormatCompact = "compact"
)

// A Differ writes to w a patch that turns old (oldSize bytes) into new
// (newSize bytes).
type Differ interface {
	Diff(old io.ReaderAt, oldSize int64, new io.ReaderAt, newSize int64, w io.Writer, opts *PatchOptions) error
}

// A Patcher reads a patch from patch and writes the file it produces to w as
// it goes, reading the old file (oldSize bytes) through ReadAt; it returns
// the number of bytes written. A malformed patch gives an error wrapping
// ErrCorruptPatch, never a panic or an allocation sized by an unverified
// number. On error, w may hold a partial output.
type Patcher interface {
	Apply(old io.ReaderAt, oldSize int64, patch io.Reader, w io.Writer, opts *PatchOptions) (int64, error)
}

// PatchFormat is a patch format: its name, the magic its patches start with,
// and its differ and patcher. A program that publishes with a format of its
// own sets Repository.PatchFormats, and its clients ClientConfig.PatchFormats,
// to the same PatchFormat value.
type PatchFormat struct {
	Name  string // as in the configuration and the signed metadata: lower-case letters, digits, '-'
	Magic string // the bytes every patch of this format starts with (at least 4)
	// Tufup says that tufup clients apply these patches (only bsdiff).
	Tufup bool
	Differ
	Patcher
}

// BuiltinPatchFormats returns the formats every notsotuf repository and
// client knows, the default (bsdiff) first.
func BuiltinPatchFormats() []PatchFormat {
	return []PatchFormat{bsdiffFormat, compactFormat}
}

var bsdiffFormat = PatchFormat{
	Name:    PatchFormatBSDiff,
	Magic:   bsdiff.Magic,
	Tufup:   true,
	Differ:  bsdiffDiffer{},
	Patcher: bsdiffPatcher{},
}

var compactFormat = PatchFormat{
	Name:    PatchFormatCompact,
	Magic:   cpatch.Magic,
	Differ:  compactDiffer{},
	Patcher: compactPatcher{},
}

type compactDiffer struct{}

func (compactDiffer) Diff(old io.ReaderAt, oldSize int64, new io.ReaderAt, newSize int64, w io.Writer, opts *PatchOptions) error {
	return cpatch.Diff(old, oldSize, new, newSize, w, &cpatch.Options{Workers: opts.workers(), Progress: opts.phases()})
}

type compactPatcher struct{}

func (compactPatcher) Apply(old io.ReaderAt, oldSize int64, patch io.Reader, w io.Writer, opts *PatchOptions) (int64, error) {
	var o cpatch.ApplyOptions
	if opts != nil {
		o.Progress = opts.Progress
		if opts.Fs != nil {
			fsys, dir, prefix := opts.Fs, opts.TempDir, opts.TempPrefix
			if prefix == "" {
				prefix = ".notsotuf-tmp-"
			}
			o.Scratch = func() (cpatch.Scratch, func(), error) {
				f, err := afero.TempFile(fsys, dir, prefix+"*")
				if err != nil {
					return nil, nil, fmt.Errorf("scratch file for the compact patch: %w", err)
				}
				return f, func() { f.Close(); fsys.Remove(f.Name()) }, nil
			}
		}
	}
	return cpatch.Apply(old, oldSize, patch, w, &o)
}

type bsdiffDiffer struct{}

// Diff reads old into memory and, of new, only what differs from old when
// both are tar archives (see bsdiff.DiffAt).
func (bsdiffDiffer) Diff(old io.ReaderAt, oldSize int64, new io.ReaderAt, newSize int64, w io.Writer, opts *PatchOptions) error {
	return bsdiff.DiffAt(old, oldSize, new, newSize, w, &bsdiff.DiffOptions{Workers: opts.workers(), Progress: opts.phases()})
}

type bsdiffPatcher struct{}

func (bsdiffPatcher) Apply(old io.ReaderAt, oldSize int64, patch io.Reader, w io.Writer, opts *PatchOptions) (int64, error) {
	return Apply(old, oldSize, patch, w, opts)
}

// patchFormats is the formats a repository or a client knows: its own
// (extra) before the built-in ones.
type patchFormats []PatchFormat

func knownPatchFormats(extra []PatchFormat) patchFormats {
	return patchFormats(append(slices.Clip(extra), BuiltinPatchFormats()...))
}

// ErrUnknownPatchFormat is wrapped by the errors about a patch format name
// or magic that is not known.
var ErrUnknownPatchFormat = errors.New("unknown patch format")

// names lists the known format names, for messages.
func (fs patchFormats) names() string {
	var n []string
	for _, f := range fs {
		if !slices.Contains(n, f.Name) {
			n = append(n, f.Name)
		}
	}
	return strings.Join(n, ", ")
}

// lookup returns the format named name ("" means bsdiff).
func (fs patchFormats) lookup(name string) (PatchFormat, error) {
	if name == "" {
		name = PatchFormatBSDiff
	}
	for _, f := range fs {
		if f.Name == name {
			return f, nil
		}
	}
	return PatchFormat{}, fmt.Errorf("patch format %q: %w (known: %s)", name, ErrUnknownPatchFormat, fs.names())
}

// detect returns the format whose magic starts head.
func (fs patchFormats) detect(head []byte) (PatchFormat, error) {
	for _, f := range fs {
		if f.Magic != "" && bytes.HasPrefix(head, []byte(f.Magic)) {
			return f, nil
		}
	}
	return PatchFormat{}, fmt.Errorf("patch starts with %q: %w (known: %s)", printable(head, 8), ErrUnknownPatchFormat, fs.names())
}

// LookupPatchFormat returns the built-in or extra format named name ("" is
// bsdiff).
func LookupPatchFormat(name string, extra ...PatchFormat) (PatchFormat, error) {
	return knownPatchFormats(extra).lookup(name)
}

// DetectPatchFormat returns the built-in or extra format whose magic starts
// head (the first bytes of a patch; 8 are enough for the built-in formats).
func DetectPatchFormat(head []byte, extra ...PatchFormat) (PatchFormat, error) {
	return knownPatchFormats(extra).detect(head)
}

// validPatchFormatName reports whether name can be a format's name.
func validPatchFormatName(name string) error {
	if name == "" || len(name) > 32 {
		return fmt.Errorf("patch format name %q: want 1 to 32 characters", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("patch format name %q: use lower-case letters, digits and '-' only", name)
		}
	}
	return nil
}

// printable quotes at most n bytes of b for an error message.
func printable(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// patchMagicLen is how many bytes detectPatch reads.
const patchMagicLen = 16

// ApplyPatch applies a patch of any known format (recognised by its magic)
// to old, as the format's Patcher does. patch must be positioned at the
// start of the patch; when it is an io.ReadSeeker, the magic is read and the
// position restored, otherwise the bytes read are put back in front.
func ApplyPatch(old io.ReaderAt, oldSize int64, patch io.Reader, w io.Writer, opts *PatchOptions, extra ...PatchFormat) (int64, PatchFormat, error) {
	f, p, err := detectPatch(patch, knownPatchFormats(extra))
	if err != nil {
		return 0, f, err
	}
	n, err := f.Apply(old, oldSize, p, w, opts)
	return n, f, err
}

// detectPatch reads the start of patch to find its format and returns a
// reader positioned at the start again.
func detectPatch(patch io.Reader, fs patchFormats) (PatchFormat, io.Reader, error) {
	head := make([]byte, patchMagicLen)
	n, err := io.ReadFull(patch, head)
	head = head[:n]
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return PatchFormat{}, nil, fmt.Errorf("reading patch: %w", err)
	}
	f, derr := fs.detect(head)
	if derr != nil {
		return PatchFormat{}, nil, fmt.Errorf("%w: %w", ErrCorruptPatch, derr)
	}
	if s, ok := patch.(io.Seeker); ok {
		if _, err := s.Seek(-int64(n), io.SeekCurrent); err == nil {
			return f, patch, nil
		}
	}
	return f, io.MultiReader(bytes.NewReader(head), patch), nil
}
