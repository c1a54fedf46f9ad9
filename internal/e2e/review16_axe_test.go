package e2e

import (
	"testing"
	"time"

	"github.com/go-rod/rod"
)

// TestReview16AxeOnPagesTheTestSkips runs the same axe-core check on shopper
// pages and states TestBrowserAccessibility does not visit.
func TestReview16AxeOnPagesTheTestSkips(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := startChrome(t)
	shop := startShop(t)
	for _, lang := range []string{"en", "kk"} {
		t.Run(lang, func(t *testing.T) {
			open := func(extra map[string]any, view func(*rod.Page) *rod.Page) (*rod.Page, string) {
				body := map[string]any{"success_url": shop.URL + "/paid", "cancel_url": shop.URL + "/cancelled", "locale": lang}
				for k, v := range extra {
					body[k] = v
				}
				s := e.session(body)
				p := b.MustPage("").Timeout(60 * time.Second)
				t.Cleanup(func() { _ = p.Close() })
				view(p).MustNavigate(s["url"].(string)).MustWaitLoad()
				return p, s["id"].(string)
			}
			p, _ := open(nil, phone)
			checkAxe(t, p, "card form on a phone")
			p.MustElement("#pay").MustClick()
			find(t, p, "#error-summary")
			checkAxe(t, p, "field errors on a phone")

			p, _ = open(nil, desktop)
			fillCard(p, "4000 0000 0000 0119", "981")
			p.MustElement("#pay").MustClick()
			find(t, p, "#decline")
			checkAxe(t, p, "did not go through")

			s := e.session(map[string]any{"success_url": shop.URL + "/paid", "cancel_url": shop.URL + "/cancelled", "locale": lang})
			nb := e.browser()
			for i := 0; i < 3; i++ {
				nb.follow(nb.pay(s["id"].(string), "4000 0000 0000 9995", "981"))
			}
			p = b.MustPage("").Timeout(60 * time.Second)
			t.Cleanup(func() { _ = p.Close() })
			desktop(p).MustNavigate(s["url"].(string)).MustWaitLoad()
			find(t, p, "#state.failed")
			checkAxe(t, p, "attempts used up")

			p, _ = open(map[string]any{"expires_in": 300}, desktop)
			e.clock.Advance(10 * time.Minute)
			p.MustReload().MustWaitLoad()
			find(t, p, "#state.expired")
			checkAxe(t, p, "expired")

			nf := b.MustPage("").Timeout(60 * time.Second)
			t.Cleanup(func() { _ = nf.Close() })
			desktop(nf).MustNavigate(e.url + "/pay/ses_nothing?lang=" + lang).MustWaitLoad()
			checkAxe(t, nf, "not found")

			p, _ = open(map[string]any{"methods": []string{"card", "kaspi_qr"}}, desktop)
			p.MustElement("#use-kaspi").MustClick()
			find(t, p, "#qr")
			app := b.MustPage(*p.MustElement("#open-app").MustAttribute("href")).Timeout(60 * time.Second)
			t.Cleanup(func() { _ = app.Close() })
			app.MustWaitLoad()
			app.MustElement("#app-nofunds").MustClick()
			find(t, app, "#notice")
			checkAxe(t, app, "sandbox Kaspi app after a decline")
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
				if el, err := p.Timeout(time.Second).Element("#decline"); err == nil && el != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no Kaspi decline on the page")
				}
			}
			checkAxe(t, p, "Kaspi decline")
		})
	}
}
