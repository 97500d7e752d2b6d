package compact

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"

	"github.com/notsotuf/notsotuf/internal/bsdiff"
	"github.com/notsotuf/notsotuf/internal/flate"
)

// Scratch holds the decompressed sections of the old file while a patch is
// applied: written once, in order, then read at random.
type Scratch interface {
	io.Writer
	io.ReaderAt
}

// ApplyOptions tunes Apply. The zero value is ready to use.
type ApplyOptions struct {
	// Progress, if set, is called with the bytes of new written so far and
	// the new size.
	Progress func(done, total int64)
	// Scratch, if set, returns where to keep the decompressed old sections
	// (a temporary file) and a function that removes it; nil keeps them in
	// memory. It is called only when the patch has such sections.
	Scratch func() (Scratch, func(), error)
}

// Apply reads a compact patch and writes the file it produces to w as it
// goes, reading the old file (oldSize bytes) through ReadAt. Memory use
// does not depend on the file sizes (but for the address maps in the
// header, and the decompressed old sections when opts.Scratch is nil).
// Errors caused by the patch wrap ErrCorrupt. Apply returns the number of
// bytes written to w, the header's new size when the error is nil.
func Apply(old io.ReaderAt, oldSize int64, patch io.Reader, w io.Writer, opts *ApplyOptions) (n int64, err error) {
	var o ApplyOptions
	if opts != nil {
		o = *opts
	}
	if oldSize < 0 {
		return 0, fmt.Errorf("compact: negative old size %d", oldSize)
	}
	h, err := readHeader(patch, oldSize)
	if err != nil {
		return 0, err
	}

	// old*: old and its decompressed sections.
	var ext int64
	for _, e := range h.Exps {
		ext += e.ULen
	}
	var ostar io.ReaderAt = old
	if ext > 0 {
		var sc Scratch
		if o.Scratch != nil {
			s, cleanup, err := o.Scratch()
			if err != nil {
				return 0, err
			}
			defer cleanup()
			sc = s
		} else {
			sc = &memScratch{}
		}
		for i, e := range h.Exps {
			if err := inflateExp(old, e, sc); err != nil {
				return 0, fmt.Errorf("old section %d (%d bytes at %d): %w", i, e.CLen, e.Off, err)
			}
		}
		ostar = &concatAt{a: old, aSize: oldSize, b: sc}
	}

	inv := &inverter{w: w, h: h, maps: make([]*codeMaps, len(h.mapData)), lastRegion: make([]int, len(h.mapData))}
	for i, d := range h.mapData {
		inv.maps[i] = &codeMaps{data: d, count: h.mapCounts[i]}
	}
	for i, r := range h.Regions {
		if r.Kind != kindZlib {
			inv.lastRegion[r.Map] = i
		}
	}
	var bo bsdiff.ApplyOptions
	if o.Progress != nil {
		bo.Progress = func(done, total int64) {
			if h.InnerSize > 0 {
				o.Progress(done*h.NewSize/h.InnerSize, h.NewSize)
			}
		}
	}
	m, err := bsdiff.Apply(ostar, oldSize+ext, patch, inv, &bo)
	inv.abort()
	if err != nil {
		if inv.err != nil {
			err = inv.err // the inverter's error is the cause
		}
		return inv.out, err
	}
	if m != h.InnerSize {
		return inv.out, corrupt("the BSDIFF40 part writes %d bytes, the header says %d", m, h.InnerSize)
	}
	if inv.ri != len(h.Regions) || inv.out != h.NewSize {
		return inv.out, corrupt("output is %d bytes, the header says %d", inv.out, h.NewSize)
	}
	return inv.out, nil
}

// inflateExp appends to sc the ULen bytes that the zlib stream at old[Off:
// Off+CLen] inflates to; the stream must end there.
func inflateExp(old io.ReaderAt, e expansion, sc Scratch) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = corrupt("inflating: %v", p)
		}
	}()
	zr, err := zlib.NewReader(io.NewSectionReader(old, e.Off, e.CLen))
	if err != nil {
		return corrupt("not a zlib stream: %v", err)
	}
	n, err := io.Copy(markWrites{sc}, io.LimitReader(zr, e.ULen))
	if err != nil {
		var we *writeError
		if errors.As(err, &we) {
			return we.err
		}
		return corrupt("inflating: %v", err)
	}
	if n < e.ULen {
		return corrupt("inflates to %d bytes, the patch says %d", n, e.ULen)
	}
	var one [1]byte
	if k, err := zr.Read(one[:]); k != 0 || err != io.EOF {
		return corrupt("inflates to more than the %d bytes the patch says", e.ULen)
	}
	return nil
}

// writeError marks an error of the scratch file (not of the patch).
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

type markWrites struct{ w io.Writer }

func (m markWrites) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

// memScratch keeps the decompressed sections in memory.
type memScratch struct{ b []byte }

func (m *memScratch) Write(p []byte) (int, error) {
	m.b = append(m.b, p...)
	return len(p), nil
}

func (m *memScratch) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(m.b).ReadAt(p, off)
}

// concatAt reads a then b as one file.
type concatAt struct {
	a     io.ReaderAt
	aSize int64
	b     io.ReaderAt
}

