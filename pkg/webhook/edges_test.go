package webhook_test

// Edge cases a hostile review of issue 11 found: each failed before its fix.

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/event"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/webhook"
)

// Promise: "one merchant's dead endpoint delays no one else's events". The
// cap is per merchant (4) inside a pool of 16 workers, so four merchants
// with hanging endpoints hold every worker: a fifth merchant's events wait
// for the hangs (10 s each by default, again at each back-off's end),
// however healthy its endpoint.
func TestHangingEndpointsLeaveWorkersForOthers(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	f := newFairRig(t, webhook.Options{Timeout: time.Minute, PerMerchant: 4})
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		h := newCounter(t, 200, block)
		m, _ := f.accounts.AddMerchant(ctx, "Hangs", h.srv.URL)
		f.events(t, m.ID, 10)
	}
	fine := newCounter(t, 200, nil)
	b, _ := f.accounts.AddMerchant(ctx, "Fine", fine.srv.URL)
	f.events(t, b.ID, 3)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := f.runner.Look(ctx); err != nil {
			t.Fatal(err)
		}
		if fine.count() == 3 {
			return
		}
	}
	t.Fatalf("the healthy merchant got %d of 3 events in 3 s behind four hanging endpoints", fine.count())
}

// barrier is a store whose Append waits (up to a second) until two callers
// are in it: two replicas handling the same due event at the same moment.
// A worker that lets only one of them append does not wait for ever.
type barrier struct {
	store.Store
	wg *sync.WaitGroup
}

func (b barrier) Append(ctx context.Context, log string, data []byte) (string, error) {
	b.wg.Done()
	both := make(chan struct{})
	go func() { b.wg.Wait(); close(both) }()
	select {
	case <-both:
	case <-time.After(time.Second):
	}
	return b.Store.Append(ctx, log, data)
}

// Promise: the shop hears each end once. Handle appends the event to the
// merchant's list before it takes the event's lease; two replicas that read
// the same due event both append it, one then loses the lease (or a replica
// dies between the append and the save), and GET /v1/events lists the event
// twice.
func TestEventListedOnce(t *testing.T) {
	ok := newCounter(t, 200, nil)
	f := newFairRig(t, webhook.Options{})
	ctx := context.Background()
	m, _ := f.accounts.AddMerchant(ctx, "Shop", ok.srv.URL)
	e := event.New("payment.succeeded", m.ID, map[string]int{"n": 1}, time.Now())
	if err := f.db.Commit(ctx, event.CreateOp("g1", e, time.Now())); err != nil {
		t.Fatal(err)
	}
	wg := new(sync.WaitGroup)
	wg.Add(2)
	var replicas []*webhook.Worker
	for i := 0; i < 2; i++ {
		w, err := webhook.New(barrier{f.db, wg}, f.accounts, nil, webhook.Options{AllowPrivate: true})
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, w)
	}
	var done sync.WaitGroup
	for _, w := range replicas {
		done.Add(1)
		go func() { defer done.Done(); _ = w.Handle(ctx, event.Key("g1", e.ID)) }()
	}
	done.Wait()
	recs, err := f.worker.List(ctx, m.ID, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || ok.count() != 1 {
		t.Fatalf("one event: listed %d times, delivered %d times", len(recs), ok.count())
	}
}
