package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/publicsuffix"

	"github.com/paypage/paypage/pkg/limit"
	"github.com/paypage/paypage/pkg/pagecheck"
	"github.com/paypage/paypage/pkg/periodic"
	"github.com/paypage/paypage/pkg/store"
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
		OtherHeaders:  []string{"Content-Length", "Content-Type", "Date", "Set-Cookie"},
		LinkOrigins:   []string{},
	}
}

// manifest serves the page manifest.
func (s *Server) manifest(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, manifestOf(s.assets, s.cfg.PublicURL))
}

// cspReports records the Content-Security-Policy violations browsers report:
// only the directive, the blocked URL's registrable domain and the page's
// route template are kept (no query, no path, no subdomain, no long run of
// digits, nothing a shopper typed), at a bounded rate per client and then
// over the process, and each is counted in a metric. Reports cost nothing
// durable as they come: they are counted in memory, one group per
// directive, blocked domain and page a minute, and each group is written as
// one record with its count when the minute ends (Server.RunCSPReports). The
// store's log of them is capped (cspKeep); paypage csp-reports reads it.
type cspReports struct {
	violations *prometheus.CounterVec
	dropped    prometheus.Counter

	now       func() time.Time
	keep      int // reports the log keeps (cspKeep)
	trimEvery int // appends between trims (cspTrimEvery)
	limit     *limit.Local

	mu       sync.Mutex
	end      time.Time // when the current window ends
	groups   map[cspKey]*cspGroup
	pending  []CSPViolation // ended windows' records, not yet written
	appended int
}

// cspKey is what one record counts.
type cspKey struct{ directive, blocked, page string }

type cspGroup struct {
	count       int64
	first, last time.Time
}

// The rates: per client address (an IPv6 /64), then over the process.
var (
	cspClient = limit.Rate{PerSecond: 0.5, Burst: 5}
	cspAll    = limit.Rate{PerSecond: 5, Burst: 20}
)

const (
	cspMaxBody       = 16 << 10
	cspLogName       = "csp-reports"
	cspMaxBatch      = 10
	cspKeep          = 10_000 // reports the store keeps; older ones are trimmed
	cspTrimEvery     = 100    // appends between trims
	cspDigitsReplace = "#"
	cspWindow        = time.Minute // reports are counted, then written, a window at a time
	cspGroupsMax     = 256         // groups a window; past it, blocked domains fold into cspOther
	cspOther         = "(other)"
)

func newCSPReports(reg prometheus.Registerer) *cspReports {
	c := &cspReports{
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypage_csp_violations_total", Help: "Content-Security-Policy violations reported by browsers, by directive.",
		}, []string{"directive"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "paypage_csp_reports_dropped_total", Help: "CSP violation reports refused by the rate limits (per client and over the process).",
		}),
		now: time.Now, keep: cspKeep, trimEvery: cspTrimEvery, groups: map[cspKey]*cspGroup{},
		limit: limit.NewLocal(cspClient, cspAll, localSources, nil),
	}
	reg.MustRegister(c.violations, c.dropped)
	return c
}

// allow takes a token from the client's bucket, then from the process's.
func (c *cspReports) allow(client string, now time.Time) bool { return c.limit.AllowAt(client, now) }

// count adds one violation to its group in the current window.
func (c *cspReports) count(v CSPViolation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roll(v.At)
	k := cspKey{v.Directive, v.Blocked, v.Page}
	if c.groups[k] == nil && len(c.groups) >= cspGroupsMax {
		k.blocked = cspOther
	}
	g := c.groups[k]
	if g == nil {
		g = &cspGroup{first: v.At}
		c.groups[k] = g
	}
	g.count++
	g.last = v.At
}

// roll closes the current window if it has ended; the caller holds mu.
func (c *cspReports) roll(now time.Time) {
	if now.Before(c.end) {
		return
	}
	c.closeGroups()
	c.end = now.Truncate(cspWindow).Add(cspWindow)
}

// closeGroups turns the counts so far into pending records, oldest first;
// the caller holds mu.
func (c *cspReports) closeGroups() {
	start := len(c.pending)
	for k, g := range c.groups {
		c.pending = append(c.pending, CSPViolation{Directive: k.directive, Blocked: k.blocked, Page: k.page, At: g.first, Last: g.last, Count: g.count})
	}
	slices.SortFunc(c.pending[start:], func(a, b CSPViolation) int { return a.At.Compare(b.At) })
	if max := 8 * cspGroupsMax; len(c.pending) > max { // the store has been down a long while
		c.pending = c.pending[len(c.pending)-max:]
	}
	clear(c.groups)
}

