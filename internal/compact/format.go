// Package compact reads and writes the compact patch format: a BSDIFF40
// patch between two rewritten files, for executables. On the old side, the
// zlib-compressed debug sections of executables are appended decompressed
// (old*); on the new side, they are replaced by their decompressed bytes, and
// the 32-bit relative references of code are rewritten into the address
// space of the old executable through an address map (new*). Rebuilt
// executables then differ in far fewer bytes. The patcher streams: it
// applies the BSDIFF40 part to old* and undoes the rewriting of new* as it
// is produced (recompressing with the deflate encoder of internal/flate).
//
// docs/patch-format.md describes the format byte by byte.
package compact

import (
	"bytes"
	"compress/bzip2"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/notsotuf/notsotuf/internal/bsdiff"
	bz "github.com/notsotuf/notsotuf/internal/bsdiff/bzip2"
)

// Magic starts every compact patch.
const Magic = "NSTFCMP1"

// ErrCorrupt is wrapped by every error that Apply returns because the patch
// itself is malformed, truncated or does not fit the old file. It is
// bsdiff's, which the BSDIFF40 part returns.
var ErrCorrupt = bsdiff.ErrCorrupt

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// Limits on what a header may declare, checked before anything is
// allocated.
const (
	maxHeaderLen = 16 << 20 // compressed and decompressed header
	// At most this many segments in all maps: each costs the patcher about
	// 100 bytes of memory when its map is used (a rebuilt 40 MB Go
	// executable needs about 10,000).
	maxSegments = 1 << 20
	// At most this many expansions and regions (a bundle of a thousand
	// executables needs a few thousand).
	maxRegions = 1 << 16
	maxSize    = 1 << 50 // any file size or offset
	// deflate cannot inflate more than 1032 times (258-byte matches in
	// 2 bits); a margin covers the block headers of tiny streams.
	maxInflateRatio = 1032
	inflateSlack    = 1 << 10
)

// Region kinds of new*.
const (
	kindZlib  = 1 // zlib stream recompressed by the patcher
	kindAMD64 = 2 // x86-64 code whose rel32/RIP-relative references are mapped
	kindARM64 = 3 // arm64 code whose BL/B and ADRP pairs are mapped
)

// expansion is a zlib stream of old, old[Off:Off+CLen], whose ULen
// decompressed bytes are appended to old*, in order.
type expansion struct {
	Off, CLen, ULen int64
}

// region is a part of new*, new*[Start:Start+Len], that the patcher turns
// back into new's bytes.
type region struct {
	Kind       byte
	Start, Len int64
	CLen       int64  // kindZlib: the compressed length in new
	VA         uint64 // code: virtual address of the region's first byte
	Map        int    // code: index of its address map
}

// header is what precedes the BSDIFF40 part of a patch.
type header struct {
	OldSize, NewSize int64
	InnerSize        int64 // size of new*
	Exps             []expansion
	Maps             [][]segment // what encode writes
	Regions          []region

	// What parseHeader read of the maps: each one's count of segments and
	// encoded bytes (checked), decoded when first used (decodeMap).
	mapCounts []int
	mapData   [][]byte
}

const headerVersion = 1

// encode writes the header body as unsigned varints (signed values zigzag
// encoded), compressed as one bzip2 stream.
func (h *header) encode() ([]byte, error) {
	var b []byte
	u := func(x uint64) { b = binary.AppendUvarint(b, x) }
	s := func(x int64) { b = binary.AppendVarint(b, x) }
	u(headerVersion)
	u(uint64(h.OldSize))
	u(uint64(h.NewSize))
	u(uint64(h.InnerSize))
	u(uint64(len(h.Exps)))
	var at int64
	for _, e := range h.Exps {
		u(uint64(e.Off - at))
		u(uint64(e.CLen))
		u(uint64(e.ULen))
		at = e.Off + e.CLen
	}
	u(uint64(len(h.Maps)))
	for _, m := range h.Maps {
		u(uint64(len(m)))
		var end uint64
		var delta int64
		for _, sg := range m {
			u(sg.n - end)
			u(sg.l)
			d := int64(sg.o - sg.n)
			s(d - delta)
			end, delta = sg.n+sg.l, d
		}
	}
	u(uint64(len(h.Regions)))
	at = 0
	for _, r := range h.Regions {
		b = append(b, r.Kind)
		u(uint64(r.Start - at))
		u(uint64(r.Len))
		switch r.Kind {
		case kindZlib:
			u(uint64(r.CLen))
		case kindAMD64, kindARM64:
			u(r.VA)
			u(uint64(r.Map))
		}
		at = r.Start + r.Len
	}
	var z bytes.Buffer
	zw := bz.NewWriter(&z, 1)
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return z.Bytes(), nil
}

