package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/api"
	"github.com/paypage/paypage/pkg/client"
	"github.com/paypage/paypage/pkg/event"
)

// receiver is a shop's webhook endpoint that verifies every delivery.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret string
	mu     sync.Mutex
	got    []map[string]any // verified deliveries
	ids    map[string]int   // deliveries per event ID
	bad    int              // deliveries that failed verification
	overlp int              // times two deliveries of one event overlapped
	active map[string]bool
	plan   func(n int) (status int, delay time.Duration) // answer to the n-th delivery (from 1)
	n      int
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, ids: map[string]int{}, active: map[string]bool{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.n++
	n := r.n
	id := req.Header.Get("Paypage-Event-Id")
	if r.active[id] {
		r.overlp++
	}
	r.active[id] = true
	plan := r.plan
	secret := r.secret
	r.mu.Unlock()
	defer func() { r.mu.Lock(); delete(r.active, id); r.mu.Unlock() }()
	status, delay := 200, time.Duration(0)
	if plan != nil {
		status, delay = plan(n)
	}
	time.Sleep(delay)
	if _, err := client.ParseWebhook(secret, req.Header.Get(api.SignatureHeader), body); err != nil {
		r.mu.Lock()
		r.bad++
		r.mu.Unlock()
		w.WriteHeader(400)
		return
	}
	if err := checkWebhook(req, body); err != nil {
		r.t.Errorf("openapi.yaml does not describe the webhook %s: %v\n%s", req.Header.Get(api.EventTypeHeader), err, body)
	}
	if status == 200 {
		var ev map[string]any
		_ = json.Unmarshal(body, &ev)
		r.mu.Lock()
		r.got = append(r.got, ev)
		r.ids[id]++
		r.mu.Unlock()
	}
	w.WriteHeader(status)
}

// setSecret sets the secret deliveries are verified with.
func (r *receiver) setSecret(s string) {
	r.mu.Lock()
	r.secret = s
	r.mu.Unlock()
}

// count is how many verified deliveries an event had.
func (r *receiver) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids[id]
}

// waitForType waits until a delivery of an event type was verified.
func (r *receiver) waitForType(t *testing.T, typ string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r.mu.Lock()
		for _, ev := range r.got {
			if ev["type"] == typ {
				r.mu.Unlock()
				return
			}
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s delivered", typ)
		}
	}
}

func (r *receiver) waitFor(t *testing.T, n int) []map[string]any {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		r.mu.Lock()
		got := append([]map[string]any(nil), r.got...)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Fatalf("got %d deliveries, want %d (%d failed verification, %d requests)", len(r.got), n, r.bad, r.n)
	return nil
}

func TestWebhookDeliveryAndSignature(t *testing.T) {
	rc := newReceiver(t)
	e := newEnv(t, envOpts{webhookURL: rc.srv.URL + "/hooks"})
	rc.setSecret(e.hookSecret)
	id := e.session(nil)["id"].(string)
	b := e.browser()
	b.follow(b.pay(id, "4242 4242 4242 4242", "981"))
	got := rc.waitFor(t, 1)
	ev := got[0]
	data := ev["data"].(map[string]any)
	if ev["type"] != "payment.succeeded" || !strings.HasPrefix(ev["id"].(string), "evt_") || data["session_id"] != id || data["card"].(map[string]any)["last4"] != "4242" {
		t.Fatalf("event %v", ev)
	}
	raw, _ := json.Marshal(ev)
	if strings.Contains(string(raw), "4242424242424242") || strings.Contains(string(raw), `"981"`) {
		t.Fatal("card data in a webhook")
	}
	e.seen.Write(raw)
	// A refund and a failed payment make their events too, and the API lists them all.
	e.api("POST", "/v1/payments/pay_"+id[4:]+"/refunds", e.key, map[string]any{"amount": 100})
	id2 := e.session(nil)["id"].(string)
	b.follow(b.pay(id2, "4000 0000 0000 0002", "981"))
	got = rc.waitFor(t, 3)
	types := map[string]bool{}
	for _, g := range got {
		types[g["type"].(string)] = true
	}
	if !types["refund.succeeded"] || !types["payment.failed"] {
		t.Fatalf("types %v", types)
	}
	// The list is indexed when delivery starts, so it may trail a moment.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, list, _ := e.api("GET", "/v1/events?limit=10", e.key, nil)
		if st != 200 {
			t.Fatalf("events list: %d %v", st, list)
		}
		if n := len(list["data"].([]any)); n == 3 {
			break
		} else if n > 3 || time.Now().After(deadline) {
			t.Fatalf("events list: %v", list)
		}
	}
	if rc.bad != 0 {
		t.Fatalf("%d deliveries failed verification", rc.bad)
	}
	if st, _, _ := e.api("GET", "/v1/events?limit=1000", e.key, nil); st != 400 {
		t.Fatalf("limit 1000: %d", st)
	}
}

