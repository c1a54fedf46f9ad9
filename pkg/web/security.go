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
// 3-D Secure page) widen form-action for themselves only.
func (s *Server) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp("'self'"))
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

func csp(formAction string) string {
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"form-action " + formAction + "; frame-ancestors 'none'; base-uri 'none'"
}

// CSRF: a random cookie per browser, and in each form a token that is the
// HMAC of that cookie and the session it acts on. A post without both fails.
const csrfCookie = "pp_csrf"

func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request, scope string) string {
	c, err := r.Cookie(csrfCookie)
	val := ""
	if err == nil && len(c.Value) == 43 {
		val = c.Value
	} else {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		val = base64.RawURLEncoding.EncodeToString(b)
		http.SetCookie(w, &http.Cookie{
			Name: csrfCookie, Value: val, Path: "/", HttpOnly: true,
			Secure: strings.HasPrefix(s.cfg.PublicURL, "https://"), SameSite: http.SameSiteLaxMode,
		})
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
