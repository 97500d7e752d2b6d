// Package flate is a copy of the level 1 (BestSpeed) encoder of Go's
// compress/flate as of Go 1.26 (deflatefast.go, huffman_bit_writer.go,
// huffman_code.go and token.go, unchanged but for a comment after the license; the
// compressor below keeps only the BestSpeed path of deflate.go), with a
// zlib frame around it.
//
// The compact patch format decompresses the zlib-compressed debug sections
// that Go's linker writes (compress/zlib at BestSpeed) and has the patcher
// compress them again; the result must be the same bytes, whatever Go
// version built the patcher, so the encoder is pinned here rather than taken
// from the standard library, which does not promise a stable output. The
// differ checks, section by section, that this encoder reproduces the
// original bytes, and keeps a section compressed when it does not.
//
// The files copied from Go keep their copyright notices; the Go license is
// in LICENSE.
package flate

import (
	"encoding/binary"
	"errors"
	"hash/adler32"
	"io"
)

const (
	baseMatchLength   = 3       // The smallest match length per the RFC section 3.2.5
	maxMatchLength    = 258     // The largest match length
	baseMatchOffset   = 1       // The smallest match offset
	maxMatchOffset    = 1 << 15 // The largest match offset
	maxStoreBlockSize = 65535
)

// maxNumLit and InternalError as in inflate.go.
const maxNumLit = 286

// An InternalError reports an error in the flate code itself.
type InternalError string

func (e InternalError) Error() string { return "flate: internal error: " + string(e) }

type adler32Hash interface {
	Write([]byte) (int, error)
	Sum32() uint32
}

// compressor is deflate.go's compressor at BestSpeed.
type compressor struct {
	w         *huffmanBitWriter
	bestSpeed *deflateFast
	window    []byte
	windowEnd int
	tokens    []token
	sync      bool
	err       error
}

func (d *compressor) init(w io.Writer) {
	d.w = newHuffmanBitWriter(w)
	d.window = make([]byte, maxStoreBlockSize)
	d.bestSpeed = newDeflateFast()
	d.tokens = make([]token, maxStoreBlockSize)
}

func (d *compressor) writeStoredBlock(buf []byte) error {
	if d.w.writeStoredHeader(len(buf), false); d.w.err != nil {
		return d.w.err
	}
	d.w.writeBytes(buf)
	return d.w.err
}

// encSpeed compresses and writes the data added so far, once there is a
// full block or at the end of the stream.
func (d *compressor) encSpeed() {
	// We only compress if we have maxStoreBlockSize.
	if d.windowEnd < maxStoreBlockSize {
		if !d.sync {
			return
		}

		// Handle small sizes.
		if d.windowEnd < 128 {
			switch {
			case d.windowEnd == 0:
				return
			case d.windowEnd <= 16:
				d.err = d.writeStoredBlock(d.window[:d.windowEnd])
			default:
				d.w.writeBlockHuff(false, d.window[:d.windowEnd])
				d.err = d.w.err
			}
			d.windowEnd = 0
			d.bestSpeed.reset()
			return
		}

	}
	// Encode the block.
	d.tokens = d.bestSpeed.encode(d.tokens[:0], d.window[:d.windowEnd])

	// If we removed less than 1/16th, Huffman compress the block.
	if len(d.tokens) > d.windowEnd-(d.windowEnd>>4) {
		d.w.writeBlockHuff(false, d.window[:d.windowEnd])
	} else {
		d.w.writeBlockDynamic(d.tokens, false, d.window[:d.windowEnd])
	}
	d.err = d.w.err
	d.windowEnd = 0
}

func (d *compressor) fillStore(b []byte) int {
	n := copy(d.window[d.windowEnd:], b)
	d.windowEnd += n
	return n
}

func (d *compressor) write(b []byte) (n int, err error) {
	if d.err != nil {
		return 0, d.err
	}
	n = len(b)
	for len(b) > 0 {
		d.encSpeed()
		b = b[d.fillStore(b):]
		if d.err != nil {
			return 0, d.err
		}
	}
	return n, nil
}

var errWriterClosed = errors.New("flate: closed writer")

func (d *compressor) close() error {
	if d.err == errWriterClosed {
		return nil
	}
	if d.err != nil {
		return d.err
	}
	d.sync = true
	d.encSpeed()
	if d.err != nil {
		return d.err
	}
	if d.w.writeStoredHeader(0, true); d.w.err != nil {
		return d.w.err
	}
	d.w.flush()
	if d.w.err != nil {
		return d.w.err
	}
	d.err = errWriterClosed
	return nil
}

// ZlibWriter writes a zlib stream (RFC 1950) of its input compressed at
// level 1, byte for byte what Go 1.26's compress/zlib writes at BestSpeed.
type ZlibWriter struct {
	w       io.Writer
	d       compressor
	adler   adler32Hash
	started bool
	err     error
}

// NewZlibWriter returns a ZlibWriter that writes to w. Close ends the
// stream.
func NewZlibWriter(w io.Writer) *ZlibWriter {
	z := &ZlibWriter{w: w, adler: adler32.New()}
	z.d.init(w)
	return z
}

// zlib header of compress/zlib at BestSpeed: deflate, 32 KiB window,
// FLEVEL 0 and the check bits.
var zlibHeader = [2]byte{0x78, 0x01}

func (z *ZlibWriter) start() {
	if !z.started {
		z.started = true
		_, z.err = z.w.Write(zlibHeader[:])
	}
}

func (z *ZlibWriter) Write(p []byte) (int, error) {
	z.start()
	if z.err != nil {
		return 0, z.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := z.d.write(p)
	if err != nil {
		z.err = err
		return n, err
	}
	z.adler.Write(p)
	return n, nil
}

// Close flushes the last block and writes the checksum.
func (z *ZlibWriter) Close() error {
	z.start()
	if z.err != nil {
		return z.err
	}
	if z.err = z.d.close(); z.err != nil {
		return z.err
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], z.adler.Sum32())
	_, z.err = z.w.Write(sum[:])
	if z.err == nil {
		z.err = errWriterClosed
		return nil
	}
	return z.err
}
