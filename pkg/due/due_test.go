package due_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/due"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/memory"
)

func TestLookHandsDueKeysToTheirKind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := memory.New()
	now := time.Now()
	for i, k := range []store.Key{store.K("a", "1"), store.K("a", "2"), store.K("b", "3"), store.K("c", "4")} {
		if err := db.Commit(ctx, store.Create(k, nil, 0).At(now.Add(time.Duration(i)*time.Millisecond))); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Commit(ctx, store.Create(store.K("a", "later"), nil, 0).At(now.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	r, err := due.New(db, nil, func() time.Time { return now.Add(time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	release := make(chan struct{})
	handle := func(ctx context.Context, k store.Key) error {
		mu.Lock()
		seen[k.ID]++
		mu.Unlock()
		<-release
		return db.Commit(ctx, store.Update(k, nil, 1).Finished()) // done: out of the index
	}
	r.Handle("a", 1, handle) // one at a time
	r.Handle("b", 4, handle)
	n, err := r.Look(ctx)
	if err != nil || n != 2 {
		t.Fatalf("first look started %d (%v), want one a and one b", n, err)
	}
	// Keys being handled are not handed out again; a full kind waits.
	if n, _ := r.Look(ctx); n != 0 {
		t.Fatalf("second look started %d", n)
	}
	close(release)
	if err := r.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["1"] != 1 || seen["2"] != 1 || seen["3"] != 1 || seen["4"] != 0 || seen["later"] != 0 {
		t.Fatalf("handled %v: each due key of a handled kind once, nothing else", seen)
	}
	leftA, _ := db.Due(ctx, "a", now.Add(2*time.Hour), 10)
	leftC, _ := db.Due(ctx, "c", now.Add(2*time.Hour), 10)
	if len(leftA) != 1 || leftA[0].Key.ID != "later" || len(leftC) != 1 {
		t.Fatalf("left in the index: %v %v (the later key and the unhandled kind)", leftA, leftC)
	}
}

func TestWakeBringsTheNextLookForward(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := memory.New()
	r, _ := due.New(db, nil, nil)
	r.Poll = time.Hour
	got := make(chan store.Key, 1)
	r.Handle("x", 1, func(ctx context.Context, k store.Key) error {
		got <- k
		return db.Commit(ctx, store.Update(k, nil, 1).Finished())
	})
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	at := time.Now().Add(50 * time.Millisecond)
	if err := db.Commit(ctx, store.Create(store.K("x", "1"), nil, 0).At(at)); err != nil {
		t.Fatal(err)
	}
	r.Wake(at)
	select {
	case k := <-got:
		if k.ID != "1" {
			t.Fatalf("handled %v", k)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a wake did not bring the look forward from an hour's poll")
	}
	cancel()
	<-done
}

// oneKey is a runner on a settable clock over one key of kind "x", due
// now, whose handler h is told how many times it has been called (from 1).
// It returns the runner, the clock's advance and the count of calls.
func oneKey(t *testing.T, h func(n int) error) (*due.Runner, func(time.Duration), func() int) {
	t.Helper()
	db := memory.New()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	if err := db.Commit(context.Background(), store.Create(store.K("x", "1"), nil, 0).At(now)); err != nil {
		t.Fatal(err)
	}
	r, _ := due.New(db, nil, clock)
	calls := 0
	r.Handle("x", 1, func(context.Context, store.Key) error {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		return h(n)
	})
	return r, advance, func() int { mu.Lock(); defer mu.Unlock(); return calls }
}

// A handler that panics or fails does not take the replica down: the key
// rests, doubling, before it is handed out again here.
func TestFailingHandlerRests(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, advance, calls := oneKey(t, func(n int) error {
		if n == 1 {
			panic("a bad record")
		}
		return errors.New("still bad")
	})
	look := func() {
		t.Helper()
		if err := r.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	look() // panics: recovered
	look() // resting for a second: not handed out
	advance(1100 * time.Millisecond)
	look() // fails
	advance(1100 * time.Millisecond)
	look() // resting for two seconds now
	advance(time.Second)
	look()
	if n := calls(); n != 3 {
		t.Fatalf("handled %d times, want 3 (a panic, then after one second, then after two)", n)
	}
}

// A handler that says "later" (a sealed vault, not the key's fault) rests
// its key for the time it names, every time: no doubling.
func TestLaterRestsWithoutDoubling(t *testing.T) {
	t.Parallel()
	r, advance, calls := oneKey(t, func(int) error { return due.Later(time.Second, errors.New("sealed")) })
	for i := 0; i < 10; i++ { // ten looks, half a second apart
		if err := r.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		advance(500 * time.Millisecond)
	}
	if n := calls(); n != 5 {
		t.Fatalf("handled %d times in 5 s with a rest of 1 s each, want 5", n)
	}
}
