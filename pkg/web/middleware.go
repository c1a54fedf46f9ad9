package web

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/paypage/paypage/pkg/api"
	"github.com/paypage/paypage/pkg/clientaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// routeName is the matched route's template ("/v1/sessions/{id}"), never the
// raw path: labels and logs carry no IDs or data from the URL.
func routeName(r *http.Request) string {
	if rt := mux.CurrentRoute(r); rt != nil {
		if t, err := rt.GetPathTemplate(); err == nil {
			return t
		}
	}
	return "unmatched"
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(s int) {
	if w.status == 0 {
		w.status = s
	}
	w.ResponseWriter.WriteHeader(s)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

// metrics are the server's Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypage_http_requests_total", Help: "HTTP requests by route template, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "paypage_http_request_duration_seconds", Help: "HTTP request latency by route template.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// knownMethods are the methods a label or a log field may carry; any other
// is refused with 405 and recorded as OTHER, so a caller cannot mint series
// or log values (a method name can be 30 KB long).
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// methodOrder is knownMethods in the order Allow names them.
var methodOrder = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

// methodLabel is the method as labels and logs show it.
func methodLabel(m string) string {
	if knownMethods[m] {
		return m
	}
	return "OTHER"
}

// reqInfo is what the outer middleware learns from inside the router: the
// matched route's template.
type reqInfo struct{ route string }

type reqInfoKey struct{}

// markRoute, the router's own middleware, tells observe which route matched.
func markRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
			info.route = routeName(r)
		}
		next.ServeHTTP(w, r)
	})
}

// observe logs and counts each request by its route template ("unmatched"
// when none matched) and a known method. It never logs a body, a query
// string, a raw path or a raw method. Every request passes here, whether a
// route matched or not.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		info := &reqInfo{route: "unmatched"}
		r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, info))
		defer func() {
			if p := recover(); p != nil {
				// The panic value may hold request data: log only where it happened.
				s.log.Error("panic", "route", info.route, "stack", string(debug.Stack()))
				if sw.status == 0 {
					http.Error(sw, "internal error", http.StatusInternalServerError)
				}
			}
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			method := methodLabel(r.Method)
			s.metrics.requests.WithLabelValues(info.route, method, strconv.Itoa(sw.status)).Inc()
			s.metrics.duration.WithLabelValues(info.route).Observe(time.Since(start).Seconds())
			s.log.Info("http", "method", method, "route", info.route, "status", sw.status,
				"bytes", sw.bytes, "ms", time.Since(start).Milliseconds(), "client", clientIP(r))
		}()
		next.ServeHTTP(sw, r)
	})
}

// refuseUnknownMethods answers 405 to a method outside knownMethods before
// any route is looked up.
func (s *Server) refuseUnknownMethods(router *mux.Router, next http.Handler) http.Handler {
	notAllowed := s.methodNotAllowed(router)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !knownMethods[r.Method] {
			notAllowed.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// methodNotAllowed answers 405 with the methods the path takes in Allow
// (RFC 9110 15.5.6): in JSON on the API, in plain text elsewhere.
func (s *Server) methodNotAllowed(router *mux.Router) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", strings.Join(allowedMethods(router, r), ", "))
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			writeJSON(w, http.StatusMethodNotAllowed, api.ErrorBody{Error: api.ErrorDetail{Code: "method_not_allowed", Message: "method not allowed"}})
			return
		}
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	})
}

// allowedMethods are the methods of knownMethods that a route of router
// takes for r's path, in a fixed order.
func allowedMethods(router *mux.Router, r *http.Request) []string {
	var out []string
	for _, m := range methodOrder {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		var match mux.RouteMatch
		if router.Match(probe, &match) && match.MatchErr == nil {
			out = append(out, m)
		}
	}
	return out
}

// clientIP is the caller's address, as realIP found it.
func clientIP(r *http.Request) string {
	if a, ok := r.Context().Value(clientIPKey{}).(netip.Addr); ok && a.IsValid() {
		return a.String()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type clientIPKey struct{}

// clientBucket is the unit refusals and limits count the caller under: its
// address, or its IPv6 /64.
func clientBucket(r *http.Request) string {
	a, _ := r.Context().Value(clientIPKey{}).(netip.Addr)
	if b := clientaddr.Bucket(a); b != "" {
		return b
	}
	return clientIP(r)
}

// realIP finds the client's address: the peer, or behind a trusted proxy
// the nearest untrusted X-Forwarded-For hop (pkg/clientaddr).
func (s *Server) realIP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := s.clients.Client(r.RemoteAddr, r.Header.Values("X-Forwarded-For"))
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientIPKey{}, a)))
	})
}
