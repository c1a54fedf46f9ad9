// Package e2e drives paypage end to end over real HTTP: a real server on a
// loopback port, a real store (bolt in a temporary directory, or a real
// redis-server), and an HTTP client that behaves like a browser without
// script (cookies, forms, redirects followed by hand).
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paypage/paypage/internal/app"
	"github.com/paypage/paypage/pkg/account"
	"github.com/paypage/paypage/pkg/api"
	"github.com/paypage/paypage/pkg/audit"
	"github.com/paypage/paypage/pkg/client"
	"github.com/paypage/paypage/pkg/clientaddr"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/store/redis/redistest"
)

// syncBuffer collects log lines from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// clock is a settable time for the whole app.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// env is one running paypage with a merchant and a processor.
type env struct {
	t          testing.TB
	app        *app.App
	url        string
	metrics    string // base URL of the metrics listener, with envOpts.metrics
	processor  string // base URL of the processor API's own listener, with envOpts.processor
	logs       *syncBuffer
	clock      *clock
	merchant   string // merchant ID
	key        string // merchant secret key
	hookSecret string
	procKey    string
	seen       *syncBuffer       // everything the shop could see, for the card-data scan
	transport  http.RoundTripper // how the API client and browsers connect (nil: the default)
	cancel     context.CancelFunc
	done       chan error
}

