package notsotuf

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// bigReleaseFiles is release n of an app of about 1.5 MB, mostly the same
// bytes from one release to the next, so that every phase of its update
// spans several progress steps.
func bigReleaseFiles(n int) map[string]string {
	files := releaseFiles(n)
	blob := randomBytes(1<<20, 7)
	copy(blob[1000:], fmt.Sprintf("release %d", n))
	files["lib/big.bin"] = string(blob)
	files["share/data.bin"] = string(randomBytes(400<<10, 8))
	return files
}

// progressLog records the reports of a client call and checks, as they
// come, that the callback is never called twice at once.
type progressLog struct {
	t       *testing.T
	events  []Progress
	inside  atomic.Int32
	overlap atomic.Bool
}

func (l *progressLog) record(p Progress) {
	if l.inside.Add(1) > 1 {
		l.overlap.Store(true)
	}
	l.events = append(l.events, p)
	l.inside.Add(-1)
}

// phases lists the phases in the order they were reported, each once per
// run of consecutive reports.
func (l *progressLog) phases() []Phase {
	var out []Phase
	for _, e := range l.events {
		if len(out) == 0 || out[len(out)-1] != e.Phase {
			out = append(out, e.Phase)
		}
	}
	return out
}

// check applies the rules of Progress to the reports: phases in their
// order (allowBack: except one return to download, a fallback), Done never
// decreasing within a phase and at most Total, the last report of a phase
// with Done == Total, the overall never going back and ending complete.
func (l *progressLog) check(allowBack bool) {
	t := l.t
	t.Helper()
	if l.overlap.Load() {
		t.Error("the callback was called twice at once")
	}
	if len(l.events) == 0 {
		t.Fatal("no progress reported")
	}
	backs := 0
	var prevFrac float64
	var prevOverall int64
	for k, e := range l.events {
		if e.Done > e.Total || e.Done < 0 {
			t.Errorf("report %d: %+v: done beyond total", k, e)
		}
		if e.OverallDone > e.OverallTotal {
			t.Errorf("report %d: %+v: overall done beyond total", k, e)
		}
		if e.OverallDone < prevOverall {
			t.Errorf("report %d: %+v: overall done went back from %d", k, e, prevOverall)
		}
		prevOverall = e.OverallDone
		if e.OverallTotal > 0 {
			f := float64(e.OverallDone) / float64(e.OverallTotal)
			if f < prevFrac-1e-9 {
				t.Errorf("report %d: %+v: overall fraction went back from %.4f to %.4f", k, e, prevFrac, f)
			}
			prevFrac = f
		} else if k > 0 && l.events[k-1].OverallTotal > 0 {
			t.Errorf("report %d: %+v: the overall became unknown again", k, e)
		}
		if k == 0 {
			continue
		}
		prev := l.events[k-1]
		switch pi, ei := phaseIndex(prev.Phase), phaseIndex(e.Phase); {
		case pi == ei:
			if e.Done < prev.Done {
				t.Errorf("report %d: %+v: done went back from %d", k, e, prev.Done)
			}
		case ei < pi:
			// A fallback gives up the phase under way.
			backs++
			if !allowBack || e.Phase != PhaseDownload || backs > 1 {
				t.Errorf("report %d: %+v comes after %s", k, e, prev.Phase)
			}
		default:
			if prev.Done != prev.Total {
				t.Errorf("phase %s ended at %d of %d", prev.Phase, prev.Done, prev.Total)
			}
		}
	}
	last := l.events[len(l.events)-1]
	if last.Done != last.Total || last.OverallTotal == 0 || last.OverallDone != last.OverallTotal {
		t.Errorf("last report %+v: want the phase and the overall complete", last)
	}
}

