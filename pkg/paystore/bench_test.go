package paystore

import (
	"context"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/event"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/storetest"
)

// paid is a session whose card payment just succeeded, as the last commit
// of a payment writes it.
func paid(now time.Time) *payment.State {
	id := payment.NewSessionID()
	s := payment.Session{ID: id, Merchant: "mer_a", Amount: 150000, Currency: "KZT", Reference: "PNR ABC123", Description: "Almaty - Astana",
		SuccessURL: "https://shop.example/ok", CancelURL: "https://shop.example/no", Locale: "en", Methods: []string{payment.MethodCard},
		Status: payment.SessionOpen, Created: now, ExpiresAt: now.Add(time.Hour), MaxAttempts: 3}
	c := &payment.Card{Token: "tok_aaaaaaaaaaaaaaaaaaaaaaaaaa", Brand: "visa", Last4: "4242", ExpMonth: 12, ExpYear: 2030, Fingerprint: "fp_0123456789abcdef01234567"}
	p := &payment.Payment{ID: payment.PaymentIDFor(id), SessionID: id, Merchant: "mer_a", Amount: 150000, Currency: "KZT", Status: payment.StatusSucceeded,
		Method: payment.MethodCard, Card: c, AuthCode: "123456", ProcessorRef: "sbx_x", Created: now,
		ThreeDS:  &payment.ThreeDS{Version: "2.2.0", TransStatus: "Y", ECI: "05", DSTransID: "ds_x"},
		Attempts: []payment.Result{{ID: "att_x", Method: payment.MethodCard, Time: now, Outcome: payment.StatusSucceeded, Last4: "4242", Brand: "visa"}}}
	return &payment.State{Session: s, Payment: p}
}

// BenchmarkCommit is the last commit of a card payment: the session
// completed, its payment succeeded, and the payment.succeeded event, in one
// atomic commit checked against the versions read.
func BenchmarkCommit(b *testing.B) {
	ctx := context.Background()
	storetest.EachEngine(b, func(b *testing.B, db store.Store) {
		repo, err := New(db, func(id string) string { return "https://pay.example/pay/" + id }, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			st := paid(time.Now())
			pay := st.Payment
			st.Payment = nil
			if err := repo.Create(ctx, &st.Session); err != nil {
				b.Fatal(err)
			}
			st.Rev.Session = 1
			st.Session.Status, st.Payment = payment.SessionComplete, pay
			b.StartTimer()
			if err := repo.Save(ctx, st, payment.Change{Events: []payment.Event{{Type: payment.EventPaymentSucceeded}}}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEvent is the webhook event a payment's commit writes: the
// payment's API view, the event and its stored form, with no I/O.
func BenchmarkEvent(b *testing.B) {
	repo := &Store{pageURL: func(id string) string { return "https://pay.example/pay/" + id }}
	now := time.Now()
	st := paid(now)
	b.ReportAllocs()
	for b.Loop() {
		op := event.CreateOp("g", repo.event(st, payment.Event{Type: payment.EventPaymentSucceeded}, now), now)
		if len(op.Value) == 0 {
			b.Fatal("empty event")
		}
	}
}
