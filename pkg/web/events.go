package web

import (
	"context"
	"net/http"
	"strconv"

	"github.com/paypage/paypage/pkg/api"
	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/event"
)

// EventLister lists a merchant's webhook events with their delivery, oldest first.
type EventLister interface {
	List(ctx context.Context, merchant, after string, limit int) ([]event.Record, error)
}

// listEvents answers GET /v1/events?limit=&after=.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	if s.Events == nil {
		s.writeError(w, r, apperr.E(apperr.NotFound, "events are not kept on this deployment"))
		return
	}
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			s.writeError(w, r, apperr.Field("limit", "must be a whole number from 1 to 100"))
			return
		}
		limit = n
	}
	recs, err := s.Events.List(r.Context(), principalOf(r).ID, r.URL.Query().Get("after"), limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	list := api.EventList{Object: "list", Data: make([]api.Event, len(recs))}
	for i, rec := range recs {
		e, d := rec.Event, rec.Delivery
		list.Data[i] = api.Event{ID: e.ID, Type: e.Type, Created: e.Created, Merchant: e.Merchant, Data: e.Data, Object: "event",
			Delivery: &api.Delivery{State: d.State, Attempts: d.Attempts, LastError: d.LastError, NextAttemptAt: d.NextAttemptAt}}
	}
	writeJSON(w, http.StatusOK, list)
}
