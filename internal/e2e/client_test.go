package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/api"
	"github.com/paypage/paypage/pkg/client"
)

// TestGoClient is a shop and a processor using the Go client against the
// real service: typed sessions, payments, refunds, events and detokenize,
// typed errors, a create retried under its own Idempotency-Key, a 429
// waited out as Retry-After says, and each webhook verified with
// ParseWebhook.
func TestGoClient(t *testing.T) {
	r := newReceiver(t)
	e := newEnv(t, envOpts{webhookURL: r.srv.URL + "/hooks", detokenize: 1})
	r.setSecret(e.hookSecret)
	ctx := context.Background()
	shop := e.client(e.key)

	params := api.SessionParams{Amount: 150000, Currency: "KZT", Reference: "PNR ABC123", SuccessURL: "https://shop.example/ok?session={SESSION_ID}",
		CancelURL: "https://shop.example/cart", Locale: "ru", Methods: []string{"card", "kaspi_qr"}}
	s, err := shop.CreateSession(ctx, params, client.IdempotencyKey("order-42"))
	if err != nil || s.Status != "open" || s.URL != e.url+"/pay/"+s.ID || len(s.Methods) != 2 || s.MaxAttempts != 3 {
		t.Fatalf("create: %v %+v", err, s)
	}
	again, err := shop.CreateSession(ctx, params, client.IdempotencyKey("order-42"))
	if err != nil || again.ID != s.ID {
		t.Fatalf("the same key made another session: %v %+v", err, again)
	}

	b := e.browser()
	b.follow(b.pay(s.ID, "4000 0000 0000 9995", "981"))
	b.follow(b.pay(s.ID, "4242 4242 4242 4242", "981"))
	paid, err := shop.Session(ctx, s.ID)
	if err != nil || paid.Status != "complete" || paid.Attempts != 2 || paid.Payment == nil || paid.Payment.Card.Last4 != "4242" {
		t.Fatalf("session: %v %+v", err, paid)
	}
	pay, err := shop.Payment(ctx, paid.PaymentID)
	if err != nil || pay.Status != "succeeded" || len(pay.Attempts) != 2 || pay.Attempts[0].Outcome != "insufficient_funds" {
		t.Fatalf("payment: %v %+v", err, pay)
	}

	part := int64(50000)
	ref, err := shop.CreateRefund(ctx, pay.ID, api.RefundParams{Amount: &part})
	if err != nil || ref.Status != "succeeded" || ref.Amount != part {
		t.Fatalf("refund: %v %+v", err, ref)
	}
	rest, err := shop.CreateRefund(ctx, pay.ID, api.RefundParams{})
	if err != nil || rest.Amount != 100000 {
		t.Fatalf("refund the rest: %v %+v", err, rest)
	}

	// Typed errors carry code, param and status.
	tooMuch := int64(1)
	_, err = shop.CreateRefund(ctx, pay.ID, api.RefundParams{Amount: &tooMuch})
	var ae *client.Error
	if !errors.As(err, &ae) || ae.Status != 409 || ae.Code != "conflict" {
		t.Fatalf("refund of a refunded payment: %v", err)
	}
	_, err = shop.CreateSession(ctx, api.SessionParams{Amount: 100, Currency: "KZT", SuccessURL: "https://shop.example/ok", CancelURL: "ftp://x"})
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Code != "invalid" || ae.Param != "cancel_url" {
		t.Fatalf("bad create: %v", err)
	}
	if _, err = shop.Payment(ctx, "pay_nothing"); !errors.As(err, &ae) || ae.Status != 404 || ae.Code != "not_found" {
		t.Fatalf("unknown payment: %v", err)
	}
	if _, err = e.client("sk_test_wrong").Session(ctx, s.ID); !errors.As(err, &ae) || ae.Status != 401 || ae.Code != "unauthorized" {
		t.Fatalf("wrong key: %v", err)
	}

	// Webhooks: each verified with the client, and listed with its delivery.
	got := r.waitFor(t, 4)
	types := map[string]bool{}
	for _, ev := range got {
		types[ev["type"].(string)] = true
	}
	for _, want := range []string{api.EventPaymentFailed, api.EventPaymentSucceeded, api.EventRefundSucceeded} {
		if !types[want] {
			t.Fatalf("no %s among %v", want, types)
		}
	}
	var list *api.EventList
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if list, err = shop.Events(ctx, "", 100); err != nil {
			t.Fatal(err)
		}
		delivered := 0
		for _, ev := range list.Data {
			if ev.Delivery != nil && ev.Delivery.State == "delivered" {
				delivered++
			}
		}
		if delivered == 4 || time.Now().After(deadline) {
			if delivered != 4 || len(list.Data) != 4 || list.Data[0].Type != api.EventPaymentFailed {
				t.Fatalf("events: %+v", list)
			}
			break
		}
	}
	page, err := shop.Events(ctx, list.Data[1].ID, 2)
	if err != nil || len(page.Data) != 2 || page.Data[0].ID != list.Data[2].ID {
		t.Fatalf("second page: %v %+v", err, page)
	}

	// The processor: detokenize at one call a second, the second call
	// waited out as Retry-After says, by the client's own retry.
	acq := e.client(e.procKey)
	for i := 0; i < 2; i++ {
		card, err := acq.Detokenize(ctx, pay.Card.Token)
		if err != nil || card.PAN != "4242424242424242" || card.Merchant != e.merchant || card.CardholderName != "IVAN PETROV" {
			t.Fatalf("detokenize %d: %v", i, err)
		}
	}
	_, err = acq.Detokenize(ctx, "tok_unknown")
	if !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("unknown token: %v", err)
	}
	if _, err := e.client(e.procKey, client.WithRetries(0)).Detokenize(ctx, pay.Card.Token); !errors.As(err, &ae) || ae.Status != 429 || ae.RetryAfter < time.Second || !ae.Temporary() {
		t.Fatalf("without retries, over the rate: %v", err)
	}
}

// TestClientSendsAnEmptyMethodsList: the server refuses "methods": [] (a
// rough edge of issue 16: it was taken as ["card"]); the client must send
// an empty list as it is, so a shop whose filter left no method hears so
// instead of getting a card session, while a nil list is left out (the
// default, card).
func TestClientSendsAnEmptyMethodsList(t *testing.T) {
	e := newEnv(t, envOpts{})
	shop := e.client(e.key, client.WithRetries(0))
	params := api.SessionParams{Amount: 100, Currency: "KZT", SuccessURL: "https://s.example/ok", CancelURL: "https://s.example/no", Methods: []string{}}
	s, err := shop.CreateSession(context.Background(), params)
	var ae *client.Error
	if !errors.As(err, &ae) || ae.Param != "methods" {
		t.Fatalf("Methods: []string{} made a session with methods %v (err %v)", s.Methods, err)
	}
	params.Methods = nil
	if s, err := shop.CreateSession(context.Background(), params); err != nil || len(s.Methods) != 1 || s.Methods[0] != "card" {
		t.Fatalf("Methods: nil: %v %+v", err, s)
	}
}
