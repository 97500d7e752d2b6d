package main

// Mirror and proxy scenarios (testdata/script/client_mirrors.txtar,
// client_proxy.txtar, run by TestScripts). Commands added for them:
//
//	mirrorserve NAME DIR [-bearer TOKEN] [-tls HOST]
//	                   serve DIR (a repository: metadata/, targets/) over
//	                   loopback HTTP as mirror NAME until the script ends; sets
//	                   $NAME to its base URL and $NAME_ADDR to its address.
//	                   -bearer: answer 401 to a request without the header
//	                   "Authorization: Bearer TOKEN". -tls: serve HTTPS with a
//	                   self-signed certificate for HOST, written to $WORK/NAME.pem
//	                   (for SSL_CERT_FILE)
//	mirrormode NAME MODE [GLOB]
//	                   how NAME answers for files whose base name matches GLOB
//	                   (default *): ok | down (503) | missing (404) | tamper (the
//	                   file with one byte flipped)
//	mirrorlog NAME     print the requests NAME served since the last call
//	proxyserve HOST:PORT=ADDR...
//	                   start a forward proxy on loopback (plain HTTP requests
//	                   and CONNECT tunnels) that sends requests for HOST:PORT
//	                   to the loopback address ADDR and refuses any other (502);
//	                   sets $PROXY to its URL
//	proxylog           print the requests the proxy got since the last call

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// mirrorServer is one mirror of a script.
type mirrorServer struct {
	mu     sync.Mutex
	dir    string
	bearer string
	mode   string
	glob   string
	log    []string
	srv    *httptest.Server
}

type scriptMirrors struct {
	mu      sync.Mutex
	mirrors map[string]*mirrorServer
	proxy   *scriptProxy
}

var scriptMirrorSets sync.Map // *testscript.TestScript -> *scriptMirrors

func mirrorsOf(ts *testscript.TestScript) *scriptMirrors {
	s, _ := scriptMirrorSets.LoadOrStore(ts, &scriptMirrors{mirrors: map[string]*mirrorServer{}})
	return s.(*scriptMirrors)
}

func mirrorOf(ts *testscript.TestScript, name string) *mirrorServer {
	set := mirrorsOf(ts)
	set.mu.Lock()
	defer set.mu.Unlock()
	m, ok := set.mirrors[name]
	if !ok {
		ts.Fatalf("no mirror %s: mirrorserve it first", name)
	}
	return m
}

func cmdMirrorServe(ts *testscript.TestScript, neg bool, args []string) {
	const usage = "usage: mirrorserve NAME DIR [-bearer TOKEN] [-tls HOST]"
	if neg || len(args) < 2 {
		ts.Fatalf(usage)
	}
	m := &mirrorServer{dir: ts.MkAbs(args[1]), mode: "ok", glob: "*"}
	tlsHost := ""
	for rest := args[2:]; len(rest) > 0; rest = rest[2:] {
		if len(rest) < 2 {
			ts.Fatalf(usage)
		}
		switch rest[0] {
		case "-bearer":
			m.bearer = rest[1]
		case "-tls":
			tlsHost = rest[1]
		default:
			ts.Fatalf(usage)
		}
	}
	name := args[0]
	m.srv = httptest.NewUnstartedServer(http.HandlerFunc(m.serve))
	m.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	if tlsHost != "" {
		cert, pemBytes := selfSigned(ts, tlsHost)
		ts.Check(os.WriteFile(ts.MkAbs(name+".pem"), pemBytes, 0o644))
		m.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		m.srv.StartTLS()
	} else {
		m.srv.Start()
	}
	ts.Defer(func() {
		m.srv.CloseClientConnections()
		m.srv.Close()
	})
	set := mirrorsOf(ts)
	set.mu.Lock()
	set.mirrors[name] = m
	set.mu.Unlock()
	ts.Defer(func() { scriptMirrorSets.Delete(ts) })
	ts.Setenv(name, m.srv.URL)
	ts.Setenv(name+"_ADDR", m.srv.Listener.Addr().String())
}

