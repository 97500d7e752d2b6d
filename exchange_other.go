//go:build !linux && !darwin

package notsotuf

// osExchange: no atomic exchange of two paths here (Windows, the BSDs):
// the installer swaps a tree with two renames.
func osExchange(a, b string) error { return errNoExchange }
