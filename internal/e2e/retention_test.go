package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/store"
)

// TestRetention: card data is kept only as long as it is needed. A card
// that paid nothing (declined) is deleted an hour after it was entered, and
// its token answers 404 token_deleted from then on; a card that paid is kept
// for the card retention after its payment's last change (a refund moves it
// on); ended sessions, payments and events go after the record retention.
// All of it is due work for the reconciler, found through the due index.
func TestRetention(t *testing.T) {
	forEachStore(t, func(t *testing.T, o envOpts) {
		e := newEnv(t, o)
		ctx := context.Background()
		cards := func() int {
			t.Helper()
			n := 0
			if err := e.app.Store().Scan(ctx, "card", func(string, store.Record) error { n++; return nil }); err != nil {
				t.Fatal(err)
			}
			return n
		}
		detok := func(token string) (int, string) {
			t.Helper()
			st, d, _ := e.api("POST", "/v1/detokenize", e.procKey, map[string]any{"token": token})
			code := ""
			if er, ok := d["error"].(map[string]any); ok {
				code, _ = er["code"].(string)
			}
			return st, code
		}
		tokenOf := func(id string) string {
			t.Helper()
			_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
			return s["payment"].(map[string]any)["card"].(map[string]any)["token"].(string)
		}
		// A declined card, and a paid one.
		declined := e.session(nil)["id"].(string)
		b := e.browser()
		b.follow(b.pay(declined, "4000 0000 0000 0002", "981"))
		paid := e.session(nil)["id"].(string)
		b.follow(b.pay(paid, "4242 4242 4242 4242", "981"))
		dead, kept := tokenOf(declined), tokenOf(paid)
		if n := cards(); n != 2 {
			t.Fatalf("%d cards sealed", n)
		}
		e.clock.Advance(59 * time.Minute)
		e.reconcile()
		if st, _ := detok(dead); st != 200 || cards() != 2 {
			t.Fatalf("a card was deleted before its hour: %d, %d cards", st, cards())
		}
		e.clock.Advance(2 * time.Minute)
		e.reconcile()
		if st, code := detok(dead); st != http.StatusNotFound || code != "token_deleted" {
			t.Fatalf("the declined card's token: %d %s, want 404 token_deleted", st, code)
		}
		if st, _ := detok(kept); st != 200 {
			t.Fatalf("the paid card's token: %d", st)
		}
		if n := cards(); n != 1 {
			t.Fatalf("%d cards left, want the paid one", n)
		}
		// The declined session expires a day on (the reconciler writes it
		// down, with its event); a refund after 300 days moves the paid
		// card's retention on.
		e.clock.Advance(24 * time.Hour)
		e.reconcile()
		e.clock.Advance(299 * 24 * time.Hour)
		pay := "pay_" + paid[len("ses_"):]
		if st, r, _ := e.api("POST", "/v1/payments/"+pay+"/refunds", e.key, map[string]any{"amount": 1000}); st != 201 || r["status"] != "succeeded" {
			t.Fatalf("refund: %d %v", st, r)
		}
		e.clock.Advance(101 * 24 * time.Hour) // 401 days after the payment, 101 after the refund
		e.reconcile()
		if st, _ := detok(kept); st != 200 {
			t.Fatalf("a card refunded 101 days ago is gone: %d", st)
		}
		if st, _, _ := e.api("GET", "/v1/sessions/"+paid, e.key, nil); st != 200 {
			t.Fatalf("a session refunded 101 days ago is gone: %d", st)
		}
		e.clock.Advance(300 * 24 * time.Hour)
		e.reconcile()
		e.reconcile() // the card review sees its session gone, or past its time
		if st, code := detok(kept); st != http.StatusNotFound || code != "token_deleted" {
			t.Fatalf("the paid card 400 days after its refund: %d %s\n%s", st, code, grepLines(e.logs.String(), "due"))
		}
		for _, id := range []string{declined, paid} {
			if st, _, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil); st != http.StatusNotFound {
				t.Fatalf("session %s after the record retention: %d", id, st)
			}
		}
		if ev := eventTypes(t, e); len(ev) != 0 {
			t.Fatalf("events left after the record retention: %v", ev)
		}
		if n := cards(); n != 0 {
			t.Fatalf("%d cards left", n)
		}
		// keys status counts what is left: no cards.
		st, err := e.app.Vault.Status(ctx, e.app.SealedKinds()...)
		if err != nil {
			t.Fatal(err)
		}
		if n, ok := st.Records["cards"]; !ok || n != 0 {
			t.Fatalf("keys status records: %v", st.Records)
		}
	})
}
