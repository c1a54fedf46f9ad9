package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

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
		`{"amount": null}`, `{"4242424242424242": 1}`, `{"reference": "\ud800"}`, `{"reference": "\ud83d\ude00"}`,
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
				// No digit of what was sent comes back in param (a card
				// number as a member's name), nor a long name.
				if p := apperr.Param(err); strings.ContainsAny(p, "0123456789") || len(p) > maxParam+len("…") {
					t.Fatalf("%T: param %q", into, p)
				}
				continue
			}
			if !json.Valid([]byte(body)) || !strings.HasPrefix(strings.TrimSpace(body), "{") || !utf8.ValidString(body) {
				t.Fatalf("%T decoded from %q, which is not one JSON object in UTF-8", into, body)
			}
			if req, ok := into.(*payment.CreateRequest); ok {
				if err := req.Validate(payment.DefaultLimits); err != nil && apperr.Code(err) != apperr.Invalid {
					t.Fatalf("validation error coded %q: %v", apperr.Code(err), err)
				}
			}
		}
	})
}

// TestValidUnicode: what Go's decoder would store as U+FFFD is refused (a
// stray byte, an unpaired surrogate escape); a pair, an escaped backslash
// before a "u", and U+FFFD itself are not.
func TestValidUnicode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		ok         bool
	}{
		{"plain", `{"reference":"PNR ABC"}`, true},
		{"Cyrillic", `{"reference":"бронь"}`, true},
		{"a pair", `{"reference":"\ud83d\ude00"}`, true},
		{"U+FFFD sent as it is", `{"reference":"\ufffd` + "\uFFFD" + `"}`, true},
		{"an escaped backslash before u", `{"reference":"\\ud800"}`, true},
		{"a stray byte", "{\"reference\":\"\xff\"}", false},
		{"a high surrogate alone", `{"reference":"\ud800"}`, false},
		{"a high surrogate at the end", `{"reference":"\ud800`, false},
		{"a high surrogate before a letter escape", `{"reference":"\ud800\u0041"}`, false},
		{"a low surrogate alone", `{"reference":"\udc00"}`, false},
		{"a pair the wrong way round", `{"reference":"\udc00\ud800"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := validUnicode([]byte(tt.body)); got != tt.ok {
				t.Fatalf("validUnicode(%q) = %v", tt.body, got)
			}
		})
	}
}

// TestSafeParam: an unknown member's name, as an error names it.
func TestSafeParam(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"pan":                   "pan",
		"4242424242424242":      "****************",
		"card_2":                "card_*",
		strings.Repeat("я", 30): strings.Repeat("я", 20) + "…", // cut on a letter's edge
	} {
		if got := safeParam(in); got != want {
			t.Errorf("safeParam(%q) = %q, want %q", in, got, want)
		}
	}
}
