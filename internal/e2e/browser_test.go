package e2e

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/input"
	"github.com/go-rod/rod/lib/launcher"
	"github.com/go-rod/rod/lib/launcher/flags"
	"github.com/go-rod/rod/lib/proto"
)

// startChrome launches Debian's headless Chromium. A missing browser fails
// the test: `make test` installs it.
func startChrome(t *testing.T) *rod.Browser { return startChromeWith(t, "", "") }

// shop is the merchant's site the shopper comes back to.
func startShop(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "<!doctype html><title>Shop</title><h1 id=shop>%s</h1>", strings.TrimPrefix(r.URL.Path, "/"))
	}))
	t.Cleanup(s.Close)
	return s
}

const (
	desktopW, desktopH = 1280, 900
	phoneW, phoneH     = 390, 844
)

func phone(p *rod.Page) *rod.Page   { return p.MustSetViewport(phoneW, phoneH, 2, true) }
func desktop(p *rod.Page) *rod.Page { return p.MustSetViewport(desktopW, desktopH, 1, false) }

// screenshotDir is where screenshots go: the directory PAYPAGE_SCREENSHOTS
// names (`make screenshots` sets it to docs/screenshots, for the README), or
// a temporary one, so that a test run writes nothing into tracked files.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("PAYPAGE_SCREENSHOTS"); d != "" {
		return d
	}
	return t.TempDir()
}

// shoot saves the page at desktop and phone width as docs/screenshots/<name>-{desktop,phone}.png.
func shoot(t *testing.T, p *rod.Page, name string) {
	t.Helper()
	shootEach(t, p, name, func() ([]byte, bool) {
		time.Sleep(100 * time.Millisecond)
		img, err := p.Screenshot(true, &proto.PageCaptureScreenshot{Format: proto.PageCaptureScreenshotFormatPng})
		return img, err == nil
	})
}

// shootEach sets each width and saves what capture gives, trying capture
// again while it says the shot is not good.
func shootEach(t *testing.T, p *rod.Page, name string, capture func() ([]byte, bool)) {
	t.Helper()
	dir := screenshotDir(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct {
		suffix string
		set    func(*rod.Page) *rod.Page
	}{{"desktop", desktop}, {"phone", phone}} {
		v.set(p)
		for try := 0; ; try++ {
			if img, ok := capture(); ok {
				if err := os.WriteFile(filepath.Join(dir, name+"-"+v.suffix+".png"), img, 0o644); err != nil {
					t.Fatal(err)
				}
				break
			}
			if try == 5 {
				t.Fatalf("could not take the %s screenshot", name)
			}
		}
	}
}

// waitURL waits until the page's address starts with prefix.
func waitURL(t *testing.T, p *rod.Page, prefix string) string {
	t.Helper()
	var u string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		info, err := p.Info()
		if err == nil {
			u = info.URL
			if strings.HasPrefix(u, prefix) {
				return u
			}
		}
	}
	t.Fatalf("page at %s, never reached %s", u, prefix)
	return ""
}

