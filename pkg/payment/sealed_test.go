package payment_test

// Tests from the second hostile review of issue 11 for controls that had
// none.

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/paypage/paypage/pkg/apiview"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/paystore"
	"github.com/paypage/paypage/pkg/vault"
)

// sealingVault is the rig's vault, sealed by its custodians (paypage seal)
// right after the 3-D Secure authentication value was held: between the
// authentication and the authorization.
type sealingVault struct {
	*vault.Vault
	once sync.Once
}

func (s *sealingVault) SealHeld(kind, merchant, ref string, plain []byte) ([]byte, error) {
	b, err := s.Vault.SealHeld(kind, merchant, ref, plain)
	if kind == payment.HeldAuth {
		s.once.Do(s.Vault.Seal)
	}
	return b, err
}

// Promise (commit 9a9a9b7, untested until now): an authorization is not
// sent while the vault is sealed (taking the held security code then would
// lose it: it could not be opened), and one never sent is sent on resume,
// once, after the unseal, by the reconciler with no page view.
func TestAuthorizationWaitsForTheUnseal(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	sv := &sealingVault{Vault: r.vault}
	repo, err := paystore.New(r.db, func(id string) string { return apiview.PageURL("https://pay.example", id) }, r.clock.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.svc, err = payment.New(payment.Deps{
		Repo: repo, Vault: sv, Processor: r.proc, ThreeDS: r.threeDS, Kaspi: r.kaspi,
		Merchants: merchants{merchant: "Air Astana"}, Limiter: r.limits, Now: r.clock.Now,
	}, payment.DefaultLimits, r.timing, func(id string) string { return "https://pay.example/pay/" + id + "/3ds" })
	if err != nil {
		t.Fatal(err)
	}
	id := r.session()
	if _, err := r.pay(id, "4242 4242 4242 4242"); !errors.Is(err, vault.ErrSealed) {
		t.Fatalf("paid while the vault was sealed: %v", err)
	}
	if n := r.proc.count("authorize"); n != 0 {
		t.Fatalf("%d authorizations sent while the vault was sealed", n)
	}
	if r.count(payment.HeldCVV) != 1 {
		t.Fatal("the security code was taken while it could not be opened")
	}
	r.clock.Advance(r.timing.AskAgain[0])
	r.drive() // still sealed: nothing sent
	if n := r.proc.count("authorize"); n != 0 {
		t.Fatalf("%d authorizations sent by the reconciler while the vault was sealed", n)
	}
	kek, _ := vault.NewLocalKEK(make([]byte, 32))
	if err := r.vault.Unseal(context.Background(), kek); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(r.timing.AskAgain[0])
	r.drive()
	s, p := r.state(id)
	if s.Status != payment.SessionComplete || p.Status != payment.StatusSucceeded || r.proc.count("authorize") != 1 || r.proc.count("inquire") != 0 {
		t.Fatalf("after the unseal: %s %s, calls %v", s.Status, p.Status, r.proc.calls)
	}
	if ev := r.events(); ev[payment.EventPaymentSucceeded] != 1 || len(ev) != 1 {
		t.Fatalf("events %v", ev)
	}
}
