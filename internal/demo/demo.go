// Package demo is "paypage demo": the service (embedded store, sandbox
// issuer, processor and Kaspi, in a temporary data directory) beside a demo
// shop on a port of its own, another origin, as a real shop is. The shop's
// page creates a session with the Go client, sends the shopper to pay, takes
// the webhook (verified with the client) and shows the verified event: the
// whole round trip in a browser, in one command.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/paypage/paypage/internal/app"
	"github.com/paypage/paypage/pkg/api"
	"github.com/paypage/paypage/pkg/client"
)

// Run starts the service on cfg.Addr and the shop on shopAddr (port 0
// picks a free one), says on out where they are, and runs until ctx ends.
// It takes cfg's listening address, log level and limits; the data
// directory is a new temporary one (removed at the end), the store the
// embedded one, and webhooks may go to the shop on loopback.
func Run(ctx context.Context, cfg app.Config, shopAddr string, out io.Writer, log *slog.Logger) error {
	dir, err := os.MkdirTemp("", "paypage-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	svc, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer svc.Close()
	shopLn, err := net.Listen("tcp", shopAddr)
	if err != nil {
		return fmt.Errorf("listen for the shop: %w", err)
	}
	defer shopLn.Close()
	if !loopback(svc.Addr()) || !loopback(shopLn.Addr()) {
		return errors.New("the demo listens on loopback addresses only (127.0.0.1:PORT)")
	}

	cfg.Data, cfg.Store, cfg.PublicURL = dir, "bolt", "http://"+svc.Addr().String()
	cfg.MasterKeyFile, cfg.MasterKey, cfg.UnsealShares = "", "", 0
	cfg.MetricsAddr, cfg.ProcessorAddr, cfg.TLSCert, cfg.TLSKey, cfg.ACMEDomain = "", "", "", "", ""
	cfg.WebhookAllowPrivate = true
	if len(cfg.WebhookSchedule) == 0 {
		cfg.WebhookSchedule = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second}
	}
	a, err := app.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	shopURL := "http://" + shopLn.Addr().String()
	m, err := a.Accounts.AddMerchant(ctx, "Demo shop", shopURL+"/webhook")
	if err != nil {
		return err
	}
	shop := NewShop(client.New(cfg.PublicURL, m.SecretKey), m.WebhookSecret, shopURL)
	hs := &http.Server{Handler: shop, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(shopLn) }()
	defer hs.Close()
	fmt.Fprintf(out, "paypage demo\n  the shop:    %s   <- open this, buy, pay with 4242 4242 4242 4242 (any future expiry, any CVV)\n  the service: %s   (its API is described at %s/v1/openapi.yaml)\nCtrl-C stops both; the demo's data goes with them.\n",
		shopURL, cfg.PublicURL, cfg.PublicURL)
	return a.Serve(ctx, app.Listeners{Public: svc})
}

func loopback(a net.Addr) bool {
	t, ok := a.(*net.TCPAddr)
	return ok && t.IP.IsLoopback()
}

// Shop is the demo shop: a page that sells one ticket, the return page,
// and the webhook endpoint. It never sees card data.
type Shop struct {
	paypage *client.Client
	secret  string // the webhook signing secret
	url     string // the shop's own origin

	mu     sync.Mutex
	events []received
}

// received is a webhook delivery the shop got.
type received struct {
	Event    *api.Event
	Verified bool
	Error    string
	Pretty   string
}

// NewShop returns the demo shop, which calls paypage through c and checks
// webhooks with secret.
func NewShop(c *client.Client, secret, shopURL string) *Shop {
	return &Shop{paypage: c, secret: secret, url: shopURL}
}

func (s *Shop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; base-uri 'none'")
	w.Header().Set("Referrer-Policy", "no-referrer")
	switch {
	case r.URL.Path == "/" && r.Method == http.MethodGet:
		s.render(w, http.StatusOK, page{Title: "Demo shop"})
	case r.URL.Path == "/checkout" && r.Method == http.MethodPost:
		s.checkout(w, r)
	case r.URL.Path == "/return" && r.Method == http.MethodGet:
		s.back(w, r)
	case r.URL.Path == "/webhook" && r.Method == http.MethodPost:
		s.webhook(w, r)
	default:
		http.NotFound(w, r)
	}
}

// checkout opens a session for the ticket through the Go client and sends
// the shopper to pay.
func (s *Shop) checkout(w http.ResponseWriter, r *http.Request) {
	methods := []string{"card", "kaspi_qr"}
	if r.PostFormValue("method") == "card" {
		methods = []string{"card"}
	}
	lang := r.PostFormValue("lang")
	if !slices.Contains([]string{"en", "ru", "kk"}, lang) {
		lang = ""
	}
	ses, err := s.paypage.CreateSession(r.Context(), api.SessionParams{
		Amount: 4_500_000, Currency: "KZT", Reference: "DEMO-" + time.Now().Format("150405"), Description: "Almaty - Astana, economy",
		SuccessURL: s.url + "/return?session={SESSION_ID}", CancelURL: s.url + "/return?session={SESSION_ID}&cancelled=1",
		Locale: lang, Methods: methods,
	})
	if err != nil {
		s.render(w, http.StatusBadGateway, page{Title: "Demo shop", Error: err.Error()})
		return
	}
	http.Redirect(w, r, ses.URL, http.StatusSeeOther)
}

