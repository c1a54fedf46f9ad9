package due_test

// Edge cases a hostile review of issue 11 found: each failed before its fix.

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/due"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/memory"
)

// Promise: due work is found through the index and each kind has workers of
// its own, so a backlog of one kind delays no other. Look reads only the
// Batch (200) earliest due keys, whatever their kind, and skips those whose
// kind has no free worker without moving them: while 200 or more keys of one
// busy kind are due earlier, a key of any other kind is never handed out,
// though its workers are idle. Events to slow endpoints (16 workers, 10 s
// timeouts) stop every session's Kaspi poll, lost-answer ask and expiry;
// sessions asking a hanging processor (32 workers, 20 s deadlines) stop
// every webhook and refund.
func TestBusyKindDelaysNoOther(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		busy    string
		workers int
		other   string
	}{
		{"event", 16, "session"},
		{"session", 32, "payment"},
	} {
		t.Run(tc.busy, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := memory.New()
			now := time.Now()
			for i := 0; i < 250; i++ {
				k := store.K(tc.busy, fmt.Sprintf("b%03d", i))
				if err := db.Commit(ctx, store.Create(k, nil, 0).At(now.Add(time.Duration(i)*time.Millisecond))); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.Commit(ctx, store.Create(store.K(tc.other, "o1"), nil, 0).At(now.Add(time.Second))); err != nil {
				t.Fatal(err)
			}
			r, err := due.New(db, nil, func() time.Time { return now.Add(time.Minute) })
			if err != nil {
				t.Fatal(err)
			}
			release := make(chan struct{})
			defer close(release)
			r.Handle(tc.busy, tc.workers, func(ctx context.Context, k store.Key) error {
				<-release // a slow call, up to its deadline
				return nil
			})
			got := make(chan store.Key, 1)
			r.Handle(tc.other, 8, func(ctx context.Context, k store.Key) error {
				got <- k
				return db.Commit(ctx, store.Update(k, nil, 1).Finished())
			})
			for i := 0; i < 5; i++ { // five looks: five seconds of the reconciler's poll
				if _, err := r.Look(ctx); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-got:
			case <-time.After(2 * time.Second):
				t.Fatalf("a %s key due for a minute, with idle workers, was never handed out behind 250 due %s keys whose %d workers are busy",
					tc.other, tc.busy, tc.workers)
			}
		})
	}
}

// countingStore counts Due reads.
type countingStore struct {
	store.Store
	mu   sync.Mutex
	dues int
}

func (c *countingStore) Due(ctx context.Context, kind string, now time.Time, limit int) ([]store.DueKey, error) {
	c.mu.Lock()
	c.dues++
	c.mu.Unlock()
	return c.Store.Due(ctx, kind, now, limit)
}

func (c *countingStore) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dues
}

// Promise: the cost of finding work follows the work that is due. Every
// paystore save calls Wake with its due time (a session's expiry a day
// ahead, a lease's end 30 s ahead), and Wake makes Run look at once, whatever
// that time: each commit costs a full read of the due index (32
// ZRANGEBYSCOREs on a Cluster) although nothing it filed is due.
func TestWakeForLaterDoesNotLookNow(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := &countingStore{Store: memory.New()}
	r, err := due.New(db, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Poll = time.Hour
	r.Handle("session", 4, func(context.Context, store.Key) error { return nil })
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	time.Sleep(50 * time.Millisecond) // the first look
	before := db.count()
	for i := 0; i < 100; i++ { // a hundred sessions created, each due in a day
		r.Wake(time.Now().Add(24 * time.Hour))
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if n := db.count() - before; n > 2 {
		t.Fatalf("100 wakes for a day ahead made %d reads of the due index now", n)
	}
}
