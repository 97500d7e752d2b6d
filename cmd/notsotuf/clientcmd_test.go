package main

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/rogpeppe/go-internal/testscript"
)

// Client scenarios (testdata/script/client_*.txtar, run by TestScripts):
// a repository made with the CLI, served over loopback by httpserve (which
// can cut a download halfway), and updated with check and update.

// scriptServer is the loopback HTTP server of one script.
type scriptServer struct {
	mu   sync.Mutex
	mode string   // ok, cut, cutdown, down
	log  []string // "GET /path [Range]" per request since the last httplog
	srv  *httptest.Server
}

var scriptServers sync.Map // *testscript.TestScript -> *scriptServer

func serverOf(ts *testscript.TestScript) *scriptServer {
	s, ok := scriptServers.Load(ts)
	if !ok {
		ts.Fatalf("no httpserve in this script")
	}
	return s.(*scriptServer)
}

// httpserve DIR: serves DIR over loopback HTTP until the script ends and
// sets $URL to its base URL.
func cmdHTTPServe(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: httpserve DIR")
	}
	s := &scriptServer{mode: "ok"}
	files := http.FileServer(http.Dir(ts.MkAbs(args[0])))
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		entry := r.Method + " " + r.URL.Path
		if rg := r.Header.Get("Range"); rg != "" {
			entry += " " + rg
		}
		s.log = append(s.log, entry)
		mode := s.mode
		target := strings.HasPrefix(r.URL.Path, "/targets/")
		if target && mode == "cut" {
			s.mode = "ok"
		}
		if target && mode == "cutdown" {
			s.mode = "down"
		}
		s.mu.Unlock()
		switch {
		case target && (mode == "cut" || mode == "cutdown"):
			cutHalfway(w, ts.MkAbs(filepath.Join(args[0], filepath.FromSlash(r.URL.Path))))
		case target && mode == "down":
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		default:
			files.ServeHTTP(w, r)
		}
	}))
	ts.Defer(s.srv.Close)
	scriptServers.Store(ts, s)
	ts.Defer(func() { scriptServers.Delete(ts) })
	ts.Setenv("URL", s.srv.URL)
}

// cutHalfway sends the first half of a file with a 200 and the full
// Content-Length, then drops the connection.
func cutHalfway(w http.ResponseWriter, name string) {
	data, err := os.ReadFile(name)
	if err != nil {
		http.NotFound(w, nil)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	w.Write(data[:len(data)/2])
	w.(http.Flusher).Flush()
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
	}
}

// httpmode ok|cut|cutdown|down: ok serves files; cut cuts the next target
// download halfway and then serves normally; cutdown cuts it and then
// answers 503 to target requests; down answers 503 to target requests.
func cmdHTTPMode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: httpmode ok|cut|cutdown|down")
	}
	switch args[0] {
	case "ok", "cut", "cutdown", "down":
	default:
		ts.Fatalf("httpmode: unknown mode %q", args[0])
	}
	s := serverOf(ts)
	s.mu.Lock()
	s.mode = args[0]
	s.mu.Unlock()
}

// httplog: prints the requests served since the last httplog, one a line.
func cmdHTTPLog(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: httplog")
	}
	s := serverOf(ts)
	s.mu.Lock()
	lines := s.log
	s.log = nil
	s.mu.Unlock()
	for _, l := range lines {
		fmt.Fprintln(ts.Stdout(), l)
	}
}

// untar ARCHIVE DIR: extracts a .tar.gz into DIR with archive/tar, as a user
// unpacking a release by hand would (modes and symbolic links kept).
func cmdUntar(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: untar ARCHIVE DIR")
	}
	// ARCHIVE may be a pattern matching one file (a hash-prefixed name).
	matches, err := filepath.Glob(ts.MkAbs(args[0]))
	ts.Check(err)
	if len(matches) != 1 {
		ts.Fatalf("untar: %s matches %d files", args[0], len(matches))
	}
	f, err := os.Open(matches[0])
	ts.Check(err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	ts.Check(err)
	dir := ts.MkAbs(args[1])
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return
		}
		ts.Check(err)
		p := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if !strings.HasPrefix(p, dir) {
			ts.Fatalf("untar: %s escapes %s", hdr.Name, dir)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			ts.Check(os.MkdirAll(p, 0o755))
		case tar.TypeSymlink:
			ts.Check(os.Symlink(hdr.Linkname, p))
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			ts.Check(err)
			ts.Check(os.WriteFile(p, data, hdr.FileInfo().Mode().Perm()))
		default:
			ts.Fatalf("untar: %s: unexpected type %c", hdr.Name, hdr.Typeflag)
		}
	}
}
