package e2e

import (
	"net/http"
	"testing"
)

// benchEach runs a benchmark against a service on bolt and one on Redis,
// with the card-testing limits off.
func benchEach(b *testing.B, o envOpts, f func(b *testing.B, e *env)) {
	for _, name := range []string{"bolt", "redis"} {
		b.Run(name, func(b *testing.B) {
			o := o
			if name == "redis" {
				o.store = redisURL(b)
			}
			e := newEnv(b, o)
			l := e.app.Limiter
			l.Card.Max, l.Client.Max, l.Merchant.Max, l.Global.Max = 0, 0, 0, 0
			f(b, e)
		})
	}
}

// BenchmarkCardPayment is a whole frictionless card payment over HTTP: the
// shop creates a session, the shopper loads the page and posts the card
// (vault, CVV hold, 3-D Secure, authorization, webhook event), and follows
// the redirect to the result.
func BenchmarkCardPayment(b *testing.B) {
	benchEach(b, envOpts{}, func(b *testing.B, e *env) {
		br := e.browser()
		b.ReportAllocs()
		for b.Loop() {
			id := e.session(nil)["id"].(string)
			p := br.follow(br.pay(id, "4242 4242 4242 4242", "981"))
			if p.status != http.StatusOK {
				b.Fatalf("status %d", p.status)
			}
		}
	})
}

// BenchmarkCreateSession is the shop API's hot call.
func BenchmarkCreateSession(b *testing.B) {
	e := newEnv(b, envOpts{store: redisURL(b)})
	b.ReportAllocs()
	for b.Loop() {
		e.session(nil)
	}
}

// BenchmarkCardPage is GET /pay/{id} over HTTP: the session read, the
// merchant's name, the page rendered with its CSRF token.
func BenchmarkCardPage(b *testing.B) {
	benchEach(b, envOpts{}, func(b *testing.B, e *env) {
		id := e.session(nil)["id"].(string)
		br := e.browser()
		b.ReportAllocs()
		for b.Loop() {
			if p := br.get("/pay/" + id); p.status != http.StatusOK {
				b.Fatalf("status %d", p.status)
			}
		}
	})
}

// BenchmarkDetokenize is POST /v1/detokenize over HTTP: the processor's
// key, its rate, the token's record, the card opened, the audit record.
func BenchmarkDetokenize(b *testing.B) {
	benchEach(b, envOpts{detokenize: 1e9}, func(b *testing.B, e *env) {
		id := e.session(nil)["id"].(string)
		e.browser().pay(id, "4242 4242 4242 4242", "981")
		_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
		token := s["payment"].(map[string]any)["card"].(map[string]any)["token"].(string)
		b.ReportAllocs()
		for b.Loop() {
			if st, _, _ := e.api("POST", "/v1/detokenize", e.procKey, map[string]string{"token": token}); st != http.StatusOK {
				b.Fatalf("status %d", st)
			}
		}
	})
}
