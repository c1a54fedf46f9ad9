package app

import (
	"context"
	"sort"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/event"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/webhook"
)

// webhookWorkers is how many deliveries a replica runs at once.
const webhookWorkers = 16

func (a *App) newWorker() (*webhook.Worker, error) {
	return webhook.New(a.store, a.Accounts, a.log, webhook.Options{
		Schedule: a.cfg.WebhookSchedule, Timeout: a.cfg.WebhookTimeout, Workers: webhookWorkers, Retention: a.cfg.retention().records, AllowPrivate: a.cfg.WebhookAllowPrivate, Now: a.now,
	})
}

// ListEvents returns events with their delivery state: one merchant's, or all.
func (a *App) ListEvents(ctx context.Context, merchant, after string, limit int) ([]event.Record, error) {
	w := a.Webhooks
	if merchant != "" {
		return w.List(ctx, merchant, after, limit)
	}
	recs := []event.Record{}
	err := a.store.Scan(ctx, event.Kind, func(_ string, r store.Record) error {
		if rec, err := event.Decode(r.Value); err == nil {
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
	err := a.store.Scan(ctx, event.Kind, func(eid string, r store.Record) error {
		if eid == id {
			if rec, err := event.Decode(r.Value); err == nil {
				merchant = rec.Merchant
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
