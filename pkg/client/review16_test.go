package client

// Reproductions from the hostile review of issue 16 (branch review16).

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/api"
)

// TestReview16RawRetriesAPostWithoutAKey: Raw retries whatever it sends on
// a 503, a POST without an Idempotency-Key included, and a refund's 503
// leaves a pending refund behind (payment.ErrRefundPending): the retry is a
// second refund. Raw should retry only what is safe to repeat (GET, or a
// request with an Idempotency-Key), or add a key to a POST.
func TestReview16RawRetriesAPostWithoutAKey(t *testing.T) {
	t.Parallel()
	pending := `{"error":{"code":"unavailable","message":"the refund could not be confirmed; it stays pending"}}`
	s := &script{answers: []func(http.ResponseWriter){answer(503, "1", pending), answer(201, "", `{"id":"re_2"}`)}}
	c, _ := newTest(t, s)
	if _, err := c.Raw(context.Background(), "POST", "/v1/payments/pay_x/refunds", []byte(`{"amount":500}`), nil); err != nil {
		t.Fatal(err)
	}
	if len(s.got) > 1 && s.got[1].Header.Get("Idempotency-Key") == "" {
		t.Fatalf("a POST without an Idempotency-Key was sent %d times", len(s.got))
	}
}

// TestReview16CreateGivesUpOnItsOwnRetrysInProgress: after a connection
// cut, the client's own retry of a create may meet the first try still
// running: 409 "a request with this Idempotency-Key is in progress; retry"
// (openapi.yaml: "a retry ... while the first request is still running
// (409), makes the same session"). The client does not retry it and hands
// the shop a 409 conflict, the same code as "the payment is refunded
// already", while the session is being made.
func TestReview16CreateGivesUpOnItsOwnRetrysInProgress(t *testing.T) {
	t.Parallel()
	inProgress := `{"error":{"code":"conflict","message":"a request with this Idempotency-Key is in progress; retry"}}`
	s := &script{answers: []func(http.ResponseWriter){cut, answer(409, "", inProgress), answer(201, "", created)}}
	c, _ := newTest(t, s)
	ses, err := c.CreateSession(context.Background(), api.SessionParams{Amount: 1000, Currency: "KZT", SuccessURL: "https://s.example/ok", CancelURL: "https://s.example/no"})
	if err != nil {
		t.Fatalf("the create's own retry met its first try in flight and gave up: %v (%d tries)", err, len(s.got))
	}
	_ = ses
}

// TestReview16HugeRetryAfterIsHonoured: a Retry-After past the longest wait
// is "not waited for, and the error is returned"; one of 10^10 seconds
// overflows time.Duration into a negative wait and is retried at once.
func TestReview16HugeRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	s := &script{answers: []func(http.ResponseWriter){answer(503, "10000000000", unavailable)}}
	c, waits := newTest(t, s)
	_, err := c.Payment(context.Background(), "pay_x")
	var e *Error
	if !errors.As(err, &e) || len(s.got) != 1 || e.RetryAfter <= 0 {
		t.Fatalf("%d tries (waits %v), RetryAfter %v: a huge Retry-After was ignored", len(s.got), *waits, e.RetryAfter)
	}
}

// TestReview16RetryAfterAsAnHTTPDate: the HTTP-date form is waited for
// (sound: this passes).
func TestReview16RetryAfterAsAnHTTPDate(t *testing.T) {
	t.Parallel()
	when := time.Now().Add(5 * time.Second).UTC().Format(http.TimeFormat)
	s := &script{answers: []func(http.ResponseWriter){answer(503, when, unavailable), answer(200, "", `{"id":"pay_x"}`)}}
	c, waits := newTest(t, s)
	if _, err := c.Payment(context.Background(), "pay_x"); err != nil || len(*waits) != 1 || (*waits)[0] < 3*time.Second {
		t.Fatalf("%v, waits %v", err, *waits)
	}
}

// TestReview16EmptyWebhookSecretIsRefused: a shop whose secret did not load
// (os.Getenv of an unset variable) verifies with "", and then anyone can
// sign a webhook: HMAC under an empty key is no secret.
func TestReview16EmptyWebhookSecretIsRefused(t *testing.T) {
	t.Parallel()
	body := []byte(`{"id":"evt_forged","type":"payment.succeeded","created":"2027-01-15T08:00:00Z","merchant":"mer_1","data":{}}`)
	forged := api.SignWebhook("", time.Now(), body)
	if ev, err := ParseWebhook("", forged, body); err == nil {
		t.Fatalf("a webhook signed by anyone was accepted under an empty secret: %s", ev.ID)
	}
}
