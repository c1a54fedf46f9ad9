package limit_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/limit"
)

// clock is a settable clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func allowed(l *limit.Local, src string, n int) (got int) {
	for range n {
		if l.Allow(src) {
			got++
		}
	}
	return got
}

func TestLocal(t *testing.T) {
	t.Parallel()
	t.Run("PerSource", func(t *testing.T) {
		t.Parallel()
		c := newClock()
		l := limit.NewLocal(limit.Rate{PerSecond: 2, Burst: 5}, limit.Rate{PerSecond: 100, Burst: 100}, 10, c.now)
		if n := allowed(l, "a", 20); n != 5 {
			t.Fatalf("one source's burst: %d of 20 allowed, want 5", n)
		}
		if n := allowed(l, "b", 1); n != 1 {
			t.Fatal("another source held back by the first")
		}
		if d := l.RetryAfter("a"); d != time.Second/2 && d != time.Second {
			t.Errorf("Retry-After %s", d)
		}
		c.advance(time.Second)
		if n := allowed(l, "a", 20); n != 2 {
			t.Fatalf("a second later: %d allowed, want 2", n)
		}
	})
	t.Run("AllSources", func(t *testing.T) {
		t.Parallel()
		c := newClock()
		l := limit.NewLocal(limit.Rate{PerSecond: 1, Burst: 2}, limit.Rate{PerSecond: 1, Burst: 10}, 1000, c.now)
		n := 0
		for i := range 100 {
			n += allowed(l, fmt.Sprint("src", i), 1)
		}
		if n != 10 {
			t.Fatalf("100 sources: %d allowed over a bucket of 10", n)
		}
		if d := l.RetryAfter("src-new"); d != time.Second {
			t.Errorf("Retry-After %s", d)
		}
		c.advance(3 * time.Second)
		if n := allowed(l, "src-new", 5); n != 2 {
			t.Fatalf("3 s later, a new source with a burst of 2: %d allowed", n)
		}
	})
	t.Run("MaxSources", func(t *testing.T) {
		t.Parallel()
		c := newClock()
		l := limit.NewLocal(limit.Rate{PerSecond: 1, Burst: 3}, limit.Rate{}, 2, c.now)
		allowed(l, "a", 1)
		allowed(l, "b", 1)
		if l.Allow("c") {
			t.Fatal("a third source tracked past the bound of 2")
		}
		c.advance(time.Second) // a and b are full again: forgotten
		if !l.Allow("c") || !l.Allow("d") {
			t.Fatal("new sources refused once the old ones' buckets were full again")
		}
		if l.Allow("e") {
			t.Fatal("a fifth source tracked past the bound of 2")
		}
	})
	t.Run("ZeroRateIsOff", func(t *testing.T) {
		t.Parallel()
		l := limit.NewLocal(limit.Rate{}, limit.Rate{}, 10, nil)
		if n := allowed(l, "a", 1000); n != 1000 {
			t.Fatalf("%d of 1000 allowed with no limit", n)
		}
	})
}
