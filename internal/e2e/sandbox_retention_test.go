package e2e

// From the second hostile review of issue 11 (retention).

import (
	"context"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/store"
)

// Promise (README "Retention"; issue 14: "sessions, attempts and events
// after --record-retention ... nothing is ever deleted" no more). Every
// merchant is in test mode, so the sandbox processor and the sandbox Kaspi
// are where every payment goes, and they keep their records in the same
// store with no time to live and no deletion: an authorization (token,
// amount, auth code), each refund, and each Kaspi QR (the shop's order
// reference, its session ID, the merchant's name) stay for good after the
// session, its payment and its events are gone.
func TestSandboxRecordsFollowTheRecordRetention(t *testing.T) {
	e := newEnv(t, envOpts{})
	card := e.session(map[string]any{"reference": "order-4711"})["id"].(string)
	b := e.browser()
	b.follow(b.pay(card, "4242 4242 4242 4242", "981"))
	pay := "pay_" + card[len("ses_"):]
	if st, r, _ := e.api("POST", "/v1/payments/"+pay+"/refunds", e.key, map[string]any{"amount": 100}); st != 201 || r["status"] != "succeeded" {
		t.Fatalf("refund: %d %v", st, r)
	}
	kaspi := e.session(map[string]any{"methods": []string{"kaspi_qr"}, "reference": "order-4712"})["id"].(string)
	_, app := kaspiQR(t, e, e.browser(), kaspi)
	if p := scan(t, e, app, "pay"); p.status != 200 {
		t.Fatalf("app: %d", p.status)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, _ := sessionState(t, e, kaspi); st == "complete" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Kaspi QR was not paid")
		}
	}
	// The store's times to live run on its own clock (Redis's), not the
	// test's: each sandbox record must carry the record retention from its
	// last change, as the payment's own records.
	keep := 400 * 24 * time.Hour
	for _, k := range []string{"sbx_auth", "sbx_refund", "kaspi_qr"} {
		n := 0
		if err := e.app.Store().Scan(context.Background(), k, func(id string, r store.Record) error {
			n++
			if left := time.Until(r.ExpiresAt); r.ExpiresAt.IsZero() || left < keep-time.Minute || left > keep {
				t.Errorf("%s %s expires at %v: want the record retention (%v) from its last change", k, id, r.ExpiresAt, keep)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("no %s record", k)
		}
	}
}
