package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/paypage/paypage/pkg/apiview"
	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/audit"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/clientaddr"
	"github.com/paypage/paypage/pkg/connlimit"
	"github.com/paypage/paypage/pkg/due"
	"github.com/paypage/paypage/pkg/event"
	"github.com/paypage/paypage/pkg/idempotency"
	"github.com/paypage/paypage/pkg/kaspi"
	"github.com/paypage/paypage/pkg/limit"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/paystore"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/retention"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/threeds"
	"github.com/paypage/paypage/pkg/vault"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// build wires the domain services with the sandbox connectors (processor,
// 3-D Secure issuer, Kaspi) and the reconciler that drives what is due. A
// real connector replaces a sandbox here.
func (a *App) build() error {
	var err error
	pub := a.cfg.PublicURL
	a.Registry = prometheus.NewRegistry()
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if a.Runner, err = due.New(a.store, a.log, a.now); err != nil {
		return err
	}
	a.ACS = threeds.NewSandbox(a.store, a.Vault, func(id string) string { return pub + "/sandbox/acs/" + id })
	a.ACS.Now = a.now
	a.Kaspi = kaspi.NewSandbox(a.store, func(id string) string { return pub + "/sandbox/kaspi/" + id })
	a.Kaspi.NotifyURL, a.Kaspi.Now, a.Kaspi.Keep = pub+"/kaspi/notify", a.now, a.cfg.retention().records
	a.Sandbox = processor.NewSandbox(a.store, a.Vault, a.Audit)
	a.Sandbox.Now, a.Sandbox.Keep = a.now, a.cfg.retention().records
	repo, err := paystore.New(a.store, func(id string) string { return apiview.PageURL(pub, id) }, a.now, a.Runner.Wake)
	if err != nil {
		return err
	}
	counter, err := limit.NewCounter(a.store)
	if err != nil {
		return err
	}
	a.Limiter = a.submissions(counter)
	timing := a.cfg.Timing
	if timing.Lease == 0 {
		timing = payment.DefaultTiming
	}
	timing.Retention = a.cfg.retention().records
	var proc processor.Processor = a.Sandbox
	if a.cfg.WrapProcessor != nil {
		proc = a.cfg.WrapProcessor(proc)
	}
	a.Payments, err = payment.New(payment.Deps{
		Repo: repo, Vault: a.Vault, Processor: proc, ThreeDS: a.ACS, Kaspi: a.Kaspi, Merchants: a.Accounts,
		Limiter: a.Limiter, Metrics: newAttemptMetrics(a.Registry), Now: a.now,
	}, payment.DefaultLimits, timing, func(id string) string { return pub + "/pay/" + id + "/3ds" })
	if err != nil {
		return err
	}
	if a.Webhooks, err = a.newWorker(); err != nil {
		return err
	}
	if a.Idem, err = idempotency.New(a.store, 24*time.Hour); err != nil {
		return err
	}
	a.Idem.Now = a.now
	a.Runner.Handle(paystore.KindSession, 32, func(ctx context.Context, k store.Key) error { return a.Payments.Drive(ctx, k.ID) })
	a.Runner.Handle(paystore.KindPayment, 8, func(ctx context.Context, k store.Key) error { return a.Payments.Settle(ctx, k.ID) })
	a.Runner.Handle(event.Kind, webhookWorkers, a.Webhooks.Handle)
	cards, err := retention.New(a.Vault, a.Payments, a.store, a.cfg.retention().cardUnused, a.cfg.retention().cardUsed, a.now)
	if err != nil {
		return err
	}
	a.Runner.Handle(vault.KindCardRecord, 4, cards.Review)
	return nil
}

// submissions are the card-testing limits under the settings: a card's
// submissions a day (the sandbox cards not counted), a client address's and
// an IPv6 /48's an hour, and the card submissions a minute to one merchant
// and to all.
func (a *App) submissions(c *limit.Counter) *limit.Submissions {
	l := limit.DefaultSubmissions(c)
	l.Card.Max = setting(a.cfg.LimitCardPerDay, l.Card.Max)
	l.Client.Max = setting(a.cfg.LimitClientPerHour, l.Client.Max)
	l.Network.Max = setting(a.cfg.LimitNetworkPerHour, l.Network.Max)
	l.Merchant.Max = setting(a.cfg.LimitMerchantPerMinute, l.Merchant.Max)
	l.Global.Max = setting(a.cfg.LimitGlobalPerMinute, l.Global.Max)
	sandbox := map[string]bool{}
	for _, n := range processor.SandboxNumbers {
		if pan, err := card.ParsePAN(n); err == nil {
			sandbox[a.Vault.CardKey(pan)] = true
		}
	}
	l.Card.Exempt = func(cardKey string) bool { return sandbox[cardKey] }
	return l
}

