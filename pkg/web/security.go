package web

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"

	"github.com/paypage/paypage/pkg/vault"
)

// cspReportPath is where browsers send Content-Security-Policy violation reports.
const cspReportPath = "/csp-report"

// SecurityHeaders are the headers every answer carries, for a service
// reached at publicURL: a strict Content-Security-Policy (our own origin
// only, no framing, violations reported to us), no referrer, no caching, no
// sniffing. The page manifest lists them, and verify-page checks them.
func SecurityHeaders(publicURL string) map[string]string {
	h := map[string]string{
		"Content-Security-Policy":      csp("'self'", nil),
		"Reporting-Endpoints":          `csp="` + publicURL + cspReportPath + `"`,
		"X-Frame-Options":              "DENY",
		"X-Content-Type-Options":       "nosniff",
		"Referrer-Policy":              "no-referrer",
		"Cache-Control":                "no-store",
		"Cross-Origin-Opener-Policy":   "same-origin",
		"Cross-Origin-Resource-Policy": "same-origin",
		"Permissions-Policy":           "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
	}
	if strings.HasPrefix(publicURL, "https://") {
		h["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
	}
	return h
}

// securityHeaders sets SecurityHeaders on every answer. Pages that post to
// another origin (a real issuer's 3-D Secure page) widen form-action for
// themselves only, and the pages of a merchant that invites framing name its
// origins in frame-ancestors (render).
func (s *Server) securityHeaders(next http.Handler) http.Handler {
	var keys, values []string
	for k, v := range s.headers {
		keys, values = append(keys, http.CanonicalHeaderKey(k)), append(values, v)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		vs := slices.Clone(values) // one allocation for all of them
		for i, k := range keys {
			h[k] = vs[i : i+1 : i+1]
		}
		next.ServeHTTP(w, r)
	})
}

// csp is the Content-Security-Policy with form-action and frame-ancestors
// as given; no framers is frame-ancestors 'none'. The framers are origins
// account.ParseFrameOrigin checked, so none can add a directive. Violations
// go to our report endpoint: report-to for browsers with the Reporting API,
// report-uri for older ones (a browser that knows report-to ignores it).
func csp(formAction string, framers []string) string {
	ancestors := "'none'"
	if len(framers) > 0 {
		ancestors = strings.Join(framers, " ")
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"form-action " + formAction + "; frame-ancestors " + ancestors + "; base-uri 'none'; " +
		"report-uri " + cspReportPath + "; report-to csp"
}

// setFramers lets the origins framers frame this answer: frame-ancestors
// names them and X-Frame-Options, which cannot name origins, goes.
func setFramers(h http.Header, formAction string, framers []string) {
	h.Set("Content-Security-Policy", csp(formAction, framers))
	if len(framers) > 0 {
		h.Del("X-Frame-Options")
	}
}

// sealedGate answers 503 to the shopper pages, the APIs and Kaspi's
// notifications (Kaspi retries them) while the vault is sealed (a service
// started with --unseal-shares, before the custodians unseal it, or after
// paypage seal). Health, static files, the page manifest and CSP reports
// stay up.
func (s *Server) sealedGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.Vault == nil || !s.Vault.Sealed() {
			next.ServeHTTP(w, r)
			return
		}
		p := r.URL.Path
		switch {
		case strings.HasPrefix(p, "/v1/"), strings.HasPrefix(p, "/kaspi/"):
			s.writeError(w, r, vault.ErrSealed)
		case strings.HasPrefix(p, "/pay/"), strings.HasPrefix(p, "/sandbox/"):
			s.pageError(w, r, vault.ErrSealed)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// CSRF: a random cookie per browser, and in each form a token that is the
// HMAC of that cookie and the session it acts on, under the active key
// version's CSRF key. A post without both fails. Tokens made under the
// previous version are accepted for a while after a rotation
// (vault.CSRFGrace), so a form open in a tab survives it.
const csrfCookie = "pp_csrf"

// A page that others may frame sets its cookie SameSite=None and
// Partitioned (on https): a frame on the shop's site is a cross-site
// context, where a Lax cookie is not sent, and a partitioned cookie is kept
// apart for that top-level site (CHIPS), so browsers that block third-party
// cookies keep it.
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request, scope string, framed bool) string {
	c, err := r.Cookie(csrfCookie)
	val := ""
	if err == nil && len(c.Value) == 43 {
		val = c.Value
	} else {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		val = base64.RawURLEncoding.EncodeToString(b)
		secure := strings.HasPrefix(s.cfg.PublicURL, "https://")
		c := &http.Cookie{Name: csrfCookie, Value: val, Path: "/", HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode}
		if framed && secure {
			c.SameSite, c.Partitioned = http.SameSiteNoneMode, true
		}
		http.SetCookie(w, c)
	}
	tags := s.CSRFTags(csrfMessage(val, scope))
	if len(tags) == 0 {
		return "" // sealed: the post will fail, and the page says why
	}
	return base64.RawURLEncoding.EncodeToString(tags[0])
}

// csrfMessage is what a CSRF token authenticates: the browser's cookie and
// the session it acts on.
func csrfMessage(cookie, scope string) []byte { return []byte(cookie + "|" + scope) }

// csrfOK checks a posted form's token against the cookie, under each key
// still accepted.
func (s *Server) csrfOK(r *http.Request, scope string) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(r.PostFormValue("csrf"))
	if err != nil {
		return false
	}
	ok := false
	for _, tag := range s.CSRFTags(csrfMessage(c.Value, scope)) {
		ok = hmac.Equal(tag, got) || ok
	}
	return ok
}
