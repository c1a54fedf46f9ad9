package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/audit"
)

func TestFieldErrorsAreNotAttempts(t *testing.T) {
	e := newEnv(t, envOpts{})
	id := e.session(map[string]any{"locale": "en"})["id"].(string)
	b := e.browser()
	tests := []struct {
		name                          string
		number, cardName, mm, yy, cvc string
		want                          []string // field ids with errors
		text                          string
	}{
		{"all empty", "", "", "", "", "", []string{"number-error", "name-error", "expiry-error", "cvc-error"}, "Enter the card number."},
		{"luhn typo", "4242 4242 4242 4241", "IVAN PETROV", "12", "30", "981", []string{"number-error"}, "The card number is incorrect"},
		{"cyrillic name", "4242 4242 4242 4242", "ИВАН ПЕТРОВ", "12", "30", "981", []string{"name-error"}, "Latin letters"},
		{"expired", "4242 4242 4242 4242", "IVAN PETROV", "01", "20", "981", []string{"expiry-error"}, "The card has expired."},
		{"amex needs 4 digits", "3782 822463 10005", "IVAN PETROV", "12", "30", "981", []string{"cvc-error"}, "wrong number of digits"},
		{"unsupported brand", "6011 1111 1111 1117", "IVAN PETROV", "12", "30", "981", []string{"number-error"}, "This card type is not accepted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := b.cardForm(id)
			v.Set("number", tt.number)
			v.Set("name", tt.cardName)
			v.Set("exp_month", tt.mm)
			v.Set("exp_year", tt.yy)
			v.Set("cvc", tt.cvc)
			p := b.do("POST", "/pay/"+id, v)
			if p.status != http.StatusUnprocessableEntity || !strings.Contains(p.body, tt.text) || !strings.Contains(p.body, `role="alert"`) {
				t.Fatalf("%d:\n%s", p.status, p.body)
			}
			for _, f := range tt.want {
				if !strings.Contains(p.body, `id="`+f+`"`) || !strings.Contains(p.body, "aria-invalid=\"true\"") {
					t.Fatalf("no %s on the page", f)
				}
			}
			// The page never echoes the number or the code.
			if tt.number != "" && strings.Contains(p.body, strings.ReplaceAll(tt.number, " ", "")) || tt.cvc != "" && strings.Contains(p.body, `value="`+tt.cvc+`"`) {
				t.Fatal("card data echoed on the page")
			}
		})
	}
	_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
	if s["attempts"].(float64) != 0 || s["status"] != "open" || s["payment"] != nil {
		t.Fatalf("field errors counted as attempts: %v", s)
	}
	// Then the right card pays.
	p := b.follow(b.pay(id, "4242424242424242", "981"))
	if !strings.Contains(p.body, "Payment successful") {
		t.Fatalf("after typos:\n%s", p.body)
	}
}

func TestAttemptsRunOut(t *testing.T) {
	e := newEnv(t, envOpts{})
	id := e.session(map[string]any{"locale": "en"})["id"].(string)
	b := e.browser()
	for i := 1; i <= 3; i++ {
		p := b.follow(b.pay(id, "4000 0000 0000 9995", "981"))
		if i < 3 && !strings.Contains(p.body, "not enough funds") {
			t.Fatalf("attempt %d:\n%s", i, p.body)
		}
		if i == 3 && (!strings.Contains(p.body, "Payment not completed") || strings.Contains(p.body, `name="number"`)) {
			t.Fatalf("after the third decline the form is still offered:\n%s", p.body)
		}
	}
	p := b.pay(id, "4242 4242 4242 4242", "981")
	_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
	if p.status == 200 && strings.Contains(p.body, "Payment successful") || s["status"] != "failed" || s["payment"].(map[string]any)["status"] != "failed" {
		t.Fatalf("a failed session took a payment: %v", s)
	}
}

func TestExpiredSession(t *testing.T) {
	e := newEnv(t, envOpts{})
	id := e.session(map[string]any{"expires_in": 600, "locale": "en"})["id"].(string)
	b := e.browser()
	v := fillCardForm(b.cardForm(id), "4242424242424242", "981")
	e.clock.Advance(11 * time.Minute)
	p := b.follow(b.do("POST", "/pay/"+id, v))
	if !strings.Contains(p.body, "This payment page has expired") || strings.Contains(p.body, `name="number"`) {
		t.Fatalf("expired page:\n%s", p.body)
	}
	_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
	if s["status"] != "expired" || s["payment"] != nil {
		t.Fatalf("session %v", s)
	}
	// The reconciler writes the expiry down, with its event, once.
	e.reconcile()
	e.reconcile()
	if ev := eventTypes(t, e); ev["session.expired"] != 1 {
		t.Fatalf("events %v", ev)
	}
}

func TestPaidAtMostOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, o envOpts) {
		e := newEnv(t, o)
		id := e.session(nil)["id"].(string)
		// A double click, many times over: concurrent submissions of one form.
		b := e.browser()
		v := fillCardForm(b.cardForm(id), "4242424242424242", "981")
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); b.do("POST", "/pay/"+id, v) }()
		}
		wg.Wait()
		p := b.follow(b.pay(id, "5555 5555 5555 4444", "981"))
		if !strings.Contains(p.body, "Payment successful") {
			t.Fatalf("after paying:\n%s", p.body)
		}
		_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
		pay := s["payment"].(map[string]any)
		if len(pay["attempts"].([]any)) != 1 || pay["card"].(map[string]any)["last4"] != "4242" {
			t.Fatalf("attempts %v", pay["attempts"])
		}
		if n := countKind(t, e, "sbx_auth"); n != 1 {
			t.Fatalf("the processor authorized %d times", n)
		}
	})
}

func TestCSRFAndHeaders(t *testing.T) {
	e := newEnv(t, envOpts{})
	id := e.session(nil)["id"].(string)
	b := e.browser()
	p := b.get("/pay/" + id)
	csp := p.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for h, want := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if got := p.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	for _, want := range []string{`autocomplete="cc-number"`, `autocomplete="cc-name"`, `autocomplete="cc-exp-month"`, `autocomplete="cc-exp-year"`, `autocomplete="cc-csc"`, `integrity="sha384-`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(p.body, "http://") && !strings.Contains(p.body, "https://shop.example") || strings.Contains(p.body, "//cdn") {
		t.Error("page loads from another origin")
	}
	// A post without the CSRF token, or from another browser, is refused and changes nothing.
	form := url.Values{"number": {"4242424242424242"}, "name": {"IVAN PETROV"}, "exp_month": {"12"}, "exp_year": {"35"}, "cvc": {"981"}}
	if p := b.do("POST", "/pay/"+id, form); p.status != http.StatusForbidden {
		t.Fatalf("no token: %d", p.status)
	}
	form.Set("csrf", b.cardForm(id).Get("csrf"))
	if p := e.browser().do("POST", "/pay/"+id, form); p.status != http.StatusForbidden {
		t.Fatalf("token of another browser: %d", p.status)
	}
	_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
	if s["payment"] != nil {
		t.Fatal("a refused post made a payment")
	}
	if p := b.get("/pay/ses_" + strings.Repeat("b", 26)); p.status != 404 {
		t.Fatalf("unknown session page: %d", p.status)
	}
}

func TestLanguages(t *testing.T) {
	e := newEnv(t, envOpts{})
	// The session's locale wins; else Accept-Language; ?lang= switches.
	ru := e.session(map[string]any{"locale": "ru"})["id"].(string)
	b := e.browser()
	p := b.follow(b.pay(ru, "4000 0000 0000 9995", "981"))
	if !strings.Contains(p.body, "На карте недостаточно средств.") || !strings.Contains(p.body, `lang="ru"`) {
		t.Fatalf("Russian decline:\n%s", p.body)
	}
	kk := e.session(map[string]any{"locale": nil})["id"].(string)
	b2 := e.browser()
	b2.lang = "kk-KZ,kk;q=0.9,ru;q=0.8"
	if p := b2.get("/pay/" + kk); !strings.Contains(p.body, "Карта нөмірі") {
		t.Fatalf("Kazakh from Accept-Language:\n%s", p.body)
	}
	if p := b2.get("/pay/" + kk + "?lang=en"); !strings.Contains(p.body, "Card number") {
		t.Fatal("?lang=en did not switch")
	}
	if p := b2.get("/pay/" + kk); !strings.Contains(p.body, "Card number") {
		t.Fatal("the language choice was not kept")
	}
}

func TestDetokenize(t *testing.T) {
	forEachStore(t, func(t *testing.T, o envOpts) {
		e := newEnv(t, o)
		id := e.session(nil)["id"].(string)
		b := e.browser()
		b.follow(b.pay(id, "3782 822463 10005", "7319"))
		_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
		token := s["payment"].(map[string]any)["card"].(map[string]any)["token"].(string)

		st, d, h := e.api("POST", "/v1/detokenize", e.procKey, map[string]any{"token": token})
		if st != 200 || d["pan"] != "378282246310005" || d["brand"] != "amex" || d["cardholder_name"] != "IVAN PETROV" || d["exp_month"].(float64) != 12 {
			t.Fatalf("detokenize: %d %v", st, d)
		}
		if h.Get("Cache-Control") != "no-store" {
			t.Fatal("detokenize answer may be cached")
		}
		for _, bad := range []struct {
			key  string
			body any
			st   int
		}{
			{e.key, map[string]any{"token": token}, 403},
			{"", map[string]any{"token": token}, 401},
			{e.procKey, map[string]any{"token": "4242424242424242"}, 404},
			{e.procKey, map[string]any{"token": "tok_" + strings.Repeat("a", 26)}, 404},
			{e.procKey, map[string]any{}, 400},
			{e.procKey, `{"token": 5}`, 400},
		} {
			if st, got, _ := e.api("POST", "/v1/detokenize", bad.key, bad.body); st != bad.st || got["pan"] != nil {
				t.Errorf("%v: %d %v", bad.body, st, got)
			}
		}
		evs := e.auditTrail()
		var ok, failed, forbidden int64
		for _, ev := range evs {
			if ev.Action != "detokenize" || ev.Actor == "processor:sandbox" {
				continue
			}
			if ev.Time.IsZero() || ev.Source != "127.0.0.1" {
				t.Errorf("audit record lacks when or where: %+v", ev)
			}
			switch {
			case ev.Outcome == audit.Success && ev.Object == token && strings.HasPrefix(ev.Actor, "processor:prc_"):
				ok++
			case ev.Outcome == audit.Failure && ev.Reason == "forbidden":
				forbidden += ev.Count
			case ev.Outcome == audit.Failure && ev.Actor == "unknown":
				failed += ev.Count // unauthenticated refusals: one record with a count
			case ev.Outcome == audit.Failure && ev.Count == 0:
				failed++ // an authenticated processor's: one record each, before the answer
			}
			if strings.Contains(ev.Object+ev.Reason, "4242424242424242") {
				t.Errorf("audit record holds a PAN: %+v", ev)
			}
		}
		if ok != 1 || forbidden != 1 || failed != 5 {
			t.Fatalf("audit: %d ok, %d forbidden, %d failed; %+v", ok, forbidden, failed, evs)
		}
	})
}

func TestCardTestingLimits(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.app.Limiter.Card.Max = 2
	b := e.browser()
	// The same card across sessions: the third try is refused before it
	// reaches anyone. (Not a sandbox card: those are never counted.)
	for i := 1; i <= 3; i++ {
		id := e.session(map[string]any{"locale": "en"})["id"].(string)
		p := b.pay(id, "4111 1111 1111 1111", "981")
		if i < 3 && p.status != 303 {
			t.Fatalf("try %d: %d", i, p.status)
		}
		if i == 3 {
			if p.status != 429 || !strings.Contains(p.body, "This card has been used for too many payment attempts") {
				t.Fatalf("third try: %d\n%s", p.status, p.body)
			}
			_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
			if s["payment"] != nil {
				t.Fatal("a limited try made a payment")
			}
		}
	}
	// Per client address: the two tries that went through counted (a refused
	// one costs nothing, not even a count).
	e.app.Limiter.Card.Max, e.app.Limiter.Client.Max = 100, 2
	id := e.session(map[string]any{"locale": "en"})["id"].(string)
	if p := b.pay(id, "4242 4242 4242 4242", "981"); p.status != 429 {
		t.Fatalf("client over its limit: %d", p.status)
	}
}

func TestDetokenizeRateLimit(t *testing.T) {
	e := newEnv(t, envOpts{detokenize: 3})
	id := e.session(nil)["id"].(string)
	b := e.browser()
	b.follow(b.pay(id, "4242 4242 4242 4242", "981"))
	_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
	token := s["payment"].(map[string]any)["card"].(map[string]any)["token"].(string)
	for i := 1; i <= 4; i++ {
		st, d, h := e.api("POST", "/v1/detokenize", e.procKey, map[string]any{"token": token})
		if i <= 3 && st != 200 {
			t.Fatalf("call %d: %d %v", i, st, d)
		}
		if i == 4 && (st != 429 || d["pan"] != nil || h.Get("Retry-After") == "") {
			t.Fatalf("call over the limit: %d %v", st, d)
		}
	}
	limited := int64(0)
	for _, ev := range e.auditTrail() {
		if ev.Action == "detokenize" && ev.Reason == "rate_limited" {
			limited += ev.Count
		}
	}
	if limited != 1 {
		t.Fatalf("%d rate-limited calls audited", limited)
	}
}

// TestLimitedSubmissionWritesNothing: a card submission the limits refuse
// writes nothing to the session (the limits are asked before the session is
// claimed with an attempt), so a client over its limit costs no durable
// write per 429.
func TestLimitedSubmissionWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.app.Limiter.Client.Max = 1
	id := e.session(map[string]any{"locale": "en"})["id"].(string)
	b := e.browser()
	if p := b.pay(id, "4000 0000 0000 0002", "981"); p.status == http.StatusTooManyRequests {
		t.Fatalf("first submission limited")
	}
	version := func() int64 { return sessionVersion(t, e, id) }
	before := version()
	const n = 20
	for i := 0; i < n; i++ {
		if p := b.pay(id, luhnCard(300+i), "981"); p.status != http.StatusTooManyRequests {
			t.Fatalf("submission %d over the client limit: %d", i, p.status)
		}
	}
	if writes := version() - before; writes > 0 {
		t.Errorf("%d submissions refused by the client limit wrote the session %d times", n, writes)
	}
}