// find waits for sel on a page that may be between two documents: a click
// that submits a form or a script that posts one can destroy the document a
// lookup runs in ("Inspected target navigated or closed"), so a lookup that
// fails is tried again until the deadline.
func find(t *testing.T, p *rod.Page, sel string) *rod.Element {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithDeadline(p.GetContext(), deadline)
		el, err := p.Context(ctx).Element(sel)
		cancel()
		if err == nil {
			return el.Context(p.GetContext())
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s on the page: %v", sel, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fillCard(p *rod.Page, number, cvc string) {
	p.MustElement("#number").MustInput(number)
	p.MustElement("#name").MustInput("IVAN PETROV")
	p.MustElement("#exp_month").MustInput("12")
	p.MustElement("#exp_year").MustInput("30")
	p.MustElement("#cvc").MustInput(cvc)
}

func TestBrowser(t *testing.T) {
	e := newEnv(t, envOpts{})
	shop := startShop(t)
	b := startChrome(t)
	newSession := func(extra map[string]any) (string, string) {
		body := map[string]any{"success_url": shop.URL + "/paid?session={SESSION_ID}", "cancel_url": shop.URL + "/cancelled", "locale": "en"}
		for k, v := range extra {
			body[k] = v
		}
		s := e.session(body)
		return s["id"].(string), s["url"].(string)
	}
	page := func(t *testing.T) *rod.Page {
		p := b.MustPage("")
		t.Cleanup(func() { _ = p.Close() })
		return phone(p.Timeout(60 * time.Second))
	}

	t.Run("ChallengeToTheShop", func(t *testing.T) {
		id, u := newSession(nil)
		p := page(t).MustNavigate(u).MustWaitLoad()
		shoot(t, p, "card-form")
		fillCard(p, "4000 0000 0000 3220", "981")
		p.MustElement("#pay").MustClick()
		find(t, p, "#code") // script posts the CReq to the bank at once
		shoot(t, p, "bank-page")
		if txt := p.MustElement("#programme").MustText(); txt != "Visa Secure" {
			t.Fatalf("programme %q", txt)
		}
		p.MustElement("#code").MustInput("123456")
		p.MustElement("#confirm").MustClick()
		got := waitURL(t, p, shop.URL)
		if got != shop.URL+"/paid?session="+id {
			t.Fatalf("landed on %s", got)
		}
		if st, _ := sessionState(t, e, id); st != "complete" {
			t.Fatalf("session %s", st)
		}
	})

	t.Run("RefusedInRussian", func(t *testing.T) {
		_, u := newSession(map[string]any{"locale": "ru"})
		p := page(t).MustNavigate(u).MustWaitLoad()
		fillCard(p, "4000 0000 0000 9995", "981")
		p.MustElement("#pay").MustClick()
		txt := find(t, p, "#decline").MustText()
		if !strings.Contains(txt, "Платёж отклонён") || !strings.Contains(txt, "На карте недостаточно средств.") || !strings.Contains(txt, "Осталось попыток: 2") {
			t.Fatalf("decline: %q", txt)
		}
		shoot(t, p, "declined-ru")
	})

	t.Run("FieldErrorsAnnounced", func(t *testing.T) {
		_, u := newSession(nil)
		p := page(t).MustNavigate(u).MustWaitLoad()
		p.MustElement("#number").MustInput("4242 4242 4242 4241")
		p.MustElement("#name").MustInput("Иван")
		p.MustElement("#pay").MustClick()
		find(t, p, "#error-summary")
		res := p.MustEval(`() => {
			const out = {focus: document.activeElement.id, role: document.getElementById("error-summary").getAttribute("role"), bad: []};
			for (const el of document.querySelectorAll("input[aria-invalid=true]")) {
				const ids = (el.getAttribute("aria-describedby") || el.closest("fieldset")?.getAttribute("aria-describedby") || "").split(" ");
				if (!ids.some(id => id.endsWith("-error") && document.getElementById(id))) out.bad.push(el.id);
			}
			out.invalid = document.querySelectorAll("input[aria-invalid=true]").length;
			return out;
		}`)
		if res.Get("focus").String() != "error-summary" || res.Get("role").String() != "alert" || res.Get("invalid").Int() < 4 || len(res.Get("bad").Arr()) != 0 {
			t.Fatalf("errors not announced: %v", res)
		}
		shoot(t, p, "field-errors")
	})

	t.Run("TypingAndBrand", func(t *testing.T) {
		_, u := newSession(nil)
		p := page(t).MustNavigate(u).MustWaitLoad()
		for _, c := range []struct{ typed, shown, brand, cvcMax string }{
			{"4242424242424242", "4242 4242 4242 4242", "Visa", "3"},
			{"378282246310005", "3782 822463 10005", "American Express", "4"},
			{"2223 0031 2200 3222", "2223 0031 2200 3222", "Mastercard", "3"},
			{"2200000000000004", "2200 0000 0000 0004", "MIR", "3"},
			{"3530-1113-3330-0000", "3530 1113 3330 0000", "JCB", "3"},
		} {
			el := p.MustElement("#number")
			el.MustEval(`() => { this.value = "" }`)
			el.MustInput(c.typed)
			if v := el.MustProperty("value").String(); v != c.shown {
				t.Errorf("typed %s, shows %q", c.typed, v)
			}
			if br := p.MustElement("#brand").MustText(); br != c.brand {
				t.Errorf("typed %s, brand %q", c.typed, br)
			}
			if m := p.MustElement("#cvc").MustProperty("maxLength").String(); m != c.cvcMax {
				t.Errorf("cvc maxLength %s for %s", m, c.brand)
			}
		}
	})

	t.Run("KeyboardOnly", func(t *testing.T) {
		id, u := newSession(nil)
		p := page(t).MustNavigate(u).MustWaitLoad()
		kb := p.Keyboard
		// Tab from the top of the page to the card number: every field is reachable in order.
		order := []string{}
		for i := 0; i < 12 && len(order) < 5; i++ {
			kb.MustType(input.Tab)
			id := p.MustEval(`() => document.activeElement.id`).String()
			if id == "number" || id == "name" || id == "exp_month" || id == "exp_year" || id == "cvc" {
				order = append(order, id)
				p.MustInsertText(map[string]string{"number": "4242424242424242", "name": "IVAN PETROV", "exp_month": "12", "exp_year": "30", "cvc": "981"}[id])
			}
		}
		if strings.Join(order, ",") != "number,name,exp_month,exp_year,cvc" {
			t.Fatalf("tab order %v", order)
		}
		kb.MustType(input.Enter)
		waitURL(t, p, shop.URL)
		if st, _ := sessionState(t, e, id); st != "complete" {
			t.Fatalf("session %s", st)
		}
	})

	t.Run("LabelsContrastAndNarrowScreens", func(t *testing.T) {
		_, u := newSession(map[string]any{"methods": []string{"card", "kaspi_qr"}})
		p := page(t).MustNavigate(u).MustWaitLoad()
		p.MustSetViewport(320, 640, 1, true)
		time.Sleep(200 * time.Millisecond)
		res := p.MustEval(a11yCheck)
		if n := len(res.Get("unlabelled").Arr()); n != 0 {
			t.Errorf("inputs without a label: %v", res.Get("unlabelled"))
		}
		if n := len(res.Get("lowContrast").Arr()); n != 0 {
			t.Errorf("text below WCAG AA contrast: %v", res.Get("lowContrast"))
		}
		if w := res.Get("scrollWidth").Int(); w > 320 {
			t.Errorf("page is %d px wide at a 320 px screen", w)
		}
		if res.Get("checked").Int() < 20 {
			t.Fatalf("contrast check looked at %d elements only", res.Get("checked").Int())
		}
	})

	t.Run("PageWeightAndOrigin", func(t *testing.T) {
		_, u := newSession(nil)
		p := b.MustPage("")
		defer p.Close()
		if err := (proto.NetworkEnable{}).Call(p); err != nil {
			t.Fatal(err)
		}
		if err := (proto.NetworkSetCacheDisabled{CacheDisabled: true}).Call(p); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var total float64
		var urls []string
		wait := p.EachEvent(func(ev *proto.NetworkRequestWillBeSent) {
			mu.Lock()
			urls = append(urls, ev.Request.URL)
			mu.Unlock()
		}, func(ev *proto.NetworkLoadingFinished) {
			mu.Lock()
			total += ev.EncodedDataLength
			mu.Unlock()
		})
		go wait()
		p.MustNavigate(u).MustWaitLoad()
		time.Sleep(500 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		if len(urls) < 3 {
			t.Fatalf("saw only %v", urls)
		}
		for _, r := range urls {
			if !strings.HasPrefix(r, e.url+"/") && !strings.HasPrefix(r, "data:") {
				t.Errorf("request leaves our origin: %s", r)
			}
		}
		t.Logf("card page with all assets: %.0f bytes over the wire, %d requests", total, len(urls))
		if total <= 0 || total > 50*1024 {
			t.Fatalf("card page weighs %.0f bytes over the wire", total)
		}
	})

	t.Run("KaspiQR", func(t *testing.T) {
		id, u := newSession(map[string]any{"methods": []string{"card", "kaspi_qr"}})
		p := page(t).MustNavigate(u).MustWaitLoad()
		p.MustElement(`#use-kaspi`).MustClick()
		find(t, p, "#qr")
		shoot(t, p, "kaspi-qr")
		app := *p.MustElement("#open-app").MustAttribute("href")
		ph := page(t).MustNavigate(app).MustWaitLoad()
		shoot(t, ph, "kaspi-app")
		ph.MustElement("#app-pay").MustClick()
		find(t, ph, "#notice")
		got := waitURL(t, p, shop.URL) // the page polls and moves on by itself
		if got != shop.URL+"/paid?session="+id {
			t.Fatalf("landed on %s", got)
		}
	})

	t.Run("SuccessPage", func(t *testing.T) {
		// The success page moves on to the shop at once: a shop that holds
		// its answer keeps it on the screen for the shot.
		gated := startGatedShop(t)
		id, u := newSession(map[string]any{"success_url": gated.URL + "/paid?session={SESSION_ID}"})
		p := page(t).MustNavigate(u).MustWaitLoad()
		payToSuccess(t, p, gated, id, func() { shoot(t, p, "success") })
	})
}

// The same flow with JavaScript turned off in the browser. Our page runs no
// script then, and neither can the test's helpers: it drives the browser
// through the DevTools protocol's DOM and input domains only.
func TestBrowserWithoutJavaScript(t *testing.T) {
	e := newEnv(t, envOpts{})
	shop := startShop(t)
	b := startChromeWith(t, "blink-settings", "scriptEnabled=false")
	s := e.session(map[string]any{"success_url": shop.URL + "/paid?session={SESSION_ID}", "cancel_url": shop.URL + "/cancelled", "locale": "en"})
	id := s["id"].(string)
	p := b.MustPage("").Timeout(60 * time.Second)
	defer p.Close()
	p.MustNavigate(s["url"].(string)).MustWaitLoad()
	if js := nojsHTML(t, p); !strings.Contains(js, `id="card-form"`) {
		t.Fatalf("no card form:\n%s", js)
	}
	for sel, text := range map[string]string{"#number": "5555 5555 5555 4444", "#name": "IVAN PETROV", "#exp_month": "12", "#exp_year": "30", "#cvc": "981"} {
		nojsType(t, p, sel, text)
	}
	nojsPress(t, p, "#pay")
	nojsWaitFor(t, p, `id="continue"`) // the challenge redirect: a button, since no script sends it
	if h := nojsHTML(t, p); !strings.Contains(h, "Continue to your bank") {
		t.Fatalf("redirect page:\n%s", h)
	}
	nojsPress(t, p, "#continue")
	nojsWaitFor(t, p, `autocomplete="one-time-code"`)
	nojsType(t, p, "#code", "123456")
	nojsPress(t, p, "#confirm")
	nojsWaitFor(t, p, `name="cres"`)
	nojsPress(t, p, "#continue") // back from the bank
	if got := waitURL(t, p, shop.URL); got != shop.URL+"/paid?session="+id {
		t.Fatalf("landed on %s", got) // the result page moved on by meta refresh
	}
	if st, _ := sessionState(t, e, id); st != "complete" {
		t.Fatalf("session %s", st)
	}

	// Kaspi QR without script: the page waits without reloading itself (no
	// timed refresh, WCAG 2.2.1), and the shopper checks by its link once
	// they have paid in the app.
	s = e.session(map[string]any{"success_url": shop.URL + "/paid?session={SESSION_ID}", "cancel_url": shop.URL + "/cancelled", "locale": "en", "methods": []string{"kaspi_qr"}})
	id = s["id"].(string)
	p.MustNavigate(s["url"].(string)).MustWaitLoad()
	nojsPress(t, p, "#use-kaspi")
	nojsWaitFor(t, p, `id="check"`)
	h := nojsHTML(t, p)
	if regexp.MustCompile(`(?i)http-equiv="?refresh`).MatchString(h) {
		t.Fatalf("the Kaspi page refreshes by itself without script:\n%s", h)
	}
	app := regexp.MustCompile(`href="([^"]+)" id="open-app"`).FindStringSubmatch(h)
	if app == nil {
		t.Fatalf("no app link:\n%s", h)
	}
	scan(t, e, html.UnescapeString(app[1]), "pay")
	waitDone(t, e, e.browser(), id)
	nojsPress(t, p, "#check")
	if got := waitURL(t, p, shop.URL); got != shop.URL+"/paid?session="+id {
		t.Fatalf("after checking: landed on %s", got)
	}
}

// startChromeWith starts Chromium with extra flags, given as name, value pairs.
func startChromeWith(t *testing.T, flagValues ...string) *rod.Browser {
	t.Helper()
	if testing.Short() {
		t.Skip("needs chromium: skipped with -short")
	}
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (install it: apt-get install chromium): %v", err)
	}
	l := launcher.New().Bin(bin).Headless(true).NoSandbox(true).Leakless(false).
		Set("disable-gpu").Set("disable-quic").Set("no-first-run").Set("disable-background-networking").
		Set("disable-component-update").Set("disable-sync").UserDataDir(t.TempDir())
	for i := 0; i+1 < len(flagValues); i += 2 {
		if flagValues[i] != "" {
			l = l.Set(flags.Flag(flagValues[i]), flagValues[i+1])
		}
	}
	u, err := l.Launch()
	if err != nil {
		t.Fatalf("launch chromium: %v", err)
	}
	b := rod.New().ControlURL(u)
	if err := b.Connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(); l.Kill(); l.Cleanup() })
	return b
}

