package webhook_test

// From the third hostile review of issue 11 (review11c): each failed
// before its fix.

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/event"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/webhook"
)

// switchable is an endpoint whose answer a test changes.
type switchable struct {
	srv  *httptest.Server
	code atomic.Int32
	n    atomic.Int32
}

func newSwitchable(t *testing.T, code int) *switchable {
	s := &switchable{}
	s.code.Store(int32(code))
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.n.Add(1)
		w.WriteHeader(int(s.code.Load()))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// Finding 1 (webhook.go:241-257). Handle lists a new event (Append plus a
// position write) before it opens the secret, and the sealed vault's
// due.Later returns without saving Listed: every look while sealed appends
// the event to its merchant's list again (one entry and one position write
// a second per event, for as long as the seal lasts), and the position ends
// at the last append, so a shop paging with after= skips the events listed
// between an event's first entry and its last.
func TestSealedVaultListsEachEventOnce(t *testing.T) {
	g := newClockRig(t, webhook.Options{}, nil)
	ctx := context.Background()
	ok := newSwitchable(t, 200)
	m, _ := g.accounts.AddMerchant(ctx, "Shop", ok.srv.URL)
	g.vault.Seal()
	a, b := g.event(t, m.ID), g.event(t, m.ID)
	for i := 0; i < 2; i++ { // two looks while sealed, a before b
		for _, k := range []store.Key{a, b} {
			if err := g.worker.Handle(ctx, k); err == nil {
				t.Fatal("handled while sealed")
			}
		}
	}
	if err := g.vault.Unseal(ctx, g.kek); err != nil {
		t.Fatal(err)
	}
	for _, k := range []store.Key{b, a} { // the look after the unseal, b first
		if err := g.worker.Handle(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if n := g.logLen(t, m.ID); n != 2 {
		t.Errorf("2 events, looked at twice each while sealed: the merchant's list holds %d entries (each sealed look appended again)", n)
	}
	ids, err := g.pageAll(t, m.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 {
		t.Errorf("paging one at a time shows %v, want both events %s and %s: after= jumps to the shown event's last entry, past the other", ids, a.ID, b.ID)
	}
}

// failOnce fails the first position write.
type failOnce struct {
	store.Store
	mu     sync.Mutex
	failed bool
}

func (f *failOnce) Commit(ctx context.Context, ops ...store.Op) error {
	f.mu.Lock()
	if !f.failed && len(ops) == 1 && ops[0].Key.Kind == "event_pos" {
		f.failed = true
		f.mu.Unlock()
		return errors.New("injected: the store went away")
	}
	f.mu.Unlock()
	return f.Store.Commit(ctx, ops...)
}

// Finding 1, second way in (webhook.go:425-440): a crash or a store error
// between the Append and the position write leaves the first entry behind;
// the next look appends again, and paging after the event skips whatever
// was listed in between.
func TestFailedPositionWriteSkipsNoEvents(t *testing.T) {
	g := newClockRig(t, webhook.Options{}, func(s store.Store) store.Store { return &failOnce{Store: s} })
	ctx := context.Background()
	m, _ := g.accounts.AddMerchant(ctx, "Shop", "") // no endpoint: listed, then disabled
	a, b := g.event(t, m.ID), g.event(t, m.ID)
	if err := g.worker.Handle(ctx, a); err == nil {
		t.Fatal("the position write did not fail")
	}
	for _, k := range []store.Key{b, a} {
		if err := g.worker.Handle(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := g.pageAll(t, m.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 {
		t.Errorf("paging one at a time shows %v, want %s and %s", ids, a.ID, b.ID)
	}
}

// Finding 2 (webhook.go:260-270): an event past its retry period gives up
// untried whenever take refuses it, which includes a healthy endpoint that
// is merely at its cap (and every endpoint is unproven, cap 1, after a
// restart). After an outage or a seal longer than the retry period, a
// healthy shop gets one event and the rest are gave_up with 0 attempts.
// README (Webhooks) says this happens only "while its endpoint rests".
func TestHealthyEndpointPastRetryPeriodGetsItsEvents(t *testing.T) {
	for _, tc := range []struct {
		name string
		seal bool
	}{{"replicas down past the retry period", false}, {"vault sealed past the retry period", true}} {
		t.Run(tc.name, func(t *testing.T) {
			g := newClockRig(t, webhook.Options{MaxAge: time.Hour}, nil)
			ctx := context.Background()
			ok := newSwitchable(t, 200)
			m, _ := g.accounts.AddMerchant(ctx, "Shop", ok.srv.URL)
			if tc.seal {
				g.vault.Seal()
			}
			var keys []store.Key
			for i := 0; i < 5; i++ {
				keys = append(keys, g.event(t, m.ID))
			}
			if tc.seal {
				g.run(t, 2*time.Hour, 10*time.Second) // looked at, resting a second each time
				t.Logf("2 hours sealed, 5 events looked at every 10 s: the merchant's list holds %d entries", g.logLen(t, m.ID))
				if err := g.vault.Unseal(ctx, g.kek); err != nil {
					t.Fatal(err)
				}
			} else {
				g.clock.Add(2 * time.Hour) // nobody looks
			}
			g.run(t, 10*time.Minute, time.Second)
			untried := 0
			for _, k := range keys {
				if rec, found := g.record(t, k); found && rec.Delivery.State == event.GaveUp && rec.Delivery.Attempts == 0 {
					untried++
				}
			}
			if untried > 0 || ok.n.Load() != 5 {
				t.Errorf("a healthy endpoint got %d of 5 events; %d gave up without a single try", ok.n.Load(), untried)
			}
		})
	}
}

// Finding 3, the list's head (webhook.go:448-453, 474-503): events deleted
// at the retention before e9ee9dd left their entries, and an event without
// Pos trims nothing when it is deleted. List reads at most 8 times limit
// entries, so more than that many dead entries at the head make the first
// page empty: a shop that pages until an empty page sees none of its
// events. (The second review's "no empty first page", on an upgraded store.)
func TestDeadEntriesFromBeforeTheUpgradeDoNotEmptyTheFirstPage(t *testing.T) {
	g := newClockRig(t, webhook.Options{}, nil)
	ctx := context.Background()
	m, _ := g.accounts.AddMerchant(ctx, "Shop", "")
	for i := 0; i < 10; i++ { // deleted at the retention by the old code: entries without records
		e := event.New("payment.succeeded", m.ID, nil, g.clock.Now())
		if _, err := g.db.Append(ctx, "events_"+m.ID, []byte(`{"id":"`+e.ID+`","group":"g`+e.ID[4:]+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	live := g.event(t, m.ID)
	if err := g.worker.Handle(ctx, live); err != nil {
		t.Fatal(err)
	}
	page, err := g.worker.List(ctx, m.ID, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 1 {
		t.Errorf("GET /v1/events?limit=1 behind 10 dead entries answers %d events, want 1 (%s)", len(page), live.ID)
	}
}

// Finding 4 (webhook.go:446-458): the retention trims the list through each
// deleted event, assuming nothing older still exists. An event resent near
// the end of its retention (Resend sets First, not Created) is pending or
// failing when newer events are deleted: its entry is trimmed while it
// lives, so the shop's list no longer shows it. Its position record also
// ends a day after the retention, from its listing.
func TestTrimKeepsEventsThatStillExist(t *testing.T) {
	g := newClockRig(t, webhook.Options{Retention: 10 * 24 * time.Hour, MaxAge: time.Hour}, nil)
	ctx := context.Background()
	ep := newSwitchable(t, 200)
	m, _ := g.accounts.AddMerchant(ctx, "Shop", ep.srv.URL)
	a := g.event(t, m.ID)
	g.run(t, 30*time.Second, time.Second) // a delivered first (unproven: one at a time)
	b := g.event(t, m.ID)
	g.run(t, 30*time.Second, time.Second)
	if ep.n.Load() != 2 {
		t.Fatalf("%d deliveries, want 2", ep.n.Load())
	}
	g.clock.Add(10*24*time.Hour - 20*time.Minute)
	ep.code.Store(500) // the shop's endpoint breaks; it resends a
	if err := g.worker.Resend(ctx, m.ID, a.ID); err != nil {
		t.Fatal(err)
	}
	g.run(t, 25*time.Minute, 10*time.Second) // b's retention ends: b is deleted
	if _, found := g.record(t, b); found {
		t.Fatal("b not deleted at its retention")
	}
	rec, found := g.record(t, a)
	if !found || (rec.Delivery.State != event.Pending && rec.Delivery.State != event.Failing) {
		t.Fatalf("a should still be retrying (found %v, state %q)", found, rec.Delivery.State)
	}
	page, err := g.worker.List(ctx, m.ID, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 1 || page[0].ID != a.ID {
		t.Errorf("the list shows %d events while %s, resent and retrying, still exists: b's deletion trimmed its entry", len(page), a.ID)
	}
}

// Finding 5 (webhook.go:453, 466-471): a shop that polls "after the last
// event I saw" holds a cursor that breaks when that event reaches the
// retention: forget deletes its position, and after= answers 400 for ever,
// although newer events exist. (Before e9ee9dd the untrimmed list still
// held the entry.)
func TestCursorSurvivesItsEventsRetention(t *testing.T) {
	g := newClockRig(t, webhook.Options{Retention: 10 * 24 * time.Hour}, nil)
	ctx := context.Background()
	m, _ := g.accounts.AddMerchant(ctx, "Quiet shop", "")
	last := g.event(t, m.ID)
	g.run(t, 5*time.Second, time.Second)
	g.clock.Add(11 * 24 * time.Hour)
	g.run(t, 5*time.Second, time.Second) // last deleted at its retention
	newer := g.event(t, m.ID)
	g.run(t, 5*time.Second, time.Second)
	page, err := g.worker.List(ctx, m.ID, last.ID, 20)
	if err != nil || len(page) != 1 || page[0].ID != newer.ID {
		t.Errorf("after=%s (the shop's saved cursor, deleted at the retention): %d events, err %v; want %s", last.ID, len(page), err, newer.ID)
	}
}
