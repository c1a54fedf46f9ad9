// Package web is paypage over HTTP: the shop API, the processor API, the
// shopper's pages (and the sandbox bank and Kaspi pages), health and metrics.
// Handlers parse, call a service and render; the rules live in the domain
// packages. One table turns error codes into statuses (errors.go).
package web

import (
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	paypage "github.com/paypage/paypage"
	"github.com/paypage/paypage/pkg/account"
	"github.com/paypage/paypage/pkg/audit"
	"github.com/paypage/paypage/pkg/clientaddr"
	"github.com/paypage/paypage/pkg/idempotency"
	"github.com/paypage/paypage/pkg/limit"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/threeds"
	"github.com/paypage/paypage/pkg/vault"
	"github.com/paypage/paypage/templates"
)

// Config is the web layer's settings.
type Config struct {
	PublicURL string // the page's base URL, as shoppers reach it
	// TrustedProxies are the peers whose X-Forwarded-For is believed (none:
	// the header is ignored).
	TrustedProxies []netip.Prefix
	MaxBody        int64 // request body limit in bytes
	// DetokenizePerSecond bounds each processor's detokenize calls, as a
	// token bucket shared by every replica (a processor's own rate wins);
	// 0: 200, negative: no limit.
	DetokenizePerSecond int64
	// ProcessorElsewhere takes the processor API (/v1/detokenize) off this
	// handler: the process serves ProcessorHandler on an address of its own,
	// which a network policy can open to the processor's network alone.
	ProcessorElsewhere bool
	// RefusalsPerMinute bounds the refused API calls (a missing, wrong or
	// unauthorized key, a refused detokenize) one source may make in a
	// window of Refusals; past it the API answers 429 before looking at the
	// key (0: no bound).
	RefusalsPerMinute int64
}

// DefaultDetokenizePerSecond is each processor's detokenize rate unless set.
const DefaultDetokenizePerSecond = 200

// Deps are the services the server calls. ACS and KaspiApp are the sandbox
// parts; nil leaves their pages out.
type Deps struct {
	Store    store.Store
	Payments *payment.Service
	Accounts *account.Service
	Vault    *vault.Vault
	Audit    *audit.Log
	Refusals *audit.Refusals // counts refused calls for the audit trail (required with Audit)
	ACS      *threeds.Sandbox
	KaspiApp KaspiApp
	Events   EventLister
	Idem     *idempotency.Keys
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// CSRFTags returns the MAC of a message under each key CSRF tokens are
	// made with (the first) and checked with (each), keeping the keys to
	// itself; nil while there are none (sealed): vault.Vault.CSRFTags.
	CSRFTags func(msg []byte) [][]byte
}

// Server is the HTTP handler of paypage.
type Server struct {
	Deps
	cfg     Config
	router  *mux.Router
	handler http.Handler // the router inside the middleware every request passes
	proc    http.Handler // the processor API alone, when it is served elsewhere
	clients *clientaddr.Resolver
	cat     Catalog
	assets  *Assets
	pages   map[string]*template.Template
	metrics *metrics
	log     *slog.Logger
	headers map[string]string // SecurityHeaders
	csp     *cspReports
	// notifies bounds the unauthenticated Kaspi notifications before they
	// reach the payments (kaspiNotifyRate).
	notifies *limit.Local
	// skeletons render the card and redirect pages without the template.
	skeletons *skeletons
}

// New builds the server and its routes.
func New(cfg Config, d Deps) (*Server, error) {
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 64 << 10
	}
	if cfg.DetokenizePerSecond == 0 {
		cfg.DetokenizePerSecond = DefaultDetokenizePerSecond
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.CSRFTags == nil {
		return nil, errors.New("web: no CSRF keys")
	}
	if d.Registry == nil {
		d.Registry = prometheus.NewRegistry()
		d.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if d.Audit != nil && d.Refusals == nil {
		return nil, errors.New("web: Refusals is required beside Audit")
	}
	cat, err := LoadCatalog()
	if err != nil {
		return nil, err
	}
	assets, err := loadAssets()
	if err != nil {
		return nil, err
	}
	s := &Server{Deps: d, cfg: cfg, cat: cat, assets: assets, log: d.Logger, headers: SecurityHeaders(cfg.PublicURL), pages: map[string]*template.Template{},
		clients: clientaddr.New(cfg.TrustedProxies), skeletons: newSkeletons()}
	for _, p := range []string{"pay", "redirect", "acs", "kaspi", "sbkaspi"} {
		t, err := template.ParseFS(templates.FS, "layout.html", p+".html")
		if err != nil {
			return nil, err
		}
		s.pages[p] = t
	}
	s.metrics = newMetrics(d.Registry)
	s.csp = newCSPReports(d.Registry)
	s.notifies = limit.NewLocal(kaspiNotifyRate, kaspiNotifyAll, localSources, nil)
	s.routes()
	return s, nil
}

// MetricsHandler serves the Prometheus metrics. The server never routes
// /metrics itself: the process serves this handler on an address of its own,
// off the public network.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{})
}

