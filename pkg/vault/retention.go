package vault

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/store"
)

// KindCardRecord is the store kind of card records: the due index files
// them for their retention review.
const KindCardRecord = "card"

// DefaultTombstoneTTL is how long a deleted card's tombstone is kept: as
// long as the records that may still name its token.
const DefaultTombstoneTTL = 400 * 24 * time.Hour

// ErrTokenDeleted is the answer for a token whose card the retention policy
// deleted: never opened again, and said so (404, token_deleted), to the
// token's own merchant or a processor serving it.
var ErrTokenDeleted = apperr.E(apperr.TokenDeleted, "the card behind this token was deleted under the retention policy")

// deletedErr is ErrTokenDeleted with the merchant the token belonged to, so
// that callers answer "no such token" to anyone else.
type deletedErr struct{ merchant string }

func (e *deletedErr) Error() string { return ErrTokenDeleted.Error() }
func (e *deletedErr) Unwrap() error { return ErrTokenDeleted }

// tombstone is what is left of a deleted card: whose it was, and when it went.
type tombstone struct {
	Merchant string    `json:"merchant"`
	Deleted  time.Time `json:"deleted"`
}

// The tombstone lives in the card's own group, so the delete and the
// tombstone are one commit.
func tombstoneKey(token string) store.Key { return store.K("card_deleted", token) }

// deleted answers for a token with no card record: deleted (a tombstone), or
// never known.
func (v *Vault) deleted(ctx context.Context, token string) error {
	r, err := v.store.Get(ctx, tombstoneKey(token))
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	var t tombstone
	if err := json.Unmarshal(r.Value, &t); err != nil {
		return ErrNotFound
	}
	return &deletedErr{merchant: t.Merchant}
}

// hideDeleted turns a deleted token of a merchant the caller may not see
// into "no such token", word for word as an unknown one.
func hideDeleted(err error, allowed func(merchant string) bool) error {
	var de *deletedErr
	if errors.As(err, &de) && !allowed(de.merchant) {
		return ErrNotFound
	}
	return err
}

// CardUse is what the retention review reads of a card record.
type CardUse struct {
	Token    string
	Merchant string
	Owner    string // the session it was entered on ("" for a card sealed without one)
	Created  time.Time
	version  int64
}

// CardForReview reads a card record for the retention review; ErrNotFound
// when it is gone.
func (v *Vault) CardForReview(ctx context.Context, token string) (CardUse, error) {
	rec, ver, err := v.load(ctx, token)
	if err != nil {
		if errors.Is(err, ErrTokenDeleted) {
			return CardUse{}, ErrNotFound
		}
		return CardUse{}, err
	}
	return CardUse{Token: rec.Token, Merchant: rec.Merchant, Owner: rec.Owner, Created: rec.Created, version: ver}, nil
}

// ReviewCardAt files a card for its next retention review at t (zero: no
// more reviews), if it has not changed since it was read
// (store.ErrConflict otherwise).
func (v *Vault) ReviewCardAt(ctx context.Context, u CardUse, t time.Time) error {
	r, err := v.store.Get(ctx, cardKey(u.Token))
	if err != nil {
		return err
	}
	if r.Version != u.version {
		return store.ErrConflict
	}
	op := store.Update(cardKey(u.Token), r.Value, r.Version)
	if t.IsZero() {
		return v.store.Commit(ctx, op.Finished())
	}
	return v.store.Commit(ctx, op.At(t))
}

// DeleteCard deletes a card record (the sealed number and name, and what is
// shown of it) and leaves a tombstone in the same commit, so the token
// answers token_deleted from then on. It refuses (store.ErrConflict) when
// the record changed since it was read.
func (v *Vault) DeleteCard(ctx context.Context, u CardUse) error {
	ttl := v.opts.TombstoneTTL
	if ttl == 0 {
		ttl = DefaultTombstoneTTL
	}
	b, _ := json.Marshal(tombstone{Merchant: u.Merchant, Deleted: v.Now().UTC()})
	return v.store.Commit(ctx,
		store.Op{Key: cardKey(u.Token), Delete: true, IfVersion: u.version},
		store.Op{Key: tombstoneKey(u.Token), Value: b, IfVersion: store.Any, TTL: ttl},
	)
}
