package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod"
)

// TestFramingByInvitation: a merchant's pages carry its frame origins in
// frame-ancestors and drop X-Frame-Options; every other page keeps
// frame-ancestors 'none' and X-Frame-Options: DENY.
func TestFramingByInvitation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	if _, err := e.app.Accounts.SetFrameOrigins(ctx, e.merchant, []string{"https://shop.example", "https://*.airastana.example"}); err != nil {
		t.Fatal(err)
	}
	other, err := e.app.Accounts.AddMerchant(ctx, "Other Shop", "")
	if err != nil {
		t.Fatal(err)
	}
	invited := e.session(map[string]any{"methods": []string{"card", "kaspi_qr"}})["id"].(string)
	st, s, _ := e.api("POST", "/v1/sessions", other.SecretKey, map[string]any{"amount": 100, "currency": "KZT",
		"success_url": "https://other.example/ok", "cancel_url": "https://other.example/no"})
	if st != http.StatusCreated {
		t.Fatalf("other merchant's session: %d %v", st, s)
	}
	uninvited := s["id"].(string)

	b := e.browser()
	const allowed = "frame-ancestors https://shop.example https://*.airastana.example;"
	framed := func(what string, p page) {
		t.Helper()
		if !strings.Contains(p.header.Get("Content-Security-Policy"), allowed) || p.header.Get("X-Frame-Options") != "" {
			t.Errorf("%s: CSP %q, X-Frame-Options %q", what, p.header.Get("Content-Security-Policy"), p.header.Get("X-Frame-Options"))
		}
	}
	notFramed := func(what string, p page) {
		t.Helper()
		if !strings.Contains(p.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") || p.header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: CSP %q, X-Frame-Options %q", what, p.header.Get("Content-Security-Policy"), p.header.Get("X-Frame-Options"))
		}
	}
	framed("the invited merchant's card page", b.get("/pay/"+invited))
	challenge := b.pay(invited, "4000 0000 0000 3220", "981")
	framed("the challenge redirect", challenge)
	if !strings.Contains(challenge.header.Get("Content-Security-Policy"), "form-action 'self' http") {
		t.Errorf("the challenge redirect lost its form-action: %q", challenge.header.Get("Content-Security-Policy"))
	}
	acsURL, v := challenge.form(0)
	framed("the bank page", b.do("POST", acsURL, v))

	notFramed("another merchant's card page", b.get("/pay/"+uninvited))
	notFramed("a page of no session", b.get("/pay/ses_nosuchsession"))
	notFramed("the health check", b.get("/healthz"))
	_, _, h := e.api("GET", "/v1/sessions/"+invited, e.key, nil)
	notFramed("the API", page{header: h})
}

// frameShop is a shop's site over TLS, reached by the name localhost (so a
// page it frames from 127.0.0.1 is cross-site), whose page frames ?src=.
func frameShop(t *testing.T) (*httptest.Server, string) {
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if src := r.URL.Query().Get("src"); src != "" {
			fmt.Fprintf(w, `<!doctype html><title>Shop checkout</title><h1>Checkout</h1><iframe id=checkout src="%s" width=500 height=800></iframe>`, src)
			return
		}
		fmt.Fprintf(w, "<!doctype html><title>Shop</title><h1 id=shop>%s</h1>", strings.TrimPrefix(r.URL.Path, "/"))
	}))
	t.Cleanup(s.Close)
	return s, strings.Replace(s.URL, "127.0.0.1", "localhost", 1)
}

// TestBrowserFramedPage: in Chromium, the page framed by an invited shop (on
// another site) loads and takes a card through a 3-D Secure challenge inside
// the frame; framed by another shop, the browser refuses to show it.
func TestBrowserFramedPage(t *testing.T) {
	if testing.Short() {
		t.Skip("needs chromium")
	}
	certFile, keyFile := writeCert(t, t.TempDir(), 1)
	e := newEnv(t, envOpts{tlsCert: certFile, tlsKey: keyFile})
	_, invitedOrigin := frameShop(t)
	_, otherOrigin := frameShop(t)
	if _, err := e.app.Accounts.SetFrameOrigins(context.Background(), e.merchant, []string{invitedOrigin}); err != nil {
		t.Fatal(err)
	}
	b := startChromeWith(t, "ignore-certificate-errors", "")
	newSession := func() (string, string) {
		s := e.session(map[string]any{"locale": "en", "success_url": invitedOrigin + "/paid?session={SESSION_ID}"})
		return s["id"].(string), s["url"].(string)
	}

	t.Run("InvitedShopPays", func(t *testing.T) {
		id, u := newSession()
		p := b.MustPage(invitedOrigin + "/?src=" + url.QueryEscape(u)).Timeout(60 * time.Second)
		t.Cleanup(func() { _ = p.Close() })
		f := p.MustElement("#checkout").MustFrame()
		find(t, f, "#number")
		fillCard(f, "4000 0000 0000 3220", "981")
		f.MustElement("#pay").MustClick()
		find(t, f, "#code").MustInput("123456") // the bank page, in the same frame
		f.MustElement("#confirm").MustClick()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if st, _ := sessionState(t, e, id); st == "complete" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the payment in the frame never completed")
			}
		}
		if u := waitFrameURL(t, p, invitedOrigin+"/paid"); u != invitedOrigin+"/paid?session="+id {
			t.Fatalf("the frame landed on %s", u)
		}
	})

	t.Run("OtherShopRefused", func(t *testing.T) {
		id, u := newSession()
		p := b.MustPage(otherOrigin + "/?src=" + url.QueryEscape(u)).Timeout(60 * time.Second)
		t.Cleanup(func() { _ = p.Close() })
		p.MustWaitLoad()
		f := p.MustElement("#checkout").MustFrame()
		if el, err := f.Timeout(5 * time.Second).Element("#number"); err == nil {
			t.Fatalf("the card form shows in another shop's frame: %v", el)
		}
		if st, _ := sessionState(t, e, id); st != "open" {
			t.Fatalf("session %s", st)
		}
	})
}

// waitFrameURL waits until the frame #checkout of p is at an address
// starting with prefix (readable once it is on the parent's own origin), and
// returns it.
func waitFrameURL(t *testing.T, p *rod.Page, prefix string) string {
	t.Helper()
	var u string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		res, err := p.Eval(`() => { try { return document.getElementById("checkout").contentWindow.location.href } catch (e) { return "" } }`)
		if err == nil {
			if u = res.Value.Str(); strings.HasPrefix(u, prefix) {
				return u
			}
		}
	}
	t.Fatalf("frame at %q, never reached %s", u, prefix)
	return ""
}
