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

	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/store"
)

// TestResumeAfterLostAnswer: the sandbox card 4000 0000 0000 0259 is
// approved, but the answer is lost on the way. The attempt stays in flight;
// with no page view, the reconciler asks again under the same attempt ID,
// learns the approval, and the payment succeeds once; the shop hears it once.
func TestResumeAfterLostAnswer(t *testing.T) {
	forEachStore(t, func(t *testing.T, o envOpts) {
		e := newEnv(t, o)
		id := e.session(map[string]any{"locale": "en"})["id"].(string)
		b := e.browser()
		p := b.pay(id, "4000 0000 0000 0259", "981")
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
		// Page views change nothing: the attempt is the server's to finish.
		for i := 0; i < 3; i++ {
			b.get("/pay/" + id)
		}
		if st, _ := sessionState(t, e, id); st != "open" {
			t.Fatalf("a page view moved the session: %s", st)
		}
		e.clock.Advance(6 * time.Second) // the first ask again is due 5 s after the lost answer
		e.reconcile()
		_, pay := sessionState(t, e, id)
		if pay["status"] != "succeeded" || len(pay["attempts"].([]any)) != 1 || pay["card"].(map[string]any)["last4"] != "0259" {
			t.Fatalf("payment %v", pay)
		}
		if n := countKind(t, e, "sbx_auth"); n != 1 {
			t.Fatalf("%d authorizations", n)
		}
		if p := b.follow(b.get("/pay/" + id)); !strings.Contains(p.body, "Payment successful") {
			t.Fatalf("after resuming:\n%s", p.body)
		}
		e.reconcile()
		if ev := eventTypes(t, e); ev["payment.succeeded"] != 1 || len(ev) != 1 {
			t.Fatalf("events %v", ev)
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
		mode := &atomic.Value{}
		mode.Store("pass")
		o.wrap = func(p processor.Processor) processor.Processor { return refundLine{p, mode} }
		hooks := newReceiver(t)
		o.webhookURL = hooks.srv.URL + "/hooks"
		e := newEnv(t, o)
		hooks.setSecret(e.hookSecret)
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
		settle := func() { e.reconcile() }
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
		mode.Store("pass")
		if settle(); fmt.Sprint(refundStatuses()) != "[pending]" {
			t.Fatalf("a refund less than a minute old was asked for again: %v", refundStatuses())
		}
		mode.Store("lost")
		e.clock.Advance(time.Minute)
		if settle(); fmt.Sprint(refundStatuses()) != "[pending]" {
			t.Fatalf("settled while the processor's answers are still lost: %v", refundStatuses())
		}
		mode.Store("pass")
		e.clock.Advance(time.Minute)
		settle()
		if p := payment(); p["status"] != "partially_refunded" || p["amount_refunded"].(float64) != 40000 || fmt.Sprint(refundStatuses()) != "[succeeded]" {
			t.Fatalf("after settling: %v", p)
		}
		if n := countKind(t, e, "sbx_refund"); n != 1 {
			t.Fatalf("the processor refunded %d times, asked three times for one refund", n)
		}
		e.clock.Advance(time.Minute)
		settle()
		if n := countKind(t, e, "sbx_refund"); n != 1 {
			t.Fatalf("a settled refund was asked for again: %d refunds", n)
		}

		// A refund the processor never saw, then refuses: failed, and its
		// amount is free again.
		mode.Store("down")
		if st, _ := refund(map[string]any{"amount": 10000}); st != 503 {
			t.Fatalf("processor down: %d", st)
		}
		mode.Store("refuse")
		e.clock.Advance(time.Minute)
		if settle(); fmt.Sprint(refundStatuses()) != "[succeeded failed]" {
			t.Fatalf("after the refusal: %v", refundStatuses())
		}
		if ev := eventTypes(t, e); ev["refund.succeeded"] != 1 || ev["refund.failed"] != 1 {
			t.Fatalf("events %v", ev)
		}
		hooks.waitForType(t, "refund.failed") // delivered, verified and checked against openapi.yaml
		mode.Store("pass")
		if st, r := refund(nil); st != 201 || r["amount"].(float64) != 110000 || r["status"] != "succeeded" {
			t.Fatalf("refund of what is left: %d %v", st, r)
		}
		if p := payment(); p["status"] != "refunded" || p["amount_refunded"].(float64) != 150000 {
			t.Fatalf("payment %v", p)
		}
	})
}

// lateLine holds an authorization's answer back until hold is closed, and
// has the processor answer "no answer yet" to inquiries while unknown is
// set: an approval that comes after its attempt was closed.
type lateLine struct {
	processor.Processor
	hold    chan struct{}
	started chan struct{} // closed when the authorization has been decided
	unknown *atomic.Bool
}

func (l lateLine) Authorize(ctx context.Context, r processor.AuthorizeRequest) (processor.Result, error) {
	res, err := l.Processor.Authorize(ctx, r)
	close(l.started)
	<-l.hold
	return res, err
}

func (l lateLine) Inquire(ctx context.Context, id string) (processor.Result, error) {
	if l.unknown.Load() {
		return processor.Result{}, processor.ErrUnknown
	}
	return l.Processor.Inquire(ctx, id)
}

// TestLateApprovalIsVoided: an approval that arrives after the reconciler
// closed its attempt (its owner's lease ran out, the processor had no
// answer past the give-up time) is voided at the processor, recorded on the
// payment, and told to the shop as payment.voided; the session is not
// captured.
func TestLateApprovalIsVoided(t *testing.T) {
	line := lateLine{hold: make(chan struct{}), started: make(chan struct{}), unknown: &atomic.Bool{}}
	hooks := newReceiver(t)
	e := newEnv(t, envOpts{webhookURL: hooks.srv.URL + "/hooks", poll: time.Hour,
		wrap: func(p processor.Processor) processor.Processor { line.Processor = p; return line }})
	hooks.setSecret(e.hookSecret)
	id := e.session(nil)["id"].(string)
	b := e.browser()
	paid := make(chan page, 1)
	go func() { paid <- b.pay(id, "4242 4242 4242 4242", "981") }()
	<-line.started
	line.unknown.Store(true)
	e.clock.Advance(payment.DefaultTiming.GiveUpAfter + payment.DefaultTiming.Lease)
	e.reconcile()
	if st, _ := sessionState(t, e, id); st != "open" {
		t.Fatalf("after the give-up: %s", st)
	}
	line.unknown.Store(false)
	close(line.hold)
	<-paid
	e.reconcile()
	st, p := sessionState(t, e, id)
	att := p["attempts"].([]any)
	if st != "open" || p["status"] == "succeeded" || len(att) != 1 || att[0].(map[string]any)["outcome"] != "voided" {
		t.Fatalf("session %s, payment %v", st, p)
	}
	hooks.waitForType(t, "payment.voided")
	if ev := eventTypes(t, e); ev["payment.voided"] != 1 || ev["payment.succeeded"] != 0 {
		t.Fatalf("events %v", ev)
	}
}
