package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
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
		// A secret that did not load (os.Getenv of an unset variable): an
		// HMAC under an empty key is anyone's, so nothing is verified.
		{"empty secret", "", api.SignWebhook("", now, body), body, now, api.ErrNoSecret},
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

// TestRawKeysEveryPost: Raw retries only what is safe to repeat. A refund
// whose 503 left it pending, retried as it was, would be a second refund:
// a POST gets an Idempotency-Key of its own, reused by its retries; one
// sent with an empty key (none) is sent once; a GET is retried as it is.
func TestRawKeysEveryPost(t *testing.T) {
	t.Parallel()
	pending := `{"error":{"code":"unavailable","message":"the refund could not be confirmed; it stays pending"}}`
	tests := []struct {
		name   string
		method string
		header http.Header
		tries  int
		key    string // the key every try carries: "" none, "*" one the client made
	}{
		{"POST without a key", "POST", nil, 2, "*"},
		{"POST with the caller's key", "POST", http.Header{"Idempotency-Key": {"refund-7"}}, 2, "refund-7"},
		{"POST with an empty key: none, never retried", "POST", http.Header{"Idempotency-Key": {""}}, 1, ""},
		{"DELETE without a key is not retried", "DELETE", nil, 1, ""},
		{"GET is retried", "GET", nil, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := &script{answers: []func(http.ResponseWriter){answer(503, "1", pending), answer(201, "", `{"id":"re_2"}`)}}
			c, _ := newTest(t, s)
			var body []byte
			if tt.method == "POST" {
				body = []byte(`{"amount":500}`)
			}
			if _, err := c.Raw(context.Background(), tt.method, "/v1/payments/pay_x/refunds", body, tt.header); err != nil {
				t.Fatal(err)
			}
			if len(s.got) != tt.tries {
				t.Fatalf("%s sent %d times, want %d", tt.method, len(s.got), tt.tries)
			}
			first := s.got[0].Header.Get("Idempotency-Key")
			for i, r := range s.got {
				got := r.Header.Get("Idempotency-Key")
				if _, sent := r.Header["Idempotency-Key"]; tt.key == "" && sent {
					t.Fatalf("try %d sent Idempotency-Key %q", i, got)
				}
				if tt.key == "*" && (!strings.HasPrefix(got, "idem_") || got != first) {
					t.Fatalf("try %d: key %q, the first %q", i, got, first)
				}
				if tt.key != "" && tt.key != "*" && got != tt.key {
					t.Fatalf("try %d: key %q, want %q", i, got, tt.key)
				}
			}
			if tt.header != nil && len(tt.header["Idempotency-Key"]) != 1 {
				t.Fatal("Raw changed the caller's header")
			}
		})
	}
}

// TestRetriesItsOwnRequestInProgress: after a cut connection the create's
// own retry may meet its first try still running (409
// idempotency_in_progress, with Retry-After); the client waits and asks
// again under the same key, and gets the session, where it used to hand
// the shop a 409 like "refunded already".
func TestRetriesItsOwnRequestInProgress(t *testing.T) {
	t.Parallel()
	inProgress := `{"error":{"code":"idempotency_in_progress","message":"a request with this Idempotency-Key is in progress: retry it after Retry-After seconds, with the same key","param":"Idempotency-Key"}}`
	s := &script{answers: []func(http.ResponseWriter){cut, answer(409, "1", inProgress), answer(201, "", created)}}
	c, waits := newTest(t, s)
	ses, err := c.CreateSession(context.Background(), api.SessionParams{Amount: 1000, Currency: "KZT", SuccessURL: "https://s.example/ok", CancelURL: "https://s.example/no"})
	if err != nil || ses.ID != "ses_x" {
		t.Fatalf("the create's own retry met its first try in flight and gave up: %v (%d tries)", err, len(s.got))
	}
	if len(s.got) != 3 || s.got[1].Header.Get("Idempotency-Key") != s.got[2].Header.Get("Idempotency-Key") || (*waits)[1] < time.Second {
		t.Fatalf("%d tries, waits %v", len(s.got), *waits)
	}
	if !errorOf(&Response{Status: 409, Body: []byte(inProgress)}).Temporary() {
		t.Fatal("an in-progress 409 is not Temporary")
	}
}

// TestHugeRetryAfterIsNotWaited: a Retry-After past the longest wait is not
// waited for and the error is returned, however large: 10^10 seconds used
// to overflow time.Duration into a negative wait, retried at once.
func TestHugeRetryAfterIsNotWaited(t *testing.T) {
	t.Parallel()
	for _, ra := range []string{"10000000000", "99999999999999999999999"} {
		s := &script{answers: []func(http.ResponseWriter){answer(503, ra, unavailable)}}
		c, waits := newTest(t, s)
		_, err := c.Payment(context.Background(), "pay_x")
		var e *Error
		if !errors.As(err, &e) || len(s.got) != 1 || e.RetryAfter <= 0 {
			t.Fatalf("Retry-After %s: %d tries (waits %v), %v: a huge Retry-After was ignored", ra, len(s.got), *waits, err)
		}
	}
}

// TestRetryAfterAsAnHTTPDate: the HTTP-date form is waited for.
func TestRetryAfterAsAnHTTPDate(t *testing.T) {
	t.Parallel()
	when := time.Now().Add(5 * time.Second).UTC().Format(http.TimeFormat)
	s := &script{answers: []func(http.ResponseWriter){answer(503, when, unavailable), answer(200, "", `{"id":"pay_x"}`)}}
	c, waits := newTest(t, s)
	if _, err := c.Payment(context.Background(), "pay_x"); err != nil || len(*waits) != 1 || (*waits)[0] < 3*time.Second {
		t.Fatalf("%v, waits %v", err, *waits)
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

// TestAsksNoNewerGoThanItsDependencies: a shop's module that requires this
// one must declare at least its go version; it asks for no newer Go than
// the modules it requires already do (go 1.26.0, not a patch release: the
// toolchain line, which binds only this module's own builds, names that).
func TestAsksNoNewerGoThanItsDependencies(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-m", "-f", "{{if .Main}}main {{end}}{{.GoVersion}}", "all").Output()
	if err != nil {
		t.Fatal(err)
	}
	var own, highest string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if v, ok := strings.CutPrefix(line, "main "); ok {
			own = v
		} else if line != "" && versionLess(highest, line) {
			highest = line
		}
	}
	if own == "" || highest == "" || versionLess(highest, own) {
		t.Fatalf("go.mod says go %s; the highest any dependency asks for is %s", own, highest)
	}
}

// versionLess compares Go versions such as 1.26 and 1.26.0 number by number.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}
