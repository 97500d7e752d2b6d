// Package exe finds what the compact patch format needs in an executable or
// shared library: its architecture, where its code is, how file offsets map
// to virtual addresses, its zlib-compressed debug sections and its
// zero-filled (bss) sections. It reads ELF, PE and Mach-O files for x86-64
// and arm64, through the standard library's parsers.
//
// Parse only reads headers (and the first bytes of compressed sections);
// every offset and size it returns lies within the file. Anything it does
// not understand makes it return an error, and the caller diffs the file as
// plain bytes.
package exe

import (
	"bytes"
	"cmp"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Arch is an instruction set.
type Arch uint8

const (
	ArchUnknown Arch = iota
	AMD64
	ARM64
)

func (a Arch) String() string {
	switch a {
	case AMD64:
		return "x86-64"
	case ARM64:
		return "arm64"
	}
	return "unknown"
}

// Kind is an executable file format.
type Kind uint8

const (
	KindUnknown Kind = iota
	ELF
	PE
	MachO
)

func (k Kind) String() string {
	switch k {
	case ELF:
		return "ELF"
	case PE:
		return "PE"
	case MachO:
		return "Mach-O"
	}
	return "unknown"
}

// Range is Size bytes of the file at Off, loaded at the virtual address VA
// (Mem bytes in memory, for sections).
type Range struct {
	Name string
	Off  int64
	Size int64
	VA   uint64
	Mem  uint64
}

// Zlib is a compressed section: a zlib stream of Size bytes at Off (after
// the section's own header) that inflates to USize bytes.
type Zlib struct {
	Name  string
	Off   int64
	Size  int64
	USize int64
}

// Image describes an executable.
type Image struct {
	Kind Kind
	Arch Arch
	// Loads map file offsets to virtual addresses (ELF PT_LOAD segments,
	// PE sections, Mach-O segments), sorted by Off, not overlapping.
	Loads []Range
	// Code are the sections holding instructions, sorted by Off.
	Code []Range
	// Sections are the named sections loaded in memory (with Size 0 and
	// Off 0 for zero-filled ones, Mem their size in memory).
	Sections []Range
	// Zlib are the zlib-compressed debug sections, sorted by Off.
	Zlib []Zlib
}

// ErrNotExecutable is returned for a file that is no executable Parse
// knows.
var ErrNotExecutable = errors.New("not an ELF, PE or Mach-O file for x86-64 or arm64")

// Detect reports the format that the first bytes of a file announce.
func Detect(head []byte) Kind {
	switch {
	case bytes.HasPrefix(head, []byte("\x7fELF")):
		return ELF
	case bytes.HasPrefix(head, []byte("MZ")):
		return PE
	case bytes.HasPrefix(head, []byte{0xcf, 0xfa, 0xed, 0xfe}):
		return MachO // 64-bit little-endian
	}
	return KindUnknown
}

// Parse describes the executable of size bytes read through r.
func Parse(r io.ReaderAt, size int64) (img *Image, err error) {
	defer func() {
		// The standard parsers are fuzzed, but a panic here must never stop
		// a diff: the file is then diffed as plain bytes.
		if p := recover(); p != nil {
			img, err = nil, fmt.Errorf("exe: parser failed: %v", p)
		}
	}()
	var head [4]byte
	if _, err := r.ReadAt(head[:], 0); err != nil {
		return nil, ErrNotExecutable
	}
	sr := io.NewSectionReader(r, 0, size)
	switch Detect(head[:]) {
	case ELF:
		img, err = parseELF(sr, size)
	case PE:
		img, err = parsePE(sr, size)
	case MachO:
		img, err = parseMachO(sr, size)
	default:
		return nil, ErrNotExecutable
	}
	if err != nil {
		return nil, err
	}
	if err := img.check(size); err != nil {
		return nil, err
	}
	return img, nil
}

// check sorts the ranges and drops what lies outside the file or overlaps.
func (img *Image) check(size int64) error {
	inFile := func(off, n int64) bool { return off >= 0 && n >= 0 && off <= size && n <= size-off }
	clean := func(rs []Range) []Range {
		var out []Range
		for _, r := range rs {
			if r.Size > 0 && inFile(r.Off, r.Size) && r.VA+uint64(r.Size) >= r.VA {
				out = append(out, r)
			}
		}
		slices.SortStableFunc(out, func(a, b Range) int { return cmp.Compare(a.Off, b.Off) })
		keep := out[:0]
		var end int64
		for _, r := range out {
			if len(keep) > 0 && r.Off < end {
				continue
			}
			keep = append(keep, r)
			end = r.Off + r.Size
		}
		return keep
	}
	img.Loads = clean(img.Loads)
	img.Code = clean(img.Code)
	var zs []Zlib
	for _, z := range img.Zlib {
		if z.Size > 0 && z.USize > 0 && inFile(z.Off, z.Size) {
			zs = append(zs, z)
		}
	}
	slices.SortStableFunc(zs, func(a, b Zlib) int { return cmp.Compare(a.Off, b.Off) })
	keep := zs[:0]
	var end int64
	for _, z := range zs {
		if len(keep) > 0 && z.Off < end {
			continue
		}
		keep = append(keep, z)
		end = z.Off + z.Size
	}
	img.Zlib = keep
	if img.Arch == ArchUnknown {
		return ErrNotExecutable
	}
	return nil
}

// zlibHeader reads the "ZLIB" + 8-byte big-endian size header that Go's
// linker writes before compressed DWARF on PE and Mach-O (and GNU tools in
// .zdebug sections of ELF).
func zlibHeader(r io.ReaderAt, off, size int64) (usize int64, ok bool) {
	if size < 12 {
		return 0, false
	}
	var h [12]byte
	if _, err := r.ReadAt(h[:], off); err != nil || string(h[:4]) != "ZLIB" {
		return 0, false
	}
	u := binary.BigEndian.Uint64(h[4:])
	if u == 0 || u > 1<<40 {
		return 0, false
	}
	return int64(u), true
}

func parseELF(r *io.SectionReader, size int64) (*Image, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotExecutable, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB {
		return nil, ErrNotExecutable
	}
	img := &Image{Kind: ELF}
	switch f.Machine {
	case elf.EM_X86_64:
		img.Arch = AMD64
	case elf.EM_AARCH64:
		img.Arch = ARM64
	default:
		return nil, ErrNotExecutable
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Filesz > 0 && p.Off < uint64(size) && p.Filesz <= uint64(size) {
			img.Loads = append(img.Loads, Range{Off: int64(p.Off), Size: int64(p.Filesz), VA: p.Vaddr})
		}
	}
	for _, s := range f.Sections {
		if s.Offset >= uint64(size) || s.FileSize > uint64(size) {
			if s.Type != elf.SHT_NOBITS {
				continue
			}
		}
		if s.Flags&elf.SHF_ALLOC != 0 {
			r := Range{Name: s.Name, VA: s.Addr, Mem: s.Size}
			if s.Type != elf.SHT_NOBITS {
				r.Off, r.Size = int64(s.Offset), int64(s.FileSize)
			}
			img.Sections = append(img.Sections, r)
			if s.Type == elf.SHT_PROGBITS && s.Flags&elf.SHF_EXECINSTR != 0 && s.Flags&elf.SHF_COMPRESSED == 0 {
				img.Code = append(img.Code, Range{Name: s.Name, Off: int64(s.Offset), Size: int64(s.FileSize), VA: s.Addr})
			}
			continue
		}
		if s.Type != elf.SHT_PROGBITS {
			continue
		}
		off, n := int64(s.Offset), int64(s.FileSize)
		switch {
		case s.Flags&elf.SHF_COMPRESSED != 0:
			// Elf64_Chdr: ch_type (1 = zlib), ch_reserved, ch_size, ch_addralign.
			var ch [24]byte
			if n <= 24 {
				continue
			}
			if _, err := r.ReadAt(ch[:], off); err != nil || binary.LittleEndian.Uint32(ch[:]) != uint32(elf.COMPRESS_ZLIB) {
				continue
			}
			u := binary.LittleEndian.Uint64(ch[8:])
			if u == 0 || u > 1<<40 {
				continue
			}
			img.Zlib = append(img.Zlib, Zlib{Name: s.Name, Off: off + 24, Size: n - 24, USize: int64(u)})
		case strings.HasPrefix(s.Name, ".zdebug_"):
			if u, ok := zlibHeader(r, off, n); ok {
				img.Zlib = append(img.Zlib, Zlib{Name: s.Name, Off: off + 12, Size: n - 12, USize: u})
			}
		}
	}
	return img, nil
}

func parsePE(r *io.SectionReader, size int64) (*Image, error) {
	f, err := pe.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotExecutable, err)
	}
	img := &Image{Kind: PE}
	switch f.Machine {
	case pe.IMAGE_FILE_MACHINE_AMD64:
		img.Arch = AMD64
	case pe.IMAGE_FILE_MACHINE_ARM64:
		img.Arch = ARM64
	default:
		return nil, ErrNotExecutable
	}
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok {
		return nil, ErrNotExecutable
	}
	base := oh.ImageBase
	for _, s := range f.Sections {
		va := base + uint64(s.VirtualAddress)
		fileSize := int64(min(s.Size, s.VirtualSize))
		if s.VirtualSize == 0 {
			fileSize = int64(s.Size)
		}
		off := int64(s.Offset)
		if strings.HasPrefix(s.Name, ".zdebug_") {
			if u, ok := zlibHeader(r, off, int64(s.Size)); ok {
				img.Zlib = append(img.Zlib, Zlib{Name: s.Name, Off: off + 12, Size: int64(s.Size) - 12, USize: u})
			}
			continue
		}
		if s.Characteristics&pe.IMAGE_SCN_MEM_DISCARDABLE != 0 {
			continue
		}
		r := Range{Name: s.Name, Off: off, Size: fileSize, VA: va, Mem: uint64(s.VirtualSize)}
		if s.Size == 0 || s.Offset == 0 {
			r.Off, r.Size = 0, 0
		} else {
			img.Loads = append(img.Loads, r)
		}
		img.Sections = append(img.Sections, r)
		if s.Characteristics&(pe.IMAGE_SCN_CNT_CODE|pe.IMAGE_SCN_MEM_EXECUTE) != 0 && r.Size > 0 {
			img.Code = append(img.Code, r)
		}
	}
	return img, nil
}

