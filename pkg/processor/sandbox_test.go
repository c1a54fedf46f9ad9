package processor_test

import (
	"context"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/paypage/paypage/pkg/audit"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/storetest"
	"github.com/paypage/paypage/pkg/threeds"
	"github.com/paypage/paypage/pkg/vault"
	"github.com/paypage/paypage/pkg/vault/vaulttest"
)

// SandboxNumbers is the README's sandbox table, and holds every number the
// sandbox processor and issuer decide by: the per-card limit skips exactly
// these.
func TestSandboxNumbersAreTheTable(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(readme), "\n## Sandbox")
	if i < 0 {
		t.Fatal("no Sandbox section in the README")
	}
	var table []string
	row := regexp.MustCompile(`(?m)^\| ([0-9][0-9 ]{13,22}) \|`)
	for _, m := range row.FindAllStringSubmatch(string(readme[i:]), -1) {
		table = append(table, strings.ReplaceAll(m[1], " ", ""))
	}
	got := slices.Clone(processor.SandboxNumbers)
	sort.Strings(got)
	sort.Strings(table)
	if !slices.Equal(got, table) {
		t.Fatalf("SandboxNumbers %v\nREADME table %v", got, table)
	}
	for n := range processor.SandboxOutcomes {
		if !slices.Contains(got, n) {
			t.Errorf("processor sandbox number %s missing", n)
		}
	}
	for n := range threeds.SandboxStatus {
		if !slices.Contains(got, n) {
			t.Errorf("issuer sandbox number %s missing", n)
		}
	}
}

// BenchmarkAuthorize is the sandbox processor's approval: the card looked
// up (and the lookup audited), the authorization written and read back.
func BenchmarkAuthorize(b *testing.B) {
	ctx := context.Background()
	storetest.EachEngine(b, func(b *testing.B, s store.Store) {
		v := vaulttest.Open(b, s)
		info := vaulttest.Card(b, v, "mer_a", "4242424242424242")
		p := processor.NewSandbox(s, v, audit.New(s))
		cvv, _ := card.ParseCVV("123", card.Visa)
		b.ReportAllocs()
		for b.Loop() {
			res, err := p.Authorize(ctx, processor.AuthorizeRequest{ID: vault.NewID("att_"), Merchant: "mer_a", Token: info.Token, CVV: cvv,
				Amount: 150000, Currency: "KZT", Reference: "PNR", ThreeDS: &processor.Authentication{Version: "2.2.0", TransStatus: "Y", ECI: "05"}})
			if err != nil || !res.Approved {
				b.Fatal(res, err)
			}
		}
	})
}