// TestProgressPhases: an update by patch and one by the full archive
// report their phases in order, each one's work never going back and
// ending complete, and the overall never going back and ending complete.
// Check alone reports the refresh, complete.
func TestProgressPhases(t *testing.T) {
	repo := newTestRepo(t, false)
	r10 := buildRelease(t, "1.0", bigReleaseFiles(0))
	r11 := buildRelease(t, "1.1", bigReleaseFiles(1))
	repo.publishRelease("app", r10, nil, false, "")
	repo.publishRelease("app", r11, makePatch(t, r10, r11), false, "")

	for _, tc := range []struct {
		name   string
		full   bool
		phases []Phase
	}{
		{"patch", false, []Phase{PhaseRefresh, PhaseDownload, PhasePatch, PhaseExtract, PhaseVerify, PhaseInstall}},
		{"full", true, []Phase{PhaseRefresh, PhaseDownload, PhaseExtract, PhaseVerify, PhaseInstall}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys, cfg := osClientConfig(t, repo, "1.0")
			writeTree(t, fsys, cfg.InstallDir, r10.files)
			cfg.ForceFull = tc.full
			var downloads [][2]int64
			cfg.Progress = func(done, total int64) { downloads = append(downloads, [2]int64{done, total}) }
			log := &progressLog{t: t}
			// Which release the install directory holds at each report:
			// every phase but the install's end comes before the swap.
			var swapped []bool
			cfg.OnProgress = func(p Progress) {
				log.record(p)
				b, _ := afero.ReadFile(fsys, filepath.Join(cfg.InstallDir, "app"))
				swapped = append(swapped, string(b) == r11.files["app"])
			}
			u, err := newTestClient(t, cfg).Update(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if u.Plan.Full != tc.full {
				t.Fatalf("plan %+v", u.Plan)
			}
			wantTree(t, fsys, cfg.InstallDir, r11.files)
			log.check(false)
			if got := log.phases(); !slices.Equal(got, tc.phases) {
				t.Errorf("phases %v, want %v", got, tc.phases)
			}
			// A phase of more than two steps of work reports along the
			// way, not only at its start and end (but verify, whose
			// checks of the tree are not counted: it reports its start
			// and end; and extract after a patch, which reports what the
			// patch left: the extraction ran during the patch).
			count, total := map[Phase]int{}, map[Phase]int64{}
			for _, e := range log.events {
				count[e.Phase]++
				total[e.Phase] = e.Total
			}
			for p, n := range total {
				if p != PhaseVerify && !(p == PhaseExtract && !tc.full) && n > 2*progressStep && count[p] < 3 {
					t.Errorf("phase %s: %d reports for %d bytes", p, count[p], n)
				}
			}
			for k, e := range log.events {
				if want := k == len(log.events)-1; swapped[k] != want {
					t.Errorf("report %+v: new release in place: %v, want %v", e, swapped[k], want)
				}
			}
			// Each phase reports its start, then its end (but extract
			// after a patch, which may be over when the patch is).
			first := map[Phase]Progress{}
			for _, e := range log.events {
				if _, ok := first[e.Phase]; !ok {
					first[e.Phase] = e
				}
			}
			for p, e := range first {
				if !(p == PhaseExtract && !tc.full) && (count[p] < 2 || e.Done == e.Total && e.Total > 0) {
					t.Errorf("phase %s: first report %+v of %d: want its start", p, e, count[p])
				}
			}
			if total[PhaseExtract] <= 2*progressStep || !tc.full && total[PhasePatch] <= 2*progressStep {
				t.Errorf("the release is too small to test the reports along the way: %v", total)
			}
			// The download phase counts the plan's bytes; the deprecated
			// callback still sees them.
			for _, e := range log.events {
				if e.Phase == PhaseDownload && e.Total != u.Plan.Bytes {
					t.Errorf("download report %+v: want a total of %d", e, u.Plan.Bytes)
				}
			}
			if len(downloads) == 0 || downloads[len(downloads)-1] != [2]int64{u.Plan.Bytes, u.Plan.Bytes} {
				t.Errorf("Progress (deprecated) ended at %v, want %d bytes", downloads[len(downloads)-1:], u.Plan.Bytes)
			}
			// The overall is unknown while the refresh runs (its last
			// report comes when the next phase starts), known after,
			// and the same from then on.
			for k, e := range log.events {
				switch {
				case k == 0 && e.OverallTotal != 0:
					t.Errorf("report %+v: the overall is known before the plan", e)
				case e.Phase != PhaseRefresh && e.OverallTotal != last(log).OverallTotal:
					t.Errorf("report %+v: the overall total changed (last: %d)", e, last(log).OverallTotal)
				}
			}
		})
	}

	t.Run("check", func(t *testing.T) {
		fsys, cfg := osClientConfig(t, repo, "1.0")
		writeTree(t, fsys, cfg.InstallDir, r10.files)
		log := &progressLog{t: t}
		cfg.OnProgress = log.record
		if _, err := newTestClient(t, cfg).Check(context.Background()); err != nil {
			t.Fatal(err)
		}
		log.check(false)
		if got := log.phases(); !slices.Equal(got, []Phase{PhaseRefresh}) {
			t.Errorf("phases %v", got)
		}
		if last := log.events[len(log.events)-1]; last.Total < 1000 || last.OverallTotal != last.Total {
			t.Errorf("last report %+v: want the metadata's bytes", last)
		}
	})
}

