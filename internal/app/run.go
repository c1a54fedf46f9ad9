package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/audit"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/kaspi"
	"github.com/paypage/paypage/pkg/limit"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/threeds"
	"github.com/paypage/paypage/pkg/webhook"
)

// build wires the domain services with the sandbox connectors (processor,
// 3-D Secure issuer, Kaspi). A real connector replaces a sandbox here.
func (a *App) build() {
	a.ACS = threeds.NewSandbox(a.store, a.Vault, func(id string) string { return a.cfg.PublicURL + "/sandbox/acs/" + id })
	a.Kaspi = kaspi.NewSandbox(a.store, func(id string) string { return a.cfg.PublicURL + "/sandbox/kaspi/" + id })
	counter, err := limit.NewCounter(a.store)
	if err != nil {
		panic(err) // the store is open here
	}
	a.Payments = &payment.Service{
		Store: a.store, Vault: a.Vault, Processor: processor.NewSandbox(a.store, a.Vault, a.Audit),
		ThreeDS: a.ACS, Kaspi: a.Kaspi, Merchants: a.Accounts, Counter: counter, Limits: a.limits(),
		PublicURL: a.cfg.PublicURL, Now: time.Now,
	}
	a.Webhooks = a.newWorker()
	a.Payments.Outbox = webhook.OutboxOp
	a.Payments.OnEvent = a.Webhooks.Notify
}

// limits are the payment limits under the settings: a card's submissions a
// day (the sandbox cards not counted) and a client address's an hour.
func (a *App) limits() payment.Limits {
	l := payment.DefaultLimits
	l.Card.Max = setting(a.cfg.LimitCardPerDay, l.Card.Max)
	l.Client.Max = setting(a.cfg.LimitClientPerHour, l.Client.Max)
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

// SetClock replaces the clock of every service (tests).
func (a *App) SetClock(now func() time.Time) {
	a.Payments.Now, a.ACS.Now, a.Kaspi.Now, a.Webhooks.Now, a.Vault.Now, a.Audit.Now = now, now, now, now, now, now
}

// Run serves HTTP on ln, and /metrics alone on metrics when the config
// names a metrics address (metrics is nil otherwise: no metrics are served;
// they are never on the public listener), runs the webhook worker
// and the sweep until ctx ends, then shuts down gracefully.
func (a *App) Run(ctx context.Context, ln, metrics net.Listener) error {
	if (metrics != nil) != (a.cfg.MetricsAddr != "") {
		return errors.New("a metrics listener goes with a metrics address, and only with one")
	}
	hs := a.httpServer(a.Web)
	tlsCfg, err := a.tlsConfig()
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	if metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.Web.MetricsHandler())
		ms := a.httpServer(mux)
		go func() {
			if err := ms.Serve(metrics); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics: %w", err)
			}
		}()
		defer ms.Close()
		a.log.Info("metrics serving", "addr", metrics.Addr().String())
	}
	workers, cancelWorkers := context.WithCancel(context.Background())
	defer cancelWorkers()
	done := a.Webhooks.Start(workers)
	swept := make(chan struct{})
	go func() { defer close(swept); a.sweep(workers) }()
	audited := make(chan struct{}) // refusal records flushed and the trail capped, until the end
	go func() { defer close(audited); a.Refusals.Run(workers, 10*time.Second) }()
	a.log.Info("paypage serving", "addr", ln.Addr().String(), "public_url", a.cfg.PublicURL, "store", storeKind(a.cfg.Store))
	if tlsCfg != nil {
		hs.TLSConfig = tlsCfg
		go func() { errc <- hs.ServeTLS(ln, "", "") }()
		if a.certs != nil {
			go a.reloadOnHangup(workers)
		}
	} else {
		go func() { errc <- hs.Serve(ln) }()
	}
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
	<-done
	<-swept
	<-audited
	if failed != nil {
		return failed
	}
	return err
}

// reloadOnHangup reads the TLS certificate files again on each SIGHUP until
// ctx ends.
func (a *App) reloadOnHangup(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := a.ReloadTLS(); err != nil {
				a.log.Error("TLS certificate not reloaded: the one loaded before stays in use", "err", err.Error())
			} else {
				a.log.Info("TLS certificate reloaded")
			}
		}
	}
}

// httpServer is an HTTP server with the timeouts and limits paypage uses.
func (a *App) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 32 << 10,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
}

func storeKind(s string) string {
	if s == "" || s == "bolt" {
		return "bolt"
	}
	return "redis"
}

// refundRetryAfter is how long a refund stays pending before the sweep asks
// the processor again: long enough that the request that made it is over.
const refundRetryAfter = time.Minute

// sweep, every 30 seconds, expires sessions past their time (writing their
// session.expired events) and asks again for refunds whose answer was lost.
func (a *App) sweep(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		if n, err := a.Payments.ExpireSessions(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("expiring sessions", "err", err.Error())
		} else if n > 0 {
			a.log.Info("sessions expired", "count", n)
		}
		if n, err := a.Payments.SettlePendingRefunds(ctx, refundRetryAfter); err != nil && ctx.Err() == nil {
			a.log.Warn("settling pending refunds", "settled", n, "err", err.Error())
		} else if n > 0 {
			a.log.Info("pending refunds settled", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
