package e2e

import (
	"net/http"
	"testing"
)

// BenchmarkCardPayment is a whole frictionless card payment over HTTP: the
// shop creates a session, the shopper loads the page and posts the card
// (vault, CVV hold, 3-D Secure, authorization, webhook event), and follows
// the redirect to the result.
func BenchmarkCardPayment(b *testing.B) {
	for _, name := range []string{"bolt", "redis"} {
		b.Run(name, func(b *testing.B) {
			o := envOpts{}
			if name == "redis" {
				o.store = redisURL(b)
			}
			e := newEnv(b, o)
			l := e.app.Limiter
			l.Card.Max, l.Client.Max, l.Merchant.Max, l.Global.Max = 0, 0, 0, 0
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
}

// BenchmarkCreateSession is the shop API's hot call.
func BenchmarkCreateSession(b *testing.B) {
	e := newEnv(b, envOpts{store: redisURL(b)})
	b.ReportAllocs()
	for b.Loop() {
		e.session(nil)
	}
}
