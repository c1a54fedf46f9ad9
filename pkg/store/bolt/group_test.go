package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/paypage/paypage/pkg/store"
	bbolt "go.etcd.io/bbolt"
)

func open(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "paypage.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// holdWriter makes the writer busy in a transaction until the returned
// function is called with the number of writes to wait for: those queue
// meanwhile, and the writer takes them all in its next group.
func holdWriter(t *testing.T, db *DB) (release func(queued int), done <-chan error) {
	t.Helper()
	started, proceed := make(chan struct{}), make(chan int)
	errc := make(chan error, 1)
	go func() {
		errc <- db.update(context.Background(), func(*bbolt.Tx) error {
			close(started)
			n := <-proceed
			for len(db.writes) < n { // the others queue while this transaction runs
				runtime.Gosched()
			}
			return nil
		})
	}()
	<-started
	return func(n int) { proceed <- n }, errc
}

// each runs f(i) for i in [0, n) in goroutines of their own; wait waits for
// them, and then errs holds what each returned.
func each(n int, f func(i int) error) (errs []error, wait func()) {
	errs = make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f(i) }()
	}
	return errs, wg.Wait
}

// Writes that wait while a transaction runs commit together in the next
// one, each with its own answer: a conflict is one write's answer and the
// others in its group commit.
func TestGroupCommit(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	if err := db.Commit(ctx, store.Create(store.K("thing", "taken"), []byte("x"), 0)); err != nil {
		t.Fatal(err)
	}
	before := db.Groups()
	release, held := holdWriter(t, db)
	const n = 40
	errs, wait := each(n, func(i int) error {
		id := fmt.Sprint(i)
		if i == 7 {
			id = "taken" // a create that must conflict
		}
		return db.Commit(ctx, store.Create(store.K("thing", id), []byte(id), 0))
	})
	release(n)
	wait()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if got := db.Groups() - before; got != 2 {
		t.Errorf("%d transactions for the held one and %d writes queued behind it, want 2", got, n)
	}
	for i, err := range errs {
		if i == 7 {
			if !errors.Is(err, store.ErrConflict) {
				t.Errorf("create of a taken key: %v, want a conflict", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("write %d: %v", i, err)
		}
		if r, err := db.Get(ctx, store.K("thing", fmt.Sprint(i))); err != nil || string(r.Value) != fmt.Sprint(i) {
			t.Errorf("record %d: %q %v", i, r.Value, err)
		}
	}
}

// A write that fails its group's transaction (here a key bbolt refuses)
// fails alone: the others of its group run again and commit.
func TestGroupSurvivesAFailedWrite(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	release, held := holdWriter(t, db)
	const n = 10
	errs, wait := each(n, func(i int) error {
		id := fmt.Sprint(i)
		if i == 3 {
			id = strings.Repeat("k", bbolt.MaxKeySize+1)
		}
		return db.Commit(ctx, store.Put(store.K("thing", id), []byte("v")))
	})
	release(n)
	wait()
	<-held
	for i, err := range errs {
		if (i == 3) != (err != nil) {
			t.Errorf("write %d: %v", i, err)
		}
		if i != 3 {
			if _, err := db.Get(ctx, store.K("thing", fmt.Sprint(i))); err != nil {
				t.Errorf("record %d: %v", i, err)
			}
		}
	}
}

// A write whose function panics fails alone, with an error that carries
// nothing of the panic's value; its group's other writes are committed and
// the writer goes on.
func TestGroupSurvivesAPanickingWrite(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	release, held := holdWriter(t, db)
	const n = 6
	errs, wait := each(n, func(i int) error {
		if i == 2 {
			return db.update(ctx, func(*bbolt.Tx) error { panic("4242424242424242") })
		}
		return db.Commit(ctx, store.Put(store.K("thing", fmt.Sprint(i)), []byte("v")))
	})
	release(n)
	wait()
	<-held
	for i, err := range errs {
		if (i == 2) != (err != nil) {
			t.Errorf("write %d: %v", i, err)
		}
		if err != nil && strings.Contains(err.Error(), "4242") {
			t.Errorf("the panic's value in the error: %v", err)
		}
	}
	if err := db.Commit(ctx, store.Put(store.K("thing", "after"), []byte("v"))); err != nil {
		t.Fatalf("a write after the panic: %v", err)
	}
	for _, id := range []string{"0", "1", "3", "4", "5", "after"} {
		if _, err := db.Get(ctx, store.K("thing", id)); err != nil {
			t.Errorf("record %s: %v", id, err)
		}
	}
}

// Writes queued when the store closes are committed before it closes, and
// a write after Close is refused.
func TestCloseFinishesQueuedWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "paypage.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	release, held := holdWriter(t, db)
	errs, wait := each(5, func(i int) error { return db.Commit(ctx, store.Put(store.K("thing", fmt.Sprint(i)), []byte("v"))) })
	for len(db.writes) < 5 {
		runtime.Gosched()
	}
	closed := make(chan error)
	go func() { closed <- db.Close() }()
	for !isClosed(db) { // Close has begun while the writes wait
		runtime.Gosched()
	}
	release(5)
	wait()
	<-held
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("write %d queued at Close: %v", i, err)
		}
	}
	if err := db.Commit(ctx, store.Put(store.K("thing", "late"), nil)); err == nil {
		t.Fatal("a write after Close")
	}
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 5 {
		if _, err := db.Get(ctx, store.K("thing", fmt.Sprint(i))); err != nil {
			t.Errorf("write %d lost at Close: %v", i, err)
		}
	}
}

func isClosed(db *DB) bool {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.closed
}
