package e2e

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The rough edges a new shop met on its first integration (issue 16), each
// with a test.

func TestBankPageKeepsTheShoppersLanguage(t *testing.T) {
	e := newEnv(t, envOpts{})
	id := e.session(map[string]any{"locale": "ru"})["id"].(string)
	b := e.browser()
	b.lang = "en-GB,en;q=0.9" // the browser asks for English; the shop chose Russian
	p := b.pay(id, "4000 0000 0000 3220", "981")
	bank := b.challenge(p)
	if !strings.Contains(bank.body, `lang="ru"`) {
		t.Fatalf("bank page not in Russian:\n%s", bank.body)
	}
	for _, step := range []struct{ code, want string }{{"000000", "Неверный код. Осталось попыток: 2."}, {"resend", "Неверный код"}} {
		action, v := bank.form(0)
		if step.code == "resend" {
			v.Set("action", "resend")
		} else {
			v.Set("code", step.code)
		}
		bank = b.do("POST", action, v)
		if !strings.Contains(bank.body, `<html lang="ru">`) || !strings.Contains(bank.body, step.want) || strings.Contains(bank.body, "Wrong code") {
			t.Fatalf("after %s the bank page switched language:\n%s", step.code, bank.body)
		}
	}
}

func TestCardholderNameKeptAfterADecline(t *testing.T) {
	e := newEnv(t, envOpts{})
	id := e.session(map[string]any{"locale": "en"})["id"].(string)
	b := e.browser()
	p := b.follow(b.pay(id, "4000 0000 0000 0002", "987"))
	if !strings.Contains(p.body, `id="decline"`) {
		t.Fatalf("no decline:\n%s", p.body)
	}
	if !regexp.MustCompile(`id="name"[^>]*value="IVAN PETROV"`).MatchString(p.body) {
		t.Fatalf("the cardholder name was cleared after the decline:\n%s", p.body)
	}
	for _, secret := range []string{"4000 0000 0000 0002", "4000000000000002", "0002\"", `value="987"`} {
		if strings.Contains(p.body, secret) {
			t.Fatalf("the page after a decline holds %q", secret)
		}
	}
	for _, c := range b.c.Jar.Cookies(mustURL(t, e.url+"/pay/"+id)) {
		if strings.Contains(c.Value, "4000") || strings.Contains(c.Value, "987") {
			t.Fatalf("cookie %s holds card data", c.Name)
		}
	}
	// Another session's page does not get it.
	other := e.session(map[string]any{"locale": "en"})["id"].(string)
	if q := b.get("/pay/" + other); strings.Contains(q.body, `value="IVAN PETROV"`) {
		t.Fatal("another session's page shows the name")
	}
	// Paid: the name is forgotten.
	b.follow(b.pay(id, "4242 4242 4242 4242", "981"))
	for _, c := range b.c.Jar.Cookies(mustURL(t, e.url+"/pay/"+id)) {
		if c.Name == "pp_name" {
			t.Fatalf("name cookie kept after the payment: %v", c)
		}
	}
}

// TestNameCookieClearedWhenTheSessionEnds: the name cookie is forgotten
// once the session is over, however it ended: paid after a 3-D Secure
// challenge (which completes at the bank's return, not at the card post),
// paid by Kaspi QR, its attempts used up, or expired. It used to be cleared
// only by a frictionless card's post, and stayed in the browser for an hour.
func TestNameCookieClearedWhenTheSessionEnds(t *testing.T) {
	e := newEnv(t, envOpts{})
	hasCookie := func(b *browser, id string) bool {
		for _, c := range b.c.Jar.Cookies(mustURL(t, e.url+"/pay/"+id)) {
			if c.Name == "pp_name" {
				return true
			}
		}
		return false
	}
	tests := []struct {
		name  string
		state string
		end   func(b *browser, id string)
	}{
		{"challenge", "complete", func(b *browser, id string) {
			b.back(b.challenge(b.pay(id, "4000 0000 0000 3220", "981"), "123456"))
		}},
		{"kaspi", "complete", func(b *browser, id string) {
			_, app := kaspiQR(t, e, b, id)
			scan(t, e, app, "pay")
			waitDone(t, e, b, id)
			b.follow(b.get("/pay/" + id + "/kaspi"))
		}},
		{"attempts used up", "failed", func(b *browser, id string) {
			b.follow(b.pay(id, "4000 0000 0000 0002", "981"))
			b.follow(b.pay(id, "4000 0000 0000 0002", "981"))
		}},
		{"expired", "expired", func(b *browser, id string) {
			e.clock.Advance(10 * time.Minute)
			b.get("/pay/" + id)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := e.session(map[string]any{"locale": "en", "methods": []string{"card", "kaspi_qr"}, "expires_in": 300})["id"].(string)
			b := e.browser()
			b.follow(b.pay(id, "4000 0000 0000 0002", "981")) // a decline: the name is kept for the next try
			if !hasCookie(b, id) {
				t.Fatal("no name cookie after a decline")
			}
			tt.end(b, id)
			if st, _ := sessionState(t, e, id); st != tt.state {
				t.Fatalf("session %s, want %s", st, tt.state)
			}
			if hasCookie(b, id) {
				t.Fatal("name cookie kept after the session ended")
			}
		})
	}
}

