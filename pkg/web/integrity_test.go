package web

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOriginOfKeepsNoCardData: of a blocked URL a report keeps the scheme
// and the registrable domain, never a subdomain, a path or a query (where
// a skimmer puts what it takes), and no run of four digits or more.
func TestOriginOfKeepsNoCardData(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ blocked, want string }{
		{"https://4242424242424242.1230.981.skim.example/p.gif", "https://skim.example"},
		{"https://skimmer.example/s.js?card=4242424242424242", "https://skimmer.example"},
		{"https://4242-4242-4242-4242.example/", "https://#-#-#-#.example"},
		{"https://4242424242424242.example:8443/x", "https://#.example"},
		{"https://a.b.skim.co.uk/x", "https://skim.co.uk"},
		{"wss://42.skim.example/", "wss://skim.example"},
		{"https://203.0.113.7/p", "https://203.0.113.7"},
		{"https://[2001:db8::4242:4242]/p", "https://#:db8::#:#"},
		{"inline", "inline"},
		{"data", "data"},
		{"data:image/png;base64,4242424242424242", "data"},
		{"javascript:alert(4242424242424242)", "other"},
		{"", "other"},
	} {
		got := originOf(tt.blocked)
		if got != tt.want {
			t.Errorf("originOf(%q) = %q, want %q", tt.blocked, got, tt.want)
		}
		if strings.Contains(got, "4242") || strings.Contains(got, "1230") {
			t.Errorf("originOf(%q) = %q keeps digits", tt.blocked, got)
		}
	}
}

// settable is a clock tests move by hand.
type settable struct {
	mu  sync.Mutex
	now time.Time
}

func (c *settable) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *settable) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestCSPReportsLimitedAndCapped: one client's flood is cut at its own
// burst while another client's report goes in; the process's bucket caps
// all of them; the store keeps the newest reports only; and what is kept
// reads back through ReadCSPReports.
func TestCSPReportsLimitedAndCapped(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	clk := &settable{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	ts.Server.csp.now = clk.Now
	ts.Server.csp.keep, ts.Server.csp.trimEvery = 5, 1
	post := func(client string) int {
		r := httptest.NewRequest(http.MethodPost, "/csp-report", strings.NewReader(
			`{"csp-report":{"effective-directive":"img-src","blocked-uri":"https://x`+client+`.skim.example/p"}}`))
		r.Header.Set("Content-Type", "application/csp-report")
		r.RemoteAddr = client + ":1234"
		w := httptest.NewRecorder()
		ts.Server.ServeHTTP(w, r)
		return w.Code
	}
	got := map[int]int{}
	for range 20 {
		got[post("203.0.113.1")]++
	}
	if got[204] != int(cspClient.Burst) || got[429] != 20-int(cspClient.Burst) {
		t.Fatalf("one client's 20 reports at once: %v, want %v taken", got, cspClient.Burst)
	}
	if s := post("198.51.100.7"); s != 204 {
		t.Fatalf("another client's report during the flood: %d", s)
	}
	// Many clients at once: the process's bucket holds them to its burst.
	got = map[int]int{}
	for i := range 40 {
		got[post(fmt.Sprintf("192.0.2.%d", i+1))]++
	}
	if taken := got[204]; taken > int(cspAll.Burst) {
		t.Fatalf("40 clients at once: %d taken, over the process's burst of %v", taken, cspAll.Burst)
	}
	// Only the newest reports stay in the store (a record a minute here).
	for i := range 12 {
		clk.Add(time.Minute)
		if s := post(fmt.Sprintf("198.51.100.%d", 10+i)); s != 204 {
			t.Fatalf("report after a minute: %d", s)
		}
		if err := ts.Server.FlushCSPReports(context.Background(), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := ts.Server.FlushCSPReports(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	reps, err := ReadCSPReports(context.Background(), ts.Server.Store, "", 100)
	if err != nil || len(reps) != 5 {
		t.Fatalf("%d reports kept (%v), want the newest 5", len(reps), err)
	}
	if reps[4].Blocked != "https://skim.example" || reps[4].Directive != "img-src" || reps[4].ID == "" || !reps[4].At.Equal(clk.Now()) {
		t.Fatalf("newest report %+v", reps[4])
	}
}

// POST /csp-report needs no credential, so reports cost nothing durable as
// they come: one source's burst of 20 posts of 10 reports each is cut at its
// own burst, counted in memory and written nothing, and another browser's
// genuine report is still taken. The minute's flush then writes one record
// per directive, blocked domain and page, with its count, and a second
// flush nothing.
func TestCSPReportsCostNoDurableWrite(t *testing.T) {
	t.Parallel()
	st, url, s := limitServerOf(t, 1000)
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
		send(t, url+"/csp-report", batch.String(), map[string]string{"Content-Type": "application/reports+json", "X-Forwarded-For": "203.0.113.66"})
	}
	// A real browser elsewhere now reports one violation.
	resp := send(t, url+"/csp-report", `{"csp-report":{"violated-directive":"script-src","blocked-uri":"inline","document-uri":"https://pay.example/pay/ses_y"}}`,
		map[string]string{"Content-Type": "application/csp-report", "X-Forwarded-For": "198.51.100.9"})
	n := st.appends.Load()
	t.Logf("20 unauthenticated report posts from one address: %d durable appends; another source then gets %d", n, resp.StatusCode)
	if n > 20 {
		t.Errorf("one unauthenticated source cost %d durable appends to an untrimmed log in a burst", n)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		t.Error("one source's flood refuses every other browser's reports (the bucket is global, not per source)")
	}
	if err := s.FlushCSPReports(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	reps, err := ReadCSPReports(context.Background(), st, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, r := range reps {
		counts[r.Blocked] += r.Count
	}
	if len(reps) != 11 || st.appends.Load() != n+11 || counts["https://evil3.example"] != int64(cspClient.Burst) || counts["inline"] != 1 {
		t.Errorf("flushed %d records (%d appends), counts %v: want one a blocked domain, 5 each and the other browser's 1", len(reps), st.appends.Load()-n, counts)
	}
	if err := s.FlushCSPReports(context.Background(), true); err != nil || st.appends.Load() != n+11 {
		t.Errorf("a second flush wrote %d more (%v)", st.appends.Load()-n-11, err)
	}
}