func TestWebhookRetries(t *testing.T) {
	rc := newReceiver(t)
	// 500, then a timeout, then 200.
	rc.plan = func(n int) (int, time.Duration) {
		switch n {
		case 1:
			return 500, 0
		case 2:
			return 200, 1500 * time.Millisecond // longer than the 1 s attempt timeout
		}
		return 200, 0
	}
	e := newEnv(t, envOpts{webhookURL: rc.srv.URL})
	rc.setSecret(e.hookSecret)
	id := e.session(nil)["id"].(string)
	b := e.browser()
	b.follow(b.pay(id, "4242 4242 4242 4242", "981"))
	// Wait for the third attempt's record and for the timed-out second
	// attempt's handler, which answers after the sender gave up on it.
	var recs []event.Record
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var err error
		recs, err = e.app.Webhooks.List(context.Background(), e.merchant, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 1 && recs[0].Delivery.State == "delivered" && rc.count(recs[0].ID) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("records %+v", recs)
		}
	}
	d, h := recs[0].Delivery, recs[0].History
	if d.Attempts != 3 || d.LastError != "" || d.NextAttemptAt != nil || len(h) != 3 || h[0].Status != 500 || h[1].Error != "timeout" || h[2].Status != 200 {
		t.Fatalf("delivery %+v, tries %+v", d, h)
	}
	// The timed-out attempt reached the shop too: it saw the same event ID
	// twice (and drops one by it), and no other ID.
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.ids) != 1 || rc.ids[recs[0].ID] != 2 {
		t.Fatalf("deliveries by event ID: %v", rc.ids)
	}
}

func TestWebhookSurvivesRestart(t *testing.T) {
	// The endpoint is down while the payment happens and the service stops.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + ln.Addr().String()
	ln.Close()
	o := envOpts{webhookURL: down}
	e := newEnv(t, o)
	id := e.session(nil)["id"].(string)
	b := e.browser()
	b.follow(b.pay(id, "4242 4242 4242 4242", "981"))
	e.stop()

	rc := newReceiver(t)
	rc.setSecret(e.hookSecret)
	o2 := envOpts{data: e.app.Config().Data, noAccounts: true}
	e2 := newEnv(t, o2)
	if err := e2.app.Accounts.SetWebhookURL(context.Background(), e.merchant, rc.srv.URL); err != nil {
		t.Fatal(err)
	}
	got := rc.waitFor(t, 1)
	if got[0]["type"] != "payment.succeeded" || got[0]["data"].(map[string]any)["session_id"] != id {
		t.Fatalf("after restart: %v", got[0])
	}
}

func TestWebhookNoDuplicatesAcrossReplicas(t *testing.T) {
	rc := newReceiver(t)
	rc.plan = func(n int) (int, time.Duration) { return 200, 30 * time.Millisecond }
	url := redisURL(t)
	a := newEnv(t, envOpts{store: url, webhookURL: rc.srv.URL})
	rc.setSecret(a.hookSecret)
	b := newEnv(t, envOpts{store: url, data: a.app.Config().Data, noAccounts: true})
	// Both replicas take payments; both run workers on the one outbox.
	const n = 12
	for i := 0; i < n; i++ {
		e := a
		if i%2 == 1 {
			e = b
		}
		e.key, e.merchant = a.key, a.merchant
		id := e.session(nil)["id"].(string)
		br := e.browser()
		// Several cards: one card is limited to 10 tries a day (card-testing protection).
		c := []struct{ n, cvc string }{{"4242 4242 4242 4242", "981"}, {"2223 0031 2200 3222", "981"}, {"3530 1113 3330 0000", "981"}}[i%3]
		if p := br.follow(br.pay(id, c.n, c.cvc)); !strings.Contains(p.body, "Payment successful") {
			t.Fatalf("payment %d failed:\n%s", i, p.body)
		}
	}
	defer func() {
		if t.Failed() {
			t.Logf("replica a:\n%s\nreplica b:\n%s", grepLines(a.logs.String(), "webhook"), grepLines(b.logs.String(), "webhook"))
		}
	}()
	rc.waitFor(t, n)
	// A second delivery of an event could only come once a lease ran out:
	// the try's timeout (1 s here) and 5 s more. Wait past that.
	time.Sleep(7 * time.Second)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.ids) != n || rc.overlp != 0 {
		t.Fatalf("%d events, %d overlapping deliveries", len(rc.ids), rc.overlp)
	}
	for id, c := range rc.ids {
		if c != 1 {
			t.Errorf("event %s delivered %d times", id, c)
		}
	}
}

