package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paypage/paypage/internal/testcert"
)

// writeCert makes a self-signed certificate for 127.0.0.1 and writes it and
// its key as PEM files in dir; it returns the two paths.
func writeCert(t *testing.T, dir string, serial int64) (string, string) {
	t.Helper()
	return testcert.Write(t, dir, testcert.Cert{Serial: serial})
}

// trustingTransport trusts the certificate in certFile (and nothing else).
func trustingTransport(t testing.TB, certFile string) *http.Transport {
	t.Helper()
	pool := x509.NewCertPool()
	b, err := os.ReadFile(certFile)
	if err != nil || !pool.AppendCertsFromPEM(b) {
		t.Fatalf("certificate %s: %v", certFile, err)
	}
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
}

// TestTLS: the binary's own TLS serves the pages and the API (a card is
// paid over it, with HSTS), refuses TLS 1.1 and CBC suites, and serves a
// renewed certificate after a reload, without a restart.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, 1)
	e := newEnv(t, envOpts{tlsCert: certFile, tlsKey: keyFile})

	id := e.session(map[string]any{"locale": "en"})["id"].(string)
	b := e.browser()
	p := b.pay(id, "4242 4242 4242 4242", "981")
	if hsts := p.header.Get("Strict-Transport-Security"); !strings.Contains(hsts, "max-age=") {
		t.Errorf("no HSTS: %q", hsts)
	}
	if p = b.follow(p); !strings.Contains(p.body, "Payment successful") {
		t.Fatalf("card over TLS:\n%s", p.body)
	}
	if _, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil); s["status"] != "complete" {
		t.Fatalf("session %v", s)
	}

	addr := strings.TrimPrefix(e.url, "https://")
	pool := e.transport.(*http.Transport).TLSClientConfig.RootCAs
	dial := func(c *tls.Config) (*tls.ConnectionState, error) {
		c.RootCAs = pool
		conn, err := tls.Dial("tcp", addr, c)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		st := conn.ConnectionState()
		return &st, nil
	}
	refused := []struct {
		name string
		cfg  *tls.Config
	}{
		{"TLS 1.1", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}},
		{"TLS 1.0", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}},
		{"a CBC suite", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}},
	}
	for _, tt := range refused {
		if st, err := dial(tt.cfg); err == nil {
			t.Errorf("%s accepted: version %x, suite %s", tt.name, st.Version, tls.CipherSuiteName(st.CipherSuite))
		}
	}
	st, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12})
	if err != nil || !strings.Contains(tls.CipherSuiteName(st.CipherSuite), "GCM") && !strings.Contains(tls.CipherSuiteName(st.CipherSuite), "CHACHA20") {
		t.Fatalf("TLS 1.2 with an AEAD suite: %v %v", st, err)
	}

	// A renewed certificate, then the reload SIGHUP triggers.
	writeCert(t, dir, 2)
	if err := e.app.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	pool = trustingTransport(t, certFile).TLSClientConfig.RootCAs
	if st, err := dial(&tls.Config{}); err != nil || st.PeerCertificates[0].SerialNumber.Int64() != 2 {
		t.Fatalf("after the reload: %v %v", st, err)
	}
}

// TestTLSReloadOnSIGHUP: the real binary serves its certificate files, and a
// renewed certificate after a SIGHUP, without a restart.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, 1)
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--addr", addr, "--metrics-addr", "off", "--tls-cert", certFile, "--tls-key", keyFile,
		"--data", filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(), "PAYPAGE_MASTER_KEY="+strings.Repeat("1d", 32)) // no development key with TLS
	logs := startProcess(t, cmd)
	serial := func() int64 {
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // the serial is what is checked
			if err == nil {
				defer conn.Close()
				return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
			}
		}
		t.Fatalf("no TLS at %s:\n%s", addr, logs.String())
		return 0
	}
	if s := serial(); s != 1 {
		t.Fatalf("serial %d", s)
	}
	writeCert(t, dir, 2)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); serial() != 2; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still the old certificate after SIGHUP:\n%s", logs.String())
		}
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "TLS certificate reloaded"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) { // the line comes through a pipe, a moment after
			t.Fatalf("no log of the reload:\n%s", logs.String())
		}
	}
}

// TestSIGHUPWithoutCertificates: a service served plain (behind a proxy),
// with no certificate files to read again, takes a SIGHUP (logrotate,
// systemd's ExecReload send it routinely) without dying, and says there is
// nothing to reload.
func TestSIGHUPWithoutCertificates(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--addr", addr, "--metrics-addr", "off", "--data", filepath.Join(dir, "data"))
	logs := startProcess(t, cmd)
	up := func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	for deadline := time.Now().Add(20 * time.Second); !up(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never up:\n%s", logs.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if !up() {
		t.Fatalf("a SIGHUP took the plain-HTTP service down:\n%s", logs.String())
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "nothing to reload"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) { // the line comes through a pipe, a moment after
			t.Fatalf("no log of the hangup:\n%s", logs.String())
		}
	}
}
