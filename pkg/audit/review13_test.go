package audit_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/audit"
)

// Review of issue 13 (reproduction, fails today): once a window has seen
// maxSources distinct sources, every further source is folded into
// "(other sources)" and Add/Count answer 0 for it, so the refusal limit
// (web.authenticate: Count(source) >= max -> 429) never holds it up: it may
// make unlimited refused calls, each one a key lookup in the store.
func TestReviewRefusalsPastTheBoundStillCount(t *testing.T) {
	t.Parallel()
	l, _, _ := newLog(t)
	r := audit.NewRefusals(l, time.Minute, 3, nil)
	for i := 0; i < 3; i++ { // three sources fill the table with one refusal each
		r.Add(audit.Event{Actor: "unknown", Action: "detokenize", Reason: "unauthorized", Source: fmt.Sprintf("198.51.100.%d", i)})
	}
	const flood = 1000
	for i := 0; i < flood; i++ {
		r.Add(audit.Event{Actor: "unknown", Action: "detokenize", Reason: "unauthorized", Source: "203.0.113.66"})
	}
	if n := r.Count("203.0.113.66"); n < 30 {
		t.Fatalf("a fourth source made %d refused calls and its count is %d: the limit of 30 never applies to it", flood, n)
	}
}
