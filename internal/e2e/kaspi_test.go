package e2e

import (
	"encoding/base64"
	"html"
	"image"
	"image/color"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
)

var (
	reQRImg  = regexp.MustCompile(`<img class="qr" id="qr" src="data:image/svg(?:\+|&#43;)xml;base64,([^"]+)"`)
	reViewBx = regexp.MustCompile(`viewBox="0 0 (\d+) (\d+)"`)
	reRun    = regexp.MustCompile(`M(\d+) (\d+)h(\d+)v1h-\d+z`)
)

// decodeQR reads the QR code drawn on a Kaspi page: it paints the SVG's
// modules into a bitmap and decodes that with a QR reader.
func decodeQR(t *testing.T, body string) string {
	t.Helper()
	m := reQRImg.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no QR image on the page:\n%s", body)
	}
	svg, err := base64.StdEncoding.DecodeString(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	vb := reViewBx.FindStringSubmatch(string(svg))
	n, _ := strconv.Atoi(vb[1])
	const scale = 6
	img := image.NewGray(image.Rect(0, 0, n*scale, n*scale))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	for _, r := range reRun.FindAllStringSubmatch(string(svg), -1) {
		x, _ := strconv.Atoi(r[1])
		y, _ := strconv.Atoi(r[2])
		w, _ := strconv.Atoi(r[3])
		for dx := 0; dx < w*scale; dx++ {
			for dy := 0; dy < scale; dy++ {
				img.SetGray(x*scale+dx, y*scale+dy, color.Gray{Y: 0})
			}
		}
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	hints := map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true, gozxing.DecodeHintType_TRY_HARDER: true}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, hints)
	if err != nil {
		t.Fatalf("QR code does not decode: %v", err)
	}
	return res.GetText()
}

// kaspiQR opens the Kaspi page (starting a QR payment from the card page's
// button when none is in flight) and returns it and the app address the QR
// encodes.
func kaspiQR(t *testing.T, e *env, b *browser, id string) (page, string) {
	t.Helper()
	p := b.get("/pay/" + id + "/kaspi")
	if p.status == 303 {
		card := b.get("/pay/" + id)
		action, v := "", url.Values(nil)
		for i := 0; ; i++ {
			a, fv := card.form(i)
			if a == "" {
				t.Fatalf("the card page offers no Kaspi QR:\n%s", card.body)
			}
			if a == "/pay/"+id+"/kaspi" {
				action, v = a, fv
				break
			}
		}
		v.Set("action", "start")
		p = b.follow(b.do("POST", action, v))
	}
	if p.status != 200 {
		t.Fatalf("kaspi page: %d\n%s", p.status, p.body)
	}
	app := decodeQR(t, p.body)
	if !strings.HasPrefix(app, e.url+"/sandbox/kaspi/kqr_") {
		t.Fatalf("QR encodes %q, not the sandbox app", app)
	}
	return p, app
}

// waitDone polls the page's status until the attempt in flight has ended (the
// sandbox app's notification, or the reconciler's poll).
func waitDone(t *testing.T, e *env, b *browser, id string) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, status, _ := e.apiAs(b, "/pay/"+id+"/status")
		if status["done"] == true {
			return status
		}
		if time.Now().After(deadline) {
			t.Fatalf("still in flight: %v", status)
		}
	}
}

// scan plays the shopper's phone: open the app page the QR encodes and press a button.
func scan(t *testing.T, e *env, app, action string) page {
	t.Helper()
	phone := e.browser()
	p := phone.get(app)
	if !strings.Contains(p.body, "Confirm payment of") || !strings.Contains(p.body, "Air Astana") {
		t.Fatalf("app page:\n%s", p.body)
	}
	a, v := p.form(0)
	v.Set("action", action)
	return phone.do("POST", a, v)
}

