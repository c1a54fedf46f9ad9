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

// ListEvents prints events with their delivery state: one merchant's, or all.
func (a *App) ListEvents(ctx context.Context, out *json.Encoder, merchant, after string, limit int) error {
	w := a.Webhooks
	if merchant != "" {
		recs, err := w.ListRecords(ctx, merchant, after, limit)
		if err != nil {
			return err
		}
		return out.Encode(recs)
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
		return err
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Created.Before(recs[j].Created) })
	if len(recs) > limit {
		recs = recs[len(recs)-limit:]
	}
	return out.Encode(recs)
}

// ResendEvent queues an event for delivery again.
func (a *App) ResendEvent(ctx context.Context, out *json.Encoder, id string) error {
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
	if err := a.Webhooks.Resend(ctx, merchant, id); err != nil {
		return err
	}
	return out.Encode(map[string]string{"id": id, "status": "queued"})
}
