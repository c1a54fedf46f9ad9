package web

import (
	"context"
	"net/http"
	"strconv"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/event"
)

// EventLister lists a merchant's webhook events with their delivery, oldest first.
type EventLister interface {
	List(ctx context.Context, merchant, after string, limit int) ([]event.Record, error)
}

// eventView is an event as GET /v1/events shows it: the event as delivered,
// and where its delivery stands.
type eventView struct {
	event.Event
	Object   string         `json:"object"`
	Delivery event.Delivery `json:"delivery"`
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
	evs := make([]eventView, len(recs))
	for i, rec := range recs {
		evs[i] = eventView{Event: rec.Event, Object: "event", Delivery: rec.Delivery}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": evs})
}
