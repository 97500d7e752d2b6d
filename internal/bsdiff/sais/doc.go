// Package sais builds suffix arrays by induced sorting (SA-IS).
//
// The algorithm is Go's own index/suffixarray implementation, copied because
// that package does not export the array it builds.
package sais

// MaxLen is the longest text Build accepts.
const MaxLen = 1<<31 - 2

// Build writes the suffix array of text into sa: sa[i] is the start of the
// i-th smallest suffix. len(sa) must equal len(text) (its contents do not
// matter), and len(text) must not
// exceed MaxLen.
func Build(text []byte, sa []int32) {
	if len(sa) != len(text) || len(text) > MaxLen {
		panic("sais: misuse of Build")
	}
	if len(text) == 0 {
		return
	}
	clear(sa)
	text_32(text, sa)
}
