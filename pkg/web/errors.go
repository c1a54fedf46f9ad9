package web

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/paypage/paypage/pkg/api"
	"github.com/paypage/paypage/pkg/apperr"
)

// statusOf is the one table that turns error codes into HTTP statuses.
var statusOf = map[string]int{
	apperr.Invalid:      http.StatusBadRequest,
	apperr.NotFound:     http.StatusNotFound,
	apperr.Conflict:     http.StatusConflict,
	apperr.Unavailable:  http.StatusServiceUnavailable,
	apperr.Unauthorized: http.StatusUnauthorized,
	apperr.Forbidden:    http.StatusForbidden,
	apperr.RateLimited:  http.StatusTooManyRequests,
	apperr.IdemMismatch: http.StatusUnprocessableEntity,
	apperr.InProgress:   http.StatusConflict,
	apperr.TokenDeleted: http.StatusNotFound,
	apperr.Internal:     http.StatusInternalServerError,
}

// Status returns the HTTP status for err.
func Status(err error) int {
	if s, ok := statusOf[apperr.Code(err)]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// writeError answers a JSON API call with {"error": {code, message, param}}.
// Internal errors are logged (their text may name a cause) and answered with
// a generic message.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := apperr.Code(err)
	status := Status(err)
	if status >= 500 {
		s.log.ErrorContext(r.Context(), "request failed", "code", code, "err", err.Error(), "route", routeName(r))
	}
	if (status == http.StatusServiceUnavailable || code == apperr.InProgress || status == http.StatusTooManyRequests) && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, errorBodyOf(err))
}

// errorBodyOf is the JSON body of an error answer.
func errorBodyOf(err error) api.ErrorBody {
	return api.ErrorBody{Error: api.ErrorDetail{Code: apperr.Code(err), Message: apperr.Message(err), Param: apperr.Param(err)}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		slog.Debug("write response", "err", err)
	}
}
