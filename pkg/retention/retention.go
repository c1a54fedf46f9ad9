// Package retention keeps card data only as long as it is needed. Every card
// sealed on a payment page is filed in the store's due index for a review an
// hour later (--card-retention-unused); the review asks the session it was
// entered on how the card is used: a card that paid is kept for the card
// retention after its payment's last change (--card-retention, 400 days:
// enough for chargebacks) and reviewed again then; one that did not pay
// (declined, abandoned, a double submit's) is deleted, leaving a tombstone
// so its token answers "token_deleted". Sessions, payments and events are
// purged by their own owners (pkg/payment, pkg/webhook) after the record
// retention. Nothing is found by scanning: each review is due work.
package retention

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/vault"
)

// Vault is what the review needs of the card vault.
type Vault interface {
	CardForReview(ctx context.Context, token string) (vault.CardUse, error)
	ReviewCardAt(ctx context.Context, u vault.CardUse, t time.Time) error
	DeleteCard(ctx context.Context, u vault.CardUse) error
}

// Payments says how a card sealed on a session is used.
type Payments interface {
	CardUse(ctx context.Context, sessionID, token string) (payment.CardUse, error)
}

// Cards reviews sealed cards when they fall due.
type Cards struct {
	vault    Vault
	payments Payments
	store    store.Store
	// Unused is how long a card that is not (yet) used waits for its next
	// review; Used is how long a card that paid is kept after its payment's
	// last change.
	Unused, Used time.Duration
	Now          func() time.Time
}

// New returns the card review; it refuses missing parts and periods.
func New(v Vault, p Payments, s store.Store, unused, used time.Duration, now func() time.Time) (*Cards, error) {
	switch {
	case v == nil || p == nil || s == nil:
		return nil, errors.New("retention: a vault, the payments and a store are required")
	case unused <= 0 || used <= 0:
		return nil, fmt.Errorf("retention: card retention periods must be positive (%v, %v)", unused, used)
	}
	if now == nil {
		now = time.Now
	}
	return &Cards{vault: v, payments: p, store: s, Unused: unused, Used: used, Now: now}, nil
}

// Review is the reconciler's handler for due card keys.
func (c *Cards) Review(ctx context.Context, k store.Key) error {
	u, err := c.vault.CardForReview(ctx, k.ID)
	if errors.Is(err, vault.ErrNotFound) {
		return c.store.Commit(ctx, store.Delete(k)) // gone: take it out of the index
	}
	if err != nil {
		return err
	}
	if u.Owner == "" {
		return c.vault.ReviewCardAt(ctx, u, time.Time{}) // not a page's card: kept, and not reviewed
	}
	use, err := c.payments.CardUse(ctx, u.Owner, u.Token)
	if err != nil {
		return err
	}
	now := c.Now().UTC()
	var next time.Time
	switch {
	case use.InFlight, use.Used && !use.Settled:
		next = now.Add(c.Unused) // still at work: look again later
	case use.Used && now.Before(use.Last.Add(c.Used)):
		next = use.Last.Add(c.Used)
	}
	if !next.IsZero() {
		err = c.vault.ReviewCardAt(ctx, u, next)
	} else {
		err = c.vault.DeleteCard(ctx, u)
	}
	if errors.Is(err, store.ErrConflict) {
		return nil // changed meanwhile (re-encrypted, say): it is still filed, and looked at again
	}
	return err
}
