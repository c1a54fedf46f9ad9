package main

import (
	"context"
	"flag"
)

// eventsListCmd lists webhook events with their delivery state.
type eventsListCmd struct {
	Merchant string `json:"merchant"`
	After    string `json:"after"`
	Limit    int    `json:"limit"`
}

func (c *eventsListCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Merchant, "merchant", "", "only this merchant's events (merchant `ID`)")
	fs.StringVar(&c.After, "after", "", "list the events after this event `ID`")
	fs.IntVar(&c.Limit, "limit", 100, "at most this `many`")
}

func (c *eventsListCmd) do(ctx context.Context, k *call) (any, error) {
	return k.app.ListEvents(ctx, c.Merchant, c.After, c.Limit)
}

// eventsResendCmd queues an event for delivery again.
type eventsResendCmd struct {
	ID string `json:"id"`
}

func (c *eventsResendCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.ID, "id", "", "the event's `ID` (required)")
}

func (c *eventsResendCmd) check() error {
	return need(c.ID, "id")
}

func (c *eventsResendCmd) do(ctx context.Context, k *call) (any, error) {
	k.object = c.ID
	if err := k.app.ResendEvent(ctx, c.ID); err != nil {
		return nil, err
	}
	return map[string]string{"id": c.ID, "status": "queued"}, nil
}
