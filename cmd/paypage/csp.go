package main

import (
	"context"
	"flag"

	"github.com/paypage/paypage/pkg/web"
)

// cspReportsCmd reads the Content-Security-Policy violation reports
// browsers sent (what of each is kept: the directive, the blocked domain,
// the page's route, and how many in a minute), oldest first; beside a
// running service, with the counts so far.
type cspReportsCmd struct {
	After string `json:"after"`
	Limit int    `json:"limit"`
}

func (c *cspReportsCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.After, "after", "", "list the reports after this report `ID`")
	fs.IntVar(&c.Limit, "limit", 100, "at most this `many`")
}

func (c *cspReportsCmd) do(ctx context.Context, k *call) (any, error) {
	k.app.WriteCSPReports(ctx)
	return web.ReadCSPReports(ctx, k.app.Store(), c.After, c.Limit)
}
