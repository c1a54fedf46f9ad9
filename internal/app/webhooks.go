package app

import (
	"context"
	"encoding/json"
	"sort"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/webhook"
)

func (a *App) newWorker() *webhook.Worker {
	return &webhook.Worker{
		Store: a.store, Accounts: a.Accounts, Log: a.log, Schedule: a.cfg.WebhookSchedule,
		AllowPrivate: a.cfg.WebhookAllowPrivate,
	}
}

// ListEvents returns events with their delivery state: one merchant's, or all.
func (a *App) ListEvents(ctx context.Context, merchant, after string, limit int) ([]webhook.Record, error) {
	w := a.Webhooks
	if merchant != "" {
		return w.ListRecords(ctx, merchant, after, limit)
	}
	recs := []webhook.Record{}
	err := a.store.Scan(ctx, "event", func(_ string, r store.Record) error {
		var rec webhook.Record
		if json.Unmarshal(r.Value, &rec) == nil {
			recs = append(recs, rec)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Created.Before(recs[j].Created) })
	if len(recs) > limit {
		recs = recs[len(recs)-limit:]
	}
	return recs, nil
}

// ResendEvent queues an event for delivery again.
func (a *App) ResendEvent(ctx context.Context, id string) error {
	var merchant string
	err := a.store.Scan(ctx, "event", func(eid string, r store.Record) error {
		if eid == id {
			var e payment.Event
			if json.Unmarshal(r.Value, &e) == nil {
				merchant = e.Merchant
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if merchant == "" {
		return apperr.E(apperr.NotFound, "no such event %q", id)
	}
	return a.Webhooks.Resend(ctx, merchant, id)
}