// setting reads a limit from the config: 0 is the default, a negative
// number none.
func setting(v, def int64) int64 {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// now is the app's clock: every service reads it.
func (a *App) now() time.Time { return (*a.clock.Load())() }

// SetClock replaces the clock of every service (tests).
func (a *App) SetClock(now func() time.Time) { a.clock.Store(&now) }

// attemptMetrics counts the attempts that end, by method and outcome.
type attemptMetrics struct{ c *prometheus.CounterVec }

func newAttemptMetrics(reg prometheus.Registerer) attemptMetrics {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "paypage_payment_attempts_total", Help: "Payment attempts by method and outcome code.",
	}, []string{"method", "outcome"})
	reg.MustRegister(c)
	return attemptMetrics{c}
}

func (m attemptMetrics) AttemptEnded(method, outcome string) {
	m.c.WithLabelValues(method, outcome).Inc()
}

// Listeners are where a process serves: the pages and the APIs, and apart
// the metrics and the processor API when their addresses are set (nil
// otherwise).
type Listeners struct {
	Public, Metrics, Processor net.Listener
}

// Run serves HTTP on ln, and /metrics alone on metrics when the config
// names a metrics address (metrics is nil otherwise: no metrics are served;
// they are never on the public listener), runs the webhook worker
// and the sweep until ctx ends, then shuts down gracefully.
func (a *App) Run(ctx context.Context, ln, metrics net.Listener) error {
	return a.Serve(ctx, Listeners{Public: ln, Metrics: metrics})
}

// Serve is Run with the processor API's listener too. It takes SIGHUP
// from its start, whatever it serves: a hangup (logrotate, systemd's
// ExecReload) reads the TLS certificate files again, or does nothing.
func (a *App) Serve(ctx context.Context, l Listeners) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ln, metrics := l.Public, l.Metrics
	if (metrics != nil) != (a.cfg.MetricsAddr != "") {
		return errors.New("a metrics listener goes with a metrics address, and only with one")
	}
	if (l.Processor != nil) != (a.cfg.ProcessorAddr != "") {
		return errors.New("a processor listener goes with a processor address, and only with one")
	}
	tlsCfg, err := a.tlsConfig()
	if err != nil {
		return err
	}
	conns := a.connLimiter()
	hs := a.httpServer(a.Web, conns)
	ln = conns.Listen(ln)
	errc := make(chan error, 3)
	if l.Processor != nil {
		ps := a.httpServer(a.Web.ProcessorHandler(), conns)
		go func() {
			if err := serveOn(ps, conns.Listen(l.Processor), tlsCfg); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("processor API: %w", err)
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = ps.Shutdown(sctx)
		}()
		a.log.Info("processor API serving", "addr", l.Processor.Addr().String())
	}
	if metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.Web.MetricsHandler())
		if a.cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		// The metrics listener has a bound of its own: a flood of pages
		// does not keep the scraper out.
		mconns := connlimit.New(metricsConnections, 0, nil)
		ms := a.httpServer(mux, mconns)
		if a.cfg.Pprof {
			ms.WriteTimeout = 5 * time.Minute // a CPU profile answers after its seconds
		}
		go func() {
			if err := ms.Serve(mconns.Listen(metrics)); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics: %w", err)
			}
		}()
		defer ms.Close()
		a.log.Info("metrics serving", "addr", metrics.Addr().String())
	}
	workers, cancelWorkers := context.WithCancel(context.Background())
	defer cancelWorkers()
	// The workers need the keys: on a sealed service they start once it is unsealed.
	reconciled := make(chan struct{})
	go func() {
		defer close(reconciled)
		a.whenUnsealed(workers, func() {
			var wg sync.WaitGroup
			wg.Go(func() { a.Vault.Watch(workers, keyringPoll) })
			if !a.cfg.NoReconciler {
				a.Runner.Run(workers)
			}
			wg.Wait()
		})
	}()
	if a.Vault.Sealed() {
		a.log.Warn("vault sealed: pages and APIs answer 503 until the custodians unseal it (paypage unseal)", "shares_needed", a.cfg.UnsealShares)
	}
	audited := make(chan struct{}) // refusal records flushed and the trail capped, until the end
	go func() { defer close(audited); a.Refusals.Run(workers, 10*time.Second) }()
	reported := make(chan struct{}) // CSP reports' counts written, until the end
	go func() { defer close(reported); a.Web.RunCSPReports(workers, 10*time.Second) }()
	a.log.Info("paypage serving", "addr", ln.Addr().String(), "public_url", a.cfg.PublicURL, "store", storeKind(a.cfg.Store))
	go func() { errc <- serveOn(hs, ln, tlsCfg) }()
	go a.reloadOnHangup(workers, hup)
	var failed error // a listener that stopped serving by itself
	select {
	case failed = <-errc:
	case <-ctx.Done():
	}
	a.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = hs.Shutdown(sctx)
	cancelWorkers()
	<-reconciled
	<-audited
	<-reported
	if failed != nil {
		return failed
	}
	return err
}