// TestProgressFallback: when the patch fails and the full archive follows
// in the same call, the reports go back to download once, and the overall
// still never goes back and ends complete.
func TestProgressFallback(t *testing.T) {
	repo := newTestRepo(t, false)
	r10 := buildRelease(t, "1.0", bigReleaseFiles(0))
	r11 := buildRelease(t, "1.1", bigReleaseFiles(1))
	other := buildRelease(t, "1.1", bigReleaseFiles(5))
	repo.publishRelease("app", r10, nil, false, "")
	repo.publishRelease("app", r11, makePatch(t, r10, other), false, "") // a patch to the wrong tar
	fsys, cfg := osClientConfig(t, repo, "1.0")
	writeTree(t, fsys, cfg.InstallDir, r10.files)
	log := &progressLog{t: t}
	cfg.OnProgress = log.record
	u, err := newTestClient(t, cfg).Update(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if u.Result.Fallback == "" {
		t.Fatalf("no fallback: %+v", u.Result)
	}
	wantTree(t, fsys, cfg.InstallDir, r11.files)
	log.check(true)
	got := log.phases()
	if i := slices.Index(got, PhasePatch); i < 0 || !slices.Contains(got[i:], PhaseDownload) || got[len(got)-1] != PhaseInstall {
		t.Errorf("phases %v: want download again after patch, then the install", got)
	}
	var last Progress
	for _, e := range log.events {
		if e.Phase == PhaseDownload {
			last = e
		}
	}
	if want := u.Plan.Bytes + int64(len(r11.archive)); last.Total != want {
		t.Errorf("download ended at %+v, want %d bytes (the patch and the archive)", last, want)
	}
}

// TestProgressFailedCall: a call that fails stops reporting where it
// failed, without claiming the work complete.
func TestProgressFailedCall(t *testing.T) {
	repo := newTestRepo(t, false)
	r10 := buildRelease(t, "1.0", bigReleaseFiles(0))
	r11 := buildRelease(t, "1.1", bigReleaseFiles(1))
	repo.publishRelease("app", r10, nil, false, "")
	repo.publishRelease("app", r11, nil, false, "")
	repo.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".tar.gz") {
			http.NotFound(w, r)
			return true
		}
		return false
	})
	fsys, cfg := osClientConfig(t, repo, "1.0")
	writeTree(t, fsys, cfg.InstallDir, r10.files)
	log := &progressLog{t: t}
	cfg.OnProgress = log.record
	if _, err := newTestClient(t, cfg).Update(context.Background()); err == nil {
		t.Fatal("the update succeeded without its archive")
	}
	last := log.events[len(log.events)-1]
	if last.Phase != PhaseDownload || last.OverallDone == last.OverallTotal {
		t.Errorf("last report %+v: want the download, unfinished", last)
	}
}

func last(l *progressLog) Progress { return l.events[len(l.events)-1] }

