package web

import (
	"context"
	"net/http"
	"strconv"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/payment"
)

// EventLister lists a merchant's webhook events, newest first.
type EventLister interface {
	List(ctx context.Context, merchant, after string, limit int) ([]payment.Event, error)
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
	evs, err := s.Events.List(r.Context(), principalOf(r).ID, r.URL.Query().Get("after"), limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if evs == nil {
		evs = []payment.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": evs})
}
