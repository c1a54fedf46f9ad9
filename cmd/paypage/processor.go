package main

import (
	"context"
	"flag"
)

// processorAddCmd adds a processor credential and prints it once.
type processorAddCmd struct {
	Name string `json:"name"`
}

func (c *processorAddCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Name, "name", "", "the processor's `name` (required)")
}

func (c *processorAddCmd) do(ctx context.Context, k *call) (any, error) {
	p, err := k.app.Accounts.AddProcessor(ctx, c.Name)
	k.object = p.ID
	return p, err
}
