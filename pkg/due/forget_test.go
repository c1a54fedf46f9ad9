package due_test

// From the second hostile review of issue 11.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/due"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/memory"
)

// limitStore records the limit of each Due read.
type limitStore struct {
	store.Store
	mu     sync.Mutex
	limits []int
}

func (l *limitStore) Due(ctx context.Context, kind string, now time.Time, limit int) ([]store.DueKey, error) {
	l.mu.Lock()
	l.limits = append(l.limits, limit)
	l.mu.Unlock()
	return l.Store.Due(ctx, kind, now, limit)
}

func (l *limitStore) last() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limits[len(l.limits)-1]
}

// Promise: "the cost of a look follows the work that is due". A key whose
// handler failed here rests in the runner's map; when another replica does
// its work (every replica reads the same index), a look that finds it no
// longer due forgets it, so later looks do not read past it for ever.
func TestRestingKeysHandledElsewhereAreForgotten(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := &limitStore{Store: memory.New()}
	now := time.Now()
	const n = 300
	for i := 0; i < n; i++ {
		k := store.K("event", fmt.Sprintf("e%03d", i))
		if err := db.Commit(ctx, store.Create(k, nil, 0).At(now)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := due.New(db, slog.New(slog.DiscardHandler), func() time.Time { return now.Add(time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	r.Handle("event", 16, func(context.Context, store.Key) error { return errors.New("the vault is sealed") })
	for i := 0; i < 2*n/16+2; i++ { // each key fails once here
		if err := r.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Another replica delivers every one of them: none is due any more.
	for i := 0; i < n; i++ {
		if err := db.Commit(ctx, store.Update(store.K("event", fmt.Sprintf("e%03d", i)), nil, store.Any).Finished()); err != nil {
			t.Fatal(err)
		}
	}
	// The first look still reads past them, finds none due and forgets
	// them; the next reads what its free workers can take, no more.
	for i := 0; i < 2; i++ {
		if err := r.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := db.last(); got > 16 {
		t.Fatalf("with nothing due, a look asks the index for %d keys (16 free workers + %d keys that failed here once and were done elsewhere): they are never forgotten", got, got-16)
	}
}
