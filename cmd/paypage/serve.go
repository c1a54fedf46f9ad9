package main

import (
	"context"
	"flag"
	"fmt"
	"net"

	"github.com/paypage/paypage/internal/app"
)

// serveCmd runs the service.
type serveCmd struct{}

func (*serveCmd) flags(*flag.FlagSet) {}

// run opens everything, listens first (a busy port fails at once, and
// --addr 127.0.0.1:0 picks a free one), and runs until ctx ends.
func (*serveCmd) run(ctx context.Context, m *Main) error {
	cfg := m.Config
	a, err := app.Open(ctx, cfg, m.Log)
	if err != nil {
		return err
	}
	defer a.Close()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var metrics net.Listener
	if cfg.MetricsAddr != "" {
		if metrics, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			ln.Close()
			return fmt.Errorf("listen for metrics: %w", err)
		}
	}
	return a.Run(ctx, ln, metrics)
}
