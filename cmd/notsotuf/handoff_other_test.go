//go:build !unix

package main

import "github.com/rogpeppe/go-internal/testscript"

// The hand-off scenarios run where processes are killed with signals.

func cmdSpawn(ts *testscript.TestScript, neg bool, args []string) {
	ts.Fatalf("the hand-off scenarios run on Unix only ([!unix] skip)")
}
func cmdEndproc(ts *testscript.TestScript, neg bool, args []string) {
	ts.Fatalf("the hand-off scenarios run on Unix only ([!unix] skip)")
}
func cmdWaitfile(ts *testscript.TestScript, neg bool, args []string) {
	ts.Fatalf("the hand-off scenarios run on Unix only ([!unix] skip)")
}
func cmdWaithelper(ts *testscript.TestScript, neg bool, args []string) {
	ts.Fatalf("the hand-off scenarios run on Unix only ([!unix] skip)")
}
func cmdSetnow(ts *testscript.TestScript, neg bool, args []string) {
	ts.Fatalf("the hand-off scenarios run on Unix only ([!unix] skip)")
}
func cmdHandoffkill(ts *testscript.TestScript, neg bool, args []string) {
	ts.Fatalf("the hand-off scenarios run on Unix only ([!unix] skip)")
}
func cmdPause(ts *testscript.TestScript, neg bool, args []string) { ts.Fatalf("unix only") }
