// Package idempotency is the one way a create request is made safe to
// retry, for sessions and refunds alike. A request under an Idempotency-Key
// claims the key and is given the ID of the object it makes; a retry of the
// same request gets the first answer once there is one, or the same ID to go
// on with when the first try died on the way, so the object is made once.
// Another request under the key is refused.
package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/store"
)

// Errors of a claim.
var (
	ErrMismatch   = apperr.E(apperr.IdemMismatch, "this Idempotency-Key was used with a different request")
	ErrInProgress = &apperr.Error{Code: apperr.InProgress, Param: "Idempotency-Key", Message: "a request with this Idempotency-Key is in progress: retry it after Retry-After seconds, with the same key"}
)

// Keys remembers requests made under idempotency keys.
type Keys struct {
	store store.Store
	// TTL is how long a key is remembered; Hold is how long a request holds
	// its key before a retry may take over (longer than any request runs).
	TTL, Hold time.Duration
	Now       func() time.Time
}

// New returns the keys kept in s, remembered for ttl.
func New(s store.Store, ttl time.Duration) (*Keys, error) {
	if s == nil || ttl <= 0 {
		return nil, errors.New("idempotency: a store and a time to live are required")
	}
	return &Keys{store: s, TTL: ttl, Hold: 60 * time.Second, Now: time.Now}, nil
}

// Answer is the first answer to a request: its HTTP status and body.
type Answer struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

type record struct {
	Hash     string    `json:"hash"`      // of the request
	ObjectID string    `json:"object_id"` // what the request makes
	Locked   time.Time `json:"locked"`    // held until then
	Answer   *Answer   `json:"answer,omitempty"`
}

// Claim is a request's hold on its key.
type Claim struct {
	key      store.Key
	version  int64
	hash     string
	ObjectID string // the ID of the object to make: the same on every retry
}

// ValidKey checks an Idempotency-Key header's value.
func ValidKey(key string) error {
	if len(key) > 255 || strings.TrimSpace(key) == "" {
		return apperr.Field("Idempotency-Key", "must be 1 to 255 characters")
	}
	return nil
}

// Begin claims key for a request of a merchant in a scope ("sessions",
// "refunds:pay_..."), request being its canonical form. It returns the
// first answer when the same request finished before, or a claim to go on
// with, whose ObjectID is newID() the first time and the same ID after.
func (k *Keys) Begin(ctx context.Context, scope, merchant, key string, request []byte, newID func() string) (*Answer, *Claim, error) {
	if err := ValidKey(key); err != nil {
		return nil, nil, err
	}
	kh := sha256.Sum256([]byte(scope + "|" + merchant + "|" + key))
	rh := sha256.Sum256(request)
	c := &Claim{key: store.K("idem", hex.EncodeToString(kh[:])), hash: hex.EncodeToString(rh[:])}
	for {
		now := k.Now()
		r, err := k.store.Get(ctx, c.key)
		rec := record{Hash: c.hash}
		switch {
		case errors.Is(err, store.ErrNotFound):
			c.version, c.ObjectID = 0, newID()
		case err != nil:
			return nil, nil, err
		default:
			if err := json.Unmarshal(r.Value, &rec); err != nil {
				return nil, nil, fmt.Errorf("idempotency record: %w", err)
			}
			if rec.Hash != c.hash {
				return nil, nil, ErrMismatch
			}
			if rec.Answer != nil {
				return rec.Answer, nil, nil
			}
			if now.Before(rec.Locked) {
				return nil, nil, ErrInProgress
			}
			c.version, c.ObjectID = r.Version, rec.ObjectID // its holder died: go on with its ID
		}
		rec.ObjectID, rec.Locked = c.ObjectID, now.Add(k.Hold)
		b, _ := json.Marshal(rec)
		err = k.store.Commit(ctx, store.Op{Key: c.key, Value: b, IfVersion: c.version, TTL: k.TTL})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		c.version++
		return nil, c, nil
	}
}

// Finish keeps a's answer for the claim's request: retries get it.
func (k *Keys) Finish(ctx context.Context, c *Claim, a Answer) error {
	b, _ := json.Marshal(record{Hash: c.hash, ObjectID: c.ObjectID, Answer: &a})
	return k.store.Commit(ctx, store.Op{Key: c.key, Value: b, IfVersion: c.version, TTL: k.TTL})
}

// Release lets the key go without an answer (the request made nothing, or
// may be retried as it is): a retry goes on at once, with the same ID.
func (k *Keys) Release(ctx context.Context, c *Claim) error {
	b, _ := json.Marshal(record{Hash: c.hash, ObjectID: c.ObjectID})
	return k.store.Commit(ctx, store.Op{Key: c.key, Value: b, IfVersion: c.version, TTL: k.TTL})
}

// Abandon forgets the key: the request was refused and made nothing, so the
// key may be used again, for any request.
func (k *Keys) Abandon(ctx context.Context, c *Claim) error {
	return k.store.Commit(ctx, store.Op{Key: c.key, Delete: true, IfVersion: c.version})
}
