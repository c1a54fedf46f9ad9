package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/store"
)

// lostAnswer is a processor connection that drops the answer: the processor
// authorizes, but we never learn it (a timeout, a crash).
type lostAnswer struct{ processor.Processor }

func (l lostAnswer) Authorize(ctx context.Context, r processor.AuthorizeRequest) (processor.Result, error) {
	_, _ = l.Processor.Authorize(ctx, r)
	return processor.Result{}, errors.New("connection reset")
}

// TestResumeAfterLostAnswer: when the processor's answer is lost, the
// attempt stays in flight; the next look at the session asks again under the
// same attempt ID, learns the approval, and the payment succeeds once.
func TestResumeAfterLostAnswer(t *testing.T) {
	forEachStore(t, func(t *testing.T, o envOpts) {
		e := newEnv(t, o)
		real := e.app.Payments.Processor
		e.app.Payments.Processor = lostAnswer{real}
		id := e.session(map[string]any{"locale": "en"})["id"].(string)
		b := e.browser()
		p := b.pay(id, "4242 4242 4242 4242", "981")
		if p.status != 503 || !strings.Contains(p.body, "Processing your payment") {
			t.Fatalf("lost answer: %d\n%s", p.status, p.body)
		}
		if st, pay := sessionState(t, e, id); st != "open" || pay["status"] != "processing" {
			t.Fatalf("in flight: %s %v", st, pay["status"])
		}
		// A second submit meanwhile is refused: one attempt at a time.
		if p := b.follow(b.pay(id, "5555 5555 5555 4444", "981")); !strings.Contains(p.body, "Processing your payment") {
			t.Fatalf("second submit while in flight:\n%s", p.body)
		}
		e.app.Payments.Processor = real
		e.clock.Advance(time.Minute)
		p = b.follow(b.get("/pay/" + id))
		if !strings.Contains(p.body, "Payment successful") {
			t.Fatalf("after resuming:\n%s", p.body)
		}
		_, pay := sessionState(t, e, id)
		if pay["status"] != "succeeded" || len(pay["attempts"].([]any)) != 1 || pay["card"].(map[string]any)["last4"] != "4242" {
			t.Fatalf("payment %v", pay)
		}
		if n := countKind(t, e, "sbx_auth"); n != 1 {
			t.Fatalf("%d authorizations", n)
		}
		assertNoHeldCVV(t, e)
	})
}

// refundLine is a processor connection whose refund answers the test
// controls: passed on, lost after the processor acted, lost before it was
// reached, or a refusal.
type refundLine struct {
	processor.Processor
	mode *atomic.Value // "pass", "lost", "down" or "refuse"
}

func (l refundLine) Refund(ctx context.Context, r processor.RefundRequest) (processor.RefundResult, error) {
	switch l.mode.Load() {
	case "lost":
		_, _ = l.Processor.Refund(ctx, r)
		return processor.RefundResult{}, errors.New("connection reset")
	case "down":
		return processor.RefundResult{}, errors.New("connection refused")
	case "refuse":
		return processor.RefundResult{Code: "refund_refused"}, nil
	}
	return l.Processor.Refund(ctx, r)
}

// eventTypes counts the events written, by type.
func eventTypes(t *testing.T, e *env) map[string]int {
	t.Helper()
	n := map[string]int{}
	err := e.app.Store().Scan(context.Background(), "event", func(_ string, r store.Record) error {
		var ev struct{ Type string }
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			return err
		}
		n[ev.Type]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRefundAfterLostAnswer: a refund whose answer is lost stays pending,
// holds its amount, and is settled by the service itself a minute later,
// under its own ID: the money goes back once, and the shop hears how it
// ended by webhook.
func TestRefundAfterLostAnswer(t *testing.T) {
	forEachStore(t, func(t *testing.T, o envOpts) {
		e := newEnv(t, o)
		mode := &atomic.Value{}
		mode.Store("pass")
		e.app.Payments.Processor = refundLine{e.app.Payments.Processor, mode}
		s := e.session(nil)
		b := e.browser()
		b.follow(b.pay(s["id"].(string), "4242 4242 4242 4242", "981"))
		pay := "pay_" + s["id"].(string)[4:]
		refund := func(body any) (int, map[string]any) {
			st, r, _ := e.api("POST", "/v1/payments/"+pay+"/refunds", e.key, body)
			return st, r
		}
		payment := func() map[string]any {
			_, p, _ := e.api("GET", "/v1/payments/"+pay, e.key, nil)
			return p
		}
		settle := func() int {
			n, _ := e.app.Payments.SettlePendingRefunds(context.Background(), time.Minute)
			return n
		}
		refundStatuses := func() []string {
			var out []string
			for _, r := range payment()["refunds"].([]any) {
				out = append(out, r.(map[string]any)["status"].(string))
			}
			return out
		}

		mode.Store("lost")
		if st, r := refund(map[string]any{"amount": 40000}); st != 503 || r["error"].(map[string]any)["code"] != "unavailable" {
			t.Fatalf("lost answer: %d %v", st, r)
		}
		if p := payment(); p["status"] != "succeeded" || p["amount_refunded"].(float64) != 0 || fmt.Sprint(refundStatuses()) != "[pending]" {
			t.Fatalf("after the lost answer: %v", p)
		}
		// The pending refund holds its amount: no more than 110000 is left.
		if st, r := refund(map[string]any{"amount": 110001}); st != 400 || r["error"].(map[string]any)["param"] != "amount" {
			t.Fatalf("refund over what a pending one leaves: %d %v", st, r)
		}
		if n := settle(); n != 0 {
			t.Fatalf("settled %d refunds less than a minute old", n)
		}
		e.clock.Advance(time.Minute)
		if n := settle(); n != 0 || fmt.Sprint(refundStatuses()) != "[pending]" {
			t.Fatalf("settled %d while the processor's answers are still lost: %v", n, refundStatuses())
		}
		mode.Store("pass")
		if n := settle(); n != 1 {
			t.Fatalf("settled %d, want 1", n)
		}
		if p := payment(); p["status"] != "partially_refunded" || p["amount_refunded"].(float64) != 40000 || fmt.Sprint(refundStatuses()) != "[succeeded]" {
			t.Fatalf("after settling: %v", p)
		}
		if n := countKind(t, e, "sbx_refund"); n != 1 {
			t.Fatalf("the processor refunded %d times, asked three times for one refund", n)
		}
		if n := settle(); n != 0 || countKind(t, e, "pending_refund") != 0 {
			t.Fatalf("a settled refund settled again (%d) or still marked", n)
		}

		// A refund the processor never saw, then refuses: failed, and its
		// amount is free again.
		mode.Store("down")
		if st, _ := refund(map[string]any{"amount": 10000}); st != 503 {
			t.Fatalf("processor down: %d", st)
		}
		mode.Store("refuse")
		e.clock.Advance(time.Minute)
		if n := settle(); n != 1 || fmt.Sprint(refundStatuses()) != "[succeeded failed]" {
			t.Fatalf("settled %d: %v", n, refundStatuses())
		}
		if ev := eventTypes(t, e); ev["refund.succeeded"] != 1 || ev["refund.failed"] != 1 {
			t.Fatalf("events %v", ev)
		}
		mode.Store("pass")
		if st, r := refund(nil); st != 201 || r["amount"].(float64) != 110000 || r["status"] != "succeeded" {
			t.Fatalf("refund of what is left: %d %v", st, r)
		}
		if p := payment(); p["status"] != "refunded" || p["amount_refunded"].(float64) != 150000 {
			t.Fatalf("payment %v", p)
		}
	})
}
