// Command notsotuf builds and applies binary patches (and, as more commands
// land, manages notsotuf update repositories).
//
//	notsotuf diff OLD NEW PATCH    write a BSDIFF40 patch (like bsdiff)
//	notsotuf patch OLD PATCH NEW   apply one (like bspatch)
//
// Errors go to stderr as "notsotuf: error: ..." with a non-zero exit status.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
)

// commands maps each subcommand to its implementation.
var commands = map[string]func(args []string, stdout, stderr io.Writer) error{
	"diff":  runDiff,
	"patch": runPatch,
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || commands[args[0]] == nil {
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(stderr, "usage: notsotuf COMMAND [ARGS]\ncommands: %v\n", names)
		return 2
	}
	if err := commands[args[0]](args[1:], stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "notsotuf: error: %v\n", err)
		return 1
	}
	return 0
}
