package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/paypage/paypage/pkg/audit"
	"github.com/paypage/paypage/pkg/kaspi"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/threeds"
	"github.com/paypage/paypage/pkg/web"
)

// services wires the domain services on an opened App, with the sandbox
// connectors (processor, 3-D Secure issuer, Kaspi).
func (a *App) services() (*payment.Service, *threeds.Sandbox, *kaspi.Sandbox) {
	acs := threeds.NewSandbox(a.store, a.vault, func(id string) string { return a.cfg.PublicURL + "/sandbox/acs/" + id })
	ksp := kaspi.NewSandbox(a.store, func(id string) string { return a.cfg.PublicURL + "/sandbox/kaspi/" + id })
	pay := &payment.Service{
		Store: a.store, Vault: a.vault, Processor: processor.NewSandbox(a.store, a.vault, a.audit),
		ThreeDS: acs, Kaspi: ksp, Merchants: a.accounts, Limits: payment.DefaultLimits,
		PublicURL: a.cfg.PublicURL, Now: time.Now,
	}
	return pay, acs, ksp
}

// serve runs the service until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	app, err := openApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer app.Close()
	pay, acs, ksp := app.services()
	hooks := app.webhooks(pay)
	srv, err := web.New(web.Config{PublicURL: cfg.PublicURL, TrustProxy: cfg.TrustProxy}, web.Deps{
		Store: app.store, Payments: pay, Accounts: app.accounts, Vault: app.vault, Audit: app.audit,
		ACS: acs, KaspiApp: ksp, Events: hooks, Logger: log, CSRFKey: app.vault.DeriveKey("csrf"),
	})
	if err != nil {
		return err
	}
	// Listen first: a busy port fails at once, and --addr :0 picks a free one.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := &http.Server{
		Handler: srv, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 32 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	workers, cancelWorkers := context.WithCancel(context.Background())
	defer cancelWorkers()
	done := hooks.Start(workers)
	go app.sweep(workers, pay)
	log.Info("paypage serving", "addr", ln.Addr().String(), "public_url", cfg.PublicURL, "store", storeKind(cfg.Store))
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = hs.Shutdown(sctx)
	cancelWorkers()
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func storeKind(s string) string {
	if s == "" || s == "bolt" {
		return "bolt"
	}
	return "redis"
}

// sweep expires sessions past their time every 30 seconds (writing their
// session.expired events).
func (a *App) sweep(ctx context.Context, pay *payment.Service) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		if n, err := pay.ExpireSessions(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("expiring sessions", "err", err.Error())
		} else if n > 0 {
			a.log.Info("sessions expired", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// auditOperator records an operator's action.
func (a *App) auditOperator(ctx context.Context, action, object string, err error) {
	e := audit.Event{Actor: "operator", Action: action, Outcome: audit.Success, Object: object}
	if err != nil {
		e.Outcome, e.Reason = audit.Failure, "error"
	}
	if aerr := a.audit.Record(ctx, e); aerr != nil {
		a.log.Error("audit record failed", "action", action, "err", aerr.Error())
	}
}