// back is where the shopper lands: the session as the API tells it, and
// the verified webhooks about it.
func (s *Shop) back(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("session")
	ses, err := s.paypage.Session(r.Context(), id)
	if err != nil {
		s.render(w, http.StatusBadGateway, page{Title: "Demo shop", Error: err.Error()})
		return
	}
	p := page{Title: "Your order", Session: ses, Cancelled: r.URL.Query().Get("cancelled") != ""}
	s.mu.Lock()
	for _, e := range s.events {
		if e.Event != nil && about(e.Event, id) || e.Event == nil {
			p.Events = append(p.Events, e)
		}
	}
	s.mu.Unlock()
	if ses.Status == "complete" && !p.hasVerified() {
		p.Refresh = true // the webhook is on its way: look again in a second
	}
	s.render(w, http.StatusOK, p)
}

// about reports whether an event concerns a session.
func about(e *api.Event, session string) bool {
	var d struct {
		ID        string `json:"id"`
		SessionID string `json:"session_id"`
		Payment   struct {
			SessionID string `json:"session_id"`
		} `json:"payment"`
	}
	_ = json.Unmarshal(e.Data, &d)
	return d.ID == session || d.SessionID == session || d.Payment.SessionID == session
}

// webhook takes a delivery: verified with the client (signature and age),
// kept, and shown on the return page. A delivery that fails verification
// is refused (400) and shown as refused.
func (s *Shop) webhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	ev, err := client.ParseWebhook(s.secret, r.Header.Get(api.SignatureHeader), body)
	rec := received{Event: ev, Verified: err == nil}
	if err != nil {
		rec.Error = err.Error()
	} else {
		var pretty any
		_ = json.Unmarshal(body, &pretty)
		b, _ := json.MarshalIndent(pretty, "", "  ")
		rec.Pretty = string(b)
	}
	s.mu.Lock()
	if !slices.ContainsFunc(s.events, func(e received) bool { return ev != nil && e.Event != nil && e.Event.ID == ev.ID }) {
		s.events = append(s.events, rec) // a retry of an event already kept is dropped by its ID
	}
	s.mu.Unlock()
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// Events returns the deliveries the shop has taken so far.
func (s *Shop) Events() []api.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []api.Event
	for _, e := range s.events {
		if e.Verified {
			out = append(out, *e.Event)
		}
	}
	return out
}

type page struct {
	Title     string
	Error     string
	Session   *api.Session
	Cancelled bool
	Events    []received
	Refresh   bool
}

func (p page) hasVerified() bool {
	return slices.ContainsFunc(p.Events, func(e received) bool { return e.Verified })
}

func (s *Shop) render(w http.ResponseWriter, status int, p page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = shopPage.Execute(w, p)
}

var shopPage = template.Must(template.New("shop").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
{{if .Refresh}}<meta http-equiv="refresh" content="1">{{end}}
<title>{{.Title}}</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}
.box{border:1px solid #c8ccd2;border-radius:.6rem;padding:1rem 1.25rem;margin:1rem 0}
button{font:inherit;padding:.6rem 1.2rem;border:0;border-radius:.4rem;background:#0b57d0;color:#fff;cursor:pointer}
pre{background:#f4f5f7;padding:.75rem;overflow:auto;font-size:.85rem}
.ok{color:#146c2e;font-weight:700}.bad{color:#b3261e;font-weight:700}label{margin-right:1rem}
</style></head><body>
<header><p><strong>Demo shop</strong>: a shop on its own origin that takes payments through paypage</p></header>
<main>
{{with .Error}}<p class="bad" role="alert">{{.}}</p>{{end}}
{{if .Session}}
  <h1>{{if eq .Session.Status "complete"}}Paid, thank you{{else if .Cancelled}}Payment cancelled{{else}}Order {{.Session.Status}}{{end}}</h1>
  <div class="box" id="session">
    <p>Session <code>{{.Session.ID}}</code>: <strong id="session-status">{{.Session.Status}}</strong>, {{.Session.Attempts}} attempt(s), read with <code>client.Session</code>.</p>
    {{with .Session.Payment}}<p>Payment <code>{{.ID}}</code>: {{.Status}}{{with .Card}}, {{.Brand}} ending {{.Last4}}, token <code>{{.Token}}</code>{{end}}</p>{{end}}
  </div>
  <h2>Webhooks received</h2>
  {{range .Events}}
    <div class="box event">
    {{if .Verified}}<p class="ok">Verified with <code>client.ParseWebhook</code>: <span class="event-type">{{.Event.Type}}</span> <code>{{.Event.ID}}</code></p><pre>{{.Pretty}}</pre>
    {{else}}<p class="bad">Refused: {{.Error}}</p>{{end}}
    </div>
  {{else}}
    <p id="waiting">No webhook yet{{if .Refresh}}: this page looks again every second{{end}}.</p>
  {{end}}
  <p><a href="/">Buy another ticket</a></p>
{{else}}
  <h1>Almaty - Astana, economy: 45,000.00 KZT</h1>
  <form method="post" action="/checkout" class="box">
    <p>Pay by <label><input type="radio" name="method" value="any" checked> card or Kaspi QR</label><label><input type="radio" name="method" value="card"> card only</label></p>
    <p>The payment page in <label><input type="radio" name="lang" value="en" checked> English</label><label><input type="radio" name="lang" value="ru"> Russian</label><label><input type="radio" name="lang" value="kk"> Kazakh</label></p>
    <button type="submit" id="buy">Buy the ticket</button>
  </form>
  <p>The shop creates a session with the Go client (<code>pkg/client</code>) and sends you to pay. Sandbox cards: 4242 4242 4242 4242 (paid at once), 4000 0000 0000 3220 (the bank asks for the SMS code 123456), 4000 0000 0000 9995 (declined: no funds).</p>
{{end}}
</main></body></html>`))
