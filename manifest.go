package notsotuf

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"io/fs"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of what one archive may hold, so that checking and installing it
// fits the client's memory budget (64 MiB in all) whatever the archive:
// at most maxArchiveEntries entries (directories created implicitly for
// their members included), and at most maxManifestNames bytes of entry
// names and symbolic link targets, where an entry's name counts only its
// last element (a directory's name is stored once, not once per member).
// Real bundles stay far below: a 100,000-file node_modules tree has
// about 120,000 entries and 2 MiB of names. `notsotuf add` refuses to
// publish an archive beyond them, as every client refuses to install one.
const (
	maxArchiveEntries = 400_000
	maxManifestNames  = 8 << 20
)

// archiveLimits are the limits a manifest enforces: the client's are
// clientLimits; tests of the repository side lower them.
type archiveLimits struct {
	entries, names int
}

var clientLimits = archiveLimits{entries: maxArchiveEntries, names: maxManifestNames}

// tarManifest lists the entries of an extracted archive, in archive order,
// compactly: 16 bytes per entry (no pointers, in chunks), its name's last
// element and a symbolic link's target in a shared byte arena, and a hash
// index of int32. An entry's parent always comes before it. Entry 0 is the
// tree root. Measured with BenchmarkExtractManyEntries: about 50 bytes of
// heap per entry with node_modules-like names, against about 210 with one
// heap object and two map entries per entry.
type tarManifest struct {
	chunks []*[manifestChunk]manifestEntry
	n      int32 // entries, root included

	arena     [][]byte // names and link targets; see manifestEntry.off
	arenaUsed int

	index []int32 // open addressing over (parent, lower-case element): entry+1, 0 when free
	seed  maphash.Seed
	kbuf  []byte // hash key buffer (the manifest is used from one goroutine)

	lim   archiveLimits
	big   map[int32]int64 // sizes of regular files of 4 GiB or more
	size  int64           // bytes of file content written
	links int             // symbolic links
}

const manifestChunk = 4096

// manifestEntry is one entry: 16 bytes.
type manifestEntry struct {
	parent int32  // index of the parent directory; -1 for the root
	off    uint32 // arena chunk<<20 | offset of the element (elen bytes); a link target follows (2-byte length, then the bytes)
	size   uint32 // regular files: content length (flagBig: in tarManifest.big)
	bits   uint16 // permission bits (0o777) | kind<<9 | flags
	elen   uint8  // length of the element; 0 only for the root
}

// Kinds and flags in manifestEntry.bits.
const (
	kindDir     = 0
	kindReg     = 1
	kindSymlink = 2

	bitsKindShift = 9
	flagImplicit  = 1 << 11 // directory created for a member, absent from the archive
	flagBig       = 1 << 12
)

func newTarManifest(lim archiveLimits) *tarManifest {
	m := &tarManifest{seed: maphash.MakeSeed(), index: make([]int32, 64), lim: lim}
	m.chunks = append(m.chunks, new([manifestChunk]manifestEntry))
	m.chunks[0][0] = manifestEntry{parent: -1, bits: 0o755 | kindDir<<bitsKindShift}
	m.n = 1
	return m
}

func (m *tarManifest) ent(i int32) *manifestEntry {
	return &m.chunks[i/manifestChunk][i%manifestChunk]
}

// count is the number of entries, without the root.
func (m *tarManifest) count() int { return int(m.n) - 1 }

func (e *manifestEntry) kind() int         { return int(e.bits>>bitsKindShift) & 3 }
func (e *manifestEntry) mode() fs.FileMode { return fs.FileMode(e.bits & 0o777) }
func (e *manifestEntry) implicit() bool    { return e.bits&flagImplicit != 0 }

func (m *tarManifest) bytesAt(off uint32, n int) []byte {
	return m.arena[off>>20][off&(1<<20-1):][:n]
}

// elem returns the last element of entry i's name ("" for the root).
func (m *tarManifest) elem(i int32) string {
	e := m.ent(i)
	return string(m.bytesAt(e.off, int(e.elen)))
}

// link returns the target of the symbolic link i.
func (m *tarManifest) link(i int32) string {
	e := m.ent(i)
	b := m.bytesAt(e.off, int(e.elen)+2)
	n := int(binary.LittleEndian.Uint16(b[e.elen:]))
	return string(m.bytesAt(e.off+uint32(e.elen)+2, n))
}

// fileSize returns the content length of the regular file i.
func (m *tarManifest) fileSize(i int32) int64 {
	e := m.ent(i)
	if e.bits&flagBig != 0 {
		return m.big[i]
	}
	return int64(e.size)
}

// path returns entry i's slash-separated name relative to the root.
func (m *tarManifest) path(i int32) string {
	var b strings.Builder
	m.appendPath(&b, i)
	return b.String()
}

func (m *tarManifest) appendPath(b *strings.Builder, i int32) {
	if i <= 0 {
		return
	}
	if p := m.ent(i).parent; p > 0 {
		m.appendPath(b, p)
		b.WriteByte('/')
	}
	b.WriteString(m.elem(i))
}

