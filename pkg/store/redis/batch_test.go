package redis_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/redis"
	"github.com/paypage/paypage/pkg/store/redis/redistest"
)

func open(t *testing.T) *redis.DB {
	t.Helper()
	db, err := redis.Open(context.Background(), redistest.Start(t).URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Concurrent calls share round trips, and each gets its own answer: 64
// callers each writing and reading their own records, counting on one
// counter and spending one bucket.
func TestConcurrentCallsShareRoundTrips(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	const callers, rounds = 64, 20
	before := db.RoundTrips()
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				k := store.K("thing", fmt.Sprintf("c%d-%d", c, i))
				want := fmt.Sprintf("v%d-%d", c, i)
				if err := db.Commit(ctx, store.Create(k, []byte(want), 0)); err != nil {
					errs <- err
					return
				}
				r, err := db.Get(ctx, k)
				if err != nil || string(r.Value) != want || r.Version != 1 {
					errs <- fmt.Errorf("%v: %q v%d %v", k, r.Value, r.Version, err)
					return
				}
				if _, _, err := db.Incr(ctx, store.K("count", "all"), time.Hour); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	calls := int64(callers * rounds * 3)
	trips := db.RoundTrips() - before
	if trips >= calls {
		t.Errorf("%d calls took %d round trips: none shared", calls, trips)
	}
	if n, _, err := db.Incr(ctx, store.K("count", "all"), time.Hour); err != nil || n != calls/3+1 {
		t.Errorf("counter %d %v, want %d", n, err, calls/3+1)
	}
	t.Logf("%d calls in %d round trips", calls, trips)
}

// Scripts run by their hash; after Redis forgets them (a restart, SCRIPT
// FLUSH) they are sent again.
func TestScriptsAfterFlush(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	if err := db.Client().ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := db.Commit(ctx, store.Create(store.K("thing", "a"), []byte("x"), 0)); err != nil {
		t.Fatal(err)
	}
	if err := db.Client().ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if w, err := db.Allow(ctx, store.K("bucket", "b"), store.Bucket{PerSecond: 1, Burst: 1}, time.Now()); err != nil || w != 0 {
		t.Fatal(w, err)
	}
	if err := db.Commit(ctx, store.Create(store.K("thing", "a"), []byte("y"), 0)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second create: %v, want a conflict", err)
	}
}

// Close answers the calls under way (or refuses them), and none waits
// forever.
func TestCloseUnderLoad(t *testing.T) {
	db, err := redis.Open(context.Background(), redistest.Start(t).URL())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := db.Get(ctx, store.K("thing", "x")); err != nil && !errors.Is(err, store.ErrNotFound) {
					return
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}

// A caller that stops waiting (its request ended) leaves its commands to
// the batcher, which still runs them: no answer is written where the
// caller reads (the race detector watches).
func TestCallerGoneMidway(t *testing.T) {
	db := open(t)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			if i%2 == 0 {
				cancel()
			} else {
				defer cancel()
			}
			k := store.K("thing", fmt.Sprint(i))
			_ = db.Commit(ctx, store.Create(k, []byte("x"), 0))
			_, _ = db.Get(ctx, k)
			_, _, _ = db.Incr(ctx, store.K("count", "x"), time.Hour)
			cancel()
		}()
	}
	wg.Wait()
}
