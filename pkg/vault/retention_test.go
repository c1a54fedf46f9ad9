package vault_test

import (
	"errors"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/memory"
	"github.com/paypage/paypage/pkg/vault"
)

// A deleted card answers token_deleted to its own merchant and to a caller
// serving it, "no such token" to anyone else, and never opens again; the
// review files and refiles it through the due index.
func TestDeletedCard(t *testing.T) {
	t.Parallel()
	db := memory.New()
	v, err := vault.OpenWith(ctx, db, testKEK(t), vault.Options{CardReview: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	v.Now = func() time.Time { return now }
	info, err := v.TokenizeFor(ctx, "mer_a", testCard(t, "4242 4242 4242 4242"), "ses_owner")
	if err != nil {
		t.Fatal(err)
	}
	due, _ := db.Due(ctx, vault.KindCardRecord, now.Add(2*time.Hour), 10)
	if len(due) != 1 || due[0].Key.ID != info.Token || !due[0].At.Equal(now.Add(time.Hour)) {
		t.Fatalf("filed %v, want the card an hour on", due)
	}
	u, err := v.CardForReview(ctx, info.Token)
	if err != nil || u.Owner != "ses_owner" || u.Merchant != "mer_a" {
		t.Fatalf("%+v %v", u, err)
	}
	if err := v.ReviewCardAt(ctx, u, now.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if due, _ := db.Due(ctx, vault.KindCardRecord, now.Add(2*time.Hour), 10); len(due) != 0 {
		t.Fatalf("still due in two hours: %v", due)
	}
	// A review of a record read before it changed does nothing.
	if err := v.DeleteCard(ctx, u); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a stale delete: %v", err)
	}
	u, _ = v.CardForReview(ctx, info.Token)
	if err := v.DeleteCard(ctx, u); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.Detokenize(ctx, "mer_a", info.Token); !errors.Is(err, vault.ErrTokenDeleted) {
		t.Fatalf("own merchant: %v", err)
	}
	if _, _, err := v.LookupFor(ctx, info.Token, func(m string) bool { return m == "mer_a" }); !errors.Is(err, vault.ErrTokenDeleted) {
		t.Fatalf("a processor serving it: %v", err)
	}
	for name, err := range map[string]error{
		"other merchant": func() error { _, _, err := v.Detokenize(ctx, "mer_b", info.Token); return err }(),
		"other processor": func() error {
			_, _, err := v.LookupFor(ctx, info.Token, func(string) bool { return false })
			return err
		}(),
		"other's info":     func() error { _, err := v.Info(ctx, "mer_b", info.Token); return err }(),
		"review once gone": func() error { _, err := v.CardForReview(ctx, info.Token); return err }(),
	} {
		if !errors.Is(err, vault.ErrNotFound) || errors.Is(err, vault.ErrTokenDeleted) {
			t.Errorf("%s: %v, want plain not found", name, err)
		}
	}
	if due, _ := db.Due(ctx, vault.KindCardRecord, now.Add(100*time.Hour), 10); len(due) != 0 {
		t.Fatalf("a deleted card still filed: %v", due)
	}
}