func parseMachO(r *io.SectionReader, size int64) (*Image, error) {
	f, err := macho.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotExecutable, err)
	}
	img := &Image{Kind: MachO}
	switch f.Cpu {
	case macho.CpuAmd64:
		img.Arch = AMD64
	case macho.CpuArm64:
		img.Arch = ARM64
	default:
		return nil, ErrNotExecutable
	}
	for _, l := range f.Loads {
		if s, ok := l.(*macho.Segment); ok && s.Filesz > 0 && s.Name != "__DWARF" && s.Name != "__LINKEDIT" {
			img.Loads = append(img.Loads, Range{Name: s.Name, Off: int64(s.Offset), Size: int64(s.Filesz), VA: s.Addr})
		}
	}
	const (
		sectionType          = 0xff
		zerofill             = 0x1
		gbZerofill           = 0xc
		threadLocalZerofill  = 0x12
		attrPureInstructions = 0x80000000
		attrSomeInstructions = 0x400
	)
	for _, s := range f.Sections {
		if s.Seg == "__DWARF" {
			if strings.HasPrefix(s.Name, "__zdebug_") {
				if u, ok := zlibHeader(r, int64(s.Offset), int64(s.Size)); ok {
					img.Zlib = append(img.Zlib, Zlib{Name: s.Name, Off: int64(s.Offset) + 12, Size: int64(s.Size) - 12, USize: u})
				}
			}
			continue
		}
		rg := Range{Name: s.Seg + "," + s.Name, Off: int64(s.Offset), Size: int64(s.Size), VA: s.Addr, Mem: s.Size}
		switch s.Flags & sectionType {
		case zerofill, gbZerofill, threadLocalZerofill:
			rg.Off, rg.Size = 0, 0
		}
		img.Sections = append(img.Sections, rg)
		if rg.Size > 0 && s.Flags&(attrPureInstructions|attrSomeInstructions) != 0 {
			img.Code = append(img.Code, rg)
		}
	}
	return img, nil
}

// VA returns the virtual address of the file offset off, if a load range
// holds it.
func (img *Image) VA(off int64) (uint64, bool) {
	i, _ := slices.BinarySearchFunc(img.Loads, off+1, func(r Range, t int64) int { return cmp.Compare(r.Off, t) })
	if i == 0 {
		return 0, false
	}
	r := img.Loads[i-1]
	if off-r.Off >= r.Size {
		return 0, false
	}
	return r.VA + uint64(off-r.Off), true
}
