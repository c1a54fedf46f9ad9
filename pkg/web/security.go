package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
)

// securityHeaders sets the headers every answer carries: a strict
// Content-Security-Policy (our own origin only, no framing), no referrer, no
// caching, no sniffing. Pages that post to another origin (a real issuer's
// 3-D Secure page) widen form-action for themselves only, and the pages of a
// merchant that invites framing name its origins in frame-ancestors (render).
func (s *Server) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp("'self'", nil))
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
		if strings.HasPrefix(s.cfg.PublicURL, "https://") {
			h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		next.ServeHTTP(w, r)
	})
}

// csp is the Content-Security-Policy with form-action and frame-ancestors
// as given; no framers is frame-ancestors 'none'. The framers are origins
// account.ParseFrameOrigin checked, so none can add a directive.
func csp(formAction string, framers []string) string {
	ancestors := "'none'"
	if len(framers) > 0 {
		ancestors = strings.Join(framers, " ")
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"form-action " + formAction + "; frame-ancestors " + ancestors + "; base-uri 'none'"
}

// setFramers lets the origins framers frame this answer: frame-ancestors
// names them and X-Frame-Options, which cannot name origins, goes.
func setFramers(h http.Header, formAction string, framers []string) {
	h.Set("Content-Security-Policy", csp(formAction, framers))
	if len(framers) > 0 {
		h.Del("X-Frame-Options")
	}
}

// CSRF: a random cookie per browser, and in each form a token that is the
// HMAC of that cookie and the session it acts on. A post without both fails.
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
	return s.csrfMAC(val, scope)
}

func (s *Server) csrfMAC(cookie, scope string) string {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte(cookie + "|" + scope))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfOK checks a posted form's token against the cookie.
func (s *Server) csrfOK(r *http.Request, scope string) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" {
		return false
	}
	want := s.csrfMAC(c.Value, scope)
	return hmac.Equal([]byte(want), []byte(r.PostFormValue("csrf")))
}