// key returns the hash key of (parent, lower-case elem) to m.kbuf.
func (m *tarManifest) key(parent int32, elem string) []byte {
	k := binary.LittleEndian.AppendUint32(m.kbuf[:0], uint32(parent))
	ascii := true
	for i := 0; i < len(elem); i++ {
		if elem[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		for i := 0; i < len(elem); i++ {
			c := elem[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			k = append(k, c)
		}
	} else {
		k = append(k, strings.ToLower(elem)...)
	}
	m.kbuf = k
	return k
}

// sameLower reports whether strings.ToLower(a) == strings.ToLower(b).
func sameLower(a []byte, b string) bool {
	if len(a) == len(b) {
		ascii := true
		for i := 0; i < len(a); i++ {
			ca, cb := a[i], b[i]
			if ca >= 0x80 || cb >= 0x80 {
				ascii = false
				break
			}
			if 'A' <= ca && ca <= 'Z' {
				ca += 'a' - 'A'
			}
			if 'A' <= cb && cb <= 'Z' {
				cb += 'a' - 'A'
			}
			if ca != cb {
				return false
			}
		}
		if ascii {
			return true
		}
	}
	// Rune by rune, as strings.ToLower maps them (invalid UTF-8 as U+FFFD).
	for len(a) > 0 && len(b) > 0 {
		ra, na := utf8.DecodeRune(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if unicode.ToLower(ra) != unicode.ToLower(rb) {
			return false
		}
		a, b = a[na:], b[nb:]
	}
	return len(a) == 0 && len(b) == 0
}

// lookup finds the child of parent whose element equals elem up to case
// (strings.ToLower), as the rules compare names. A negative parent (a
// path outside the archive's entries) has no children.
func (m *tarManifest) lookup(parent int32, elem string) (int32, bool) {
	if parent < 0 {
		return 0, false
	}
	mask := uint64(len(m.index) - 1)
	for s := maphash.Bytes(m.seed, m.key(parent, elem)) & mask; ; s = (s + 1) & mask {
		v := m.index[s]
		if v == 0 {
			return 0, false
		}
		e := m.ent(v - 1)
		if e.parent == parent && sameLower(m.bytesAt(e.off, int(e.elen)), elem) {
			return v - 1, true
		}
	}
}

// lookupPath finds the entry named p exactly (slash-separated, relative to
// the root): every element must match in case too.
func (m *tarManifest) lookupPath(p string) (int32, bool) {
	cur := int32(0)
	for p != "" {
		el, rest, _ := strings.Cut(p, "/")
		i, ok := m.lookup(cur, el)
		if !ok || m.elem(i) != el {
			return 0, false
		}
		cur, p = i, rest
	}
	return cur, true
}

// add appends an entry under parent (which has no child named elem up to
// case) and returns its index. It fails with an error wrapping
// ErrUnsafeArchive beyond maxArchiveEntries or maxManifestNames.
func (m *tarManifest) add(parent int32, elem string, kind int, mode fs.FileMode, size int64, link string, implicit bool) (int32, error) {
	if m.count() >= m.lim.entries {
		return 0, fmt.Errorf("more than %d entries (the limit of notsotuf clients): %w", m.lim.entries, ErrUnsafeArchive)
	}
	need := len(elem)
	if kind == kindSymlink {
		need += 2 + len(link)
	}
	if m.arenaUsed+need > m.lim.names {
		return 0, fmt.Errorf("its entry names and link targets take more than %d bytes (the limit of notsotuf clients): %w", m.lim.names, ErrUnsafeArchive)
	}
	// The arena grows by chunks of at most 1 MiB, never copied.
	last := len(m.arena) - 1
	if last < 0 || len(m.arena[last])+need > cap(m.arena[last]) {
		c := 4 << 10
		if last >= 0 {
			c = min(2*cap(m.arena[last]), 1<<20)
		}
		m.arena = append(m.arena, make([]byte, 0, max(c, need)))
		last++
	}
	a := m.arena[last]
	off := uint32(last)<<20 | uint32(len(a))
	a = append(a, elem...)
	if kind == kindSymlink {
		a = binary.LittleEndian.AppendUint16(a, uint16(len(link)))
		a = append(a, link...)
		m.links++
	}
	m.arena[last] = a
	m.arenaUsed += need

	bits := uint16(mode&0o777) | uint16(kind)<<bitsKindShift
	if implicit {
		bits |= flagImplicit
	}
	i := m.n
	if int(i)/manifestChunk == len(m.chunks) {
		m.chunks = append(m.chunks, new([manifestChunk]manifestEntry))
	}
	e := m.ent(i)
	*e = manifestEntry{parent: parent, off: off, bits: bits, elen: uint8(len(elem))}
	if size > 1<<32-1 {
		e.bits |= flagBig
		if m.big == nil {
			m.big = map[int32]int64{}
		}
		m.big[i] = size
	} else {
		e.size = uint32(size)
	}
	m.n++
	if int(m.n)*4 > len(m.index)*3 {
		m.grow()
	} else {
		m.insert(i)
	}
	return i, nil
}

func (m *tarManifest) insert(i int32) {
	e := m.ent(i)
	mask := uint64(len(m.index) - 1)
	s := maphash.Bytes(m.seed, m.key(e.parent, string(m.bytesAt(e.off, int(e.elen))))) & mask
	for m.index[s] != 0 {
		s = (s + 1) & mask
	}
	m.index[s] = i + 1
}

// grow doubles the index and inserts every entry again.
func (m *tarManifest) grow() {
	m.index = make([]int32, 2*len(m.index))
	for i := int32(1); i < m.n; i++ {
		m.insert(i)
	}
}