func nojsHTML(t *testing.T, p *rod.Page) string {
	t.Helper()
	doc, err := proto.DOMGetDocument{}.Call(p)
	if err != nil {
		t.Fatal(err)
	}
	h, err := proto.DOMGetOuterHTML{NodeID: doc.Root.NodeID}.Call(p)
	if err != nil {
		t.Fatal(err)
	}
	return h.OuterHTML
}

func nojsWaitFor(t *testing.T, p *rod.Page, fragment string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if doc, err := (proto.DOMGetDocument{}).Call(p); err == nil {
			if h, err := (proto.DOMGetOuterHTML{NodeID: doc.Root.NodeID}).Call(p); err == nil && strings.Contains(h.OuterHTML, fragment) {
				return
			}
		}
	}
	t.Fatalf("page never showed %s:\n%s", fragment, nojsHTML(t, p))
}

func nojsFocus(t *testing.T, p *rod.Page, sel string) {
	t.Helper()
	doc, err := proto.DOMGetDocument{}.Call(p)
	if err != nil {
		t.Fatal(err)
	}
	n, err := proto.DOMQuerySelector{NodeID: doc.Root.NodeID, Selector: sel}.Call(p)
	if err != nil || n.NodeID == 0 {
		t.Fatalf("no %s: %v", sel, err)
	}
	if err := (proto.DOMFocus{NodeID: n.NodeID}).Call(p); err != nil {
		t.Fatal(err)
	}
}

