package bsdiff

import (
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
)

// ErrCorrupt is wrapped by every error that Apply returns because the patch
// itself is malformed, truncated or does not fit the old file.
var ErrCorrupt = errors.New("corrupt patch")

// ApplyOptions tunes Apply. The zero value is ready to use.
type ApplyOptions struct {
	// Progress, if set, is called with the number of new bytes written so
	// far and the size of new announced by the patch.
	Progress func(done, total int64)
}

const bufSize = 64 << 10

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// Header is the fixed-size start of a BSDIFF40 patch.
type Header struct {
	CtrlLen, DiffLen int64 // compressed lengths of the control and diff blocks
	NewSize          int64 // size of the file the patch produces
}

// ReadHeader parses the 32-byte header. It checks the magic and that every
// length is non-negative; it cannot know whether the lengths are true.
func ReadHeader(b []byte) (Header, error) {
	if len(b) < 32 {
		return Header{}, corrupt("header is %d bytes, want 32", len(b))
	}
	if string(b[:8]) != Magic {
		return Header{}, corrupt("magic is %q, want %q", b[:8], Magic)
	}
	h := Header{CtrlLen: getInt(b[8:]), DiffLen: getInt(b[16:]), NewSize: getInt(b[24:])}
	switch {
	case h.CtrlLen < 0:
		return h, corrupt("control block length %d is negative", h.CtrlLen)
	case h.DiffLen < 0:
		return h, corrupt("diff block length %d is negative", h.DiffLen)
	case h.NewSize < 0:
		return h, corrupt("new size %d is negative", h.NewSize)
	case h.CtrlLen > math.MaxInt64/2 || h.DiffLen > math.MaxInt64/2:
		return h, corrupt("block lengths %d and %d are too large", h.CtrlLen, h.DiffLen)
	}
	return h, nil
}

// Apply reads the patch and writes the new file to w as it is produced,
// reading old (oldSize bytes) through ReadAt. Memory use does not depend on
// the file sizes. If patch is also an io.ReaderAt and io.Seeker (an *os.File
// for instance), the three blocks are read in place from its current offset;
// otherwise the compressed control and diff blocks are held in memory.
//
// Every control triple is checked against the new size in the header and
// against oldSize: errors caused by the patch wrap ErrCorrupt. Apply returns
// the number of bytes written to w, which equals the header's new size when
// the error is nil.
func Apply(old io.ReaderAt, oldSize int64, patch io.Reader, w io.Writer, opts *ApplyOptions) (int64, error) {
	var o ApplyOptions
	if opts != nil {
		o = *opts
	}
	if oldSize < 0 {
		return 0, fmt.Errorf("bsdiff: negative old size %d", oldSize)
	}
	var hb [32]byte
	if n, err := io.ReadFull(patch, hb[:]); err != nil {
		if n < len(hb) && (err == io.EOF || err == io.ErrUnexpectedEOF) {
			return 0, corrupt("truncated header (%d of 32 bytes)", n)
		}
		return 0, fmt.Errorf("reading patch header: %w", err)
	}
	h, err := ReadHeader(hb[:])
	if err != nil {
		return 0, err
	}

	var ctrlSrc, diffSrc, extraSrc io.Reader
	ra, isRA := patch.(io.ReaderAt)
	sk, isSeek := patch.(io.Seeker)
	if isRA && isSeek {
		base, err := sk.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0, fmt.Errorf("reading patch: %w", err)
		}
		ctrlSrc = io.NewSectionReader(ra, base, h.CtrlLen)
		diffSrc = io.NewSectionReader(ra, base+h.CtrlLen, h.DiffLen)
		extraSrc = io.NewSectionReader(ra, base+h.CtrlLen+h.DiffLen, math.MaxInt64-(base+h.CtrlLen+h.DiffLen))
	} else {
		var cb, db bytes.Buffer
		if _, err := io.CopyN(&cb, patch, h.CtrlLen); err != nil {
			return 0, readErr("control block", err)
		}
		if _, err := io.CopyN(&db, patch, h.DiffLen); err != nil {
			return 0, readErr("diff block", err)
		}
		ctrlSrc, diffSrc, extraSrc = &cb, &db, patch
	}
	ctrl := newBlockReader("control block", ctrlSrc, false)
	defer ctrl.close()
	diff := newBlockReader("diff block", diffSrc, true)
	defer diff.close()
	extra := newBlockReader("extra block", extraSrc, true)
	defer extra.close()

	var (
		newPos, oldPos int64
		nTriple        int64
		t              [24]byte
		dbuf           = make([]byte, bufSize)
		obuf           = make([]byte, bufSize)
		lastReport     int64
	)
	report := func() {
		if o.Progress != nil && (newPos-lastReport >= 1<<20 || newPos == h.NewSize) {
			lastReport = newPos
			o.Progress(newPos, h.NewSize)
		}
	}
	for newPos < h.NewSize {
		if err := ctrl.readFull(t[:]); err != nil {
			return newPos, fmt.Errorf("%w (after %d triples, %d of %d new bytes written)", err, nTriple, newPos, h.NewSize)
		}
		nTriple++
		add, cp, seek := getInt(t[0:]), getInt(t[8:]), getInt(t[16:])
		switch {
		case add < 0 || cp < 0:
			return newPos, corrupt("control triple %d: negative length (add %d, copy %d)", nTriple, add, cp)
		case add > h.NewSize-newPos:
			return newPos, corrupt("control triple %d: add of %d bytes at %d passes the new size %d", nTriple, add, newPos, h.NewSize)
		case add > 0 && (oldPos < 0 || oldPos > oldSize || add > oldSize-oldPos):
			return newPos, corrupt("control triple %d: add of %d bytes reads old file at %d, outside its %d bytes", nTriple, add, oldPos, oldSize)
		}
		for add > 0 {
			k := min(add, bufSize)
			d := dbuf[:k]
			if err := diff.readFull(d); err != nil {
				return newPos, err
			}
			ob := obuf[:k]
			if n, err := old.ReadAt(ob, oldPos); n < len(ob) {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return newPos, fmt.Errorf("reading old file at %d: %w", oldPos, err)
			}
			for i := range d {
				d[i] += ob[i]
			}
			if _, err := w.Write(d); err != nil {
				return newPos, err
			}
			newPos += k
			oldPos += k
			add -= k
			report()
		}
		if cp > h.NewSize-newPos {
			return newPos, corrupt("control triple %d: copy of %d bytes at %d passes the new size %d", nTriple, cp, newPos, h.NewSize)
		}
		for cp > 0 {
			k := min(cp, bufSize)
			d := dbuf[:k]
			if err := extra.readFull(d); err != nil {
				return newPos, err
			}
			if _, err := w.Write(d); err != nil {
				return newPos, err
			}
			newPos += k
			cp -= k
			report()
		}
		// Seeks may leave the old file as long as no add reads outside it;
		// keep the position far from overflow.
		if seek > 1<<62 || seek < -(1<<62) || oldPos+seek > 1<<62 || oldPos+seek < -(1<<62) {
			return newPos, corrupt("control triple %d: seek %d out of range", nTriple, seek)
		}
		oldPos += seek
	}
	// Each block must end here: this also verifies the checksums of the
	// last bzip2 block and of the stream.
	for _, br := range []*blockReader{ctrl, diff, extra} {
		if err := br.expectEOF(); err != nil {
			return newPos, err
		}
	}
	report()
	return newPos, nil
}

