package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/api"
)

// The client against the real service is tested end to end (internal/e2e
// uses it for every API call). Here: what the service cannot be made to do
// on demand (a 503 then a success, a cut connection), with a stand-in.

// script answers each request with the next of its answers and records
// what it got.
type script struct {
	mu      sync.Mutex
	answers []func(w http.ResponseWriter)
	got     []*http.Request
	bodies  []string
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	n := len(s.got)
	s.got = append(s.got, r)
	s.bodies = append(s.bodies, string(b))
	s.mu.Unlock()
	if n >= len(s.answers) {
		n = len(s.answers) - 1
	}
	s.answers[n](w)
}

func answer(status int, retryAfter, body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// cut closes the connection without an answer.
func cut(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

const (
	unavailable = `{"error":{"code":"unavailable","message":"the store is unreachable: nothing was written, retry"}}`
	limited     = `{"error":{"code":"rate_limited","message":"too many calls"}}`
	created     = `{"id":"ses_x","object":"session","status":"open","amount":1000,"currency":"KZT"}`
)

// newTest is a client of s that records its waits instead of sleeping.
func newTest(t *testing.T, s *script, opts ...Option) (*Client, *[]time.Duration) {
	t.Helper()
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	var waits []time.Duration
	opts = append([]Option{withSleep(func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return ctx.Err()
	})}, opts...)
	return New(srv.URL, "sk_test_x", opts...), &waits
}

func TestRetriesHonourRetryAfterAndKeepTheKey(t *testing.T) {
	t.Parallel()
	s := &script{answers: []func(http.ResponseWriter){answer(503, "1", unavailable), answer(429, "2", limited), answer(201, "", created)}}
	c, waits := newTest(t, s)
	ses, err := c.CreateSession(context.Background(), api.SessionParams{Amount: 1000, Currency: "KZT", SuccessURL: "https://s.example/ok", CancelURL: "https://s.example/no"})
	if err != nil || ses.ID != "ses_x" || ses.Amount != 1000 {
		t.Fatalf("%v %+v", err, ses)
	}
	if len(s.got) != 3 {
		t.Fatalf("%d requests, want 3", len(s.got))
	}
	key := s.got[0].Header.Get("Idempotency-Key")
	if !strings.HasPrefix(key, "idem_") || len(key) != 37 {
		t.Fatalf("generated key %q", key)
	}
	for i, r := range s.got {
		if r.Header.Get("Idempotency-Key") != key || s.bodies[i] != s.bodies[0] || r.Header.Get("Authorization") != "Bearer sk_test_x" || r.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("try %d: key %q, body %q, headers %v", i, r.Header.Get("Idempotency-Key"), s.bodies[i], r.Header)
		}
	}
	if len(*waits) != 2 || (*waits)[0] < time.Second || (*waits)[1] < 2*time.Second {
		t.Fatalf("waits %v: Retry-After not honoured", *waits)
	}
	if strings.Contains(s.bodies[0], "reference") || strings.Contains(s.bodies[0], "methods") {
		t.Fatalf("empty optional fields sent: %s", s.bodies[0])
	}
}

func TestRetriesAreBounded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		opts   []Option
		answer func(http.ResponseWriter)
		tries  int
		status int
	}{
		{"503 four times", nil, answer(503, "1", unavailable), 4, 503},
		{"no retries", []Option{WithRetries(0)}, answer(503, "1", unavailable), 1, 503},
		{"Retry-After past the longest wait", []Option{WithBackoff(time.Millisecond, 10*time.Second)}, answer(429, "120", limited), 1, 429},
		{"400 is not retried", nil, answer(400, "", `{"error":{"code":"invalid","message":"must be an integer","param":"amount"}}`), 1, 400},
		{"409 is not retried", nil, answer(409, "", `{"error":{"code":"conflict","message":"the payment is refunded already"}}`), 1, 409},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := &script{answers: []func(http.ResponseWriter){tt.answer}}
			c, _ := newTest(t, s, tt.opts...)
			_, err := c.Payment(context.Background(), "pay_x")
			var e *Error
			if !errors.As(err, &e) || e.Status != tt.status || e.Code == "" || e.Message == "" {
				t.Fatalf("err %v", err)
			}
			if len(s.got) != tt.tries {
				t.Fatalf("%d tries, want %d", len(s.got), tt.tries)
			}
			if e.Temporary() != (tt.status == 503 || tt.status == 429) {
				t.Fatalf("Temporary() = %v for %d", e.Temporary(), tt.status)
			}
		})
	}
}

