package main

import (
	"context"
	"flag"
)

// auditListCmd reads the audit trail.
type auditListCmd struct {
	Merchant string `json:"merchant"`
	After    string `json:"after"`
	Limit    int    `json:"limit"`
}

func (c *auditListCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.After, "after", "", "list the records after this record `ID`")
	fs.IntVar(&c.Limit, "limit", 100, "at most this `many`")
	fs.StringVar(&c.Merchant, "merchant", "", "only the records that concern this merchant (merchant `ID`)")
}

func (c *auditListCmd) do(ctx context.Context, k *call) (any, error) {
	return k.app.Audit.Filter(ctx, c.Merchant, c.After, c.Limit)
}
