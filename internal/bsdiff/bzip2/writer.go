// Package bzip2 writes bzip2 streams that libbzip2 and Go's compress/bzip2
// decode, with the compression ratio of libbzip2 at level 9.
//
// The format stages are the ones libbzip2 uses: run-length encoding of runs of
// 4 to 255 equal bytes, the Burrows-Wheeler transform of blocks of at most
// 899981 bytes (built here from a suffix array), move-to-front with run-length
// coding of zeros, and up to six Huffman tables chosen per group of 50 symbols
// by four rounds of refinement (libbzip2's sendMTFValues). Blocks are encoded
// in parallel; the output is always exactly one stream.
package bzip2

import (
	"errors"
	"io"
)

const (
	groupSize  = 50
	maxGroups  = 6
	maxCodeLen = 17
	nIters     = 4
)

// Writer compresses what is written to it into one bzip2 stream. Close must
// be called to flush the last block and write the end of stream marker.
type Writer struct {
	w        io.Writer
	workers  int
	level    int // 1-9: blocks of at most level*100000 bytes
	blockMax int // libbzip2's nblockMAX for the level
	err      error
	closed   bool

	block []byte // RLE1 output of the current block
	// current run of the RLE1 stage
	runByte int // -1 when no run is pending
	runLen  int

	bw       bitWriter
	combined uint32
	inflight []chan encoded
	wroteHdr bool
	pool     chan *encoder
	blocks   chan []byte // block buffers to reuse
}

type encoded struct {
	crc   uint32
	bits  []byte
	nbits int
}

// NewWriter returns a Writer that writes one bzip2 stream to w at level 9,
// encoding up to workers blocks at a time (values below 1 mean 1).
func NewWriter(w io.Writer, workers int) *Writer {
	return NewWriterLevel(w, workers, 9)
}

// NewWriterLevel is NewWriter with blocks of level*100,000 bytes (level
// 1-9, clamped): a decoder needs about 4 bytes per byte of block, and
// smaller blocks often compress long runs of zeros better.
func NewWriterLevel(w io.Writer, workers, level int) *Writer {
	if workers < 1 {
		workers = 1
	}
	level = min(max(level, 1), 9)
	zw := &Writer{w: w, workers: workers, level: level, blockMax: level*100000 - 19, runByte: -1, pool: make(chan *encoder, workers), blocks: make(chan []byte, workers+1)}
	zw.block = make([]byte, 0, zw.blockMax+5)
	return zw
}

// Write compresses p. It never returns a short count without an error.
func (zw *Writer) Write(p []byte) (int, error) {
	if zw.closed {
		return 0, errors.New("bzip2: write after close")
	}
	if zw.err != nil {
		return 0, zw.err
	}
	n := len(p)
	for len(p) > 0 {
		b := int(p[0])
		if b == zw.runByte && zw.runLen < 255 {
			// extend the run as far as possible
			k := 1
			lim := 255 - zw.runLen
			for k < len(p) && k < lim && p[k] == p[0] {
				k++
			}
			zw.runLen += k
			p = p[k:]
			continue
		}
		if zw.runByte >= 0 {
			zw.flushRun()
			if len(zw.block) >= zw.blockMax {
				if err := zw.endBlock(); err != nil {
					return 0, err
				}
			}
		}
		zw.runByte = b
		zw.runLen = 1
		p = p[1:]
	}
	return n, nil
}

func (zw *Writer) flushRun() {
	b := byte(zw.runByte)
	switch {
	case zw.runLen < 4:
		for range zw.runLen {
			zw.block = append(zw.block, b)
		}
	default:
		zw.block = append(zw.block, b, b, b, b, byte(zw.runLen-4))
	}
	zw.runByte = -1
	zw.runLen = 0
}

// endBlock hands the current block to a worker and writes finished blocks.
func (zw *Writer) endBlock() error {
	if len(zw.block) == 0 {
		return nil
	}
	blk := zw.block
	select {
	case b := <-zw.blocks:
		zw.block = b[:0]
	default:
		zw.block = make([]byte, 0, zw.blockMax+5)
	}
	ch := make(chan encoded, 1)
	var enc *encoder
	select {
	case enc = <-zw.pool:
	default:
		enc = new(encoder)
	}
	go func() {
		ch <- enc.encode(blk)
		select {
		case zw.blocks <- blk:
		default:
		}
		select {
		case zw.pool <- enc:
		default:
		}
	}()
	zw.inflight = append(zw.inflight, ch)
	for len(zw.inflight) >= zw.workers {
		if err := zw.writeOne(); err != nil {
			return err
		}
	}
	return nil
}

func (zw *Writer) writeOne() error {
	e := <-zw.inflight[0]
	zw.inflight = zw.inflight[1:]
	zw.combined = (zw.combined<<1 | zw.combined>>31) ^ e.crc
	zw.header()
	zw.bw.appendBits(e.bits, e.nbits)
	return zw.drain()
}

func (zw *Writer) header() {
	if !zw.wroteHdr {
		zw.bw.write(8, 'B')
		zw.bw.write(8, 'Z')
		zw.bw.write(8, 'h')
		zw.bw.write(8, uint32('0'+zw.level))
		zw.wroteHdr = true
	}
}

// drain writes the whole bytes of the bit writer to the underlying writer.
func (zw *Writer) drain() error {
	if len(zw.bw.out) == 0 {
		return nil
	}
	_, err := zw.w.Write(zw.bw.out)
	zw.bw.out = zw.bw.out[:0]
	if err != nil {
		zw.err = err
	}
	return err
}

// Close flushes the last block and writes the end of stream marker. It does
// not close the underlying writer.
func (zw *Writer) Close() error {
	if zw.closed {
		return zw.err
	}
	zw.closed = true
	if zw.err != nil {
		for range zw.inflight {
			<-zw.inflight[0]
			zw.inflight = zw.inflight[1:]
		}
		return zw.err
	}
	if zw.runByte >= 0 {
		zw.flushRun()
	}
	if err := zw.endBlock(); err != nil {
		return err
	}
	for len(zw.inflight) > 0 {
		if err := zw.writeOne(); err != nil {
			return err
		}
	}
	zw.header()
	zw.bw.write(24, 0x177245)
	zw.bw.write(24, 0x385090)
	zw.bw.write(32, zw.combined)
	zw.bw.pad()
	return zw.drain()
}

// bitWriter accumulates bits most significant first.
type bitWriter struct {
	out   []byte
	acc   uint64
	nacc  uint
	total int
}

func (b *bitWriter) write(n uint, v uint32) {
	b.acc = b.acc<<n | uint64(v)&(1<<n-1)
	b.nacc += n
	b.total += int(n)
	for b.nacc >= 8 {
		b.nacc -= 8
		b.out = append(b.out, byte(b.acc>>b.nacc))
	}
}

func (b *bitWriter) pad() {
	if b.nacc > 0 {
		b.write(8-b.nacc, 0)
	}
}

// appendBits appends the first nbits bits of bits.
func (b *bitWriter) appendBits(bits []byte, nbits int) {
	full := nbits / 8
	if b.nacc == 0 {
		b.out = append(b.out, bits[:full]...)
		b.total += full * 8
	} else {
		for _, c := range bits[:full] {
			b.write(8, uint32(c))
		}
	}
	if r := uint(nbits % 8); r > 0 {
		b.write(r, uint32(bits[full]>>(8-r)))
	}
}
