package threeds_test

import (
	"context"
	"testing"

	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/storetest"
	"github.com/paypage/paypage/pkg/threeds"
	"github.com/paypage/paypage/pkg/vault/vaulttest"
)

// BenchmarkAuthenticate is the sandbox issuer's frictionless answer: the
// card looked up and opened, the transaction written, the authentication
// value sealed and opened.
func BenchmarkAuthenticate(b *testing.B) {
	ctx := context.Background()
	storetest.EachEngine(b, func(b *testing.B, s store.Store) {
		v := vaulttest.Open(b, s)
		info := vaulttest.Card(b, v, "mer_a", "4242424242424242")
		acs := threeds.NewSandbox(s, v, func(id string) string { return "https://pay.example/sandbox/acs/" + id })
		req := threeds.Request{Merchant: "mer_a", MerchantName: "Air Astana", Amount: 150000, Currency: "KZT", Token: info.Token,
			Brand: info.Brand, MaskedPAN: "424242******4242", NotificationURL: "https://pay.example/pay/ses_x/3ds",
			Browser: threeds.Browser{IP: "192.0.2.1", UserAgent: "Mozilla/5.0", Language: "en"}}
		b.ReportAllocs()
		for b.Loop() {
			res, err := acs.Authenticate(ctx, req)
			if err != nil || res.TransStatus != threeds.Authenticated {
				b.Fatal(res, err)
			}
		}
	})
}
