package notsotuf

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// manyEntriesTar streams a tar of about n empty files in directories of
// perDir, with node_modules-like names ("./node_modules/package-00012/
// module-000345.js", 45 bytes), as the header of each is needed: the
// archive is never held in memory.
func manyEntriesTar(n, perDir int) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		write := func(h *tar.Header) error {
			h.Mode, h.Format = 0o644, tar.FormatUSTAR
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
			return tw.WriteHeader(h)
		}
		err := write(&tar.Header{Name: "./", Typeflag: tar.TypeDir})
		for i := 0; i < n && err == nil; i++ {
			dir := fmt.Sprintf("./node_modules/package-%05d/", i/perDir)
			if i%perDir == 0 {
				err = write(&tar.Header{Name: dir, Typeflag: tar.TypeDir})
			}
			if err == nil {
				err = write(&tar.Header{Name: fmt.Sprintf("%smodule-%06d.js", dir, i), Typeflag: tar.TypeReg})
			}
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// heapSampler records the peak of the heap's object bytes while it runs.
// With a low GOGC the collector runs often, so the peak is close to the
// peak of live memory.
type heapSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	peak uint64
}

func startHeapSampler() *heapSampler {
	s := &heapSampler{stop: make(chan struct{})}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() {
		metrics.Read(sample)
		if v := sample[0].Value.Uint64(); v > s.peak {
			s.peak = v
		}
	}
	read()
	s.wg.Go(func() {
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				read()
				return
			case <-t.C:
				read()
			}
		}
	})
	return s
}

func (s *heapSampler) finish() uint64 {
	close(s.stop)
	s.wg.Wait()
	return s.peak
}

func heapObjects() uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

