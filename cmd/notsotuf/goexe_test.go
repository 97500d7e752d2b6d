package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/rogpeppe/go-internal/testscript"
)

// goexe FILE VERSION: writes a real executable (this platform's), one of
// two builds of a small Go program that differ as releases do: a changed
// constant and a new function move the code and data after them. The
// compact patch format scenarios use them. The builds are made once per
// test process, with the go tool (scripts check the condition [go] first).
func cmdGoexe(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 || (args[1] != "1" && args[1] != "2") {
		ts.Fatalf("usage: goexe FILE 1|2")
	}
	goexeOnce.Do(buildGoexes)
	if goexeErr != nil {
		ts.Fatalf("%v", goexeErr)
	}
	data, err := os.ReadFile(goexePaths[args[1]])
	ts.Check(err)
	p := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(filepath.Dir(p), 0o755))
	ts.Check(os.WriteFile(p, data, 0o755))
}

var (
	goexeOnce  sync.Once
	goexeErr   error
	goexePaths = map[string]string{}
	errNoGo    = fmt.Errorf("no go tool")
)

const goexeSource = `package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

const greeting = "hello"

func words(args []string) []string {
	var out []string
	for _, a := range args {
		out = append(out, strings.Fields(strings.ToLower(a))...)
	}
	sort.Strings(out)
	return out
}

//EXTRA

func main() {
	fmt.Println(greeting, strings.Join(words(os.Args[1:]), " "))
}
`

func buildGoexes() {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goexeErr = errNoGo
		return
	}
	dir, err := os.MkdirTemp("", "notsotuf-goexe-")
	if err != nil {
		goexeErr = err
		return
	}
	// The directory lives as long as the test process (the OS cleans up
	// its temporary directory; the executables are a few MB).
	for _, v := range []string{"1", "2"} {
		src := goexeSource
		if v == "2" {
			src = strings.Replace(src, `"hello"`, `"hello, world"`, 1)
			src = strings.Replace(src, "//EXTRA", "func init() {\n\tif len(os.Args) > 9 {\n\t\tfmt.Fprintln(os.Stderr, \"many words\")\n\t}\n}", 1)
		}
		d := filepath.Join(dir, "v"+v)
		if err := os.MkdirAll(d, 0o755); err != nil {
			goexeErr = err
			return
		}
		os.WriteFile(filepath.Join(d, "go.mod"), []byte("module example.com/goexe\n\ngo 1.26\n"), 0o644)
		os.WriteFile(filepath.Join(d, "main.go"), []byte(src), 0o644)
		out := filepath.Join(dir, "goexe"+v)
		cmd := exec.Command(goTool, "build", "-trimpath", "-o", out, ".")
		cmd.Dir = d
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOTOOLCHAIN=local")
		if b, err := cmd.CombinedOutput(); err != nil {
			goexeErr = fmt.Errorf("go build: %v\n%s", err, b)
			return
		}
		goexePaths[v] = out
	}
}
