package app

import (
	"crypto/tls"
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/paypage/paypage/internal/testcert"
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

// A certificate that is not valid now, or not for the public URL's host, is
// refused at start, and on a reload, where the one in use stays (and serves).
func TestCertificateChecks(t *testing.T) {
	t.Parallel()
	now := time.Now()
	expired := testcert.Cert{Names: []string{"pay.example"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)}
	early := testcert.Cert{Names: []string{"pay.example"}, NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)}
	other := testcert.Cert{Names: []string{"other.example"}}
	good := testcert.Cert{Names: []string{"pay.example", "*.pay.example"}}
	for _, tt := range []struct {
		name, url string
		cert      testcert.Cert
		err       string
	}{
		{"good", "https://pay.example", good, ""},
		{"a subdomain under a wildcard", "https://eu.pay.example:8443", good, ""},
		{"expired", "https://pay.example", expired, "expired"},
		{"not yet valid", "https://pay.example", early, "not valid before"},
		{"another name", "https://pay.example", other, "not for the public URL's host"},
		{"an IP the certificate does not name", "https://192.0.2.1", good, "not for the public URL's host"},
		{"no host to check", "https://0.0.0.0:443", other, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			certFile, keyFile := testcert.Write(t, t.TempDir(), tt.cert)
			_, err := loadCertFiles(certFile, keyFile, tt.url, time.Now)
			if (tt.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v, want %q", err, tt.err)
			}
		})
	}
	t.Run("reload", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		good.Serial = 1
		certFile, keyFile := testcert.Write(t, dir, good)
		files, err := loadCertFiles(certFile, keyFile, "https://pay.example", time.Now)
		if err != nil {
			t.Fatal(err)
		}
		serving := func() int64 {
			c, _ := files.get(nil)
			leaf, err := x509.ParseCertificate(c.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			return leaf.SerialNumber.Int64()
		}
		for i, bad := range []testcert.Cert{expired, early, other} {
			bad.Serial = int64(i + 2)
			testcert.Write(t, dir, bad)
			if err := files.Reload(); err == nil {
				t.Errorf("certificate %d reloaded", bad.Serial)
			}
			if s := serving(); s != 1 {
				t.Errorf("serving %d after a refused reload, not the one in use", s)
			}
		}
		good.Serial = 9
		testcert.Write(t, dir, good)
		if err := files.Reload(); err != nil || serving() != 9 {
			t.Errorf("a good renewal: %v, serving %d", err, serving())
		}
	})
}
