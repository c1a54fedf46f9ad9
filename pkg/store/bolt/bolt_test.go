package bolt_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/bolt"
	"github.com/paypage/paypage/pkg/store/storetest"
)

// MustOpen opens a bolt store in a temporary directory.
func MustOpen(tb testing.TB) *bolt.DB {
	tb.Helper()
	db, err := bolt.Open(filepath.Join(tb.TempDir(), "paypage.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return MustOpen(t) })
}

func TestSweepRemovesExpired(t *testing.T) {
	db := MustOpen(t)
	ctx := context.Background()
	now := time.Now()
	db.Now = func() time.Time { return now }
	if err := db.Commit(ctx, store.Create(store.K("cvv", "a"), []byte("x"), time.Minute)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if err := db.Sweep(); err != nil {
		t.Fatal(err)
	}
	now = now.Add(-2 * time.Minute) // even with the clock back, the record is gone
	if _, err := db.Get(ctx, store.K("cvv", "a")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("swept record still there: %v", err)
	}
}

func TestClosedIsUnavailable(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := db.Get(context.Background(), store.K("a", "b")); !errors.Is(err, store.ErrUnavailable) && err.Error() == "" {
		t.Fatalf("err = %v", err)
	}
}

// BenchmarkStore is each round trip of a card payment on bolt.
func BenchmarkStore(b *testing.B) { storetest.Bench(b, MustOpen(b)) }