// reader decodes varints from the header body, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = corrupt("header: "+format, args...)
	}
}

func (r *reader) u() uint64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("truncated or overlong number")
		return 0
	}
	r.b = r.b[n:]
	return x
}

func (r *reader) s() int64 {
	if r.err != nil {
		return 0
	}
	x, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("truncated or overlong number")
		return 0
	}
	r.b = r.b[n:]
	return x
}

// size reads a non-negative size at most maxSize.
func (r *reader) size(what string) int64 {
	x := r.u()
	if x > maxSize {
		r.fail("%s %d is too large", what, x)
		return 0
	}
	return int64(x)
}

// count reads a number of items that each take at least min bytes, so it
// cannot be more than the bytes left.
func (r *reader) count(what string, min int) int {
	x := r.u()
	if x > uint64(len(r.b)/min) {
		r.fail("%d %s in %d bytes", x, what, len(r.b))
		return 0
	}
	return int(x)
}

// decodeMap decodes the k segments of a map that parseHeader checked.
func decodeMap(data []byte, k int) []segment {
	r := &reader{b: data}
	m := make([]segment, 0, k)
	var end uint64
	var delta int64
	for range k {
		gap, l, dd := r.u(), r.u(), r.s()
		sn := end + gap
		delta += dd
		m = append(m, segment{n: sn, o: sn + uint64(delta), l: l})
		end = sn + l
	}
	return m
}

// decodeMaps fills h.Maps from what parseHeader read.
func (h *header) decodeMaps() {
	h.Maps = nil
	for i, d := range h.mapData {
		h.Maps = append(h.Maps, decodeMap(d, h.mapCounts[i]))
	}
}

// readHeader reads the patch up to its BSDIFF40 part: the magic, the
// header length and the compressed header. It checks everything the header
// says against itself and against oldSize.
func readHeader(patch io.Reader, oldSize int64) (*header, error) {
	var fixed [12]byte
	if n, err := io.ReadFull(patch, fixed[:]); err != nil {
		if n < len(fixed) && (err == io.EOF || err == io.ErrUnexpectedEOF) {
			return nil, corrupt("truncated header (%d of 12 bytes)", n)
		}
		return nil, fmt.Errorf("reading patch header: %w", err)
	}
	if string(fixed[:8]) != Magic {
		return nil, corrupt("magic is %q, want %q", fixed[:8], Magic)
	}
	hlen := int64(binary.LittleEndian.Uint32(fixed[8:]))
	if hlen > maxHeaderLen {
		return nil, corrupt("header length %d is more than %d", hlen, maxHeaderLen)
	}
	// Read what is there, not what the length claims: bytes.Buffer grows
	// with the data.
	var zbuf bytes.Buffer
	if n, err := zbuf.ReadFrom(io.LimitReader(patch, hlen)); err != nil {
		return nil, fmt.Errorf("reading patch header: %w", err)
	} else if n < hlen {
		return nil, corrupt("header is truncated (%d of %d bytes)", n, hlen)
	}
	body, err := readAllLimited(bzip2.NewReader(&zbuf), maxHeaderLen)
	if err != nil {
		return nil, err
	}
	h, err := parseHeader(body)
	if err != nil {
		return nil, err
	}
	if h.OldSize != oldSize {
		return nil, corrupt("the patch is for an old file of %d bytes, this one has %d", h.OldSize, oldSize)
	}
	return h, nil
}

func readAllLimited(r io.Reader, limit int64) (b []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			b, err = nil, corrupt("header: bzip2 decoder failed: %v", p)
		}
	}()
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		var se bzip2.StructuralError
		if errors.As(err, &se) || err == io.ErrUnexpectedEOF {
			return nil, corrupt("header: %v", err)
		}
		return nil, fmt.Errorf("reading patch header: %w", err)
	}
	if n > limit {
		return nil, corrupt("header decompresses to more than %d bytes", limit)
	}
	return buf.Bytes(), nil
}

