package web

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypage/paypage/pkg/pagecheck"
)

// ManifestPath is where the page manifest is served.
const ManifestPath = "/.well-known/paypage-manifest.json"

// BuildManifest lists what the payment pages of a service reached at
// publicURL are made of: the one script and the one stylesheet (embedded in
// the binary, so the same release always lists the same hashes), no inline
// script, and the security headers. verify-page compares a live page with it.
func BuildManifest(publicURL string) (pagecheck.Manifest, error) {
	a, err := loadAssets()
	if err != nil {
		return pagecheck.Manifest{}, err
	}
	return manifestOf(a, publicURL), nil
}

func manifestOf(a *Assets, publicURL string) pagecheck.Manifest {
	return pagecheck.Manifest{
		Pages: []string{"/pay/{id}", "/pay/{id}/kaspi"},
		Scripts: []pagecheck.Asset{{Path: a.JS.URL, SHA384: a.JS.Integrity,
			Purpose: "progressive enhancement: groups the card number and shows its brand as typed, disables the pay button after one click, sends the 3-D Secure form, polls a Kaspi payment; the pages work without it"}},
		Styles: []pagecheck.Asset{{Path: a.CSS.URL, SHA384: a.CSS.Integrity,
			Purpose: "the pages' layout and colours"}},
		Icons: []pagecheck.Asset{{Path: a.Icon.URL, SHA384: a.Icon.Integrity,
			Purpose: "the pages' icon (also at /favicon.ico), so browsers ask for nothing else"}},
		InlineScripts: []string{},
		Headers:       SecurityHeaders(publicURL),
	}
}

// manifest serves the page manifest.
func (s *Server) manifest(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, manifestOf(s.assets, s.cfg.PublicURL))
}

// cspReports records the Content-Security-Policy violations browsers report:
// only the directive, the blocked URL's origin and the page's route
// template are kept (no query, no path IDs, nothing a shopper typed), at a
// bounded rate, and each is counted in a metric.
type cspReports struct {
	violations *prometheus.CounterVec
	dropped    prometheus.Counter

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// cspRate and cspBurst bound how many reports a process records a second.
const (
	cspRate     = 5.0
	cspBurst    = 20.0
	cspMaxBody  = 16 << 10
	cspLogName  = "csp-reports"
	cspMaxBatch = 10
)

func newCSPReports(reg prometheus.Registerer) *cspReports {
	c := &cspReports{
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypage_csp_violations_total", Help: "Content-Security-Policy violations reported by browsers, by directive.",
		}, []string{"directive"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "paypage_csp_reports_dropped_total", Help: "CSP violation reports refused by the rate limit.",
		}),
		tokens: cspBurst,
	}
	reg.MustRegister(c.violations, c.dropped)
	return c
}

// allow takes a token from the bucket.
func (c *cspReports) allow(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tokens = min(cspBurst, c.tokens+now.Sub(c.last).Seconds()*cspRate)
	c.last = now
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}

// CSPViolation is what is kept of one report.
type CSPViolation struct {
	Directive string    `json:"directive"`
	Blocked   string    `json:"blocked"` // an origin, or inline, eval, data, ...
	Page      string    `json:"page"`    // the route template of the page
	At        time.Time `json:"at"`
}

// cspDirectives are the directive names a report may carry; others count as "other".
var cspDirectives = []string{"default-src", "script-src", "script-src-elem", "script-src-attr", "style-src",
	"style-src-elem", "style-src-attr", "img-src", "connect-src", "font-src", "media-src", "object-src",
	"frame-src", "child-src", "worker-src", "manifest-src", "form-action", "frame-ancestors", "base-uri",
	"navigate-to", "require-trusted-types-for", "trusted-types"}

var cspKeywords = regexp.MustCompile(`^(inline|eval|wasm-eval|trusted-types-policy|trusted-types-sink|data|blob|self)$`)

// cspReport takes a browser's violation report: the Reporting API's
// application/reports+json (a list) or report-uri's application/csp-report.
func (s *Server) cspReport(w http.ResponseWriter, r *http.Request) {
	if !s.csp.allow(time.Now()) {
		s.csp.dropped.Inc()
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, cspMaxBody))
	if err != nil {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		var one map[string]json.RawMessage
		if json.Unmarshal(body, &one) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		raw = []map[string]json.RawMessage{one}
	}
	for _, rep := range raw[:min(len(raw), cspMaxBatch)] {
		v, ok := s.parseViolation(rep)
		if !ok {
			continue
		}
		s.csp.violations.WithLabelValues(v.Directive).Inc()
		s.log.Warn("csp violation", "directive", v.Directive, "blocked", v.Blocked, "page", v.Page)
		b, _ := json.Marshal(v)
		if _, err := s.Store.Append(r.Context(), cspLogName, b); err != nil {
			s.log.Warn("recording a csp violation", "err", err.Error())
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// parseViolation reads one report in either format and keeps what may be kept.
func (s *Server) parseViolation(rep map[string]json.RawMessage) (CSPViolation, bool) {
	var f struct {
		// Reporting API (camelCase, inside "body")
		EffectiveDirective string `json:"effectiveDirective"`
		BlockedURL         string `json:"blockedURL"`
		DocumentURL        string `json:"documentURL"`
		// report-uri (kebab-case, inside "csp-report")
		LegacyDirective string `json:"effective-directive"`
		LegacyViolated  string `json:"violated-directive"`
		LegacyBlocked   string `json:"blocked-uri"`
		LegacyDocument  string `json:"document-uri"`
	}
	inner := rep["body"]
	if legacy, ok := rep["csp-report"]; ok {
		inner = legacy
	} else if string(rep["type"]) != `"csp-violation"` {
		return CSPViolation{}, false
	}
	if json.Unmarshal(inner, &f) != nil {
		return CSPViolation{}, false
	}
	violated, _, _ := strings.Cut(f.LegacyViolated, " ")
	dir := firstOf(f.EffectiveDirective, f.LegacyDirective, violated)
	if !slices.Contains(cspDirectives, dir) {
		dir = "other"
	}
	return CSPViolation{
		Directive: dir, Blocked: originOf(firstOf(f.BlockedURL, f.LegacyBlocked)),
		Page: s.routeOf(firstOf(f.DocumentURL, f.LegacyDocument)), At: time.Now().UTC(),
	}, true
}

func firstOf(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// originOf keeps a blocked URL's origin, or the keyword a browser reports
// for inline code; nothing else of it.
func originOf(blocked string) string {
	if cspKeywords.MatchString(blocked) {
		return blocked
	}
	u, err := url.Parse(blocked)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "wss" && u.Scheme != "ws") || u.Host == "" {
		if err == nil && cspKeywords.MatchString(u.Scheme) {
			return u.Scheme
		}
		return "other"
	}
	return u.Scheme + "://" + u.Host
}

// routeOf is the route template of one of our pages ("/pay/{id}"), or "other".
func (s *Server) routeOf(doc string) string {
	u, err := url.Parse(doc)
	if err != nil {
		return "other"
	}
	req := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: u.Path}}
	var m mux.RouteMatch
	if s.router == nil || !s.router.Match(req, &m) || m.Route == nil {
		return "other"
	}
	if t, err := m.Route.GetPathTemplate(); err == nil {
		return t
	}
	return "other"
}
