package notsotuf

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// TestBufPipe: what the writer writes, in writes of any size (some larger
// than a chunk), the reader reads back in order through reads of any size,
// while chunks are reused; then EOF, or the writer's error.
func TestBufPipe(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 5*bufPipeChunk+12345)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, wantErr := range []error{nil, errors.New("hash mismatch")} {
		p := newBufPipe(2)
		go func() {
			rest := data
			for len(rest) > 0 {
				n := min(len(rest), 1+rng.IntN(2*bufPipeChunk))
				if _, err := p.Write(rest[:n]); err != nil {
					panic(err)
				}
				rest = rest[n:]
			}
			p.closeWrite(wantErr)
		}()
		var got bytes.Buffer
		buf := make([]byte, 70000)
		var err error
		for {
			var n int
			n, err = p.Read(buf[:1+len(got.Bytes())%len(buf)])
			got.Write(buf[:n])
			if err != nil {
				break
			}
		}
		if !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("read %d bytes, not what was written", got.Len())
		}
		if wantErr == nil && err != io.EOF || wantErr != nil && err != wantErr {
			t.Fatalf("end: %v, want %v", err, wantErr)
		}
		if _, err2 := p.Read(buf); err2 != err {
			t.Fatalf("read after the end: %v, want %v again", err2, err)
		}
	}
}