func nojsType(t *testing.T, p *rod.Page, sel, text string) {
	t.Helper()
	nojsFocus(t, p, sel)
	if err := (proto.InputInsertText{Text: text}).Call(p); err != nil {
		t.Fatal(err)
	}
}

func nojsPress(t *testing.T, p *rod.Page, sel string) {
	t.Helper()
	nojsFocus(t, p, sel)
	if err := p.Keyboard.Type(input.Enter); err != nil {
		t.Fatal(err)
	}
}

// a11yCheck finds inputs without a label and text below the WCAG AA contrast
// ratio (4.5:1, or 3:1 for large text), and measures the page's width.
const a11yCheck = `() => {
	const unlabelled = [];
	for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
		if (!(el.labels && el.labels.length) && !el.getAttribute("aria-label")) unlabelled.push(el.id || el.name);
	}
	const rgb = s => { const m = s.match(/[\d.]+/g).map(Number); return {r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1}; };
	const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
	const bg = el => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor); if (c.a > 0) return c; } return {r: 255, g: 255, b: 255, a: 1}; };
	const lowContrast = [];
	let checked = 0;
	for (const el of document.querySelectorAll("body *")) {
		const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
		const cs = getComputedStyle(el);
		if (!own || cs.visibility === "hidden" || cs.display === "none" || el.closest("[aria-hidden=true]")) continue;
		checked++;
		const fg = rgb(cs.color), b = bg(el);
		const l1 = lum(fg), l2 = lum(b);
		const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
		const size = parseFloat(cs.fontSize), bold = parseInt(cs.fontWeight) >= 700;
		const need = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
		if (ratio < need) lowContrast.push(el.tagName + "#" + el.id + " " + ratio.toFixed(2));
	}
	return {unlabelled, lowContrast, checked, scrollWidth: document.documentElement.scrollWidth};
}`
