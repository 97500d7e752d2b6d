package s3test

import (
	"os/exec"
	"syscall"
)

// setProcAttr has Linux kill the server if the test process dies without
// stopping it (a crash, a timeout's SIGQUIT).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
