package main

import (
	"context"
	"flag"

	"github.com/paypage/paypage/internal/demo"
)

// demoCmd runs the service beside a demo shop on another port: the whole
// round trip of a payment in a browser (internal/demo).
type demoCmd struct {
	ShopAddr string
}

func (c *demoCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.ShopAddr, "shop-addr", "127.0.0.1:8081", "where the demo shop listens (another origin than --addr)")
}

func (c *demoCmd) run(ctx context.Context, m *Main) error {
	return demo.Run(ctx, m.Config, c.ShopAddr, m.Stdout, m.Log)
}