func (c *concatAt) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	if off < c.aSize {
		k := min(int64(len(p)), c.aSize-off)
		m, err := c.a.ReadAt(p[:k], off)
		n += m
		if m < int(k) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		p, off = p[k:], off+k
	}
	if len(p) == 0 {
		return n, nil
	}
	m, err := c.b.ReadAt(p, off-c.aSize)
	return n + m, err
}

// inverter receives new* from the BSDIFF40 part and writes new: it
// recompresses the zlib regions and undoes the rewriting of code regions.
type inverter struct {
	w          io.Writer
	h          *header
	maps       []*codeMaps
	lastRegion []int // per map, the last region that uses it

	pos int64 // bytes of new* received
	out int64 // bytes of new written
	ri  int   // current region

	z    *compressor
	zc   *limitWriter
	code *codeInverter
	err  error
}

func (v *inverter) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if _, err := v.w.Write(p); err != nil {
		return err
	}
	v.out += int64(len(p))
	return nil
}

func (v *inverter) Write(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n := len(p)
	if int64(len(p)) > v.h.InnerSize-v.pos {
		v.err = corrupt("the BSDIFF40 part writes more than the %d bytes the header says", v.h.InnerSize)
		return 0, v.err
	}
	for len(p) > 0 {
		var r *region
		if v.ri < len(v.h.Regions) {
			r = &v.h.Regions[v.ri]
		}
		if r == nil || v.pos < r.Start {
			k := int64(len(p))
			if r != nil {
				k = min(k, r.Start-v.pos)
			}
			if err := v.write(p[:k]); err != nil {
				v.err = err
				return 0, err
			}
			v.pos += k
			p = p[k:]
			continue
		}
		k := min(int64(len(p)), r.Start+r.Len-v.pos)
		if err := v.region(r, p[:k]); err != nil {
			v.err = err
			return 0, err
		}
		v.pos += k
		p = p[k:]
		if v.pos == r.Start+r.Len {
			if err := v.endRegion(r); err != nil {
				v.err = err
				return 0, err
			}
			v.ri++
		}
	}
	return n, nil
}

func (v *inverter) region(r *region, p []byte) error {
	switch r.Kind {
	case kindZlib:
		if v.z == nil {
			v.zc = &limitWriter{w: v, max: r.CLen}
			v.z = newCompressor(v.zc)
		}
		v.z.write(p)
	default:
		if v.code == nil {
			v.code = &codeInverter{kind: r.Kind, va: r.VA, length: r.Len, maps: v.maps[r.Map]}
		}
		out := v.code.push(p)
		err := v.write(out)
		v.code.consumed()
		return err
	}
	return nil
}

func (v *inverter) endRegion(r *region) error {
	switch r.Kind {
	case kindZlib:
		err := v.z.close()
		v.z = nil
		if err != nil {
			return v.zc.cause(err)
		}
		if v.zc.n != r.CLen {
			return corrupt("region %d recompresses to %d bytes, the patch says %d", v.ri, v.zc.n, r.CLen)
		}
		v.z, v.zc = nil, nil
	default:
		if len(v.code.buf) != 0 {
			return corrupt("region %d: internal error: %d bytes held back", v.ri, len(v.code.buf))
		}
		v.code = nil
		if v.lastRegion[r.Map] == v.ri {
			v.maps[r.Map].lastUse() // free it: one executable's map at a time
		}
	}
	return nil
}

// abort stops a compressor left running by an error.
func (v *inverter) abort() {
	if v.z != nil {
		v.z.close()
		v.z = nil
	}
}

// compressor recompresses a zlib region on its own goroutine, so that the
// deflate encoder runs beside the BSDIFF40 part that produces its input.
// Only it writes to the output while the region lasts: the inverter waits
// for close before it writes anything else.
type compressor struct {
	ch   chan []byte // region bytes, in order
	free chan []byte // buffers to reuse
	done chan error
}

const compressorBuffers = 4

func newCompressor(w io.Writer) *compressor {
	c := &compressor{ch: make(chan []byte, compressorBuffers), free: make(chan []byte, compressorBuffers+1), done: make(chan error, 1)}
	go func() {
		zw := flate.NewZlibWriter(w)
		var err error
		for b := range c.ch {
			if err == nil {
				_, err = zw.Write(b)
			}
			select {
			case c.free <- b[:0]:
			default: // enough buffers to reuse
			}
		}
		if err == nil {
			err = zw.Close()
		}
		c.done <- err
	}()
	return c
}

// write hands a copy of p to the compressor.
func (c *compressor) write(p []byte) {
	var b []byte
	select {
	case b = <-c.free:
	default:
	}
	c.ch <- append(b, p...)
}

// close waits for the compressor to finish and returns its error.
func (c *compressor) close() error {
	close(c.ch)
	return <-c.done
}

// limitWriter passes at most max bytes to the inverter's output.
type limitWriter struct {
	w    *inverter
	n    int64
	max  int64
	over bool
	err  error
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.max-l.n {
		l.over = true
		return 0, corrupt("a section recompresses to more than the %d bytes the patch says", l.max)
	}
	if err := l.w.write(p); err != nil {
		l.err = err
		return 0, err
	}
	l.n += int64(len(p))
	return len(p), nil
}

// cause returns the error that stopped the compressor.
func (l *limitWriter) cause(err error) error {
	if l.err != nil {
		return l.err
	}
	if l.over {
		return corrupt("a section recompresses to more than the %d bytes the patch says", l.max)
	}
	return err
}
