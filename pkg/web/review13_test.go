package web

import (
	"bytes"
	"context"
	"fmt"
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

// reviewServer is a server with accounts, the refusal limit and trusted
// loopback proxies, over a counting in-memory store.
func reviewServer(t *testing.T, maxSources int) (*countingStore, string) {
	t.Helper()
	st := &countingStore{Store: memory.New()}
	log := slog.New(slog.NewJSONHandler(&lockedBuffer{}, nil))
	al := audit.New(st)
	s, err := New(Config{PublicURL: "https://pay.example", RefusalsPerMinute: 30, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		Deps{Store: st, Audit: al, Refusals: audit.NewRefusals(al, time.Minute, maxSources, log), Accounts: account.New(st, nil),
			Registry: prometheus.NewRegistry(), Logger: log, CSRFKeys: func() [][]byte { return [][]byte{make([]byte, 32)} }})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return st, hs.URL
}

func reviewPost(t *testing.T, url, path, key, xff, body string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Review of issue 13 (reproduction, fails today): the refusal limit holds a
// source only while the window has seen fewer than maxSources sources
// (1,000 in the service). A caller that first spends one refused call from
// each of that many addresses (or IPv6 /64s: a /48 holds 65,536) is never
// answered 429 from the next one: every further call with a well-formed key
// is looked up in the store. pkg/audit/refusals.go:86-103 (Add and Count
// answer 0 for a folded source), pkg/web/api.go:46.
func TestReviewRefusalLimitPastTheSourceBound(t *testing.T) {
	t.Parallel()
	const sources = 20
	st, url := reviewServer(t, sources)
	for i := 0; i < sources; i++ {
		if s := reviewPost(t, url, "/v1/detokenize", "", fmt.Sprintf("2001:db8:%x::1", i), `{"token":"tok_x"}`); s != 401 {
			t.Fatalf("filler %d: %d", i, s)
		}
	}
	before := st.gets.Load()
	statuses := map[int]int{}
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("psk_test_prc_%016d_%s", i, strings.Repeat("x", 32))
		statuses[reviewPost(t, url, "/v1/detokenize", key, "203.0.113.66", `{"token":"tok_x"}`)]++
	}
	lookups := st.gets.Load() - before
	t.Logf("200 refused calls from one address past the bound: %v, %d store reads", statuses, lookups)
	if statuses[http.StatusTooManyRequests] < 170 {
		t.Errorf("one address made 200 refused calls in a minute with a limit of 30: statuses %v, %d key lookups in the store", statuses, lookups)
	}
}

// Review of issue 13 (reproduction, fails today): POST /csp-report needs no
// credential and is bounded only by one process-wide bucket (20, then 5 a
// second), not by source; each request appends up to 10 durable records to
// the "csp-reports" log, which nothing ever trims (pkg/web/integrity.go:
// 125-151; no TrimLog on it). One caller: 200 durable appends from a burst of
// 20 requests (50 a second after, ~4.3 million a day, forever), and every
// other browser's genuine reports are refused with 429 meanwhile.
func TestReviewCSPReportsCostDurableWrites(t *testing.T) {
	t.Parallel()
	st, url := reviewServer(t, 1000)
	var batch bytes.Buffer
	batch.WriteString("[")
	for i := 0; i < 10; i++ {
		if i > 0 {
			batch.WriteString(",")
		}
		fmt.Fprintf(&batch, `{"type":"csp-violation","body":{"effectiveDirective":"script-src-elem","blockedURL":"https://evil%d.example/x.js","documentURL":"https://pay.example/pay/ses_x"}}`, i)
	}
	batch.WriteString("]")
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest("POST", url+"/csp-report", bytes.NewReader(batch.Bytes()))
		req.Header.Set("Content-Type", "application/reports+json")
		req.Header.Set("X-Forwarded-For", "203.0.113.66")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// A real browser elsewhere now reports one violation.
	req, _ := http.NewRequest("POST", url+"/csp-report", strings.NewReader(`{"csp-report":{"violated-directive":"script-src","blocked-uri":"inline","document-uri":"https://pay.example/pay/ses_y"}}`))
	req.Header.Set("Content-Type", "application/csp-report")
	req.Header.Set("X-Forwarded-For", "198.51.100.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n := st.appends.Load()
	t.Logf("20 unauthenticated report posts from one address: %d durable appends; another source then gets %d", n, resp.StatusCode)
	if n > 20 {
		t.Errorf("one unauthenticated source cost %d durable appends to an untrimmed log in a burst", n)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		t.Error("one source's flood refuses every other browser's reports (the bucket is global, not per source)")
	}
}
