package vault_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/paypage/paypage/pkg/vault"
)

func TestSplitAndUnseal(t *testing.T) {
	t.Parallel()
	e := engines(t)["bolt"](t)
	master := bytes.Repeat([]byte{0xab}, 32) // testKEK's key
	v := mustVault(t, e, testKEK(t))
	tok, _ := v.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))

	shares, err := vault.SplitMasterKey(master, 5, 3)
	if err != nil || len(shares) != 5 {
		t.Fatalf("split: %d %v", len(shares), err)
	}
	for _, s := range shares {
		if !strings.HasSuffix(s.Text, "-"+s.Check) || strings.Contains(s.Text, strings.Repeat("ab", 8)) {
			t.Fatalf("share %s", s.Text)
		}
	}
	other, _ := vault.SplitMasterKey(bytes.Repeat([]byte{0xcd}, 32), 5, 3)
	twoOfThree, _ := vault.SplitMasterKey(master, 3, 2)

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
	if sealed.CSRFKeys() != nil || sealed.CardKey(testCard(t, "4242424242424242").PAN) != "" {
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
	// Three shares of another master key rebuild a key, but not this store's.
	for _, s := range other[:2] {
		if _, err := sealed.AddShare(ctx, s.Text); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sealed.AddShare(ctx, other[2].Text); err == nil || !strings.Contains(err.Error(), "not this store's master key") {
		t.Fatalf("shares of another key: %v", err)
	}
	if p := sealed.UnsealProgress(); p.Have != 0 || !p.Sealed {
		t.Fatalf("after the wrong key: %+v", p)
	}
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