type envOpts struct {
	store      string // "bolt" (default) or a Redis URL
	data       string
	webhookURL string
	schedule   []time.Duration
	noAccounts bool
	detokenize int64  // detokenize calls a second per processor
	metrics    bool   // serve /metrics on a listener of its own (env.metrics)
	pprof      bool   // and the profiles beside them
	refusals   int64  // refused API calls a minute per source (0: no limit)
	trusted    string // --trusted-proxies
	processor  bool   // serve the processor API on a listener of its own (env.processor)
	tlsCert    string // serve TLS with this certificate and key (PEM files) at https://
	tlsKey     string
	// wrap puts a line between the payments and the sandbox processor.
	wrap func(processor.Processor) processor.Processor
	// poll is how often the reconciler reads the due index (default 100 ms).
	poll time.Duration
	// timing shortens the timing of attempts in flight.
	timing payment.Timing
	// noReconciler runs no reconciler: nothing moves but what the test does.
	noReconciler bool
	unseal       int // start sealed: this many key shares unseal (--unseal-shares)
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	if o.store == "" {
		o.store = "bolt"
	}
	if o.data == "" {
		o.data = filepath.Join(t.TempDir(), "data")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, logs: &syncBuffer{}, seen: &syncBuffer{}, clock: &clock{}, url: "http://" + ln.Addr().String()}
	if o.tlsCert != "" {
		e.url = "https://" + ln.Addr().String()
		e.transport = trustingTransport(t, o.tlsCert)
	}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sched := o.schedule
	if sched == nil {
		sched = []time.Duration{200 * time.Millisecond, 400 * time.Millisecond}
	}
	cfg := app.Config{Addr: ln.Addr().String(), Data: o.data, Store: o.store, PublicURL: e.url, WebhookAllowPrivate: true, WebhookSchedule: sched, DetokenizePerSecond: o.detokenize, RefusalsPerMinute: o.refusals, TLSCert: o.tlsCert, TLSKey: o.tlsKey, WebhookTimeout: time.Second, WrapProcessor: o.wrap, Timing: o.timing, UnsealShares: o.unseal, NoReconciler: o.noReconciler}
	if cfg.TrustedProxies, err = clientaddr.ParsePrefixes(o.trusted); err != nil {
		t.Fatal(err)
	}
	if o.store != "bolt" || o.tlsCert != "" || o.trusted != "" {
		// No development key off the embedded store on plain loopback.
		cfg.MasterKey = strings.Repeat("3b", 32)
	}
	var mln, pln net.Listener
	if o.processor {
		if pln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		cfg.ProcessorAddr = pln.Addr().String()
		e.processor = "http://" + cfg.ProcessorAddr
	}
	if o.metrics {
		if mln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		cfg.MetricsAddr, cfg.Pprof = mln.Addr().String(), o.pprof
		e.metrics = "http://" + cfg.MetricsAddr
	}
	a, err := app.Open(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	e.app = a
	a.SetClock(e.clock.Now)
	a.Runner.Poll = 100 * time.Millisecond
	if o.poll != 0 {
		a.Runner.Poll = o.poll
	}
	if !o.noAccounts {
		m, err := a.Accounts.AddMerchant(context.Background(), "Air Astana", o.webhookURL)
		if err != nil {
			t.Fatal(err)
		}
		e.merchant, e.key, e.hookSecret = m.ID, m.SecretKey, m.WebhookSecret
		p, err := a.Accounts.AddProcessor(context.Background(), account.ProcessorSpec{Name: "Acquirer", Merchants: []string{m.ID}})
		if err != nil {
			t.Fatal(err)
		}
		e.procKey = p.SecretKey
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan error, 1)
	go func() { e.done <- a.Serve(ctx, app.Listeners{Public: ln, Metrics: mln, Processor: pln}) }()
	t.Cleanup(e.stop)
	return e
}

// reconcile has the reconciler look at what is due now (on the test's
// clock) and waits for what it started: what a replica does each second.
func (e *env) reconcile() {
	e.t.Helper()
	if err := e.app.Runner.Drain(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// auditTrail is the audit trail with the refusals counted so far written
// out, as the service writes them when their window ends or it stops.
func (e *env) auditTrail() []audit.Event {
	e.t.Helper()
	if err := e.app.Refusals.Flush(context.Background(), true); err != nil {
		e.t.Fatal(err)
	}
	evs, err := e.app.Audit.List(context.Background(), "", 100_000)
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// stop shuts the server down (idempotent).
func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	if err := <-e.done; err != nil {
		e.t.Errorf("server: %v", err)
	}
	e.app.Close()
	e.cancel = nil
}

func redisURL(t testing.TB) string { return redistest.Start(t).URL() }

// forEachStore runs f against the embedded store, a Redis node and a Redis
// Cluster (where a commit that spanned hash slots would fail).
func forEachStore(t *testing.T, f func(t *testing.T, o envOpts)) {
	t.Run("bolt", func(t *testing.T) { f(t, envOpts{}) })
	t.Run("redis", func(t *testing.T) { f(t, envOpts{store: redisURL(t)}) })
	t.Run("cluster", func(t *testing.T) { f(t, envOpts{store: redistest.StartCluster(t)}) })
}

// api calls the shop or processor API and decodes the JSON answer.
func (e *env) api(method, path, key string, body any, headers ...string) (int, map[string]any, http.Header) {
	e.t.Helper()
	status, raw, h := e.raw(method, path, key, body, headers...)
	out := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			e.t.Fatalf("%s %s: not JSON (%d): %s", method, path, status, raw)
		}
	}
	return status, out, h
}

// raw calls the shop or processor API through the Go client (pkg/client,
// without its retries: the tests see each answer) and returns the answer as
// it came. A string body is sent as it is, anything else as JSON;
// headers are name, value pairs.
func (e *env) raw(method, path, key string, body any, headers ...string) (int, []byte, http.Header) {
	e.t.Helper()
	var b []byte
	switch v := body.(type) {
	case nil:
	case string:
		b = []byte(v)
	default:
		b, _ = json.Marshal(v)
	}
	h := http.Header{}
	for i := 0; i+1 < len(headers); i += 2 {
		h.Set(headers[i], headers[i+1])
	}
	resp, err := e.client(key, client.WithRetries(0)).Raw(context.Background(), method, path, b, h)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Status, resp.Body, resp.Header
}

// client is the Go client with a key, over the harness's HTTP path: every
// answer passes the tap (tap.go).
func (e *env) client(key string, opts ...client.Option) *client.Client {
	return client.New(e.url, key, append([]client.Option{client.WithHTTPClient(&http.Client{Transport: &tap{e: e, next: e.transport}})}, opts...)...)
}

// session creates a session with the typed client (the sandbox defaults,
// changed by body: a nil value drops a field) and returns it as JSON values.
func (e *env) session(body map[string]any) map[string]any {
	e.t.Helper()
	req := map[string]any{"amount": 150000, "currency": "KZT", "reference": "PNR-ABC123", "description": "ALA-NQZ",
		"success_url": "https://shop.example/ok?session={SESSION_ID}", "cancel_url": "https://shop.example/cancel?session={SESSION_ID}"}
	for k, v := range body {
		if v == nil {
			delete(req, k)
		} else {
			req[k] = v
		}
	}
	var params api.SessionParams
	j, _ := json.Marshal(req)
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&params); err != nil {
		e.t.Fatalf("session fields %v: %v", req, err)
	}
	s, err := e.client(e.key, client.WithRetries(0)).CreateSession(context.Background(), params)
	if err != nil {
		e.t.Fatalf("create session: %v", err)
	}
	out := map[string]any{}
	j, _ = json.Marshal(s)
	_ = json.Unmarshal(j, &out)
	return out
}