func TestNotDeclinedIsNotCalledDeclined(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, c := range []struct{ number, title, notTitle string }{
		{"4000 0000 0000 0119", "The payment did not go through", "The payment was declined"},
		{"4000 0000 0000 9995", "The payment was declined", "did not go through"},
	} {
		id := e.session(map[string]any{"locale": "en"})["id"].(string)
		b := e.browser()
		p := b.follow(b.pay(id, c.number, "981"))
		if !strings.Contains(p.body, "<h2>"+c.title+"</h2>") || strings.Contains(p.body, c.notTitle) {
			t.Fatalf("%s: page:\n%s", c.number, p.body)
		}
	}
}

func TestFavicon(t *testing.T) {
	e := newEnv(t, envOpts{})
	id := e.session(nil)["id"].(string)
	b := e.browser()
	p := b.get("/pay/" + id)
	m := regexp.MustCompile(`<link rel="icon" href="(/static/favicon\.svg\?v=[0-9a-f]{12})" type="image/svg\+xml">`).FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no versioned icon link:\n%s", p.body)
	}
	icon := b.get(m[1])
	ico := b.get("/favicon.ico")
	for _, a := range []page{icon, ico} {
		if a.status != 200 || a.header.Get("Content-Type") != "image/svg+xml" || !strings.HasPrefix(a.body, "<svg") {
			t.Fatalf("icon: %d %s %.40s", a.status, a.header.Get("Content-Type"), a.body)
		}
	}
	if icon.body != ico.body || icon.header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Fatalf("icons differ, or the versioned one is not cached: %s", icon.header.Get("Cache-Control"))
	}
}

// TestEveryShopperPageHasAHeading: each page a shopper can land on has
// exactly one level-one heading (axe-core checks it in the browser tests
// too; this runs without Chromium).
func TestEveryShopperPageHasAHeading(t *testing.T) {
	e := newEnv(t, envOpts{})
	h1 := regexp.MustCompile(`<h1[ >]`)
	check := func(name string, p page) {
		t.Helper()
		if n := len(h1.FindAllString(p.body, -1)); n != 1 {
			t.Errorf("%s: %d level-one headings:\n%s", name, n, p.body)
		}
	}
	b := e.browser()
	id := e.session(nil)["id"].(string)
	check("card form", b.get("/pay/"+id))
	v := fillCardForm(b.cardForm(id), "4242 4242 4242 4241", "981")
	check("field errors", b.do("POST", "/pay/"+id, v))
	check("refusal", b.follow(b.pay(id, "4000 0000 0000 0002", "981")))
	id = e.session(nil)["id"].(string)
	p := b.pay(id, "4000 0000 0000 3220", "981")
	check("to the bank", p)
	check("bank", b.challenge(p))
	id = e.session(map[string]any{"methods": []string{"kaspi_qr"}})["id"].(string)
	check("Kaspi-only choice", b.get("/pay/"+id))
	q, app := kaspiQR(t, e, b, id)
	check("Kaspi QR", q)
	check("sandbox Kaspi app", b.get(app))
	id = e.session(nil)["id"].(string)
	check("success", b.follow(b.pay(id, "4242 4242 4242 4242", "981")))
	check("not found", b.get("/pay/ses_nothing"))
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
