//go:build !unix && !windows

package notsotuf

import (
	"errors"
	"os/exec"
	"time"
)

var errNoHelper = errors.New("the hand-off helper is not supported on this system")

func startDetached(*exec.Cmd) error            { return errNoHelper }
func startRestart(*exec.Cmd) error             { return errNoHelper }
func processStart(int) uint64                  { return 0 }
func waitExit(int, uint64, time.Duration) bool { return false }

func processRunning(int) bool { return false }