func TestKaspiQR(t *testing.T) {
	forEachStore(t, func(t *testing.T, o envOpts) {
		e := newEnv(t, o)
		kaspiSession := func() string {
			return e.session(map[string]any{"methods": []string{"card", "kaspi_qr"}, "locale": "en"})["id"].(string)
		}

		t.Run("Pay", func(t *testing.T) {
			id := kaspiSession()
			b := e.browser()
			if card := b.get("/pay/" + id); !strings.Contains(card.body, `action="/pay/`+id+`/kaspi"`) {
				t.Fatal("the card page offers no Kaspi QR")
			}
			p, app := kaspiQR(t, e, b, id)
			for _, want := range []string{"1\u202f500.00", `data-poll="/pay/` + id + `/status"`, `data-expires="`, `href="/pay/` + id + `/kaspi" id="check"`} {
				if !strings.Contains(p.body, want) {
					t.Errorf("kaspi page lacks %q", want)
				}
			}
			// A reload shows the same QR, not a new one.
			if _, again := kaspiQR(t, e, b, id); again != app {
				t.Fatal("reload made a new QR")
			}
			if st := scan(t, e, app, "pay"); !strings.Contains(st.body, "Paid.") {
				t.Fatalf("app after paying:\n%s", st.body)
			}
			// The app's notification ends it; polling (script) learns the
			// outcome, a reload (no script) too.
			if status := waitDone(t, e, b, id); status["status"] != "complete" {
				t.Fatalf("status %v", status)
			}
			final := b.follow(b.get("/pay/" + id + "/kaspi"))
			if !strings.Contains(final.body, "Payment successful") || reMeta.FindStringSubmatch(final.body)[1] != "https://shop.example/ok?session="+id {
				t.Fatalf("after paying:\n%s", final.body)
			}
			_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
			pay := s["payment"].(map[string]any)
			if pay["method"] != "kaspi_qr" || pay["status"] != "succeeded" || pay["card"] != nil {
				t.Fatalf("payment %v", pay)
			}
			// The paid QR cannot be paid again.
			if again := scan2(e, app); !strings.Contains(again.body, "Paid.") || strings.Contains(again.body, `id="app-pay"`) {
				t.Fatalf("second scan:\n%s", again.body)
			}
			// Refund goes back through Kaspi, in parts.
			path := "/v1/payments/" + pay["id"].(string) + "/refunds"
			if st, r, _ := e.api("POST", path, e.key, map[string]any{"amount": 50000}); st != 201 || !strings.HasPrefix(r["processor_reference"].(string), "kre_") {
				t.Fatalf("kaspi refund: %d %v", st, r)
			}
			if st, _, _ := e.api("POST", path, e.key, map[string]any{"amount": 100001}); st != 400 {
				t.Fatalf("over-refund: %d", st)
			}
			if st, _, _ := e.api("POST", path, e.key, nil); st != 201 {
				t.Fatalf("rest: %d", st)
			}
			_, pp, _ := e.api("GET", "/v1/payments/"+pay["id"].(string), e.key, nil)
			if pp["status"] != "refunded" {
				t.Fatalf("after refunds: %v", pp)
			}
		})

		t.Run("DeclineAndNoFunds", func(t *testing.T) {
			id := kaspiSession()
			b := e.browser()
			_, app := kaspiQR(t, e, b, id)
			// The sandbox app says what happened: never "done" after a decline.
			if st := scan(t, e, app, "nofunds"); !strings.Contains(st.body, "Payment declined: nothing was charged.") || strings.Contains(st.body, "Paid.") {
				t.Fatalf("app after declining:\n%s", st.body)
			}
			waitDone(t, e, b, id)
			p := b.follow(b.get("/pay/" + id + "/kaspi"))
			if !strings.Contains(p.body, "not enough money in Kaspi.kz") || !strings.Contains(p.body, `name="number"`) {
				t.Fatalf("after no funds:\n%s", p.body)
			}
			_, app2 := kaspiQR(t, e, b, id)
			if app2 == app {
				t.Fatal("a declined QR was offered again")
			}
			scan(t, e, app2, "decline")
			waitDone(t, e, b, id)
			// A Kaspi decline is not a card's: no "use another card".
			p = b.follow(b.get("/pay/" + id))
			if !strings.Contains(p.body, "declined in the Kaspi.kz app") || strings.Contains(p.body, "another card") {
				t.Fatalf("after a Kaspi decline:\n%s", p.body)
			}
			_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
			pay := s["payment"].(map[string]any)
			if s["attempts"].(float64) != 2 || pay["decline"].(map[string]any)["code"] != "do_not_honor" || pay["method"] != "kaspi_qr" {
				t.Fatalf("session %v", s)
			}
			// Then by card.
			if p := b.follow(b.pay(id, "4242 4242 4242 4242", "981")); !strings.Contains(p.body, "Payment successful") {
				t.Fatalf("card after Kaspi:\n%s", p.body)
			}
		})

		t.Run("Expire", func(t *testing.T) {
			id := kaspiSession()
			b := e.browser()
			_, app := kaspiQR(t, e, b, id)
			e.clock.Advance(6 * time.Minute)
			defer e.clock.Advance(-6 * time.Minute)
			if p := scan2(e, app); !strings.Contains(p.body, "no longer open") {
				t.Fatalf("expired QR payable:\n%s", p.body)
			}
			e.reconcile() // no page view: the server ends the expired QR
			p := b.follow(b.get("/pay/" + id))
			if !strings.Contains(p.body, "QR code expired") || !strings.Contains(p.body, `name="number"`) {
				t.Fatalf("after expiry:\n%s", p.body)
			}
			_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
			if s["attempts"].(float64) != 0 || s["status"] != "open" {
				t.Fatalf("an unscanned QR counted as an attempt: %v", s)
			}
		})

		t.Run("SwitchToCard", func(t *testing.T) {
			id := kaspiSession()
			b := e.browser()
			p, app := kaspiQR(t, e, b, id)
			a, v := p.form(0)
			v.Set("action", "card")
			b.follow(b.do("POST", a, v))
			if p := scan2(e, app); !strings.Contains(p.body, "no longer open") {
				t.Fatal("the QR stays payable after switching to card")
			}
			if p := b.follow(b.pay(id, "4242 4242 4242 4242", "981")); !strings.Contains(p.body, "Payment successful") {
				t.Fatalf("card after switching:\n%s", p.body)
			}
		})

		t.Run("OtherSessionsQR", func(t *testing.T) {
			a := kaspiSession()
			bID := kaspiSession()
			b := e.browser()
			_, appA := kaspiQR(t, e, b, a)
			kaspiQR(t, e, b, bID)
			scan(t, e, appA, "pay")
			waitDone(t, e, b, a)
			_, s, _ := e.api("GET", "/v1/sessions/"+bID, e.key, nil)
			if s["status"] != "open" {
				t.Fatalf("paying A's QR completed B: %v", s)
			}
		})

		t.Run("KaspiOnly", func(t *testing.T) {
			id := e.session(map[string]any{"methods": []string{"kaspi_qr"}, "locale": "en"})["id"].(string)
			b := e.browser()
			p := b.get("/pay/" + id)
			// The Kaspi choice, never the card form.
			if !strings.Contains(p.body, `id="kaspi-choice"`) || !strings.Contains(p.body, `id="use-kaspi"`) || strings.Contains(p.body, `name="number"`) || strings.Contains(p.body, `id="card-form"`) {
				t.Fatalf("kaspi-only page:\n%s", p.body)
			}
			// A card posted anyway (an old tab, a hand-made form) is told so.
			card := b.pay(id, "4242 4242 4242 4242", "981")
			if card.status != http.StatusBadRequest || !strings.Contains(card.body, "cannot be paid by card") || !strings.Contains(card.body, `id="use-kaspi"`) || strings.Contains(card.body, "temporarily unavailable") {
				t.Fatalf("card posted to a kaspi-only session: %d\n%s", card.status, card.body)
			}
			_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
			if s["attempts"].(float64) != 0 || s["status"] != "open" || s["payment"] != nil {
				t.Fatalf("the refused card changed the session: %v", s)
			}
			// The choice starts a QR.
			if _, app := kaspiQR(t, e, b, id); app == "" {
				t.Fatal("no QR from the kaspi-only page")
			}
		})

		t.Run("NotOffered", func(t *testing.T) {
			id := e.session(map[string]any{"locale": "en"})["id"].(string)
			b := e.browser()
			if p := b.get("/pay/" + id + "/kaspi"); p.status != 303 {
				t.Fatalf("kaspi on a card-only session: %d", p.status)
			}
			if countKind(t, e, "kaspi_qr") == 0 {
				t.Fatal("no QR records at all: the other cases did not run")
			}
		})
	})
}

