package main

import (
	"context"
	"flag"
	"time"

	"github.com/paypage/paypage/pkg/account"
)

// The commands below act on a merchant's or a processor's credentials
// alike; the registry makes one of each kind.

// rollKeyCmd gives a principal a new secret key, printed once, and keeps
// the old ones valid for a while.
type rollKeyCmd struct {
	kind         string
	ID           string        `json:"id"`
	OldExpiresIn time.Duration `json:"old_expires_in"`
}

func (c *rollKeyCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.ID, "id", "", "the "+c.kind+"'s `ID` (required)")
	fs.DurationVar(&c.OldExpiresIn, "old-expires-in", 24*time.Hour, "how long the old keys stay valid (0s: they stop at once)")
}

func (c *rollKeyCmd) check() error { return need(c.ID, "id") }

func (c *rollKeyCmd) do(ctx context.Context, k *call) (any, error) {
	k.object = c.ID
	if c.kind == account.KindMerchant {
		k.concerns(c.ID)
	}
	return k.app.Accounts.RollKey(ctx, c.kind, c.ID, c.OldExpiresIn)
}

// disableCmd refuses (or, enabling, accepts again) every key of a principal.
type disableCmd struct {
	kind    string
	disable bool
	ID      string `json:"id"`
}

func (c *disableCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.ID, "id", "", "the "+c.kind+"'s `ID` (required)")
}

func (c *disableCmd) check() error { return need(c.ID, "id") }

func (c *disableCmd) do(ctx context.Context, k *call) (any, error) {
	k.object = c.ID
	if c.kind == account.KindMerchant {
		k.concerns(c.ID)
	}
	if err := k.app.Accounts.SetDisabled(ctx, c.kind, c.ID, c.disable); err != nil {
		return nil, err
	}
	return map[string]any{"id": c.ID, "disabled": c.disable}, nil
}

// listCmd lists the principals of a kind with their keys' hints and last
// use, never the keys.
type listCmd struct{ kind string }

func (*listCmd) flags(*flag.FlagSet) {}

func (c *listCmd) do(ctx context.Context, k *call) (any, error) {
	if c.kind == account.KindProcessor {
		return k.app.Accounts.ListProcessors(ctx)
	}
	return k.app.Accounts.ListMerchants(ctx)
}
