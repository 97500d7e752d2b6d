// Package e2e holds end-to-end tests that need outside programs. They are
// skipped unless asked for: NOTSOTUF_E2E_NGINX=1 go test ./e2e runs
// nginx.sh (which installs nginx with apt-get when it is missing).
package e2e

import (
	"os"
	"os/exec"
	"testing"
)

func TestNginx(t *testing.T) {
	if os.Getenv("NOTSOTUF_E2E_NGINX") != "1" {
		t.Skip("set NOTSOTUF_E2E_NGINX=1 to run e2e/nginx.sh (CI runs the script directly)")
	}
	out, err := exec.Command("bash", "nginx.sh").CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("nginx.sh: %v", err)
	}
}
