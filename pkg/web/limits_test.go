package web

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypage/paypage/pkg/account"
	"github.com/paypage/paypage/pkg/audit"
	"github.com/paypage/paypage/pkg/limit"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/memory"
)

// countingStore counts the store's reads and appends.
type countingStore struct {
	store.Store
	gets, appends atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, k store.Key) (store.Record, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, k)
}

func (c *countingStore) Append(ctx context.Context, log string, data []byte) (string, error) {
	c.appends.Add(1)
	return c.Store.Append(ctx, log, data)
}

// limitServer is a server with accounts, the refusal limit (30 a minute)
// and trusted loopback proxies, over a counting in-memory store.
func limitServer(t *testing.T, maxSources int) (*countingStore, string) {
	st, url, _ := limitServerOf(t, maxSources)
	return st, url
}

// limitServerOf is limitServer with the Server, whose limits' clocks a test
// may stop.
func limitServerOf(t *testing.T, maxSources int) (*countingStore, string, *Server) {
	t.Helper()
	st := &countingStore{Store: memory.New()}
	log := slog.New(slog.NewJSONHandler(&lockedBuffer{}, nil))
	al := audit.New(st)
	s, err := New(Config{PublicURL: "https://pay.example", RefusalsPerMinute: 30, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		Deps{Store: st, Audit: al, Refusals: audit.NewRefusals(al, time.Minute, maxSources, log), Accounts: account.New(st, nil),
			Registry: prometheus.NewRegistry(), Logger: log, CSRFTags: testCSRFTags})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return st, hs.URL, s
}

// post sends a JSON body with a bearer key (none when key is "") from the
// client address xff (behind the trusted loopback proxy), and returns the
// status.
func post(t *testing.T, url, path, key, xff, body string) int {
	t.Helper()
	h := map[string]string{"Content-Type": "application/json", "X-Forwarded-For": xff}
	if key != "" {
		h["Authorization"] = "Bearer " + key
	}
	return send(t, url+path, body, h).StatusCode
}

// send posts body to u with the headers h (an empty value is left out),
// and returns the answer, its body read and closed.
func send(t *testing.T, u, body string, h map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(body))
	for k, v := range h {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// The refusal limit holds a source back even once the window has seen its
// bound of sources (1,000 in the service): a caller that first spends one
// refused call from each of that many addresses (or IPv6 /64s) is still
// answered 429 from the next one past the limit, before its keys are looked
// up (audit.Refusals counts sources past the bound in shared slots).
func TestRefusalLimitPastTheSourceBound(t *testing.T) {
	t.Parallel()
	const sources = 20
	st, url := limitServer(t, sources)
	for i := 0; i < sources; i++ {
		if s := post(t, url, "/v1/detokenize", "", fmt.Sprintf("2001:db8:%x::1", i), `{"token":"tok_x"}`); s != 401 {
			t.Fatalf("filler %d: %d", i, s)
		}
	}
	before := st.gets.Load()
	statuses := map[int]int{}
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("psk_test_prc_%016d_%s", i, strings.Repeat("x", 32))
		statuses[post(t, url, "/v1/detokenize", key, "203.0.113.66", `{"token":"tok_x"}`)]++
	}
	lookups := st.gets.Load() - before
	t.Logf("200 refused calls from one address past the bound: %v, %d store reads", statuses, lookups)
	if statuses[http.StatusTooManyRequests] < 170 {
		t.Errorf("one address made 200 refused calls in a minute with a limit of 30: statuses %v, %d key lookups in the store", statuses, lookups)
	}
}

// POST /kaspi/notify needs no credential, so it is bounded in memory before
// anything is read: one source gets its burst (40), then 429 with
// Retry-After, without holding up another; and every source together gets
// the service's burst (200). On a stopped clock, nothing refills.
func TestKaspiNotifyLimited(t *testing.T) {
	t.Parallel()
	st, url, s := limitServerOf(t, 1000)
	stopped := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.notifies = limit.NewLocal(kaspiNotifyRate, kaspiNotifyAll, localSources, func() time.Time { return stopped })
	const junk = `{"qr_id":"kqr_x","external_id":"ses_x"}` // not ours: 400 once let through, no store read
	statuses := map[int]int{}
	for range 100 {
		statuses[post(t, url, "/kaspi/notify", "", "203.0.113.66", junk)]++
	}
	if statuses[http.StatusBadRequest] != 40 || statuses[http.StatusTooManyRequests] != 60 {
		t.Fatalf("100 notifications from one source: %v, want 40 let through", statuses)
	}
	if got := post(t, url, "/kaspi/notify", "", "198.51.100.9", junk); got != http.StatusBadRequest {
		t.Fatalf("another source after the first's flood: %d", got)
	}
	through := 41 // one source's 40 and the other's one
	for i := range 20 {
		for range 40 {
			if post(t, url, "/kaspi/notify", "", fmt.Sprintf("192.0.2.%d", i), junk) != http.StatusTooManyRequests {
				through++
			}
		}
	}
	if through != 200 {
		t.Errorf("22 sources let %d notifications through, over all sources' burst of 200", through)
	}
	resp := send(t, url+"/kaspi/notify", junk, map[string]string{"Content-Type": "application/json", "X-Forwarded-For": "203.0.113.66"})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a refused notification: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n := st.gets.Load(); n != 0 {
		t.Errorf("%d store reads for notifications that are not ours", n)
	}
}
