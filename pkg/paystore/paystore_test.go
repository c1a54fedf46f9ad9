package paystore_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/apiview"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/event"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/paystore"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/memory"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// full is a state with every field of the domain set, so a field the stored
// form forgets shows as a difference.
func full() *payment.State {
	c := &payment.Card{Token: "tok_x", Brand: card.Visa, Last4: "4242", ExpMonth: 12, ExpYear: 2031, Fingerprint: "fp_x"}
	tds := &payment.ThreeDS{Version: "2.2.0", TransStatus: "Y", ECI: "05", Challenged: true, DSTransID: "ds_x", Reason: "r"}
	s := payment.Session{
		ID: "ses_abc", Merchant: "mer_a", Amount: 150000, Currency: "KZT", Reference: "PNR", Description: "ALA-NQZ",
		SuccessURL: "https://s.example/ok", CancelURL: "https://s.example/no", Locale: "ru", Methods: []string{"card", "kaspi_qr"},
		Status: payment.SessionOpen, Created: t0, ExpiresAt: t0.Add(time.Hour), Attempts: 1, MaxAttempts: 3,
		LastDecline: &payment.Decline{Code: "do_not_honor", NetworkCode: "05"}, PurgeAt: t0.Add(400 * 24 * time.Hour),
		Live: &payment.Attempt{
			ID: "att_x", Method: "card", Stage: payment.StageAuthorizing, Started: t0.Add(time.Minute),
			Lease: payment.Lease{Owner: "own_x", Until: t0.Add(2 * time.Minute)}, Next: t0.Add(3 * time.Minute), Asks: 2, Authorizing: t0.Add(90 * time.Second), Checked: t0.Add(95 * time.Second),
			Card: c, Challenge: &payment.Challenge{TransID: "3ds_x", ACSURL: "https://acs.example", CReq: "creq"}, ThreeDS: tds,
			QR: &payment.QR{ID: "kqr_x", Payload: "https://kaspi.example", ExpiresAt: t0.Add(5 * time.Minute)},
		},
	}
	p := &payment.Payment{
		ID: "pay_abc", SessionID: "ses_abc", Merchant: "mer_a", Amount: 150000, Currency: "KZT", Status: payment.StatusPartiallyRefunded,
		Method: "card", Card: c, KaspiQR: "kqr_x", KaspiRef: "kref", Decline: &payment.Decline{Code: "x", NetworkCode: "05"}, ThreeDS: tds,
		AuthCode: "123456", ProcessorRef: "sbx_x", AmountRefunded: 100,
		Refunds:  []payment.Refund{{ID: "re_x", Amount: 100, Currency: "KZT", Status: payment.RefundPending, FailureCode: "f", ProcessorRef: "rf", Created: t0, NextTry: t0.Add(time.Minute)}},
		Attempts: []payment.Result{{ID: "att_w", Method: "card", Time: t0, Outcome: payment.OutcomeVoiding, Last4: "4242", Brand: "visa", ProcessorRef: "sbx_w", NextTry: t0.Add(time.Minute)}},
		Created:  t0,
	}
	return &payment.State{Session: s, Payment: p}
}

func newRepo(t *testing.T) (*paystore.Store, *memory.DB) {
	t.Helper()
	db := memory.New()
	r, err := paystore.New(db, func(id string) string { return apiview.PageURL("https://pay.example", id) }, func() time.Time { return t0 }, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r, db
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, db := newRepo(t)
	want := full()
	ses := want.Session
	if err := r.Create(ctx, &ses); err != nil {
		t.Fatal(err)
	}
	st, err := r.Load(ctx, "ses_abc")
	if err != nil {
		t.Fatal(err)
	}
	st.Payment = want.Payment
	if err := r.Save(ctx, st, payment.Change{Events: []payment.Event{{Type: payment.EventRefundSucceeded, Refund: "re_x"}}}); err != nil {
		t.Fatal(err)
	}
	got, err := r.LoadPayment(ctx, "pay_abc")
	if err != nil {
		t.Fatal(err)
	}
	want.Payment.Updated = t0
	if !reflect.DeepEqual(got.Session, want.Session) {
		t.Errorf("session:\n got %+v\nwant %+v", got.Session, want.Session)
	}
	if !reflect.DeepEqual(got.Payment, want.Payment) {
		t.Errorf("payment:\n got %+v\nwant %+v", got.Payment, want.Payment)
	}
	// Filed: the event at once, the payment at its pending refund's next
	// try, the session at its lease's end.
	for _, w := range []struct {
		kind string
		at   time.Time
	}{{event.Kind, t0}, {paystore.KindPayment, t0.Add(time.Minute)}, {paystore.KindSession, t0.Add(2 * time.Minute)}} {
		due, _ := db.Due(ctx, w.kind, t0.Add(24*time.Hour), 10)
		if len(due) != 1 || !due[0].At.Equal(w.at) {
			t.Fatalf("%s due %v, want at %v", w.kind, due, w.at)
		}
	}
	// The event carries the refund and the payment as the shop sees them.
	n := 0
	_ = db.Scan(ctx, event.Kind, func(_ string, rec store.Record) error {
		e, err := event.Decode(rec.Value)
		if err != nil || e.Type != payment.EventRefundSucceeded || e.Merchant != "mer_a" || !contains(string(e.Data), `"id":"re_x"`) {
			t.Errorf("event %+v %v", e, err)
		}
		n++
		return nil
	})
	if n != 1 {
		t.Fatalf("%d events", n)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestSaveChecksVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, _ := newRepo(t)
	ses := full().Session
	ses.Live = nil
	if err := r.Create(ctx, &ses); err != nil {
		t.Fatal(err)
	}
	if err := r.Create(ctx, &ses); !errors.Is(err, payment.ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
	a, _ := r.Load(ctx, ses.ID)
	b, _ := r.Load(ctx, ses.ID)
	if err := r.Save(ctx, a, payment.Change{}); err != nil {
		t.Fatal(err)
	}
	if err := r.Save(ctx, b, payment.Change{}); !errors.Is(err, payment.ErrConflict) {
		t.Fatalf("a stale save: %v", err)
	}
	if _, err := r.Load(ctx, "ses_none"); !errors.Is(err, payment.ErrSessionNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := r.LoadPayment(ctx, "pay_abc"); !errors.Is(err, payment.ErrPaymentNotFound) {
		t.Fatalf("a session without a payment: %v", err)
	}
}