func readErr(what string, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return corrupt("%s is truncated", what)
	}
	return fmt.Errorf("reading patch %s: %w", what, err)
}

// blockReader decompresses one bzip2 block of the patch, optionally in a
// goroutine that stays a few buffers ahead of the reader.
type blockReader struct {
	name string
	r    io.Reader // direct reader when not asynchronous

	full chan chunk
	free chan []byte
	done chan struct{}
	wg   sync.WaitGroup
	cur  []byte
	held []byte
	err  error
	eof  bool // the block ended cleanly, at a bzip2 stream end
}

type chunk struct {
	b   []byte
	err error
}

const aheadBuffers = 4

func newBlockReader(name string, src io.Reader, async bool) *blockReader {
	br := &blockReader{name: name}
	z := bzip2.NewReader(src)
	if !async {
		br.r = z
		return br
	}
	br.full = make(chan chunk, aheadBuffers+1)
	br.free = make(chan []byte, aheadBuffers)
	br.done = make(chan struct{})
	for range aheadBuffers {
		br.free <- make([]byte, bufSize)
	}
	br.wg.Go(func() {
		for {
			var b []byte
			select {
			case b = <-br.free:
			case <-br.done:
				return
			}
			n, err := readSome(z, b)
			if n > 0 {
				br.full <- chunk{b: b[:n]}
			}
			if err != nil {
				br.full <- chunk{err: err}
				return
			}
		}
	})
	return br
}

// readSome fills b unless the stream ends or fails first. Unlike
// io.ReadFull it passes io.EOF through after a partial read, so that a clean
// end of stream stays distinct from the decoder's io.ErrUnexpectedEOF.
func readSome(r io.Reader, b []byte) (n int, err error) {
	defer func() {
		// Never let a decoder panic on a malformed patch crash the caller.
		if p := recover(); p != nil {
			err = corrupt("bzip2 decoder failed: %v", p)
		}
	}()
	for n < len(b) && err == nil {
		var k int
		k, err = r.Read(b[n:])
		n += k
	}
	return n, err
}

// readFull fills p from the block or returns an error wrapping ErrCorrupt
// when the block ends early or does not decode.
func (br *blockReader) readFull(p []byte) error {
	if br.r != nil {
		if n, err := readSome(br.r, p); n < len(p) {
			return br.wrap(err)
		}
		return nil
	}
	for len(p) > 0 {
		if len(br.cur) == 0 {
			if br.err != nil {
				return br.err
			}
			if br.held != nil {
				br.free <- br.held[:cap(br.held)]
				br.held = nil
			}
			c := <-br.full
			if c.err != nil {
				br.err = br.wrap(c.err)
				return br.err
			}
			br.held, br.cur = c.b, c.b
		}
		k := copy(p, br.cur)
		br.cur = br.cur[k:]
		p = p[k:]
	}
	return nil
}

// wrap names the block in err; a decoding failure or an early end of the
// block wraps ErrCorrupt, an error of the underlying reader does not.
func (br *blockReader) wrap(err error) error {
	var se bzip2.StructuralError
	switch {
	case err == io.EOF:
		br.eof = true
		return corrupt("%s ends early", br.name)
	case err == io.ErrUnexpectedEOF:
		return corrupt("%s ends early", br.name)
	case errors.As(err, &se):
		return corrupt("%s: %v", br.name, err)
	case errors.Is(err, ErrCorrupt):
		return fmt.Errorf("%s: %w", br.name, err)
	default:
		return fmt.Errorf("reading patch %s: %w", br.name, err)
	}
}

// expectEOF checks that the block has no more data and ends cleanly.
func (br *blockReader) expectEOF() error {
	var b [1]byte
	err := br.readFull(b[:])
	switch {
	case err == nil:
		return corrupt("%s has data past the end of the new file", br.name)
	case br.eof:
		return nil
	}
	return err
}

func (br *blockReader) close() {
	if br.done != nil {
		close(br.done)
		br.wg.Wait()
	}
}
