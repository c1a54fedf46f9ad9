package vault_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/paypage/paypage/pkg/vault"
)

func TestSplitAndUnseal(t *testing.T) {
	t.Parallel()
	e := engines(t)["bolt"](t)
	master := bytes.Repeat([]byte{0xab}, 32) // testKEK's key
	v := mustVault(t, e, testKEK(t))
	tok, _ := v.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))

	shares, err := v.Split(ctx, master, 5, 3)
	if err != nil || len(shares) != 5 {
		t.Fatalf("split: %d %v", len(shares), err)
	}
	for _, s := range shares {
		if !strings.HasSuffix(s.Text, "-"+s.Check) || strings.Contains(s.Text, strings.Repeat("ab", 8)) {
			t.Fatalf("share %s", s.Text)
		}
	}
	if _, err := v.Split(ctx, bytes.Repeat([]byte{0xcd}, 32), 5, 3); err == nil || !strings.Contains(err.Error(), "not the one this store's keyring") {
		t.Fatalf("split of another key: %v", err)
	}
	other, _ := v.Split(ctx, master, 5, 3) // a second split of the same key
	twoOfThree, _ := v.Split(ctx, master, 3, 2)
	// Shares no split of this store made: another key's, and one forged with
	// a right split ID, number and check value (anyone can compute those).
	foreign, _ := vault.SplitMasterKey(bytes.Repeat([]byte{0xcd}, 32), 5, 3)
	forged := forge(shares[3].Text)

	sealed := vault.NewSealed(e, vault.Options{UnsealThreshold: 3})
	if _, _, err := sealed.Lookup(ctx, tok.Token); !errors.Is(err, vault.ErrSealed) {
		t.Fatalf("lookup while sealed: %v", err)
	}
	if _, err := sealed.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242")); !errors.Is(err, vault.ErrSealed) {
		t.Fatalf("tokenize while sealed: %v", err)
	}
	if _, err := sealed.SealSecret("p", []byte("x")); !errors.Is(err, vault.ErrSealed) {
		t.Fatalf("seal while sealed: %v", err)
	}
	if sealed.CSRFTags([]byte("x")) != nil || sealed.CardKey(testCard(t, "4242424242424242").PAN) != "" {
		t.Fatal("keys handed out while sealed")
	}

	mistyped := []byte(shares[0].Text)
	mistyped[20] = map[bool]byte{true: '1', false: '0'}[mistyped[20] == '0'] // one hex digit off
	tests := []struct {
		name, share, want string
	}{
		{"Malformed", "hello", "not a key share"},
		{"Mistyped", string(mistyped), "check value"},
		{"OtherThreshold", twoOfThree[0].Text, "threshold 2"},
		{"UnknownSplit", foreign[0].Text, "does not know"},
		{"Forged", forged, "altered or forged"},
	}
	for _, tt := range tests {
		if _, err := sealed.AddShare(ctx, tt.share); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	if p := sealed.UnsealProgress(); p.Have != 0 || !p.Sealed {
		t.Fatalf("bad shares counted: %+v", p)
	}
	if p, err := sealed.AddShare(ctx, shares[0].Text); err != nil || p.Have != 1 || p.Threshold != 3 || !p.Sealed {
		t.Fatalf("first share: %+v %v", p, err)
	}
	if _, err := sealed.AddShare(ctx, shares[0].Text); err == nil || !strings.Contains(err.Error(), "given already") {
		t.Fatalf("repeated share: %v", err)
	}
	if _, err := sealed.AddShare(ctx, other[1].Text); err == nil || !strings.Contains(err.Error(), "mixed-up") {
		t.Fatalf("share of another split: %v", err)
	}
	if _, err := sealed.AddShare(ctx, forged); err == nil || !strings.Contains(err.Error(), "forged") {
		t.Fatalf("forged share of the split under way: %v", err)
	}
	// A reset drops what was given: the custodians of the other split go.
	if p := sealed.ResetUnseal(); p.Have != 0 || !p.Sealed {
		t.Fatalf("after reset: %+v", p)
	}
	if p, err := sealed.AddShare(ctx, other[1].Text); err != nil || p.Have != 1 {
		t.Fatalf("the other split after reset: %+v %v", p, err)
	}
	sealed.ResetUnseal()
	if _, err := sealed.AddShare(ctx, shares[0].Text); err != nil {
		t.Fatal(err)
	}
	if p, err := sealed.AddShare(ctx, "  "+shares[3].Text+"\n"); err != nil || p.Have != 2 || !p.Sealed {
		t.Fatalf("second share: %+v %v", p, err)
	}
	if p, err := sealed.AddShare(ctx, shares[4].Text); err != nil || p.Sealed {
		t.Fatalf("third share: %+v %v", p, err)
	}
	if c, _, err := sealed.Lookup(ctx, tok.Token); err != nil || c.PAN.Digits() != "4242424242424242" {
		t.Fatalf("lookup after unseal: %v", err)
	}
	if _, err := sealed.AddShare(ctx, shares[1].Text); err == nil || !strings.Contains(err.Error(), "unsealed already") {
		t.Fatalf("share after unseal: %v", err)
	}

	// Seal wipes the key: sealed again, and unsealed again by any other three.
	sealed.Seal()
	if _, _, err := sealed.Lookup(ctx, tok.Token); !errors.Is(err, vault.ErrSealed) {
		t.Fatalf("lookup after seal: %v", err)
	}
	// A second split unseals as well as the first.
	for _, s := range []vault.Share{other[1], other[2], other[4]} {
		if _, err := sealed.AddShare(ctx, s.Text); err != nil {
			t.Fatal(err)
		}
	}
	if sealed.Sealed() {
		t.Fatal("still sealed after three shares of the second split")
	}
	sealed.Seal()
	for _, s := range []vault.Share{shares[1], shares[2], shares[4]} {
		if _, err := sealed.AddShare(ctx, s.Text); err != nil {
			t.Fatal(err)
		}
	}
	if sealed.Sealed() {
		t.Fatal("still sealed after three right shares")
	}
	if _, err := vault.SplitMasterKey(master, 2, 3); err == nil {
		t.Fatal("threshold above shares accepted")
	}
}

