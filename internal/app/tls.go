package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// aeadSuites are the TLS 1.2 cipher suites paypage offers: forward secret
// and AEAD only, no CBC, no RSA key exchange. (TLS 1.3's suites are all AEAD
// and not configurable.)
var aeadSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// baseTLS is the TLS configuration every listener starts from: TLS 1.2 or
// later with AEAD suites only.
func baseTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: aeadSuites, NextProtos: []string{"h2", "http/1.1"}}
}

// TLSEnabled reports whether the process serves TLS itself.
func (c Config) TLSEnabled() bool { return c.TLSCert != "" || c.ACMEDomain != "" }

// checkTLS refuses a half or doubled TLS setting.
func (c Config) checkTLS() error {
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("--tls-cert and --tls-key go together")
	case c.TLSCert != "" && c.ACMEDomain != "":
		return errors.New("--tls-cert and --acme-domain exclude each other: choose one")
	}
	return nil
}

// certFiles is a certificate and key read from files, read again on Reload
// (SIGHUP), so a renewed certificate is served without a restart. A
// certificate that is not valid now, or not for the public URL's host, is
// refused: at start, and on a reload, where the one in use stays.
type certFiles struct {
	certFile, keyFile string
	host              string // the name the certificate must be for ("": any)
	now               func() time.Time
	mu                sync.RWMutex
	cert              *tls.Certificate
}

func loadCertFiles(certFile, keyFile, publicURL string, now func() time.Time) (*certFiles, error) {
	c := &certFiles{certFile: certFile, keyFile: keyFile, host: certHost(publicURL), now: now}
	return c, c.Reload()
}

// certHost is the host a certificate must name for shoppers to reach
// publicURL: "" when the URL names none a certificate could be checked
// against (https://:443, https://0.0.0.0:443, the listening address).
func certHost(publicURL string) string {
	u, err := url.Parse(publicURL)
	if err != nil {
		return ""
	}
	h := u.Hostname()
	if a, err := netip.ParseAddr(h); err == nil && a.IsUnspecified() {
		return ""
	}
	return h
}

// Reload reads the files again; on an error the certificate in use stays.
func (c *certFiles) Reload() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
	}
	switch now := c.now(); {
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("TLS certificate %s is not valid before %s", c.certFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		return fmt.Errorf("TLS certificate %s expired at %s", c.certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if c.host != "" {
		if err := leaf.VerifyHostname(c.host); err != nil {
			return fmt.Errorf("TLS certificate %s is not for the public URL's host: %w", c.certFile, err)
		}
	}
	c.mu.Lock()
	c.cert = &cert
	c.mu.Unlock()
	return nil
}

func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert, nil
}

// tlsConfig builds the listener's TLS configuration from the settings: a
// certificate from files, or one from an ACME CA (Let's Encrypt) for
// ACMEDomain, answered with TLS-ALPN-01 on this listener and cached in the
// data directory. nil when the process serves plain HTTP.
func (a *App) tlsConfig() (*tls.Config, error) {
	c := a.cfg
	if !c.TLSEnabled() {
		return nil, nil
	}
	cfg := baseTLS()
	if c.TLSCert != "" {
		files, err := loadCertFiles(c.TLSCert, c.TLSKey, c.PublicURL, a.now)
		if err != nil {
			return nil, err
		}
		a.certs = files
		cfg.GetCertificate = files.get
		return cfg, nil
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(c.ACMEDomain),
		Cache:      autocert.DirCache(filepath.Join(c.Data, "acme")),
	}
	cfg.GetCertificate = m.GetCertificate
	cfg.NextProtos = append(cfg.NextProtos, acme.ALPNProto)
	return cfg, nil
}

// ReloadTLS reads the certificate files again (on SIGHUP). It does nothing
// when the certificate does not come from files.
func (a *App) ReloadTLS() error {
	if a.certs == nil {
		return nil
	}
	return a.certs.Reload()
}
