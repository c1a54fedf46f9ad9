package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/paypage/paypage/pkg/account"
)

// processorAddCmd adds a processor credential and prints it once.
type processorAddCmd struct {
	Name      string   `json:"name"`
	Merchants []string `json:"merchants"`
	Rate      string   `json:"rate"`
}

func (c *processorAddCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Name, "name", "", "the processor's `name` (required)")
	fs.Func("merchants", "the merchants it serves, `mer_a,mer_b` (none: it detokenizes nothing until granted)", func(v string) error {
		c.Merchants = splitList(v)
		return nil
	})
	fs.StringVar(&c.Rate, "rate", "", "its own detokenize calls a `second` (0: no limit; default: --detokenize-per-second)")
}

func (c *processorAddCmd) check() error {
	_, err := parseRate(c.Rate)
	return err
}

func (c *processorAddCmd) do(ctx context.Context, k *call) (any, error) {
	rate, err := parseRate(c.Rate)
	if err != nil {
		return nil, err
	}
	p, err := k.app.Accounts.AddProcessor(ctx, account.ProcessorSpec{Name: c.Name, Merchants: c.Merchants, Rate: rate})
	if err != nil {
		return nil, err
	}
	k.object = p.ID
	k.concerns(p.Merchants...)
	if len(p.Merchants) == 0 {
		k.warn("processor %s serves no merchant yet: its detokenize calls answer 404 until \"paypage processor grant --id %s --merchant M\"", p.ID, p.ID)
	}
	return p, nil
}

// splitList reads "a, b,,c" as [a b c].
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// parseRate reads a processor's rate: "" or "default" for the setting, or
// a whole number of calls a second (0: no limit).
func parseRate(v string) (*int64, error) {
	if v == "" || v == "default" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("--rate %q: use a whole number of calls a second, 0 for no limit, or default", v)
	}
	return &n, nil
}

// processorGrantCmd lets a processor detokenize a merchant's cards; with
// revoke set, it stops it.
type processorGrantCmd struct {
	revoke   bool
	ID       string `json:"id"`
	Merchant string `json:"merchant"`
}

func (c *processorGrantCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.ID, "id", "", "the processor's `ID` (required)")
	fs.StringVar(&c.Merchant, "merchant", "", "the merchant's `ID` (required)")
}

func (c *processorGrantCmd) check() error {
	if err := need(c.ID, "id"); err != nil {
		return err
	}
	return need(c.Merchant, "merchant")
}

func (c *processorGrantCmd) do(ctx context.Context, k *call) (any, error) {
	k.object = c.ID
	k.concerns(c.Merchant)
	change := k.app.Accounts.Grant
	if c.revoke {
		change = k.app.Accounts.Revoke
	}
	if err := change(ctx, c.ID, c.Merchant); err != nil {
		return nil, err
	}
	p, err := k.app.Accounts.Processor(ctx, c.ID)
	return map[string]any{"id": c.ID, "merchants": p.Merchants}, err
}

// processorSetRateCmd sets a processor's own detokenize rate.
type processorSetRateCmd struct {
	ID   string `json:"id"`
	Rate string `json:"rate"`
}

func (c *processorSetRateCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.ID, "id", "", "the processor's `ID` (required)")
	fs.StringVar(&c.Rate, "rate", "", "detokenize calls a `second`: N, 0 for no limit, or default for --detokenize-per-second (required)")
}

func (c *processorSetRateCmd) check() error {
	if err := need(c.ID, "id"); err != nil {
		return err
	}
	if err := need(c.Rate, "rate"); err != nil {
		return err
	}
	_, err := parseRate(c.Rate)
	return err
}

func (c *processorSetRateCmd) do(ctx context.Context, k *call) (any, error) {
	k.object = c.ID + " rate " + c.Rate
	rate, err := parseRate(c.Rate)
	if err != nil {
		return nil, err
	}
	if err := k.app.Accounts.SetRate(ctx, c.ID, rate); err != nil {
		return nil, err
	}
	return map[string]any{"id": c.ID, "rate": rate}, nil
}
