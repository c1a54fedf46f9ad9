package limit_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/limit"
	"github.com/paypage/paypage/pkg/store/memory"
)

var ctx = context.Background()

func newSubmissions(t *testing.T) *limit.Submissions {
	t.Helper()
	c, err := limit.NewCounter(memory.New())
	if err != nil {
		t.Fatal(err)
	}
	return &limit.Submissions{
		Counter:  c,
		Client:   limit.Rule{Name: "client", Max: 3, Window: time.Hour},
		Network:  limit.Rule{Name: "network", Max: 6, Window: time.Hour},
		Card:     limit.Rule{Name: "card", Max: 3, Window: time.Hour},
		Merchant: limit.Rule{Name: "merchant", Max: 5, Window: time.Minute},
		Global:   limit.Rule{Name: "global", Max: 8, Window: time.Minute},
	}
}

// refusedBy is the rule a submission was refused under ("" if allowed).
func refusedBy(t *testing.T, err error) string {
	t.Helper()
	var ex *limit.Exceeded
	if errors.As(err, &ex) {
		return ex.Rule
	}
	if err != nil {
		t.Fatal(err)
	}
	return ""
}

// Addresses of one IPv6 /64 are one client; another /64 is another.
func TestClientBucketsIPv6By64(t *testing.T) {
	t.Parallel()
	l := newSubmissions(t)
	for i := 1; i <= 4; i++ {
		err := l.Submission(ctx, limit.Submission{Merchant: "mer_a", ClientIP: fmt.Sprintf("2001:db8:1:2::%x", i), CardKey: fmt.Sprint("card", i)})
		if got, want := refusedBy(t, err), map[bool]string{true: "client", false: ""}[i > 3]; got != want {
			t.Fatalf("address %d in one /64: refused by %q, want %q", i, got, want)
		}
	}
	if err := l.Submission(ctx, limit.Submission{Merchant: "mer_a", ClientIP: "2001:db8:1:3::1", CardKey: "card9"}); refusedBy(t, err) != "" {
		t.Fatalf("another /64: %v", err)
	}
	if err := l.Submission(ctx, limit.Submission{Merchant: "mer_a", ClientIP: "::ffff:192.0.2.1", CardKey: "card8"}); refusedBy(t, err) != "" {
		t.Fatalf("an IPv4 address: %v", err)
	}
}

// A run that walks the /64s of one IPv6 /48 (65,536 client buckets) is
// held by the network limit; another /48, and IPv4, are not. (Kaspi QR
// submissions, which no card or velocity limit counts.)
func TestNetworkLimitIPv6By48(t *testing.T) {
	t.Parallel()
	l := newSubmissions(t)
	for i := 1; i <= 8; i++ {
		err := l.Submission(ctx, limit.Submission{Merchant: "mer_a", ClientIP: fmt.Sprintf("2001:db8:7:%x::1", i)})
		if got, want := refusedBy(t, err), map[bool]string{true: "network", false: ""}[i > 6]; got != want {
			t.Fatalf("/64 number %d of one /48: refused by %q, want %q", i, got, want)
		}
		if err := l.Check(ctx, limit.Submission{Merchant: "mer_a", ClientIP: fmt.Sprintf("2001:db8:7:%x::2", i+100)}); refusedBy(t, err) != map[bool]string{true: "network", false: ""}[i >= 6] {
			t.Fatalf("a check after %d submissions from the /48: %v", i, err)
		}
	}
	if err := l.Submission(ctx, limit.Submission{Merchant: "mer_b", ClientIP: "2001:db8:8::1"}); refusedBy(t, err) != "" {
		t.Fatalf("another /48: %v", err)
	}
	for i := 1; i <= 8; i++ { // IPv4 has no network rule: each address its own client limit
		if err := l.Submission(ctx, limit.Submission{Merchant: "mer_b", ClientIP: fmt.Sprintf("192.0.2.%d", i)}); refusedBy(t, err) != "" {
			t.Fatalf("IPv4 address %d: %v", i, err)
		}
	}
}

// A distributed run, every submission from a new address with a new card,
// is stopped by the merchant's velocity limit; another merchant goes on
// until the global one.
func TestVelocityLimits(t *testing.T) {
	t.Parallel()
	l := newSubmissions(t)
	sub := func(merchant string, i int) string {
		return refusedBy(t, l.Submission(ctx, limit.Submission{Merchant: merchant, ClientIP: fmt.Sprintf("198.51.100.%d", i), CardKey: fmt.Sprint("card", i)}))
	}
	for i := 1; i <= 5; i++ {
		if r := sub("mer_a", i); r != "" {
			t.Fatalf("submission %d refused by %s", i, r)
		}
	}
	if r := sub("mer_a", 6); r != "merchant" {
		t.Fatalf("the sixth to one merchant: refused by %q, want merchant", r)
	}
	for i := 10; i < 13; i++ { // 5 + 3: the global limit of 8 is full
		if r := sub("mer_b", i); r != "" {
			t.Fatalf("another merchant: refused by %s", r)
		}
	}
	if r := sub("mer_c", 20); r != "global" {
		t.Fatalf("past the global limit: refused by %q", r)
	}
	// A Kaspi QR (no card) counts against the client alone.
	if err := l.Submission(ctx, limit.Submission{Merchant: "mer_a", ClientIP: "203.0.113.1"}); refusedBy(t, err) != "" {
		t.Fatalf("a Kaspi QR: %v", err)
	}
}

// A limit with Max 0 is off.
func TestVelocityLimitsOff(t *testing.T) {
	t.Parallel()
	l := newSubmissions(t)
	l.Merchant.Max, l.Global.Max = 0, 0
	for i := 0; i < 50; i++ {
		if err := l.Submission(ctx, limit.Submission{Merchant: "mer_a", ClientIP: fmt.Sprintf("198.51.100.%d", i), CardKey: fmt.Sprint("card", i)}); err != nil {
			t.Fatalf("submission %d: %v", i, err)
		}
	}
}
