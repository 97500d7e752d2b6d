package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"
)

// Release management scenarios (testdata/script/release_*.txtar) use,
// besides the client scenarios' commands:
//
//	clients N PREFIX ARGS...  run `notsotuf check --json ARGS... --cache-dir PREFIX<i>`
//	                          for i = 1..N (N installs, each with its own cache and
//	                          so its own rollout bucket) and print one line per
//	                          install, "PREFIX<i> VERSION" or "PREFIX<i> -", then
//	                          "offered K of N"
func cmdClients(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: clients N PREFIX ARGS...")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		ts.Fatalf("clients: N %q: want a positive number", args[0])
	}
	var lines []string
	offered := 0
	for i := 1; i <= n; i++ {
		cache := fmt.Sprintf("%s%d", args[1], i)
		cli := append([]string{"check", "--json"}, args[2:]...)
		cli = append(cli, "--cache-dir", ts.MkAbs(cache))
		if err := ts.Exec("notsotuf", cli...); err != nil {
			ts.Fatalf("notsotuf check for %s: %v\n%s", cache, err, ts.ReadFile("stderr"))
		}
		var res struct {
			Update *struct {
				Version string `json:"version"`
			} `json:"update"`
		}
		if err := json.Unmarshal([]byte(ts.ReadFile("stdout")), &res); err != nil {
			ts.Fatalf("check --json for %s: %v", cache, err)
		}
		v := "-"
		if res.Update != nil {
			v = res.Update.Version
			offered++
		}
		lines = append(lines, cache+" "+v)
	}
	fmt.Fprintf(ts.Stdout(), "%s\noffered %d of %d\n", strings.Join(lines, "\n"), offered, n)
}
