package web

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypage/paypage/pkg/audit"
	"github.com/paypage/paypage/pkg/store/memory"
)

// lockedBuffer collects log lines from the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testCSRFTags makes CSRF tokens under one all-zero key.
func testCSRFTags(msg []byte) [][]byte {
	m := hmac.New(sha256.New, make([]byte, 32))
	m.Write(msg)
	return [][]byte{m.Sum(nil)}
}

// testServer is a Server over the in-memory store behind real HTTP, with its
// log and its metrics registry.
type testServer struct {
	*Server
	url string
	log *lockedBuffer
	reg *prometheus.Registry
}

func newTestServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	st := memory.New()
	logs := &lockedBuffer{}
	reg := prometheus.NewRegistry()
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://pay.example"
	}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	al := audit.New(st)
	s, err := New(cfg, Deps{Store: st, Audit: al, Refusals: audit.NewRefusals(al, time.Minute, 100, log), Registry: reg, Logger: log,
		CSRFTags: testCSRFTags})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &testServer{Server: s, url: hs.URL, log: logs, reg: reg}
}

// do sends a request with any method, over a raw connection when the method
// is one net/http would refuse to send.
func (ts *testServer) do(t testing.TB, method, path string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// series counts the registry's time series.
func (ts *testServer) series(t testing.TB) int {
	t.Helper()
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		n += len(mf.GetMetric())
	}
	return n
}

// count is the request counter's value for one label set.
func (ts *testServer) count(t testing.TB, route, method, status string) float64 {
	t.Helper()
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "paypage_http_requests_total" {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			want := map[string]string{"route": route, "method": method, "status": status}
			for _, lp := range m.GetLabel() {
				if want[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// Every request, whether a route matched or not, gets the security headers,
// one log line and one count, under a bounded method and a route template.
func TestEveryRequestPassesTheMiddleware(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	tests := []struct {
		method, path  string
		status        int
		route, mlabel string
		json          bool
	}{
		{"GET", "/healthz", 200, "/healthz", "GET", true},
		{"GET", "/no/such/page", 404, "unmatched", "GET", false},
		{"GET", "/v1/no-such-endpoint", 404, "unmatched", "GET", true},
		{"POST", "/v1/sessions/x/y/z", 404, "unmatched", "POST", true},
		{"DELETE", "/v1/sessions", 405, "unmatched", "DELETE", true},
		{"GET", "/v1/sessions", 405, "unmatched", "GET", true},
		{"PUT", "/v1/payments/pay_x/refunds", 405, "unmatched", "PUT", true},
		{"PUT", "/healthz", 405, "unmatched", "PUT", false},
		{"BREW", "/healthz", 405, "unmatched", "OTHER", false},
		{"PROPFIND", "/v1/sessions", 405, "unmatched", "OTHER", true},
		{"POST", "/v1/sessions", 401, "/v1/sessions", "POST", true},
		{"GET", "/metrics", 404, "unmatched", "GET", false},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			before := ts.count(t, tt.route, tt.mlabel, strconv.Itoa(tt.status))
			resp := ts.do(t, tt.method, tt.path)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Cache-Control"} {
				if resp.Header.Get(h) == "" {
					t.Errorf("no %s", h)
				}
			}
			if ct := resp.Header.Get("Content-Type"); tt.json != strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			if got := ts.count(t, tt.route, tt.mlabel, strconv.Itoa(tt.status)); got != before+1 {
				t.Errorf("count %v -> %v", before, got)
			}
		})
	}
	lines := 0
	for _, l := range strings.Split(strings.TrimSpace(ts.log.String()), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "http" {
			lines++
			if m := rec["method"].(string); m != "OTHER" && !knownMethods[m] {
				t.Errorf("logged method %q", m)
			}
		}
	}
	if lines != len(tests) {
		t.Errorf("%d log lines for %d requests:\n%s", lines, len(tests), ts.log.String())
	}
}

// rawRequest sends one request line by hand (net/http will not send a
// method of 30 KB) and reads the status.
func rawRequest(t testing.TB, c net.Conn, rd *bufio.Reader, method, path string) int {
	t.Helper()
	if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: pay.example\r\n\r\n", method, path); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(rd, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// rss is the process's resident memory in bytes, after the garbage is
// collected and handed back.
func rss(t testing.TB) int64 {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm: resident memory is measured on Linux only")
	}
	var size, res int64
	if _, err := fmt.Sscan(string(b), &size, &res); err != nil {
		t.Fatal(err)
	}
	return res * int64(os.Getpagesize())
}

// TestJunkTrafficStaysBounded: thousands of requests with random 30 KB
// methods and random paths add a fixed handful of metric series, and leave
// the resident memory about where it was (the issue measured 28 MB growing
// to 134 MB and 3,002 series for 2,000 such requests).
func TestJunkTrafficStaysBounded(t *testing.T) {
	ts := newTestServer(t, Config{})
	c, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rd := bufio.NewReader(c)
	rawRequest(t, c, rd, "GET", "/healthz") // the series every server has
	series, mem := ts.series(t), rss(t)
	const n = 3000
	letters := "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	method := make([]byte, 30<<10)
	for i := 0; i < n; i++ {
		for j := range method {
			method[j] = letters[rand.IntN(len(letters))]
		}
		path := fmt.Sprintf("/%x/%x", rand.Uint64(), rand.Uint64())
		if i%3 == 0 {
			path = "/v1" + path
		}
		m := string(method)
		if i%2 == 0 {
			m = []string{"GET", "POST", "DELETE"}[i%3]
		}
		if st := rawRequest(t, c, rd, m, path); st != 404 && st != 405 {
			t.Fatalf("%s...: %d", m[:8], st)
		}
	}
	grown, memGrown := ts.series(t)-series, rss(t)-mem
	t.Logf("after %d junk requests: %d new series, resident memory %+d KiB", n, grown, memGrown>>10)
	if grown > 12 {
		t.Errorf("%d new series for junk", grown)
	}
	if memGrown > 24<<20 {
		t.Errorf("resident memory grew by %d MiB", memGrown>>20)
	}
	if strings.Contains(ts.log.String(), "AAAAAAAA") || len(ts.log.String()) > n*400 {
		t.Errorf("the log carries the junk (%d bytes)", len(ts.log.String()))
	}
}

// The client address is the peer's unless the peer is a trusted proxy.
func TestClientAddressBehindProxies(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, tt := range []struct {
		name    string
		trusted []netip.Prefix
		xff     string
		want    string
	}{
		{"no trusted proxy: the header is ignored", nil, "198.51.100.7", `"client":"127.0.0.1"`},
		{"trusted peer: the nearest untrusted hop", trusted, "6.6.6.6, 198.51.100.7, 127.0.0.2", `"client":"198.51.100.7"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, Config{TrustedProxies: tt.trusted})
			req, _ := http.NewRequest("GET", ts.url+"/healthz", nil)
			req.Header.Set("X-Forwarded-For", tt.xff)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if !strings.Contains(ts.log.String(), tt.want) {
				t.Errorf("log %s, want %s", ts.log.String(), tt.want)
			}
		})
	}
}