func (s *Server) routes() {
	r := mux.NewRouter()
	r.HandleFunc("/healthz", s.healthz).Methods(http.MethodGet)
	r.HandleFunc(ManifestPath, s.manifest).Methods(http.MethodGet)
	r.HandleFunc(cspReportPath, s.cspReport).Methods(http.MethodPost)
	r.HandleFunc("/readyz", s.readyz).Methods(http.MethodGet)
	r.PathPrefix("/static/").HandlerFunc(s.assets.serve).Methods(http.MethodGet)
	r.HandleFunc("/favicon.ico", s.assets.serveIcon).Methods(http.MethodGet)

	r.HandleFunc("/v1/sessions", s.merchantOnly(s.createSession)).Methods(http.MethodPost)
	r.HandleFunc("/v1/sessions/{id}", s.merchantOnly(s.getSession)).Methods(http.MethodGet)
	r.HandleFunc("/v1/payments/{id}", s.merchantOnly(s.getPayment)).Methods(http.MethodGet)
	r.HandleFunc("/v1/payments/{id}/refunds", s.merchantOnly(s.createRefund)).Methods(http.MethodPost)
	r.HandleFunc("/v1/events", s.merchantOnly(s.listEvents)).Methods(http.MethodGet)
	if !s.cfg.ProcessorElsewhere {
		r.HandleFunc("/v1/detokenize", s.processorOnly(s.detokenize)).Methods(http.MethodPost)
	}
	r.HandleFunc("/v1/openapi.yaml", s.openAPI).Methods(http.MethodGet, http.MethodHead)

	r.HandleFunc("/pay/{id}", s.payPage).Methods(http.MethodGet)
	r.HandleFunc("/pay/{id}", s.paySubmit).Methods(http.MethodPost)
	r.HandleFunc("/pay/{id}/3ds", s.threeDSReturn).Methods(http.MethodPost)
	r.HandleFunc("/pay/{id}/cancel", s.payCancel).Methods(http.MethodGet)
	r.HandleFunc("/pay/{id}/status", s.payStatus).Methods(http.MethodGet)
	r.HandleFunc("/pay/{id}/kaspi", s.kaspiPage).Methods(http.MethodGet)
	r.HandleFunc("/pay/{id}/kaspi", s.kaspiAction).Methods(http.MethodPost)
	r.HandleFunc("/kaspi/notify", s.kaspiNotify).Methods(http.MethodPost)
	if s.ACS != nil {
		r.HandleFunc("/sandbox/acs/{tx}", s.acsPage).Methods(http.MethodGet)
		r.HandleFunc("/sandbox/acs/{tx}", s.acsSubmit).Methods(http.MethodPost)
	}
	if s.KaspiApp != nil {
		r.HandleFunc("/sandbox/kaspi/{qr}", s.kaspiAppPage).Methods(http.MethodGet)
		r.HandleFunc("/sandbox/kaspi/{qr}", s.kaspiAppSubmit).Methods(http.MethodPost)
	}
	s.router = r
	s.handler = s.chain(r)
	if s.cfg.ProcessorElsewhere {
		pr := mux.NewRouter()
		pr.HandleFunc("/v1/detokenize", s.processorOnly(s.detokenize)).Methods(http.MethodPost)
		s.proc = s.chain(pr)
	}
}

// chain puts a router inside the middleware every request passes: outside
// the router, so that what no route matches passes too.
func (s *Server) chain(r *mux.Router) http.Handler {
	r.Use(markRoute)
	r.NotFoundHandler = http.HandlerFunc(s.notFound)
	r.MethodNotAllowedHandler = s.methodNotAllowed(r)
	return s.realIP(s.observe(s.securityHeaders(s.limitBody(s.refuseUnknownMethods(r, s.sealedGate(r))))))
}

// ProcessorHandler serves the processor API alone, with the same
// middleware; nil unless Config.ProcessorElsewhere.
func (s *Server) ProcessorHandler() http.Handler { return s.proc }

// notFound answers what no route matches: in JSON on the API, with the
// shopper's not-found page elsewhere.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		s.writeError(w, r, errNoRoute)
		return
	}
	s.notFoundPage(w, r)
}

// ServeHTTP serves a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
		next.ServeHTTP(w, r)
	})
}

// openAPI serves the API's description (openapi.yaml, embedded).
func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(paypage.OpenAPI))) // HEAD answers it too
	_, _ = w.Write(paypage.OpenAPI)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if s.Vault != nil && s.Vault.Sealed() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "sealed"})
		return
	}
	if err := s.Store.Ping(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "store": "unreachable"})
		return
	}
	if s.Vault != nil {
		if err := s.Vault.Ready(ctx); err != nil { // a keyring it cannot confirm: it seals nothing
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "keyring": "unconfirmed"})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Route is one method and path template the server answers.
type Route struct {
	Method string
	Path   string // a template: "/pay/{id}"
}

// Routes lists the routes the server answers, in the order they were made.
func (s *Server) Routes() []Route {
	var out []Route
	_ = s.router.Walk(func(r *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := r.GetPathTemplate()
		if err != nil {
			return nil
		}
		methods, err := r.GetMethods()
		if err != nil {
			return nil // a prefix, or a route without methods
		}
		for _, m := range methods {
			out = append(out, Route{Method: m, Path: path})
		}
		return nil
	})
	return out
}