// TestProgressSingleExecutable: in single-executable mode too, a full
// install and an update by patch report their phases in order, complete.
func TestProgressSingleExecutable(t *testing.T) {
	repo := newTestRepo(t, false)
	exe := func(n int) map[string]string {
		b := randomBytes(1<<20, 9)
		copy(b[5000:], fmt.Sprintf("version %d", n))
		return map[string]string{"app": string(b)}
	}
	r1, r2 := buildRelease(t, "1.0", exe(1)), buildRelease(t, "2.0", exe(2))
	repo.publishRelease("app", r1, nil, false, "")
	fsys, cfg := osClientConfig(t, repo, "0")
	cfg.InstallDir = filepath.Join(filepath.Dir(cfg.InstallDir), "bin", "app")
	cfg.SingleExecutable = true
	for _, step := range []struct {
		current string
		phases  []Phase
	}{
		{"0", []Phase{PhaseRefresh, PhaseDownload, PhaseExtract, PhaseVerify, PhaseInstall}},
		{"1.0", []Phase{PhaseRefresh, PhaseDownload, PhasePatch, PhaseExtract, PhaseVerify, PhaseInstall}},
	} {
		if step.current == "1.0" {
			repo.publishRelease("app", r2, makePatch(t, r1, r2), false, "")
		}
		cfg.CurrentVersion = step.current
		log := &progressLog{t: t}
		cfg.OnProgress = log.record
		if _, err := newTestClient(t, cfg).Update(context.Background()); err != nil {
			t.Fatal(err)
		}
		log.check(false)
		if got := log.phases(); !slices.Equal(got, step.phases) {
			t.Errorf("from %s: phases %v, want %v", step.current, got, step.phases)
		}
	}
	if b, _ := afero.ReadFile(fsys, cfg.InstallDir); string(b) != r2.files["app"] {
		t.Fatal("the executable is not release 2.0's")
	}
}

// TestProgressCallbackCallsClient: a callback that calls the client gets
// an error instead of waiting for itself forever, and the update goes on.
func TestProgressCallbackCallsClient(t *testing.T) {
	repo := newTestRepo(t, false)
	rels := threeReleases(t, repo)
	fsys, cfg := osClientConfig(t, repo, "1.0")
	writeTree(t, fsys, cfg.InstallDir, rels[0].files)
	var c *Client
	var errs []error
	cfg.OnProgress = func(p Progress) {
		if len(errs) < 3 {
			_, err := c.Check(context.Background())
			errs = append(errs, err)
			errs = append(errs, c.Install(context.Background(), &Update{target: &clientRelease{}}))
			_, err = c.Update(context.Background())
			errs = append(errs, err)
		}
	}
	c = newTestClient(t, cfg)
	done := make(chan error, 1)
	go func() {
		_, err := c.Update(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the update waits for its callback, which waits for the update")
	}
	wantTree(t, fsys, cfg.InstallDir, rels[2].files)
	for _, err := range errs {
		if !errors.Is(err, errFromProgress) {
			t.Errorf("a call from the callback: %v, want %v", err, errFromProgress)
		}
	}
}

// TestProgressHugeSizes: sizes from signed metadata near the int64 limit
// (a hostile or broken publisher) give no negative or overflowing report.
func TestProgressHugeSizes(t *testing.T) {
	var events []Progress
	tr := newTracker(func(p Progress) { events = append(events, p) })
	const huge = 1<<63 - 1
	tr.enter(PhaseRefresh)
	tr.grow(PhaseRefresh, huge)
	tr.add(PhaseRefresh, huge)
	tr.plan(huge, huge, huge, huge)
	tr.enter(PhaseDownload)
	tr.add(PhaseDownload, 1<<20)
	tr.add(PhaseDownload, -huge)
	tr.fallback(huge, huge)
	tr.enter(PhasePatch)
	tr.begin(PhaseVerify, huge)
	tr.begin(PhaseInstall, 1)
	tr.finish()
	for _, e := range events {
		if e.Done < 0 || e.Total < 0 || e.Done > e.Total || e.OverallDone < 0 || e.OverallTotal < 0 || e.OverallDone > e.OverallTotal {
			t.Errorf("report %+v", e)
		}
	}
	if last := events[len(events)-1]; last.OverallDone != last.OverallTotal || last.OverallTotal <= 0 {
		t.Errorf("last report %+v", last)
	}
}
