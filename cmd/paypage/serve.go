package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/paypage/paypage/internal/app"
	"github.com/paypage/paypage/internal/opsock"
)

// serveCmd runs the service.
type serveCmd struct{}

func (*serveCmd) flags(*flag.FlagSet) {}

// run checks the data directory, listens first (a busy port fails at
// once, and --addr 127.0.0.1:0 picks a free one, which the public URL then
// names), opens everything, serves the operator socket beside HTTP, and
// runs until ctx ends.
func (*serveCmd) run(ctx context.Context, m *Main) error {
	// A hangup while starting does nothing; app.Serve takes it from there.
	signal.Ignore(syscall.SIGHUP)
	if err := os.MkdirAll(m.Config.Data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := opsock.CheckDir(m.Config.Data); err != nil {
		return err
	}
	l, err := listen(&m.Config)
	if err != nil {
		return err
	}
	a, err := app.Open(ctx, m.Config, m.Log)
	if err != nil {
		closeAll(l)
		return err
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ops, err := m.listenOperators(ctx, a)
	if err != nil {
		closeAll(l)
		return err
	}
	err = a.Serve(ctx, l)
	cancel()
	// The commands in flight end before the store closes.
	if oerr := <-ops; err == nil {
		err = oerr
	}
	return err
}

// listen opens the service's listeners. When --addr asks for any free port
// (":0"), the address becomes the one picked, and so does the public URL
// derived from it.
func listen(cfg *Config) (app.Listeners, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return app.Listeners{}, fmt.Errorf("listen: %w", err)
	}
	l := app.Listeners{Public: ln}
	if _, port, _ := net.SplitHostPort(cfg.Addr); port == "0" {
		picked := ln.Addr().String()
		for _, scheme := range []string{"http://", "https://"} {
			if cfg.PublicURL == scheme+cfg.Addr {
				cfg.PublicURL = scheme + picked
			}
		}
		cfg.Addr = picked
	}
	for _, x := range []struct {
		addr, what string
		ln         *net.Listener
	}{{cfg.MetricsAddr, "metrics", &l.Metrics}, {cfg.ProcessorAddr, "the processor API", &l.Processor}} {
		if x.addr == "" {
			continue
		}
		if *x.ln, err = net.Listen("tcp", x.addr); err != nil {
			closeAll(l)
			return app.Listeners{}, fmt.Errorf("listen for %s: %w", x.what, err)
		}
	}
	return l, nil
}

// closeAll closes the listeners opened so far.
func closeAll(l app.Listeners) {
	for _, ln := range []net.Listener{l.Public, l.Metrics, l.Processor} {
		if ln != nil {
			ln.Close()
		}
	}
}

// listenOperators serves the operator socket in the data directory until
// ctx ends; the channel gives the result once it has stopped. On Redis,
// replicas that share a data directory share one socket: a replica that
// finds another of its user (or root) answering there leaves it to that
// one. Anybody else answering there stops the service from starting.
func (m *Main) listenOperators(ctx context.Context, a *app.App) (<-chan error, error) {
	done := make(chan error, 1)
	path := opsock.Path(m.Config.Data)
	ln, err := opsock.Listen(path)
	if errors.Is(err, opsock.ErrInUse) && storeID(m.Config) != "bolt" {
		m.Log.Warn("another replica answers operator commands on the socket; this one does not", "socket", path)
		done <- nil
		return done, nil
	}
	if err != nil {
		return nil, err
	}
	m.Log.Info("operator socket listening", "socket", path)
	go func() { done <- opsock.Serve(ctx, ln, m.serveOperators(a), m.Log) }()
	return done, nil
}