// forge returns a share of the same split and number with another value
// and a right check value: well formed, and not the share.
func forge(share string) string {
	f := strings.Split(share, "-")
	f[4] = strings.Repeat("0", 64)
	body := strings.Join(f[:5], "-")
	sum := sha256.Sum256([]byte("paypage/share|" + body))
	return body + "-" + hex.EncodeToString(sum[:4])
}

// TestSealUnderTrafficNeverPanics: `paypage seal` on a serving
// replica. Seal wipes the ring that requests in flight already hold
// (vault.go Seal -> ring.wipe clears r.terms and the fp/csrf bytes), so a
// seal running at that moment dereferences r.terms[r.active] == nil
// (keyring.go ring.seal) or hashes with a zeroed fingerprint key. Promise:
// "paypage seal wipes the key from memory" and the service answers 503, not
// a crash.
func TestSealUnderTrafficNeverPanics(t *testing.T) {
	e := engines(t)["bolt"](t)
	v := mustVault(t, e, testKEK(t))
	pan := testCard(t, "4242424242424242").PAN
	var panics atomic.Int64
	var first atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				func() {
					defer func() {
						if r := recover(); r != nil {
							panics.Add(1)
							first.CompareAndSwap(nil, fmt.Sprint(r))
						}
					}()
					_, _ = v.SealSecret("p", []byte("x"))
					_ = v.CardKey(pan)
				}()
			}
		})
	}
	for range 10000 {
		v.Seal()
		if err := v.Unseal(ctx, testKEK(t)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if n := panics.Load(); n > 0 {
		t.Fatalf("%d seals in flight panicked while the vault was sealed, first: %v", n, first.Load())
	}
}
