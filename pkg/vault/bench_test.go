package vault_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/bolt"
	"github.com/paypage/paypage/pkg/store/storetest"
	"github.com/paypage/paypage/pkg/vault"
)

// benchStores are the engines a vault step is measured on.
func benchStores(b *testing.B) map[string]store.Store { return storetest.Engines(b) }

func BenchmarkTokenize(b *testing.B) {
	for name, s := range benchStores(b) {
		b.Run(name, func(b *testing.B) {
			v := mustVault(b, s, testKEK(b))
			c := testCard(b, "4242424242424242")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Tokenize(ctx, "mer_a", c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDetokenize(b *testing.B) {
	for name, s := range benchStores(b) {
		b.Run(name, func(b *testing.B) {
			v := mustVault(b, s, testKEK(b))
			info, err := v.Tokenize(ctx, "mer_a", testCard(b, "4242424242424242"))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := v.Detokenize(ctx, "mer_a", info.Token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHoldTakeCVV measures sealing a CVV and taking it back, without
// the store's cost dominating (bolt) and with a network round trip (redis).
func BenchmarkHoldTakeCVV(b *testing.B) {
	for name, s := range benchStores(b) {
		b.Run(name, func(b *testing.B) {
			v := mustVault(b, s, testKEK(b))
			cvv, _ := card.ParseCVV("123", card.Visa)
			k := vault.CVVKey("att_bench", "g")
			b.ReportAllocs()
			for b.Loop() {
				if err := v.HoldCVV(ctx, "mer_a", k, cvv, time.Minute); err != nil {
					b.Fatal(err)
				}
				if _, err := v.TakeCVV(ctx, "mer_a", k); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSeal measures the AEAD alone: SealCVV builds the sealed op without I/O.
func BenchmarkSeal(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	v := mustVault(b, db, testKEK(b))
	cvv, _ := card.ParseCVV("123", card.Visa)
	k := vault.CVVKey("att", "g")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.SealCVV("mer_a", k, cvv, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}
