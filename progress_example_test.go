package notsotuf_test

import (
	"context"
	"fmt"
	"log"

	"github.com/notsotuf/notsotuf"
)

// A progress dialog driven from another goroutine: the update runs in its
// own goroutine, OnProgress hands each report over a channel that holds
// only the latest one (it never blocks the update), and the UI loop shows
// what it reads. In a GUI the loop is the UI thread's (a timer or the
// toolkit's "run on the UI thread" call), and the dialog shows
// p.Phase, p.Done/p.Total and p.OverallDone/p.OverallTotal.
func ExampleProgress() {
	cfg, done := exampleConfig()
	defer done()

	latest := make(chan notsotuf.Progress, 1)
	cfg.OnProgress = func(p notsotuf.Progress) {
		// Called from the update's goroutine, one report at a time:
		// replace a report the UI has not taken yet, never wait for it.
		select {
		case <-latest:
		default:
		}
		latest <- p
	}
	c, err := notsotuf.NewClient(cfg)
	if err != nil {
		log.Fatal(err)
	}
	result := make(chan error, 1)
	go func() {
		_, err := c.Update(context.Background())
		result <- err
	}()

	// The UI loop.
	var shown notsotuf.Progress
	show := func(p notsotuf.Progress) {
		shown = p // dialog.SetPhase(p.Phase); dialog.SetValue(p.OverallDone, p.OverallTotal)...
	}
loop:
	for {
		select {
		case p := <-latest:
			show(p)
		case err = <-result:
			break loop
		}
	}
	select {
	case p := <-latest: // the last report, if the loop did not take it
		show(p)
	default:
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d of %d, update %d%%\n", shown.Phase, shown.Done, shown.Total, 100*shown.OverallDone/shown.OverallTotal)
	// Output:
	// install: 1 of 1, update 100%
}
