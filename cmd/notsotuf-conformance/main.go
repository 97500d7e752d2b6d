// Command notsotuf-conformance is a client for the TUF conformance suite
// (theupdateframework/tuf-conformance), built on notsotuf's own TUF client
// ([notsotuf.MetadataClient]), not on go-tuf's updater. It implements the
// suite's CLIENT-CLI.md:
//
//	notsotuf-conformance --metadata-dir DIR init TRUSTED_ROOT
//	notsotuf-conformance --metadata-dir DIR --metadata-url URL refresh
//	notsotuf-conformance --metadata-dir DIR --metadata-url URL \
//	    --target-name NAME [--target-name NAME...] \
//	    --target-base-url URL --target-dir DIR download
//
// It exits 0 on success and 1 on any failure. The suite runs clients under
// libfaketime, which a Go program does not see; the reference time is
// therefore read from the FAKETIME environment variable when it is set
// ("+2d", "-3h", "+90" seconds, "@2025-02-09 09:17:23" or
// "2025-02-09 09:17:23+00:00").
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/notsotuf/notsotuf"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv("FAKETIME"), time.Now, os.Stdout, os.Stderr))
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

const usage = `usage: notsotuf-conformance --metadata-dir DIR [flags] COMMAND [arguments]

A TUF client for the conformance suite (theupdateframework/tuf-conformance),
following its CLIENT-CLI.md. It exits 0 on success and 1 on any failure.

commands:
  init TRUSTED_ROOT   store TRUSTED_ROOT (a root.json file) as the trusted root
  refresh             update the trusted metadata from --metadata-url
  download            refresh, then download each --target-name from
                      --target-base-url into --target-dir and verify it

examples:
  notsotuf-conformance --metadata-dir DIR init root.json
  notsotuf-conformance --metadata-dir DIR --metadata-url URL refresh
  notsotuf-conformance --metadata-dir DIR --metadata-url URL --target-name NAME \
      --target-base-url URL --target-dir DIR download

The reference time is the real clock, or the FAKETIME environment variable
(libfaketime syntax: "+2d", "-3h", "@2025-02-09 09:17:23").

flags:
`

func run(args []string, faketime string, wall func() time.Time, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("notsotuf-conformance", flag.ContinueOnError)
	fl.SetOutput(io.Discard) // errors are printed below, help on request only
	fl.Usage = func() {}
	help := func() int {
		fmt.Fprint(stdout, usage)
		fl.SetOutput(stdout)
		fl.PrintDefaults()
		return 0
	}
	var names multi
	metaDir := fl.String("metadata-dir", "", "trusted metadata directory")
	metaURL := fl.String("metadata-url", "", "base URL of the repository's metadata")
	fl.Var(&names, "target-name", "target path to download (repeatable)")
	targetURL := fl.String("target-base-url", "", "base URL of the repository's targets")
	targetDir := fl.String("target-dir", "", "directory for downloaded targets")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return help()
		}
		fmt.Fprintf(stderr, "notsotuf-conformance: error: %v\nnotsotuf-conformance: hint: run `notsotuf-conformance -h` for the commands and flags\n", err)
		return 1
	}
	if a := fl.Args(); len(a) > 0 && a[0] == "help" {
		return help()
	}
	if err := do(fl.Args(), *metaDir, *metaURL, names, *targetURL, *targetDir, faketime, wall, stdout); err != nil {
		fmt.Fprintf(stderr, "notsotuf-conformance: error: %v\n", err)
		return 1
	}
	return 0
}

func do(args []string, metaDir, metaURL string, names []string, targetURL, targetDir, faketime string, wall func() time.Time, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("want a command: init, refresh or download (`notsotuf-conformance -h` explains them)")
	}
	if metaDir == "" {
		return errors.New("--metadata-dir is required")
	}
	now, err := clock(faketime, wall)
	if err != nil {
		return err
	}
	c := &notsotuf.MetadataClient{Dir: metaDir, MetadataURL: metaURL, Now: now}
	ctx := context.Background()
	switch cmd := args[0]; cmd {
	case "init":
		if len(args) != 2 {
			return errors.New("usage: init TRUSTED_ROOT")
		}
		root, err := notsotuf.ReadTrustedRoot(nil, args[1])
		if err != nil {
			return err
		}
		if err := c.Init(root); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "initialized %s\n", metaDir)
	case "refresh":
		if err := c.Refresh(ctx); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "refreshed %s\n", metaDir)
	case "download":
		if len(names) == 0 || targetURL == "" || targetDir == "" {
			return errors.New("download needs --target-name, --target-base-url and --target-dir")
		}
		for _, name := range names {
			p, err := c.Download(ctx, name, targetURL, targetDir)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "downloaded %s to %s\n", name, p)
		}
	default:
		return fmt.Errorf("unknown command %q: want init, refresh or download", cmd)
	}
	return nil
}

var relTime = regexp.MustCompile(`^([+-][0-9]+(?:\.[0-9]+)?)([smhdy]?)$`)

// clock turns libfaketime's FAKETIME value into a clock: a relative offset
// ("+2d", "-1h", "+90") or an absolute time ("@2025-02-09 09:17:23", with
// or without "@" and a "+00:00" zone; no zone means UTC).
func clock(faketime string, wall func() time.Time) (func() time.Time, error) {
	s := strings.TrimSpace(faketime)
	if s == "" {
		return wall, nil
	}
	if m := relTime.FindStringSubmatch(s); m != nil {
		n, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return nil, fmt.Errorf("FAKETIME %q: %w", faketime, err)
		}
		unit := map[string]time.Duration{"": time.Second, "s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "y": 365 * 24 * time.Hour}[m[2]]
		off := time.Duration(n * float64(unit))
		return func() time.Time { return wall().Add(off) }, nil
	}
	s = strings.TrimPrefix(s, "@")
	for _, layout := range []string{"2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05", "2006-01-02T15:04:05Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return func() time.Time { return t }, nil
		}
	}
	return nil, fmt.Errorf("FAKETIME %q: want +Nd/-Nh style offsets or an absolute \"YYYY-MM-DD hh:mm:ss\"", faketime)
}
