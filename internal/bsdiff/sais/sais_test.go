package sais

import (
	"bytes"
	"math/rand/v2"
	"sort"
	"testing"
)

func TestBuildMatchesNaiveSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 10, 100, 1000, 5000} {
		for _, alpha := range []int{1, 2, 4, 256} {
			text := make([]byte, n)
			for i := range text {
				text[i] = byte(r.IntN(alpha))
			}
			sa := make([]int32, n)
			Build(text, sa)
			want := make([]int32, n)
			for i := range want {
				want[i] = int32(i)
			}
			sort.Slice(want, func(a, b int) bool { return bytes.Compare(text[want[a]:], text[want[b]:]) < 0 })
			for i := range sa {
				if sa[i] != want[i] {
					t.Fatalf("n=%d alpha=%d: sa[%d]=%d, want %d", n, alpha, i, sa[i], want[i])
				}
			}
		}
	}
}
