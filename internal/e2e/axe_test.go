package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/proto"
)

// axe is axe-core, vendored as test data (testdata/axe/README.md says from
// where and how to update it).
const (
	axePath   = "testdata/axe/axe.min.js"
	axeSHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
)

// axeRules are the rule sets every shopper page must pass with no
// violation: WCAG 2.0, 2.1 and 2.2 at levels A and AA, and axe's best
// practices.
var axeRules = []string{"wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"}

// TestAxeIsVendoredAsPinned checks that the vendored axe-core is the file
// its README names, so the browser tests run the version we say.
func TestAxeIsVendoredAsPinned(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(axePath)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != axeSHA256 {
		t.Fatalf("%s has SHA-256 %s, want %s (see testdata/axe/README.md)", axePath, got, axeSHA256)
	}
	if !strings.HasPrefix(string(b), "/*! axe v4.14.1") {
		t.Fatalf("%s is not axe-core 4.14.1", axePath)
	}
}

// axeSource reads the vendored axe-core once.
var axeSource = sync.OnceValues(func() (string, error) {
	b, err := os.ReadFile(axePath)
	return string(b), err
})

// axeViolation is one rule a page breaks, as axe reports it.
type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target  []any  `json:"target"`
		Summary string `json:"failureSummary"`
	} `json:"nodes"`
}

// checkAxe runs axe-core on the page as it is and fails the test with each
// violation. axe goes in through the DevTools protocol (Runtime.evaluate),
// not through the page: the page's Content-Security-Policy, which allows
// only our own script, stays as strict as shoppers get it.
func checkAxe(t *testing.T, p *rod.Page, name string) {
	t.Helper()
	src, err := axeSource()
	if err != nil {
		t.Fatal(err)
	}
	var res *proto.RuntimeRemoteObject
	for try := 0; ; try++ {
		// A page may still be between two documents: try again then.
		if _, err = (proto.RuntimeEvaluate{Expression: src}).Call(p); err == nil {
			res, err = p.Evaluate(rod.Eval(`async rules => JSON.stringify((await axe.run(document, {
				runOnly: {type: "tag", values: rules}, resultTypes: ["violations"]})).violations)`, axeRules).ByPromise())
		}
		if err == nil || try == 5 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("%s: axe: %v", name, err)
	}
	var vs []axeViolation
	if err := json.Unmarshal([]byte(res.Value.Str()), &vs); err != nil {
		t.Fatalf("%s: axe's answer: %v", name, err)
	}
	for _, v := range vs {
		var where []string
		for _, n := range v.Nodes {
			where = append(where, fmt.Sprint(n.Target))
		}
		t.Errorf("%s: axe %s (%s): %s at %s", name, v.ID, v.Impact, v.Help, strings.Join(where, ", "))
	}
}

// gate is a shop whose pages answer 204 No Content until it is opened: a
// browser that gets a 204 for a navigation stays where it is, so the
// shopper stays on our result page, which moves on to the shop at once,
// while the test looks at it. Once open, the shop answers with its page.
type gate struct {
	*httptest.Server
	open atomic.Bool
}

func startGatedShop(t *testing.T) *gate {
	g := &gate{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.open.Load() {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		fmt.Fprintf(w, "<!doctype html><title>Shop</title><h1 id=shop>%s</h1>", strings.TrimPrefix(r.URL.Path, "/"))
	}))
	t.Cleanup(g.Close)
	return g
}

// release opens the shop.
func (g *gate) release() { g.open.Store(true) }

// payToSuccess pays a card on the session's page p, runs look on the
// success page while the shop holds the shopper there, then opens the shop
// and checks that the shopper lands on its success_url.
func payToSuccess(t *testing.T, p *rod.Page, shop *gate, id string, look func()) {
	t.Helper()
	fillCard(p, "4242 4242 4242 4242", "981")
	p.MustElement("#pay").MustClick()
	find(t, p, "#state.complete")
	look()
	shop.release()
	p.MustElement("#continue").MustClick()
	if got := waitURL(t, p, shop.URL); got != shop.URL+"/paid?session="+id {
		t.Fatalf("landed on %s", got)
	}
}

// TestBrowserAccessibility runs axe-core on every shopper page, in each
// language: the card form, the same with field errors, a refusal, the
// sandbox bank, the Kaspi QR, the success page, the Kaspi-only choice and
// the sandbox Kaspi app. Zero violations.
func TestBrowserAccessibility(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := startChrome(t)
	for _, lang := range []string{"en", "ru", "kk"} {
		t.Run(lang, func(t *testing.T) {
			shop := startGatedShop(t)
			newPage := func(extra map[string]any) (*rod.Page, string) {
				body := map[string]any{"success_url": shop.URL + "/paid?session={SESSION_ID}", "cancel_url": shop.URL + "/cancelled", "locale": lang}
				for k, v := range extra {
					body[k] = v
				}
				s := e.session(body)
				p := b.MustPage("").Timeout(60 * time.Second)
				t.Cleanup(func() { _ = p.Close() })
				desktop(p).MustNavigate(s["url"].(string)).MustWaitLoad()
				return p, s["id"].(string)
			}

			p, _ := newPage(nil)
			checkAxe(t, p, "card form")
			p.MustElement("#number").MustInput("4242 4242 4242 4241")
			p.MustElement("#name").MustInput("Иван")
			p.MustElement("#pay").MustClick()
			find(t, p, "#error-summary")
			checkAxe(t, p, "field errors")

			p, _ = newPage(nil)
			fillCard(p, "4000 0000 0000 9995", "981")
			p.MustElement("#pay").MustClick()
			find(t, p, "#decline")
			checkAxe(t, p, "refusal")

			p, _ = newPage(nil)
			fillCard(p, "4000 0000 0000 3220", "981")
			p.MustElement("#pay").MustClick()
			find(t, p, "#code")
			checkAxe(t, p, "bank page")
			p.MustElement("#code").MustInput("000000")
			p.MustElement("#confirm").MustClick()
			find(t, p, "#code-error")
			checkAxe(t, p, "bank page, wrong code")

			p, _ = newPage(map[string]any{"methods": []string{"card", "kaspi_qr"}})
			p.MustElement("#use-kaspi").MustClick()
			find(t, p, "#qr")
			checkAxe(t, p, "Kaspi QR")
			app := b.MustPage(*p.MustElement("#open-app").MustAttribute("href")).Timeout(60 * time.Second)
			t.Cleanup(func() { _ = app.Close() })
			app.MustWaitLoad()
			checkAxe(t, app, "sandbox Kaspi app")

			p, _ = newPage(map[string]any{"methods": []string{"kaspi_qr"}})
			find(t, p, "#use-kaspi")
			checkAxe(t, p, "Kaspi-only choice")

			p, id := newPage(nil)
			payToSuccess(t, p, shop, id, func() { checkAxe(t, p, "success") })
		})
	}
}

// TestBrowserAccessibilityOfTheOtherStates runs the same axe-core check on
// the shopper pages and states TestBrowserAccessibility does not visit: the
// form and its errors on a phone, "did not go through", attempts used up,
// expired, not found, a Kaspi decline and the sandbox app after it.
func TestBrowserAccessibilityOfTheOtherStates(t *testing.T) {
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