// scan2 opens an app page without expecting it to be payable.
func scan2(e *env, app string) page {
	phone := e.browser()
	p := phone.get(app)
	if a, v := p.form(0); a != "" {
		v.Set("action", "pay")
		return phone.do("POST", a, v)
	}
	return p
}

// apiAs GETs a JSON page with the browser's cookies.
func (e *env) apiAs(b *browser, path string) (int, map[string]any, error) {
	p := b.get(path)
	out := map[string]any{}
	err := jsonDecode(strings.NewReader(p.body), &out)
	return p.status, out, err
}

// TestKaspiNotifyFloodWritesLittle: POST /kaspi/notify needs no credential,
// and a notification naming a live QR (its ID is in the QR the shopper's own
// page shows) would claim the attempt, ask Kaspi and release it: two
// durable writes and an outbound call each. A hundred from one source cost
// at most ten writes of the session: past its burst the source is refused
// with 429 before anything is read, and the payments skip a QR looked at
// within the second.
func TestKaspiNotifyFloodWritesLittle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	id := e.session(map[string]any{"methods": []string{"card", "kaspi_qr"}, "locale": "en"})["id"].(string)
	b := e.browser()
	_, app := kaspiQR(t, e, b, id)
	qr := app[strings.LastIndex(app, "/")+1:]
	version := func() int64 { return sessionVersion(t, e, id) }
	before := version()
	const n = 100
	limited := 0
	for i := 0; i < n; i++ {
		st, _, _ := e.api("POST", "/kaspi/notify", "", map[string]any{"qr_id": qr, "external_id": id}, "X-Forwarded-For", "203.0.113.66")
		if st != 200 && st != 429 {
			t.Fatalf("notification %d: %d", i, st)
		}
		if st == 429 {
			limited++
		}
	}
	if limited < n/2 {
		t.Errorf("%d of %d notifications from one source refused by the limit", limited, n)
	}
	writes := version() - before
	t.Logf("%d unauthenticated notifications: the session was written %d times", n, writes)
	if writes > 10 {
		t.Errorf("%d unauthenticated notifications cost %d durable writes of the session (and as many calls to Kaspi)", n, writes)
	}
}

