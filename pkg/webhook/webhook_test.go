package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/account"
	"github.com/paypage/paypage/pkg/api"
	"github.com/paypage/paypage/pkg/due"
	"github.com/paypage/paypage/pkg/event"
	"github.com/paypage/paypage/pkg/store/memory"
	"github.com/paypage/paypage/pkg/vault"
	"github.com/paypage/paypage/pkg/webhook"
)

func TestSignVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"evt_1"}`)
	h := webhook.Sign("whsec_x", now, body)
	if !strings.HasPrefix(h, "t=1800000000,v1=") {
		t.Fatalf("header %q", h)
	}
	tests := []struct {
		name, secret, header string
		body                 []byte
		at                   time.Time
		ok                   bool
	}{
		{"good", "whsec_x", h, body, now.Add(time.Minute), true},
		{"wrong secret", "whsec_y", h, body, now, false},
		{"tampered body", "whsec_x", h, []byte(`{"id":"evt_2"}`), now, false},
		{"replayed later", "whsec_x", h, body, now.Add(10 * time.Minute), false},
		{"from the future", "whsec_x", h, body, now.Add(-10 * time.Minute), false},
		{"malformed", "whsec_x", "v1=abc", body, now, false},
		{"second signature matches", "whsec_x", h + ",v1=00", body, now, true},
	}
	for _, tt := range tests {
		err := webhook.Verify(tt.secret, tt.header, tt.body, tt.at, 5*time.Minute)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v", tt.name, err)
		}
	}
}

// fairRig is a worker over an in-memory store with real accounts, and a
// reconciler that hands it due events.
type fairRig struct {
	db       *memory.DB
	accounts *account.Service
	worker   *webhook.Worker
	runner   *due.Runner
}

func newFairRig(t *testing.T, o webhook.Options) *fairRig {
	t.Helper()
	db := memory.New()
	kek, _ := vault.NewLocalKEK(make([]byte, 32))
	v, err := vault.Open(context.Background(), db, kek)
	if err != nil {
		t.Fatal(err)
	}
	accounts := account.New(db, v)
	o.AllowPrivate = true
	w, err := webhook.New(db, accounts, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	r, err := due.New(db, nil, o.Now)
	if err != nil {
		t.Fatal(err)
	}
	r.Handle(event.Kind, 16, w.Handle)
	return &fairRig{db: db, accounts: accounts, worker: w, runner: r}
}

// events files n events of a merchant, due now.
func (f *fairRig) events(t *testing.T, merchant string, n int) []string {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		e := event.New("payment.succeeded", merchant, map[string]int{"n": i}, time.Now())
		if err := f.db.Commit(context.Background(), event.CreateOp("g"+e.ID[4:], e, time.Now())); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	return ids
}

// counter is a webhook endpoint that counts what it receives; block, when
// set, holds every answer until it is closed.
type counter struct {
	srv   *httptest.Server
	mu    sync.Mutex
	n     int
	block chan struct{}
	code  int
}

func newCounter(t *testing.T, code int, block chan struct{}) *counter {
	c := &counter{code: code, block: block}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
		if c.block != nil {
			<-c.block
		}
		w.WriteHeader(c.code)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *counter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// One merchant's endpoint hangs with many events due: the others' events go
// out at once, and the hanging merchant holds no more than its cap of the
// workers.
func TestOneHangingEndpointDelaysNoOneElse(t *testing.T) {
	block := make(chan struct{})
	hanging, fine := newCounter(t, 200, block), newCounter(t, 200, nil)
	t.Cleanup(func() { close(block) }) // before the servers close (cleanups run last first)
	f := newFairRig(t, webhook.Options{Timeout: time.Minute, PerMerchant: 4})
	ctx := context.Background()
	a, _ := f.accounts.AddMerchant(ctx, "Hangs", hanging.srv.URL)
	b, _ := f.accounts.AddMerchant(ctx, "Fine", fine.srv.URL)
	f.events(t, a.ID, 40)
	f.events(t, b.ID, 3)
	moved := func() int {
		recs, err := f.worker.List(ctx, a.ID, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range recs {
			if r.Delivery.Attempts == 0 && r.Delivery.NextAttemptAt != nil {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(20 * time.Second); fine.count() < 3 || moved() < 30; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the fine merchant got %d of 3 events behind a hanging one; %d of the hanging one's waiting events were moved on", fine.count(), moved())
		}
		if _, err := f.runner.Look(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The hanging endpoint has not answered yet: one delivery at a time.
	if n := hanging.count(); n > 1 {
		t.Fatalf("the unproven hanging endpoint holds %d deliveries, over its one", n)
	}
}

// An endpoint that keeps failing is backed off as a whole: its other due
// events are moved to when it is tried again, not each tried and failed.
func TestFailingEndpointBacksOff(t *testing.T) {
	failing := newCounter(t, 500, nil)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f := newFairRig(t, webhook.Options{Timeout: 5 * time.Second, PerMerchant: 1, Now: clock})
	ctx := context.Background()
	m, _ := f.accounts.AddMerchant(ctx, "Down", failing.srv.URL)
	f.events(t, m.ID, 20)
	for i := 0; i < 6; i++ {
		if i > 0 {
			mu.Lock()
			now = now.Add(1100 * time.Millisecond) // past a busy merchant's one-second wait
			mu.Unlock()
		}
		if err := f.runner.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := failing.count(); n != 3 {
		t.Fatalf("the failing endpoint was tried %d times; after 3 failures in a row it should rest", n)
	}
	recs, _ := f.worker.List(ctx, m.ID, "", 100)
	for _, r := range recs {
		// The untried ones wait for the endpoint to be tried again.
		if r.Delivery.Attempts == 0 && (r.Delivery.NextAttemptAt == nil || !r.Delivery.NextAttemptAt.After(clock())) {
			t.Fatalf("event %s next tried at %v (now %v)", r.ID, r.Delivery.NextAttemptAt, clock())
		}
		if r.Delivery.Attempts == 1 && (r.Delivery.State != "pending" || r.Delivery.LastError != "HTTP 500") {
			t.Fatalf("delivery %+v", r.Delivery)
		}
	}
}

// FuzzVerify: the signature header and body come from the network. No
// header panics; a signature made for the body verifies, and no longer
// does for another body or another secret.
func FuzzVerify(f *testing.F) {
	f.Add("t=1800000000,v1=00", []byte(`{"id":"evt_1"}`), "whsec_x")
	f.Add("t=,v1=,v1=zz,t=1", []byte{}, "")
	f.Add(",,,=,t=99999999999999999999", []byte("x"), "s")
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, header string, body []byte, secret string) {
		_ = webhook.Verify(secret, header, body, now, 5*time.Minute)
		good := webhook.Sign(secret, now, body)
		if secret == "" {
			// No secret, no proof: anyone can make an HMAC under an empty key.
			if err := webhook.Verify(secret, good, body, now, 5*time.Minute); !errors.Is(err, api.ErrNoSecret) {
				t.Fatalf("verified under an empty secret: %v", err)
			}
			return
		}
		if err := webhook.Verify(secret, good, body, now, 5*time.Minute); err != nil {
			t.Fatalf("its own signature refused: %v", err)
		}
		if err := webhook.Verify(secret, good, append(body, 'x'), now, 5*time.Minute); err == nil {
			t.Fatal("a signature verified for another body")
		}
		if err := webhook.Verify(secret+"x", good, body, now, 5*time.Minute); err == nil {
			t.Fatal("a signature verified under another secret")
		}
	})
}

// BenchmarkSign is the signature of one webhook delivery (a payment
// event's body, about 1.5 KB).
func BenchmarkSign(b *testing.B) {
	body := []byte(strings.Repeat(`{"id": "evt_x", "type": "payment.succeeded"}`, 35))
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		_ = webhook.Sign("whsec_0123456789abcdef0123456789abcdef", now, body)
	}
}
