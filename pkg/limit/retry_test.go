package limit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/limit"
	"github.com/paypage/paypage/pkg/store/memory"
)

// A hit over a limit, and a check of a subject at its limit, say when to
// try again: what is left of the window its count began, not the whole
// window.
func TestRetryAfterIsWhatIsLeftOfTheWindow(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s := memory.New()
	s.Now = clock
	c, err := limit.NewCounter(s)
	if err != nil {
		t.Fatal(err)
	}
	c.Now = clock
	rule := limit.Rule{Name: "client", Max: 2, Window: time.Hour}
	for _, tc := range []struct {
		after time.Duration // since the window began
		want  time.Duration // Retry-After; 0: allowed
	}{
		{0, 0},
		{10 * time.Minute, 0},
		{25 * time.Minute, 35 * time.Minute},
		{59*time.Minute + 59*time.Second + 500*time.Millisecond, time.Second}, // never less than a second
	} {
		now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC).Add(tc.after)
		err := c.Hit(context.Background(), rule, "198.51.100.7")
		var ex *limit.Exceeded
		switch {
		case tc.want == 0 && err != nil:
			t.Fatalf("at +%v: %v", tc.after, err)
		case tc.want != 0 && (!errors.As(err, &ex) || ex.Rule != "client" || ex.RetryAfter != tc.want):
			t.Fatalf("at +%v: %v (%+v), want Retry-After %v", tc.after, err, ex, tc.want)
		}
	}
	now = time.Date(2026, 11, 28, 12, 40, 0, 0, time.UTC)
	var ex *limit.Exceeded
	if err := c.Check(context.Background(), rule, "198.51.100.7"); !errors.As(err, &ex) || ex.RetryAfter != 20*time.Minute {
		t.Fatalf("a check at +40m: %v, want Retry-After 20m", err)
	}
	if err := c.Check(context.Background(), rule, "198.51.100.8"); err != nil {
		t.Fatalf("another address: %v", err)
	}
}