// extractHeapPerEntry extracts and verifies a tar of n empty files into a
// real temp dir, as the installer does, and returns per archive entry the
// heap still held by the manifest afterwards and the peak heap growth
// during extraction and verification.
func extractHeapPerEntry(tb testing.TB, n int) (retained, peak float64) {
	fsys := afero.NewOsFs()
	dst, err := os.MkdirTemp(tb.TempDir(), "x")
	if err != nil {
		tb.Fatal(err)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	r := manyEntriesTar(n, 100)
	base := heapObjects()
	s := startHeapSampler()
	m, err := extractTar(context.Background(), fsys, dst, "many.tar", r, 1<<40)
	if err == nil {
		err = verifyTree(fsys, dst, m)
	}
	top := s.finish()
	if err != nil {
		tb.Fatal(err)
	}
	after := heapObjects()
	runtime.KeepAlive(m)
	entries := float64(n + n/100 + 2) // files, package dirs, node_modules, root
	return float64(int64(after)-int64(base)) / entries, float64(top-base) / entries
}

// BenchmarkExtractManyEntries reports the heap an extraction needs per
// archive entry (retained: the manifest kept until the install commits;
// peak: during extraction and verification), not time.
func BenchmarkExtractManyEntries(b *testing.B) {
	for _, n := range []int{20000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var retained, peak float64
			for range b.N {
				retained, peak = extractHeapPerEntry(b, n)
			}
			b.ReportMetric(retained, "retained-B/entry")
			b.ReportMetric(peak, "peak-B/entry")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// TestExtractMemoryPerEntry: the manifest an extraction keeps until the
// install commits costs tens of bytes per archive entry, not hundreds
// (issue 9: 600,000 empty files took 257 MB). Heap bytes, not time.
func TestExtractMemoryPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 30,000 files")
	}
	retained, peak := extractHeapPerEntry(t, 30000)
	t.Logf("heap per entry: %.0f B retained, %.0f B at the peak", retained, peak)
	if retained > 100 || peak > 200 {
		t.Errorf("heap per entry: %.0f B retained (want <= 100), %.0f B at the peak (want <= 200)", retained, peak)
	}
}

// manyEntriesCount is the number of entries of manyEntriesTar(n, 100),
// the top entry left out (it is the tree, not an entry of it).
func manyEntriesCount(n int) int { return n + (n+99)/100 + 1 }

// TestArchiveEntryLimits: an archive beyond the entry or name limits is
// refused, with an error that names the limit, whatever its size on
// disk; one at the limit passes. (checkTar shares the manifest with
// extractTar: same limits, nothing written.)
func TestArchiveEntryLimits(t *testing.T) {
	ctx := context.Background()
	small := archiveLimits{entries: 1000, names: 20000}
	n := small.entries
	for manyEntriesCount(n) > small.entries {
		n--
	}
	if manyEntriesCount(n) != small.entries {
		t.Fatalf("no file count gives exactly %d entries", small.entries)
	}
	m, _, err := checkTar(ctx, "many.tar", manyEntriesTar(n, 100), 1<<40, small)
	if err != nil || m.count() != small.entries {
		t.Fatalf("an archive of %d entries: %v", small.entries, err)
	}
	_, _, err = checkTar(ctx, "many.tar", manyEntriesTar(n+1, 100), 1<<40, small)
	if !errors.Is(err, ErrUnsafeArchive) || !strings.Contains(err.Error(), "more than 1000 entries") || !strings.Contains(err.Error(), "many.tar") {
		t.Fatalf("an archive of %d entries: %v, want the entry limit", small.entries+1, err)
	}

	// Names: 255-byte elements, up to the limit and one more.
	names := func(count int) io.Reader {
		pr, pw := io.Pipe()
		go func() {
			tw := tar.NewWriter(pw)
			var err error
			for i := 0; err == nil && i < count; i++ {
				err = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("%0250d.txt", i), Typeflag: tar.TypeReg, Mode: 0o644, Format: tar.FormatPAX})
			}
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		return pr
	}
	if _, _, err := checkTar(ctx, "names.tar", names(small.names/254), 1<<40, small); err != nil {
		t.Fatalf("%d bytes of names: %v", small.names/254*254, err)
	}
	_, _, err = checkTar(ctx, "names.tar", names(small.names/254+1), 1<<40, small)
	if !errors.Is(err, ErrUnsafeArchive) || !strings.Contains(err.Error(), "more than 20000 bytes") {
		t.Fatalf("too many bytes of names: %v, want the name limit", err)
	}

	// The clients' limit itself, with a streamed archive of 400,001
	// entries (200 MB of headers, read but never stored).
	if testing.Short() {
		return
	}
	n = maxArchiveEntries
	for manyEntriesCount(n) > maxArchiveEntries {
		n--
	}
	_, _, err = checkTar(ctx, "many.tar", manyEntriesTar(n+1, 100), 1<<40, clientLimits)
	if !errors.Is(err, ErrUnsafeArchive) || !strings.Contains(err.Error(), "more than 400000 entries") {
		t.Fatalf("an archive of %d entries: %v, want the entry limit", manyEntriesCount(n+1), err)
	}
}

// TestExtractLinkWorkBounded: a hostile publisher's archive of many
// short symbolic links, each near the per-link bound of resolution steps
// (through another link: "s" is 16 steps, each link goes through "s" 240
// times), is refused once the archive's total is spent, instead of
// keeping the client busy for minutes.
func TestExtractLinkWorkBounded(t *testing.T) {
	s := strings.TrimSuffix(strings.Repeat("./", 16), "/")
	target := strings.TrimSuffix(strings.Repeat("s/", 240), "/")
	count := maxTotalLinkSteps/(240*17) + 2
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Name: "s", Typeflag: tar.TypeSymlink, Linkname: s, Mode: 0o777, Format: tar.FormatPAX})
		for i := 0; err == nil && i < count; i++ {
			err = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("l%d", i), Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777, Format: tar.FormatPAX})
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	_, _, err := checkTar(context.Background(), "links.tar", pr, 1<<40, clientLimits)
	if !errors.Is(err, ErrUnsafeArchive) || !strings.Contains(err.Error(), "symbolic links takes more than") {
		t.Fatalf("checkTar: %v, want the link work bound", err)
	}
}