// parseHeader decodes and checks a header body.
func parseHeader(body []byte) (*header, error) {
	r := &reader{b: body}
	h := &header{}
	if v := r.u(); r.err == nil && v != headerVersion {
		return nil, corrupt("header version %d, want %d", v, headerVersion)
	}
	h.OldSize = r.size("old size")
	h.NewSize = r.size("new size")
	h.InnerSize = r.size("rewritten new size")
	n := r.count("expansions", 3)
	if n > maxRegions {
		r.fail("%d expansions, more than %d", n, maxRegions)
	}
	var at, total int64
	for i := 0; i < n && r.err == nil; i++ {
		e := expansion{Off: at + r.size("expansion offset"), CLen: r.size("compressed length"), ULen: r.size("decompressed length")}
		switch {
		case r.err != nil:
		case e.CLen == 0 || e.ULen == 0:
			r.fail("expansion %d is empty", i)
		case e.Off > h.OldSize || e.CLen > h.OldSize-e.Off:
			r.fail("expansion %d (%d bytes at %d) passes the old size %d", i, e.CLen, e.Off, h.OldSize)
		case e.ULen > e.CLen*maxInflateRatio+inflateSlack:
			r.fail("expansion %d: %d bytes cannot inflate to %d", i, e.CLen, e.ULen)
		}
		total += e.ULen
		if total > maxSize {
			r.fail("expansions total more than %d bytes", int64(maxSize))
		}
		at = e.Off + e.CLen
		h.Exps = append(h.Exps, e)
	}
	n = r.count("address maps", 1)
	if n > maxRegions {
		r.fail("%d address maps, more than %d", n, maxRegions)
	}
	segments := 0
	for i := 0; i < n && r.err == nil; i++ {
		k := r.count("segments", 3)
		if segments += k; segments > maxSegments {
			r.fail("more than %d segments", maxSegments)
			break
		}
		// Check the segments now; decodeMap reads them again when the map
		// is used, so that only one map at a time is held decoded.
		start := r.b
		var end uint64
		for j := 0; j < k && r.err == nil; j++ {
			gap, l, _ := r.u(), r.u(), r.s()
			if gap > math.MaxUint64-end || l > math.MaxUint64-end-gap || l == 0 {
				r.fail("map %d segment %d out of range", i, j)
				break
			}
			end += gap + l
		}
		h.mapCounts = append(h.mapCounts, k)
		h.mapData = append(h.mapData, start[:len(start)-len(r.b)])
	}
	n = r.count("regions", 3)
	if n > maxRegions {
		r.fail("%d regions, more than %d", n, maxRegions)
	}
	at = 0
	var grow int64
	for i := 0; i < n && r.err == nil; i++ {
		if len(r.b) == 0 {
			r.fail("truncated")
			break
		}
		g := region{Kind: r.b[0]}
		r.b = r.b[1:]
		g.Start = at + r.size("region offset")
		g.Len = r.size("region length")
		switch g.Kind {
		case kindZlib:
			g.CLen = r.size("compressed length")
			if r.err == nil && (g.CLen == 0 || g.Len > g.CLen*maxInflateRatio+inflateSlack) {
				r.fail("region %d: %d bytes cannot inflate to %d", i, g.CLen, g.Len)
			}
			grow += g.Len - g.CLen
		case kindAMD64, kindARM64:
			g.VA = r.u()
			m := r.u()
			if m >= uint64(len(h.mapData)) {
				r.fail("region %d: address map %d of %d", i, m, len(h.mapData))
			}
			g.Map = int(m)
		default:
			r.fail("region %d: unknown kind %d", i, g.Kind)
		}
		if r.err == nil && (g.Len == 0 || g.Start > h.InnerSize || g.Len > h.InnerSize-g.Start) {
			r.fail("region %d (%d bytes at %d) passes the rewritten size %d", i, g.Len, g.Start, h.InnerSize)
		}
		at = g.Start + g.Len
		h.Regions = append(h.Regions, g)
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, corrupt("header: %d bytes after its end", len(r.b))
	}
	if h.InnerSize-grow != h.NewSize {
		return nil, corrupt("header: rewritten size %d minus %d decompressed bytes is not the new size %d", h.InnerSize, grow, h.NewSize)
	}
	return h, nil
}

func bzip2Reader(b []byte) io.Reader { return bzip2.NewReader(bytes.NewReader(b)) }
