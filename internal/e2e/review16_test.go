package e2e

// Reproductions from the hostile review of issue 16 (branch review16). Each
// test states what the issue, the README or openapi.yaml promises and fails
// while the code does otherwise.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/paypage/paypage/pkg/api"
	"github.com/paypage/paypage/pkg/client"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/processor"
)

// refundsDown is a processor whose refunds cannot be reached while down.
type refundsDown struct {
	processor.Processor
	down  *atomic.Bool
	calls *atomic.Int32
}

func (p refundsDown) Refund(ctx context.Context, r processor.RefundRequest) (processor.RefundResult, error) {
	p.calls.Add(1)
	if p.down.Load() {
		return processor.RefundResult{}, errors.New("connection refused")
	}
	return p.Processor.Refund(ctx, r)
}

func paidPayment(t *testing.T, e *env) string {
	t.Helper()
	id := e.session(nil)["id"].(string)
	b := e.browser()
	b.follow(b.pay(id, "4242 4242 4242 4242", "981"))
	if st, _ := sessionState(t, e, id); st != "complete" {
		t.Fatalf("session %s", st)
	}
	return "pay_" + id[4:]
}

// TestReview16RawRetryRefundsTwice: client.Raw is documented as sending "as
// the client sends every call (its key, JSON, retries)". A refund posted
// through it without an Idempotency-Key while the processor is down answers
// 503 (the refund stays pending, holding its amount); the client retries the
// POST as it is, and every retry is a new pending refund. When the processor
// is back, the shop has refunded three times what it asked for.
func TestReview16RawRetryRefundsTwice(t *testing.T) {
	down, calls := &atomic.Bool{}, &atomic.Int32{}
	e := newEnv(t, envOpts{wrap: func(p processor.Processor) processor.Processor { return refundsDown{p, down, calls} }})
	pay := paidPayment(t, e)
	down.Store(true)
	shop := e.client(e.key, client.WithRetries(2))
	resp, err := shop.Raw(context.Background(), "POST", "/v1/payments/"+pay+"/refunds", []byte(`{"amount":30000}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	down.Store(false)
	e.clock.Advance(payment.DefaultTiming.RefundRetry + time.Second)
	e.reconcile()
	_, p, _ := e.api("GET", "/v1/payments/"+pay, e.key, nil)
	if n := len(p["refunds"].([]any)); n != 1 || p["amount_refunded"].(float64) != 30000 {
		t.Fatalf("one refund of 30000 asked for (answer %d); the payment has %d refunds, %v refunded", resp.Status, n, p["amount_refunded"])
	}
}

// TestReview16NullRefundAmountRefundsEverything: openapi.yaml says a
// refund's amount is an integer and bodies are strict ("values of the
// documented types"); {"amount": null} is neither absent nor an integer, yet
// it is taken as "refund what is left".
func TestReview16NullRefundAmountRefundsEverything(t *testing.T) {
	e := newEnv(t, envOpts{})
	pay := paidPayment(t, e)
	st, r, _ := e.api("POST", "/v1/payments/"+pay+"/refunds", e.key, `{"amount":null}`, "Content-Type", "application/json")
	if st != 400 {
		t.Fatalf(`{"amount":null} answered %d: refunded %v of 150000`, st, r["amount"])
	}
}

// TestReview16ClientDropsAnEmptyMethodsList: the rough edge
// `"methods": []` taken as ["card"] was fixed on the server (400), but the
// Go client's omitempty drops an empty list, so a shop whose filter left no
// method gets a card session again.
func TestReview16ClientDropsAnEmptyMethodsList(t *testing.T) {
	e := newEnv(t, envOpts{})
	s, err := e.client(e.key, client.WithRetries(0)).CreateSession(context.Background(), api.SessionParams{
		Amount: 100, Currency: "KZT", SuccessURL: "https://s.example/ok", CancelURL: "https://s.example/no", Methods: []string{}})
	var ae *client.Error
	if !errors.As(err, &ae) || ae.Param != "methods" {
		t.Fatalf("Methods: []string{} made a session with methods %v (err %v)", s.Methods, err)
	}
}

// TestReview16NameCookieOutlivesAChallengedPayment: the cardholder name
// cookie is cleared "once the session is paid" (pages.go rememberName, and
// TestCardholderNameKeptAfterADecline checks it with a frictionless card).
// A payment that passes a 3-D Secure challenge completes at the 3-D Secure
// return, which never clears it: the name stays in the browser for an hour.
func TestReview16NameCookieOutlivesAChallengedPayment(t *testing.T) {
	e := newEnv(t, envOpts{})
	id := e.session(map[string]any{"locale": "en"})["id"].(string)
	b := e.browser()
	b.back(b.challenge(b.pay(id, "4000 0000 0000 3220", "981"), "123456"))
	if st, _ := sessionState(t, e, id); st != "complete" {
		t.Fatalf("session %s", st)
	}
	for _, c := range b.c.Jar.Cookies(mustURL(t, e.url+"/pay/"+id)) {
		if c.Name == "pp_name" {
			t.Fatalf("name cookie kept after the payment: %s=%s", c.Name, c.Value)
		}
	}
}

// odd is a processor (a real acquirer's connector) that declines with a
// code of its own, as docs/processor.md says one may map "another ISO 8583
// code" (but nothing in paypage maps it).
type odd struct{ processor.Processor }

func (odd) Authorize(context.Context, processor.AuthorizeRequest) (processor.Result, error) {
	return processor.Result{Code: "lost_card", NetworkCode: "41", Reference: "acq_1"}, nil
}

// TestReview16UnknownDeclineCodeBreaksTheDescription: DeclineCode is a
// closed enum in openapi.yaml and the check only ever meets the sandbox's
// codes; a connector's other code goes to the shop as it is, and the
// answer no longer matches the description (the tap reports it).
func TestReview16UnknownDeclineCodeBreaksTheDescription(t *testing.T) {
	e := newEnv(t, envOpts{wrap: func(p processor.Processor) processor.Processor { return odd{p} }})
	id := e.session(nil)["id"].(string)
	b := e.browser()
	b.follow(b.pay(id, "4242 4242 4242 4242", "981"))
	_, p := sessionState(t, e, id) // the tap fails the test here
	t.Logf("decline %v", p["decline"])
}

// TestReview16LengthLimitsAreBytesNotCharacters: openapi.yaml gives
// reference maxLength 200 (JSON Schema counts characters); the server
// counts bytes. 150 Cyrillic letters pass the description and are refused.
func TestReview16LengthLimitsAreBytesNotCharacters(t *testing.T) {
	doc, err := spec()
	if err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"amount": 100, "currency": "KZT", "success_url": "https://s.example/ok", "cancel_url": "https://s.example/no",
		"reference": strings.Repeat("я", 150)}
	schemaErr := doc.Components.Schemas["SessionCreate"].Value.VisitJSON(body, openapi3.EnableJSONSchema2020())
	e := newEnv(t, envOpts{})
	st, _, _ := e.api("POST", "/v1/sessions", e.key, body)
	if (schemaErr == nil) != (st == 201) {
		t.Fatalf("the description says valid=%v (%v); the server answered %d", schemaErr == nil, schemaErr, st)
	}
}

// TestReview16CheckerMissesAMissingRetryAfter: openapi.yaml promises
// Retry-After on every 429 and 503 ("with Retry-After"), and the Go client
// relies on it; the header is not required in the description, so the
// check passes an answer without it and cannot catch the drift.
func TestReview16CheckerMissesAMissingRetryAfter(t *testing.T) {
	t.Parallel()
	req, _ := http.NewRequest("POST", "http://127.0.0.1/v1/detokenize", nil)
	for _, status := range []int{429, 503} {
		err := checkAnswer(req, status, http.Header{"Content-Type": {"application/json"}}, []byte(`{"error":{"code":"unavailable","message":"x"}}`))
		if status == 429 {
			err = checkAnswer(req, status, http.Header{"Content-Type": {"application/json"}}, []byte(`{"error":{"code":"rate_limited","message":"x"}}`))
		}
		if err == nil {
			t.Errorf("a %d without Retry-After passes the check", status)
		}
	}
}

// TestReview16CheckerTakesAWebhookOfTheWrongShape probes the webhook check
// (sound: it refuses each wrong shape; this passes).
func TestReview16CheckerTakesAWebhookOfTheWrongShape(t *testing.T) {
	t.Parallel()
	pay := `{"id":"pay_1","object":"payment","session_id":"ses_1","amount":1,"currency":"KZT","status":"succeeded","method":"card","amount_refunded":0,"refunds":[],"attempts":[],"created":"2027-01-15T08:00:00Z","updated":"2027-01-15T08:00:00Z"}`
	ev := func(typ, data, extra string) string {
		return `{"id":"evt_1","type":"` + typ + `","created":"2027-01-15T08:00:00Z","merchant":"mer_1","data":` + data + extra + `}`
	}
	for _, c := range []struct {
		name, typ, body string
		ok              bool
	}{
		{"good", "payment.succeeded", ev("payment.succeeded", pay, ""), true},
		{"extra member", "payment.succeeded", ev("payment.succeeded", pay, `,"pan":"4242424242424242"`), false},
		{"extra in data", "payment.succeeded", ev("payment.succeeded", strings.Replace(pay, `"amount":1,`, `"amount":1,"pan":"4242",`, 1), ""), false},
		{"type differs from header", "payment.succeeded", ev("payment.failed", pay, ""), false},
		{"data of another kind", "refund.succeeded", ev("refund.succeeded", pay, ""), false},
	} {
		r, _ := http.NewRequest("POST", "http://shop.example/hook", nil)
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Paypage-Signature", "t=1,v1="+strings.Repeat("a", 64))
		r.Header.Set("Paypage-Event-Id", "evt_1")
		r.Header.Set("Paypage-Event-Type", c.typ)
		if err := checkWebhook(r, []byte(c.body)); (err == nil) != c.ok {
			t.Errorf("%s: check %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

// seen records the authorization requests a processor gets.
type seen struct {
	processor.Processor
	refs chan processor.AuthorizeRequest
}

func (s seen) Authorize(ctx context.Context, r processor.AuthorizeRequest) (processor.Result, error) {
	s.refs <- r
	return s.Processor.Authorize(ctx, r)
}

// TestReview16AuthorizeReferenceIsTheSessionID: docs/processor.md (the
// authorize JSON and its field table) says `reference` is "always" "the
// session's ID" (ses_...); paypage sends the shop's own order reference
// (payment/card.go: Reference: s.Reference), which is free text of up to
// 200 bytes, and empty when the shop gave none.
func TestReview16AuthorizeReferenceIsTheSessionID(t *testing.T) {
	refs := make(chan processor.AuthorizeRequest, 4)
	e := newEnv(t, envOpts{wrap: func(p processor.Processor) processor.Processor { return seen{p, refs} }})
	for _, body := range []map[string]any{nil, {"reference": nil}} {
		id := e.session(body)["id"].(string)
		b := e.browser()
		b.follow(b.pay(id, "4242 4242 4242 4242", "981"))
		if r := <-refs; r.Reference != id {
			t.Errorf("authorize reference %q, docs/processor.md says the session's ID %s", r.Reference, id)
		}
	}
}

// TestReview16MethodNotAllowedNamesTheMethods: a 405 must carry Allow
// (RFC 9110 15.5.6); the README promises 405 for GET /v1/sessions.
func TestReview16MethodNotAllowedNamesTheMethods(t *testing.T) {
	e := newEnv(t, envOpts{})
	st, _, h := e.raw("GET", "/v1/sessions", e.key, nil)
	if st != 405 || h.Get("Allow") != "POST" {
		t.Fatalf("GET /v1/sessions: %d, Allow %q", st, h.Get("Allow"))
	}
}
