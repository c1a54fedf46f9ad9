package idempotency_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/idempotency"
	"github.com/paypage/paypage/pkg/store/memory"
)

func newKeys(t *testing.T) (*idempotency.Keys, *time.Time) {
	t.Helper()
	k, err := idempotency.New(memory.New(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	k.Now = func() time.Time { return now }
	return k, &now
}

func ids() func() string {
	n := 0
	return func() string { n++; return "obj_" + string(rune('a'+n-1)) }
}

func TestFirstAnswerIsKept(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k, _ := newKeys(t)
	newID := ids()
	first, c, err := k.Begin(ctx, "sessions", "mer_a", "order-1", []byte(`{"amount":1}`), newID)
	if err != nil || first != nil || c.ObjectID != "obj_a" {
		t.Fatalf("begin: %v %v %+v", err, first, c)
	}
	// A retry while the first still runs is told to retry.
	if _, _, err := k.Begin(ctx, "sessions", "mer_a", "order-1", []byte(`{"amount":1}`), newID); !errors.Is(err, idempotency.ErrInProgress) {
		t.Fatalf("concurrent retry: %v", err)
	}
	if err := k.Finish(ctx, c, idempotency.Answer{Status: 201, Body: []byte(`{"id":"obj_a"}`)}); err != nil {
		t.Fatal(err)
	}
	a, c2, err := k.Begin(ctx, "sessions", "mer_a", "order-1", []byte(`{"amount":1}`), newID)
	if err != nil || c2 != nil || a.Status != 201 || string(a.Body) != `{"id":"obj_a"}` {
		t.Fatalf("replay: %v %+v %+v", err, a, c2)
	}
	// Another body under the key is refused; the same key elsewhere is another key.
	if _, _, err := k.Begin(ctx, "sessions", "mer_a", "order-1", []byte(`{"amount":2}`), newID); !errors.Is(err, idempotency.ErrMismatch) {
		t.Fatalf("other body: %v", err)
	}
	for _, other := range [][2]string{{"sessions", "mer_b"}, {"refunds|pay_x", "mer_a"}} {
		if a, c, err := k.Begin(ctx, other[0], other[1], "order-1", []byte(`{"amount":2}`), newID); err != nil || a != nil || c == nil {
			t.Fatalf("%v: %v %v", other, err, a)
		}
	}
}

// The first try died after making its object: a retry past the hold goes
// on with the same object ID, so the object is made once.
func TestTakeoverKeepsTheObjectID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k, now := newKeys(t)
	newID := ids()
	_, c, _ := k.Begin(ctx, "refunds|pay_x", "mer_a", "r-1", nil, newID)
	*now = now.Add(k.Hold + time.Second)
	_, c2, err := k.Begin(ctx, "refunds|pay_x", "mer_a", "r-1", nil, newID)
	if err != nil || c2.ObjectID != c.ObjectID {
		t.Fatalf("takeover: %v, %+v vs %+v", err, c2, c)
	}
	// The dead holder's late Finish cannot overwrite the new holder's claim.
	if err := k.Finish(ctx, c, idempotency.Answer{Status: 201}); err == nil {
		t.Fatal("a stale claim finished")
	}
}

func TestReleaseAndAbandon(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k, _ := newKeys(t)
	newID := ids()
	_, c, _ := k.Begin(ctx, "s", "m", "k", []byte("a"), newID)
	if err := k.Release(ctx, c); err != nil {
		t.Fatal(err)
	}
	// Released (a 5xx): a retry goes on at once with the same ID.
	_, c2, err := k.Begin(ctx, "s", "m", "k", []byte("a"), newID)
	if err != nil || c2.ObjectID != c.ObjectID {
		t.Fatalf("after release: %v %+v", err, c2)
	}
	if err := k.Abandon(ctx, c2); err != nil {
		t.Fatal(err)
	}
	// Abandoned (a refusal that made nothing): the key is free for any request.
	if _, c3, err := k.Begin(ctx, "s", "m", "k", []byte("b"), newID); err != nil || c3.ObjectID == c.ObjectID {
		t.Fatalf("after abandon: %v %+v", err, c3)
	}
	if _, _, err := k.Begin(ctx, "s", "m", "", nil, newID); err == nil {
		t.Fatal("an empty key was taken")
	}
}
