package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/paypage/paypage/pkg/api"
	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/kaspi"
	"github.com/paypage/paypage/pkg/payment"
)

// FuzzDecodeJSON: every JSON body the APIs read (a session, a refund, a
// detokenize call, a Kaspi notification) through the one strict decoder.
// Whatever arrives, the answer is a decoded value or a coded "invalid"
// error, never a panic or an internal error; a body that decodes is one
// valid JSON object; a session request that decodes is then validated
// without a panic either.
func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []string{
		`{"amount": 150000, "currency": "KZT", "success_url": "https://s.example/ok?session={SESSION_ID}", "cancel_url": "https://s.example/c", "methods": ["card", "kaspi_qr"], "expires_in": 600}`,
		`{"amount": 100}`, `{"token": "tok_aaaaaaaaaaaaaaaaaaaaaaaaaa"}`, `{"qr_id": "kqr_x", "external_id": "ses_x", "status": "paid"}`,
		`{"amount": "1"}`, `{"unknown": 1}`, `{} {}`, `[1]`, `{"amount": 1e400}`, "{\"currency\": \"\xff\"}", ``, `{`,
	} {
		f.Add("application/json", seed)
	}
	f.Add("text/plain", `{}`)
	f.Add("application/json; charset=utf-8", `{"amount": -1}`)
	f.Fuzz(func(t *testing.T, contentType, body string) {
		targets := []any{&payment.CreateRequest{}, &payment.RefundRequest{}, &api.DetokenizeParams{}, &kaspi.Notification{}}
		for _, into := range targets {
			r := httptest.NewRequest(http.MethodPost, "/v1/x", strings.NewReader(body))
			r.Header.Set("Content-Type", contentType)
			r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 64<<10)
			err := decodeJSON(r, into)
			if err != nil {
				if code := apperr.Code(err); code != apperr.Invalid {
					t.Fatalf("%T: error coded %q, want invalid: %v", into, code, err)
				}
				continue
			}
			if !json.Valid([]byte(body)) || !strings.HasPrefix(strings.TrimSpace(body), "{") {
				t.Fatalf("%T decoded from %q, which is not one JSON object", into, body)
			}
			if req, ok := into.(*payment.CreateRequest); ok {
				if err := req.Validate(payment.DefaultLimits); err != nil && apperr.Code(err) != apperr.Invalid {
					t.Fatalf("validation error coded %q: %v", apperr.Code(err), err)
				}
			}
		}
	})
}
