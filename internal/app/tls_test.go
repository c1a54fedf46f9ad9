package app

import (
	"crypto/tls"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/acme"
)

func TestTLSSettings(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		cfg  Config
		err  string
	}{
		{"plain HTTP", Config{}, ""},
		{"a certificate without its key", Config{TLSCert: "c.pem"}, "go together"},
		{"a key without its certificate", Config{TLSKey: "k.pem"}, "go together"},
		{"files and ACME", Config{TLSCert: "c.pem", TLSKey: "k.pem", ACMEDomain: "pay.example"}, "exclude"},
		{"ACME", Config{ACMEDomain: "pay.example"}, ""},
	} {
		err := tt.cfg.checkTLS()
		if (tt.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// With --acme-domain the listener answers TLS-ALPN-01 challenges, keeps the
// AEAD-only policy, and asks the CA for no other name than its own (checked
// before any call to the CA).
func TestACMEConfig(t *testing.T) {
	t.Parallel()
	a := &App{cfg: Config{ACMEDomain: "pay.example", Data: t.TempDir()}}
	c, err := a.tlsConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.MinVersion != tls.VersionTLS12 || !slices.Equal(c.CipherSuites, aeadSuites) || !slices.Contains(c.NextProtos, acme.ALPNProto) {
		t.Fatalf("%+v", c)
	}
	_, err = c.GetCertificate(&tls.ClientHelloInfo{ServerName: "evil.example"})
	if err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("a certificate for another name: %v", err)
	}
}