// serveOn serves srv on ln, over TLS when cfg is set.
func serveOn(srv *http.Server, ln net.Listener, cfg *tls.Config) error {
	if cfg == nil {
		return srv.Serve(ln)
	}
	srv.TLSConfig = cfg
	return srv.ServeTLS(ln, "", "")
}

// reloadOnHangup reads the TLS certificate files again on each hangup
// until ctx ends; without them it says there is nothing to reload.
func (a *App) reloadOnHangup(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if a.certs == nil {
				a.log.Info("SIGHUP: nothing to reload (no --tls-cert)")
				continue
			}
			if err := a.ReloadTLS(); err != nil {
				a.log.Error("TLS certificate not reloaded: the one loaded before stays in use", "err", err.Error())
			} else {
				a.log.Info("TLS certificate reloaded")
			}
		}
	}
}

// httpServer is an HTTP server with the timeouts and limits paypage uses,
// telling conns which connections are idle. An idle keep-alive connection
// is held 30 seconds at most (a proxy in front should close its own sooner:
// see the README).
func (a *App) httpServer(h http.Handler, conns *connlimit.Limiter) *http.Server {
	return &http.Server{
		Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: IdleTimeout, MaxHeaderBytes: 32 << 10,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn), ConnState: conns.ConnState,
	}
}

// IdleTimeout is how long a keep-alive connection waits for its next
// request.
const IdleTimeout = 30 * time.Second

// Connection bounds: the defaults of --max-connections and
// --max-connections-per-address, and the metrics listener's own.
const (
	defaultMaxConnections        = 1024
	defaultMaxConnectionsPerAddr = 128
	metricsConnections           = 64
)

// connLimiter bounds the public and processor listeners' connections under
// the settings, trusted proxies counting toward the whole only, and exports
// its counts.
func (a *App) connLimiter() *connlimit.Limiter {
	max := setting(int64(a.cfg.MaxConnections), defaultMaxConnections)
	per := setting(int64(a.cfg.MaxConnectionsPerAddress), defaultMaxConnectionsPerAddr)
	trusted := clientaddr.New(a.cfg.TrustedProxies)
	l := connlimit.New(int(max), int(per), trusted.Trusted)
	l.Register(a.Registry)
	return l
}

func storeKind(s string) string {
	if s == "" || s == "bolt" {
		return "bolt"
	}
	return "redis"
}

// WriteRefusals writes the refused calls the service has counted so far
// (audit.Refusals), so an operator reading the trail sees them; without a
// service there are none.
func (a *App) WriteRefusals(ctx context.Context) {
	if a.Refusals == nil {
		return
	}
	if err := a.Refusals.Flush(ctx, true); err != nil {
		a.log.Warn("audit: refusal records not written yet", "err", err.Error())
	}
}

// WriteCSPReports writes the CSP violation reports the service has counted
// so far, so an operator reading them sees them at once; without a service
// there are none.
func (a *App) WriteCSPReports(ctx context.Context) {
	if a.Web == nil {
		return
	}
	if err := a.Web.FlushCSPReports(ctx, true); err != nil {
		a.log.Warn("csp reports not written yet", "err", err.Error())
	}
}

// AuditOperator records an operator's action, and what it concerned.
func (a *App) AuditOperator(ctx context.Context, who audit.Operator, action, object, merchant string, err error) error {
	e := audit.Event{Actor: who.Actor(), Operator: &who, Action: action, Outcome: audit.Success, Object: object, Merchant: merchant}
	if err != nil {
		e.Outcome, e.Reason = audit.Failure, apperr.Code(err)
	}
	aerr := a.Audit.Record(ctx, e)
	if aerr != nil {
		a.log.Error("audit record failed", "action", action, "err", aerr.Error())
	}
	return aerr
}
