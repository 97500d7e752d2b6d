package notsotuf

import (
	"io"
	"sync"
)

// bufPipe is an in-memory pipe with a bounded buffer of whole writes, so
// that the writer can run ahead of the reader: the client's patch (CPU
// bound) and extraction (file creation bound) then overlap instead of
// taking turns as they would over io.Pipe. At most depth writes, each
// copied, are held at once; a write larger than maxChunk is split.
type bufPipe struct {
	ch   chan []byte // filled chunks, in order; closed by closeWrite
	free chan []byte // chunks the reader is done with, for reuse

	mu     sync.Mutex
	err    error // what the reader gets after the last chunk (nil: io.EOF)
	closed bool

	held []byte // reader: the chunk being read
	cur  []byte // reader: the rest of it
}

const bufPipeChunk = 256 << 10

func newBufPipe(depth int) *bufPipe {
	return &bufPipe{ch: make(chan []byte, depth), free: make(chan []byte, depth+2)}
}

// Write copies p into the pipe, blocking while depth chunks are pending.
// It must not be called after closeWrite.
func (p *bufPipe) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		m := min(len(b), bufPipeChunk)
		var c []byte
		select {
		case c = <-p.free:
		default:
			c = make([]byte, 0, bufPipeChunk)
		}
		c = append(c[:0], b[:m]...)
		p.ch <- c
		b, n = b[m:], n+m
	}
	return n, nil
}

// closeWrite ends the stream: after the chunks already written, the
// reader gets err, or io.EOF when err is nil.
func (p *bufPipe) closeWrite(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed, p.err = true, err
	close(p.ch)
}

// Read reads from the pipe, blocking until a chunk is available or the
// writer closed it.
func (p *bufPipe) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for len(p.cur) == 0 {
		if p.held != nil {
			select {
			case p.free <- p.held[:0]: // read: the writer may reuse it
			default:
			}
			p.held = nil
		}
		c, ok := <-p.ch
		if !ok {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.err != nil {
				return 0, p.err
			}
			return 0, io.EOF
		}
		p.held, p.cur = c, c
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}