// FlushCSPReports writes the counted violation reports of the windows that
// have ended, and with all the current window's so far too (at shutdown, or
// for an operator reading them); a record the store refuses stays for the
// next flush. The log is trimmed to its cap as it grows.
func (s *Server) FlushCSPReports(ctx context.Context, all bool) error {
	c := s.csp
	c.mu.Lock()
	c.roll(c.now())
	if all {
		c.closeGroups()
	}
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	rest, err := periodic.Write(ctx, pending, s.appendCSPReport)
	if err != nil {
		c.mu.Lock()
		c.pending = append(rest, c.pending...)
		c.mu.Unlock()
	}
	return err
}

// appendCSPReport writes one record to the log, and trims the log to its
// cap every trimEvery records.
func (s *Server) appendCSPReport(ctx context.Context, v CSPViolation) error {
	b, _ := json.Marshal(v)
	id, err := s.Store.Append(ctx, cspLogName, b)
	if err != nil {
		return err
	}
	if s.csp.trimDue() {
		if _, err := s.Store.TrimLog(ctx, cspLogName, id, s.csp.keep); err != nil {
			s.log.Warn("trimming the csp reports", "err", err.Error())
		}
	}
	return nil
}

// RunCSPReports writes the counted violation reports every tick until ctx
// ends, then the rest.
func (s *Server) RunCSPReports(ctx context.Context, tick time.Duration) {
	periodic.Flush(ctx, tick, s.log, "csp reports", s.FlushCSPReports)
}

// trimDue reports whether this append should trim the log.
func (c *cspReports) trimDue() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.appended++
	return c.appended%c.trimEvery == 0
}

// CSPViolation is what is kept of the reports of one violation in a
// window: how many, the first's time and the last's.
type CSPViolation struct {
	Directive string    `json:"directive"`
	Blocked   string    `json:"blocked"` // an origin, or inline, eval, data, ...; "(other)" past a window's bound
	Page      string    `json:"page"`    // the route template of the page
	At        time.Time `json:"at"`      // the first report's
	Last      time.Time `json:"last,omitzero"`
	Count     int64     `json:"count,omitempty"`
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
	if !s.csp.allow(clientBucket(r), s.csp.now()) {
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
		s.csp.count(v)
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
		Page: s.routeOf(firstOf(f.DocumentURL, f.LegacyDocument)), At: s.csp.now().UTC(),
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

// originOf keeps of a blocked URL its scheme and registrable domain (the
// public suffix and one label: https://skim.example of
// https://4242424242424242.1230.981.skim.example/p.gif, where a skimmer
// that exfiltrates by DNS puts the card), with every run of four or more
// digits replaced; or the keyword a browser reports for inline code.
// Nothing else of it.
func originOf(blocked string) string {
	if cspKeywords.MatchString(blocked) {
		return blocked
	}
	u, err := url.Parse(blocked)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "wss" && u.Scheme != "ws") || u.Hostname() == "" {
		if err == nil && cspKeywords.MatchString(u.Scheme) {
			return u.Scheme
		}
		return "other"
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.String()
	} else if d, err := publicsuffix.EffectiveTLDPlusOne(host); err == nil {
		host = d
	}
	return u.Scheme + "://" + digitRuns.ReplaceAllString(host, cspDigitsReplace)
}

// digitRuns are what could carry a card number, an expiry or a code.
var digitRuns = regexp.MustCompile(`[0-9]{4,}`)

// CSPReport is one recorded violation report and its entry ID in the log.
type CSPReport struct {
	ID string `json:"id"`
	CSPViolation
}

// ReadCSPReports returns up to limit recorded violation reports after the
// entry ID after ("" from the oldest kept).
func ReadCSPReports(ctx context.Context, s store.Store, after string, limit int) ([]CSPReport, error) {
	ents, err := s.Read(ctx, cspLogName, after, limit)
	if err != nil {
		return nil, err
	}
	out := make([]CSPReport, 0, len(ents))
	for _, e := range ents {
		rep := CSPReport{ID: e.ID}
		if err := json.Unmarshal(e.Data, &rep.CSPViolation); err != nil {
			return nil, fmt.Errorf("csp report %s: %w", e.ID, err)
		}
		out = append(out, rep)
	}
	return out, nil
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
