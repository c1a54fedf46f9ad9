package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/processor"
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