// TestNoTimedRefreshWithoutScript: a page that waits (the Kaspi QR, an
// attempt in flight) polls with script, and without it reloads only when
// the shopper asks, by a link: no <meta http-equiv="refresh"> on a timer
// (WCAG 2.2.1; a refresh in <noscript> is one the shopper cannot stop).
// axe-core runs with script on, where <noscript> is not parsed, so this is
// checked on the HTML.
func TestNoTimedRefreshWithoutScript(t *testing.T) {
	e := newEnv(t, envOpts{timing: shortTiming})
	timed := regexp.MustCompile(`(?i)<meta[^>]+http-equiv="?refresh`)

	id := e.session(map[string]any{"methods": []string{"kaspi_qr"}, "locale": "en"})["id"].(string)
	q, _ := kaspiQR(t, e, e.browser(), id)
	if m := timed.FindString(q.body); m != "" {
		t.Fatalf("the Kaspi page refreshes by itself: %s", m)
	}
	if !strings.Contains(q.body, `href="/pay/`+id+`/kaspi" id="check"`) {
		t.Fatalf("the Kaspi page offers no link to check:\n%s", q.body)
	}

	// An answer slower than the call's deadline: the page shows the
	// attempt in flight.
	id = e.session(map[string]any{"locale": "en"})["id"].(string)
	b := e.browser()
	p := b.pay(id, "4000 0000 0000 0267", "981")
	if p.status != 503 || !strings.Contains(p.body, "Processing your payment") {
		t.Fatalf("slow answer: %d\n%s", p.status, p.body)
	}
	p = b.get("/pay/" + id)
	if m := timed.FindString(p.body); m != "" {
		t.Fatalf("the processing page refreshes by itself: %s", m)
	}
	if !strings.Contains(p.body, `id="continue" href="/pay/`+id+`">Check again</a>`) || !strings.Contains(p.body, `data-poll="/pay/`+id+`/status"`) {
		t.Fatalf("the processing page offers no link to check again, or no poll:\n%s", p.body)
	}
}
