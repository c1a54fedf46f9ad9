// Package testcert writes self-signed TLS certificates for tests.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Cert is what a certificate says: its serial number, the names and
// addresses it is for (127.0.0.1 when both are empty), and when it is
// valid (from an hour ago for two hours when zero).
type Cert struct {
	Serial              int64
	Names               []string
	IPs                 []net.IP
	NotBefore, NotAfter time.Time
}

// Write makes a self-signed certificate and its key, writes them as PEM
// files cert.pem and key.pem in dir, and returns the two paths.
func Write(tb testing.TB, dir string, c Cert) (certFile, keyFile string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	if len(c.Names) == 0 && len(c.IPs) == 0 {
		c.IPs = []net.IP{net.ParseIP("127.0.0.1")}
	}
	if c.NotBefore.IsZero() {
		c.NotBefore, c.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(c.Serial), Subject: pkix.Name{CommonName: "paypage test"},
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, DNSNames: c.Names,
		IPAddresses: c.IPs, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return certFile, keyFile
}
