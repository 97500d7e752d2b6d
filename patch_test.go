package notsotuf_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log"

	"testing"

	"github.com/notsotuf/notsotuf"
)

func ExampleDiff() {
	old := []byte("app version 1.0: the same long body of code, data and resources")
	new := []byte("app version 1.1: the same long body of code, data and resources, and a fix")
	var patch bytes.Buffer
	if err := notsotuf.Diff(old, new, &patch, nil); err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(patch.Bytes()[:8]))
	// Output: BSDIFF40
}

func ExampleApply() {
	old := []byte("app version 1.0: the same long body of code, data and resources")
	new := []byte("app version 1.1: the same long body of code, data and resources, and a fix")
	var patch bytes.Buffer
	if err := notsotuf.Diff(old, new, &patch, nil); err != nil {
		log.Fatal(err)
	}

	// Hash the output while it is written.
	var out bytes.Buffer
	h := sha256.New()
	n, err := notsotuf.Apply(bytes.NewReader(old), int64(len(old)), &patch, io.MultiWriter(&out, h), nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, out.String() == string(new), fmt.Sprintf("%x", h.Sum(nil)) == fmt.Sprintf("%x", sha256.Sum256(new)))
	// Output: 74 true true
}

func TestApplyCorruptPatch(t *testing.T) {
	old := []byte("some old content")
	var patch bytes.Buffer
	if err := notsotuf.Diff(old, []byte("some new content"), &patch, nil); err != nil {
		t.Fatal(err)
	}
	bad := patch.Bytes()[:patch.Len()-5]
	_, err := notsotuf.Apply(bytes.NewReader(old), int64(len(old)), bytes.NewReader(bad), io.Discard, nil)
	if !errors.Is(err, notsotuf.ErrCorruptPatch) {
		t.Fatalf("err = %v, want ErrCorruptPatch", err)
	}
}
