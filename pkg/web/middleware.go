package web

import (
	"context"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
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
	payments *prometheus.CounterVec
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
		payments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypage_payment_attempts_total", Help: "Payment attempts by method and outcome code.",
		}, []string{"method", "outcome"}),
	}
	reg.MustRegister(m.requests, m.duration, m.payments)
	return m
}

// observe logs and counts each request by its route template. It never logs
// a body, a query string or a raw path.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				// The panic value may hold request data: log only where it happened.
				s.log.Error("panic", "route", routeName(r), "stack", string(debug.Stack()))
				if sw.status == 0 {
					http.Error(sw, "internal error", http.StatusInternalServerError)
				}
			}
			route := routeName(r)
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			s.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.status)).Inc()
			s.metrics.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
			s.log.Info("http", "method", r.Method, "route", route, "status", sw.status,
				"bytes", sw.bytes, "ms", time.Since(start).Milliseconds(), "client", clientIP(r))
		}()
		next.ServeHTTP(sw, r)
	})
}

// clientIP is the caller's address. Behind a proxy, the operator sets
// TrustProxy and the last X-Forwarded-For hop is used.
func clientIP(r *http.Request) string {
	if ip, ok := r.Context().Value(clientIPKey{}).(string); ok {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type clientIPKey struct{}

func (s *Server) realIP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.TrustProxy {
			if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
				last := xff[strings.LastIndexByte(xff, ',')+1:]
				if ip := net.ParseIP(strings.TrimSpace(last)); ip != nil {
					r = r.WithContext(context.WithValue(r.Context(), clientIPKey{}, ip.String()))
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}