func TestSessionExpiredEvent(t *testing.T) {
	rc := newReceiver(t)
	e := newEnv(t, envOpts{webhookURL: rc.srv.URL})
	rc.setSecret(e.hookSecret)
	id := e.session(map[string]any{"expires_in": 300})["id"].(string)
	e.clock.Advance(6 * time.Minute)
	// No page view, no call: the reconciler expires it by itself.
	got := rc.waitFor(t, 1)
	if got[0]["type"] != "session.expired" || got[0]["data"].(map[string]any)["id"] != id || got[0]["data"].(map[string]any)["status"] != "expired" {
		t.Fatalf("%v", got[0])
	}
	e.reconcile()
	if ev := eventTypes(t, e); ev["session.expired"] != 1 {
		t.Fatalf("expired twice: %v", ev)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A webhook to a loopback receiver on a service without
// --webhook-allow-private is refused visibly: a warn line with the
// merchant and the reason, and the event's delivery in GET /v1/events with
// its last_error and next attempt.
func TestRefusedWebhookIsVisible(t *testing.T) {
	w := newWorld(t, "bolt")
	svc := w.serve()
	mid, key := w.merchant("Shop", "--webhook-url", "http://127.0.0.1:9/hooks")
	e := svc.as(mid, key, "")
	e.paidToken("4242 4242 4242 4242")
	if !svc.logged(`"msg":"webhook delivery failed","merchant":"` + mid + `"`) {
		t.Fatalf("no warn line for the refused delivery:\n%s", svc.logs.String())
	}
	_, body, _ := e.api("GET", "/v1/events", key, nil)
	data, _ := body["data"].([]any)
	if len(data) == 0 {
		t.Fatalf("no events: %v", body)
	}
	d, _ := data[0].(map[string]any)["delivery"].(map[string]any)
	if d == nil || d["state"] != "pending" || d["last_error"] == "" || d["last_error"] == nil || d["next_attempt_at"] == nil {
		t.Fatalf("delivery: %v", d)
	}
}

// GET /v1/events tells the shop where a refused delivery stands, through
// every state: pending after the first refusal, failing once refused more
// than once (with the next attempt), gave_up once refused for three days
// (with no next attempt), and the log says so at each step.
func TestEventDeliveryFailingThenGaveUp(t *testing.T) {
	rc := newReceiver(t)
	rc.plan = func(int) (int, time.Duration) { return 500, 0 }
	// An hour (±20%) between tries: each state holds until the test moves
	// the clock.
	e := newEnv(t, envOpts{webhookURL: rc.srv.URL, schedule: []time.Duration{time.Hour}})
	rc.setSecret(e.hookSecret)
	e.paidToken("4242 4242 4242 4242")
	delivery := func(want string, attempts float64) map[string]any {
		t.Helper()
		var d map[string]any
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			_, body, _ := e.api("GET", "/v1/events", e.key, nil)
			if data, _ := body["data"].([]any); len(data) == 1 {
				d, _ = data[0].(map[string]any)["delivery"].(map[string]any)
				if d["state"] == want && d["attempts"] == attempts {
					return d
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("delivery %v, want %s after %v attempts", d, want, attempts)
			}
		}
	}
	next := func(d map[string]any) time.Time {
		t.Helper()
		at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(d["next_attempt_at"]))
		if err != nil {
			t.Fatalf("next_attempt_at of %v: %v", d, err)
		}
		return at
	}
	d := delivery("pending", 1)
	if d["last_error"] != "HTTP 500" || next(d).Before(e.clock.Now().Add(45*time.Minute)) {
		t.Fatalf("after one refusal: %v", d)
	}
	e.clock.Advance(2 * time.Hour) // past the hour and its jitter (up to 20%)
	e.reconcile()
	d = delivery("failing", 2)
	if !strings.HasPrefix(fmt.Sprint(d["last_error"]), "HTTP ") || next(d).Before(e.clock.Now().Add(45*time.Minute)) {
		t.Fatalf("after two refusals: %v", d)
	}
	if !strings.Contains(e.logs.String(), `"msg":"webhook delivery failed","merchant":"`+e.merchant+`"`) {
		t.Fatalf("no warn line for the failed deliveries:\n%s", e.logs.String())
	}
	e.clock.Advance(72 * time.Hour)
	e.reconcile()
	d = delivery("gave_up", 3)
	if d["next_attempt_at"] != nil || !strings.HasPrefix(fmt.Sprint(d["last_error"]), "HTTP ") {
		t.Fatalf("given up: %v", d)
	}
	if !strings.Contains(e.logs.String(), `"msg":"webhook delivery given up","merchant":"`+e.merchant+`"`) {
		t.Fatalf("no warn line for the delivery given up:\n%s", e.logs.String())
	}
	// Given up is final: time passing tries it no more.
	e.clock.Advance(72 * time.Hour)
	e.reconcile()
	if d := delivery("gave_up", 3); d["next_attempt_at"] != nil {
		t.Fatalf("after giving up: %v", d)
	}
}
