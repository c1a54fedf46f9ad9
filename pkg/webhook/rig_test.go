package webhook_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/account"
	"github.com/paypage/paypage/pkg/due"
	"github.com/paypage/paypage/pkg/event"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/memory"
	"github.com/paypage/paypage/pkg/vault"
	"github.com/paypage/paypage/pkg/webhook"
)

// settable is a clock a test moves by hand.
type settable struct {
	mu sync.Mutex
	t  time.Time
}

func (c *settable) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *settable) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// clockRig is a worker and a runner over a memory store (the worker sees
// it through wrap, when given), with the vault at hand and a settable clock.
type clockRig struct {
	clock    *settable
	db       *memory.DB
	vault    *vault.Vault
	kek      vault.KEK
	accounts *account.Service
	worker   *webhook.Worker
	runner   *due.Runner
}

func newClockRig(t *testing.T, o webhook.Options, wrap func(store.Store) store.Store) *clockRig {
	t.Helper()
	clock := &settable{t: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}
	db := memory.New()
	db.Now = clock.Now
	kek, _ := vault.NewLocalKEK(make([]byte, 32))
	v, err := vault.Open(context.Background(), db, kek)
	if err != nil {
		t.Fatal(err)
	}
	accounts := account.New(db, v)
	var st store.Store = db
	if wrap != nil {
		st = wrap(db)
	}
	o.AllowPrivate, o.Now = true, clock.Now
	w, err := webhook.New(st, accounts, slog.New(slog.DiscardHandler), o)
	if err != nil {
		t.Fatal(err)
	}
	r, err := due.New(db, slog.New(slog.DiscardHandler), clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	r.Handle(event.Kind, 16, w.Handle)
	return &clockRig{clock: clock, db: db, vault: v, kek: kek, accounts: accounts, worker: w, runner: r}
}

// event files one event of merchant m, due now, and returns its key.
func (g *clockRig) event(t *testing.T, m string) store.Key {
	t.Helper()
	e := event.New("payment.succeeded", m, map[string]string{"k": "v"}, g.clock.Now())
	k := event.Key("g"+e.ID[4:], e.ID)
	if err := g.db.Commit(context.Background(), event.CreateOp(k.Group, e, g.clock.Now())); err != nil {
		t.Fatal(err)
	}
	return k
}

// run drains the runner every step for d.
func (g *clockRig) run(t *testing.T, d, step time.Duration) {
	t.Helper()
	for end := g.clock.Now().Add(d); g.clock.Now().Before(end); g.clock.Add(step) {
		if err := g.runner.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// pageAll pages through a merchant's events limit at a time, as a shop
// does (until an empty page), and returns the IDs it saw, in order.
func (g *clockRig) pageAll(t *testing.T, m string, limit int) ([]string, error) {
	t.Helper()
	var ids []string
	after := ""
	for i := 0; i < 100; i++ {
		page, err := g.worker.List(context.Background(), m, after, limit)
		if err != nil {
			return ids, err
		}
		if len(page) == 0 {
			return ids, nil
		}
		for _, r := range page {
			ids = append(ids, r.ID)
		}
		after = page[len(page)-1].ID
	}
	t.Fatal("paging does not end")
	return nil, nil
}

// logLen counts the entries of a merchant's list of events.
func (g *clockRig) logLen(t *testing.T, m string) int {
	t.Helper()
	es, err := g.db.Read(context.Background(), "events_"+m, "", 100000)
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func (g *clockRig) record(t *testing.T, k store.Key) (event.Record, bool) {
	t.Helper()
	r, err := g.db.Get(context.Background(), k)
	if errors.Is(err, store.ErrNotFound) {
		return event.Record{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	rec, err := event.Decode(r.Value)
	if err != nil {
		t.Fatal(err)
	}
	return rec, true
}