func TestErrorCarriesCodeParamAndStatus(t *testing.T) {
	t.Parallel()
	s := &script{answers: []func(http.ResponseWriter){answer(400, "", `{"error":{"code":"invalid","message":"must be an integer","param":"amount"}}`)}}
	c, _ := newTest(t, s)
	_, err := c.CreateSession(context.Background(), api.SessionParams{}, IdempotencyKey("order-42"))
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 || e.Code != "invalid" || e.Param != "amount" || e.Message != "must be an integer" {
		t.Fatalf("%#v", err)
	}
	if got := s.got[0].Header.Get("Idempotency-Key"); got != "order-42" {
		t.Fatalf("caller's key not sent: %q", got)
	}
	if err.Error() != "paypage: 400 invalid: must be an integer (amount)" {
		t.Fatalf("message %q", err.Error())
	}
}

func TestRetriesACutConnection(t *testing.T) {
	t.Parallel()
	s := &script{answers: []func(http.ResponseWriter){cut, answer(201, "", `{"id":"re_x","object":"refund","amount":500,"status":"succeeded"}`)}}
	c, waits := newTest(t, s)
	amount := int64(500)
	r, err := c.CreateRefund(context.Background(), "pay_x", api.RefundParams{Amount: &amount})
	if err != nil || r.ID != "re_x" || len(s.got) != 2 || len(*waits) != 1 {
		t.Fatalf("%v %+v after %d tries", err, r, len(s.got))
	}
	if s.got[0].Header.Get("Idempotency-Key") != s.got[1].Header.Get("Idempotency-Key") || s.bodies[0] != `{"amount":500}` {
		t.Fatalf("the retry is another request: %q %q", s.got[0].Header.Get("Idempotency-Key"), s.bodies[0])
	}
}

func TestContextEndsTheWait(t *testing.T) {
	t.Parallel()
	s := &script{answers: []func(http.ResponseWriter){answer(503, "20", unavailable)}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	sleeping := make(chan time.Duration, 1)
	c := New(srv.URL, "sk_test_x", withSleep(func(ctx context.Context, d time.Duration) error {
		sleeping <- d
		return sleepCtx(ctx, d) // the real wait
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := c.Session(ctx, "ses_x"); done <- err }()
	if d := <-sleeping; d < 20*time.Second {
		t.Fatalf("waits %v, Retry-After said 20 s", d)
	}
	cancel()
	var e *Error
	if err := <-done; !errors.As(err, &e) || e.Status != 503 || e.RetryAfter != 20*time.Second {
		t.Fatalf("after cancel: %v", err)
	}
	if len(s.got) != 1 {
		t.Fatalf("%d tries after the context ended", len(s.got))
	}
}

func TestBackoffIsJitteredAndBounded(t *testing.T) {
	t.Parallel()
	c := New("http://x", "", WithBackoff(100*time.Millisecond, 2*time.Second))
	for n := 0; n < 30; n++ {
		ceil := min(100*time.Millisecond<<min(n, 20), 2*time.Second)
		seen := map[time.Duration]bool{}
		for i := 0; i < 50; i++ {
			d := c.backoffFor(n)
			if d < 0 || d > ceil {
				t.Fatalf("retry %d: %v outside [0, %v]", n, d, ceil)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Fatalf("retry %d: %d distinct waits in 50: no jitter", n, len(seen))
		}
	}
}

func TestParseWebhook(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"evt_1","type":"payment.succeeded","created":"2027-01-15T08:00:00Z","merchant":"mer_1","data":{"id":"pay_1"}}`)
	good := api.SignWebhook("whsec_a", now, body)
	tests := []struct {
		name, secret, header string
		body                 []byte
		at                   time.Time
		want                 error
	}{
		{"OK", "whsec_a", good, body, now, nil},
		{"OK within tolerance", "whsec_a", good, body, now.Add(4 * time.Minute), nil},
		{"another secret", "whsec_b", good, body, now, api.ErrSignatureMismatch},
		{"body changed", "whsec_a", good, []byte(strings.Replace(string(body), "pay_1", "pay_2", 1)), now, api.ErrSignatureMismatch},
		{"replayed later", "whsec_a", good, body, now.Add(6 * time.Minute), api.ErrSignatureStale},
		{"no header", "whsec_a", "", body, now, api.ErrSignatureMalformed},
		{"no v1", "whsec_a", "t=1800000000", body, now, api.ErrSignatureMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := ParseWebhookAt(tt.secret, tt.header, tt.body, tt.at)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if tt.want == nil && (ev.ID != "evt_1" || ev.Type != api.EventPaymentSucceeded || string(ev.Data) != `{"id":"pay_1"}`) {
				t.Fatalf("event %+v", ev)
			}
		})
	}
}

// TestPullsInNoServer: a shop's build of the client brings the standard
// library and pkg/api, nothing else of ours and no other module.
func TestPullsInNoServer(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	deps := strings.Fields(string(out))
	want := []string{"github.com/paypage/paypage/pkg/api", "github.com/paypage/paypage/pkg/client"}
	if strings.Join(deps, " ") != strings.Join(want, " ") {
		t.Fatalf("the client pulls in %v, want only %v", deps, want)
	}
}