func (m *mirrorServer) serve(w http.ResponseWriter, r *http.Request) {
	p := path.Clean("/" + r.URL.Path)
	m.mu.Lock()
	entry := r.Method + " " + p
	if rg := r.Header.Get("Range"); rg != "" {
		entry += " " + rg
	}
	m.log = append(m.log, entry)
	mode := m.mode
	if ok, _ := path.Match(m.glob, path.Base(p)); !ok {
		mode = "ok"
	}
	m.mu.Unlock()
	if m.bearer != "" && r.Header.Get("Authorization") != "Bearer "+m.bearer {
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, "credentials please", http.StatusUnauthorized)
		return
	}
	file := filepath.Join(m.dir, filepath.FromSlash(p))
	switch mode {
	case "down":
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	case "missing":
		http.NotFound(w, r)
	case "tamper":
		data, err := os.ReadFile(file)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		data[len(data)/2] ^= 1
		http.ServeContent(w, r, path.Base(p), time.Time{}, bytes.NewReader(data))
	default:
		http.ServeFile(w, r, file)
	}
}

// selfSigned returns a TLS certificate for host, signed by itself, and
// its PEM (a CA certificate a client may trust through SSL_CERT_FILE).
func selfSigned(ts *testscript.TestScript, host string) (tls.Certificate, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ts.Check(err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	ts.Check(err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func cmdMirrorMode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: mirrormode NAME ok|down|missing|tamper [GLOB]")
	}
	switch args[1] {
	case "ok", "down", "missing", "tamper":
	default:
		ts.Fatalf("mirrormode: unknown mode %q", args[1])
	}
	m := mirrorOf(ts, args[0])
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mode, m.glob = args[1], "*"
	if len(args) == 3 {
		m.glob = args[2]
	}
}

func cmdMirrorLog(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: mirrorlog NAME")
	}
	m := mirrorOf(ts, args[0])
	m.mu.Lock()
	lines := m.log
	m.log = nil
	m.mu.Unlock()
	for _, l := range lines {
		fmt.Fprintln(ts.Stdout(), l)
	}
}

// scriptProxy is a forward proxy that knows a few host names.
type scriptProxy struct {
	mu     sync.Mutex
	routes map[string]string // "host:port" -> loopback address
	log    []string
	srv    *httptest.Server
}

func cmdProxyServe(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: proxyserve HOST:PORT=ADDR...")
	}
	p := &scriptProxy{routes: map[string]string{}}
	for _, a := range args {
		host, addr, ok := strings.Cut(a, "=")
		if !ok {
			ts.Fatalf("proxyserve: %q: want HOST:PORT=ADDR", a)
		}
		p.routes[host] = addr
	}
	p.srv = httptest.NewServer(p)
	ts.Defer(func() {
		p.srv.CloseClientConnections()
		p.srv.Close()
	})
	set := mirrorsOf(ts)
	set.mu.Lock()
	set.proxy = p
	set.mu.Unlock()
	ts.Defer(func() { scriptMirrorSets.Delete(ts) })
	ts.Setenv("PROXY", p.srv.URL)
}

func (p *scriptProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if r.Method != http.MethodConnect {
		host = r.URL.Host
		if _, _, err := net.SplitHostPort(host); err != nil {
			host = net.JoinHostPort(host, "80")
		}
	}
	p.mu.Lock()
	if r.Method == http.MethodConnect {
		p.log = append(p.log, "CONNECT "+r.Host)
	} else {
		p.log = append(p.log, r.Method+" "+r.URL.String())
	}
	addr, ok := p.routes[host]
	p.mu.Unlock()
	if !ok || (r.Method != http.MethodConnect && !r.URL.IsAbs()) {
		http.Error(w, "proxy: no route to "+host, http.StatusBadGateway)
		return
	}
	if r.Method == http.MethodConnect {
		backend, err := net.Dial("tcp", addr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			backend.Close()
			return
		}
		fmt.Fprint(rw, "HTTP/1.1 200 Connection established\r\n\r\n")
		rw.Flush()
		done := make(chan struct{}, 2)
		go func() { io.Copy(backend, rw); done <- struct{}{} }()
		go func() { io.Copy(conn, backend); done <- struct{}{} }()
		<-done
		conn.Close()
		backend.Close()
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", addr
			pr.Out.Host = pr.In.Host
		},
		Transport: &http.Transport{}, // no proxy of its own, whatever the environment says
	}
	rp.ServeHTTP(w, r)
}

func cmdProxyLog(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: proxylog")
	}
	set := mirrorsOf(ts)
	set.mu.Lock()
	p := set.proxy
	set.mu.Unlock()
	if p == nil {
		ts.Fatalf("no proxyserve in this script")
	}
	p.mu.Lock()
	lines := p.log
	p.log = nil
	p.mu.Unlock()
	for _, l := range lines {
		fmt.Fprintln(ts.Stdout(), l)
	}
}