// browser is a shopper's browser without script: cookies and forms.
type browser struct {
	e      *env
	c      *http.Client
	lang   string
	xff    string            // X-Forwarded-For, as a proxy in front would set it
	tokens map[string]string // the last CSRF token seen per session
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, tokens: map[string]string{}, c: &http.Client{Jar: jar, Transport: e.transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// page is an HTTP answer as the browser got it.
type page struct {
	status   int
	body     string
	location string
	header   http.Header
}

func (b *browser) do(method, u string, form url.Values) page {
	b.e.t.Helper()
	if strings.HasPrefix(u, "/") {
		u = b.e.url + u
	}
	var rd io.Reader
	if form != nil {
		rd = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, rd)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if b.lang != "" {
		req.Header.Set("Accept-Language", b.lang)
	}
	if b.xff != "" {
		req.Header.Set("X-Forwarded-For", b.xff)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	p := page{status: resp.StatusCode, body: string(raw), location: resp.Header.Get("Location"), header: resp.Header}
	if p.location != "" {
		b.e.seen.Write([]byte("\nLOCATION " + p.location + "\n"))
	}
	return p
}

func (b *browser) get(u string) page { return b.do("GET", u, nil) }

// follow GETs redirects until a page that is not one (on our origin only).
func (b *browser) follow(p page) page {
	for i := 0; i < 10 && p.status >= 300 && p.status < 400; i++ {
		if !strings.HasPrefix(p.location, "/") && !strings.HasPrefix(p.location, b.e.url) {
			return p
		}
		p = b.get(p.location)
	}
	return p
}

var (
	reForm   = regexp.MustCompile(`(?s)<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>`)
	reHidden = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
	reMeta   = regexp.MustCompile(`<meta http-equiv="refresh" content="[0-9]+;url=([^"]+)">`)
)

// form returns the action and hidden fields of the n-th form on a page.
func (p page) form(n int) (string, url.Values) {
	m := reForm.FindAllStringSubmatch(p.body, -1)
	if n >= len(m) {
		return "", nil
	}
	v := url.Values{}
	for _, h := range reHidden.FindAllStringSubmatch(m[n][2], -1) {
		v.Set(h[1], html.UnescapeString(h[2]))
	}
	return html.UnescapeString(m[n][1]), v
}

// cardForm returns the card form's fields, CSRF token included.
func (b *browser) cardForm(sessionID string) url.Values {
	b.e.t.Helper()
	p := b.get("/pay/" + sessionID)
	if p.status != 200 {
		b.e.t.Fatalf("card page: %d", p.status)
	}
	_, v := p.form(0)
	if v == nil {
		v = url.Values{}
	}
	if v.Get("csrf") != "" {
		b.tokens[sessionID] = v.Get("csrf")
	} else if tok := b.tokens[sessionID]; tok != "" {
		v.Set("csrf", tok) // the page shows no form now: post as an old tab would
	} else {
		b.e.t.Fatalf("card page without a CSRF token:\n%s", p.body)
	}
	return v
}

// fillCardForm puts a card with a valid name and expiry into form values.
func fillCardForm(v url.Values, number, cvc string) url.Values {
	v.Set("number", number)
	v.Set("name", "IVAN PETROV")
	v.Set("exp_month", "12")
	v.Set("exp_year", fmt.Sprint(time.Now().Year()%100+3))
	v.Set("cvc", cvc)
	return v
}

// pay submits a card and returns the answer to the post.
func (b *browser) pay(sessionID, number, cvc string) page {
	v := fillCardForm(b.cardForm(sessionID), number, cvc)
	p := b.do("POST", "/pay/"+sessionID, v)
	b.e.seen.Write([]byte(p.body))
	return p
}

// challenge takes a 3-D Secure challenge page through the sandbox bank with
// the given codes, then back to our page; it returns the final page.
func (b *browser) challenge(p page, codes ...string) page {
	t := b.e.t
	t.Helper()
	acsURL, v := p.form(0)
	if !strings.Contains(acsURL, "/sandbox/acs/") || v.Get("creq") == "" {
		t.Fatalf("not a challenge redirect: %s\n%s", acsURL, p.body)
	}
	bank := b.do("POST", acsURL, v)
	if bank.status != 200 || !strings.Contains(bank.body, `autocomplete="one-time-code"`) {
		t.Fatalf("bank page: %d\n%s", bank.status, bank.body)
	}
	for _, code := range codes {
		action, fv := bank.form(0)
		if code == "resend" || code == "cancel" {
			fv.Set("action", code)
		} else {
			fv.Set("code", code)
		}
		bank = b.do("POST", action, fv)
	}
	return bank
}

// back posts the bank page's result to our page and follows to the end.
func (b *browser) back(bank page) (page, url.Values) {
	b.e.t.Helper()
	action, v := bank.form(0)
	if v.Get("cres") == "" {
		b.e.t.Fatalf("bank page did not finish:\n%s", bank.body)
	}
	return b.follow(b.do("POST", action, v)), v
}
