// Package vault keeps card numbers sealed and hands out tokens for them.
//
// Envelope encryption: a key-encrypting key (KEK, outside the store) wraps
// versioned data keys (DEKs, inside the store); each card record is sealed
// with AES-256-GCM under the newest DEK, with the token and the merchant bound
// in as additional data, so a ciphertext cannot be moved to another record.
// A keyed HMAC fingerprint recognises a card without decrypting it. CVVs are
// held sealed with a short time to live and taken once.
package vault

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/store"
)

// Vault tokenizes and detokenizes cards.
type Vault struct {
	store store.Store
	kek   KEK
	Now   func() time.Time
	// OnReencrypt, when set, is called after each record Reencrypt moves
	// (progress reports; tests use it to interrupt a run).
	OnReencrypt func()

	mu   sync.RWMutex
	ring *ring
}

// Open loads the keyring from the store (creating it on a new store) and
// checks that the KEK opens it.
func Open(ctx context.Context, s store.Store, kek KEK) (*Vault, error) {
	v := &Vault{store: s, kek: kek, Now: time.Now}
	r, err := loadRing(ctx, s, kek, v.Now())
	if err != nil {
		return nil, err
	}
	v.ring = r
	return v, nil
}

func (v *Vault) current() *ring {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.ring
}

// reload rereads the keyring, for a key version another replica added.
func (v *Vault) reload(ctx context.Context) (*ring, error) {
	v.mu.RLock()
	kek := v.kek
	v.mu.RUnlock()
	r, err := loadRing(ctx, v.store, kek, v.Now())
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.ring = r
	v.mu.Unlock()
	return r, nil
}

// open decrypts with the cached ring, rereading it once when the ciphertext
// names a key version the cache does not have.
func (v *Vault) open(ctx context.Context, sealed, ad []byte) ([]byte, error) {
	r := v.current()
	if kv, ok := keyVersionOf(sealed); ok && r.aeads[kv] == nil {
		var err error
		if r, err = v.reload(ctx); err != nil {
			return nil, err
		}
	}
	return r.open(sealed, ad)
}

// Card is what the vault keeps of a card.
type Card struct {
	PAN    card.PAN
	Expiry card.Expiry
	Name   string
}

// Info is what may be shown about a stored card: never more than the first
// six and the last four digits.
type Info struct {
	Token       string     `json:"token"`
	Merchant    string     `json:"-"`
	Brand       card.Brand `json:"brand"`
	BIN         string     `json:"-"`
	Last4       string     `json:"last4"`
	ExpMonth    int        `json:"exp_month"`
	ExpYear     int        `json:"exp_year"`
	Fingerprint string     `json:"fingerprint"`
	Created     time.Time  `json:"-"`
}

// record is the stored card: the sealed PAN and name, and what may be shown.
type record struct {
	Token       string     `json:"token"`
	Merchant    string     `json:"merchant"`
	Brand       card.Brand `json:"brand"`
	BIN         string     `json:"bin"`
	Last4       string     `json:"last4"`
	ExpMonth    int        `json:"exp_month"`
	ExpYear     int        `json:"exp_year"`
	Fingerprint string     `json:"fingerprint"`
	KeyVersion  uint32     `json:"key_version"`
	Sealed      []byte     `json:"sealed"`
	Created     time.Time  `json:"created"`
}

type secret struct {
	PAN  string `json:"pan"`
	Name string `json:"name"`
}

// ErrNotFound is returned for an unknown token, or a token of another merchant.
var ErrNotFound = apperr.E(apperr.NotFound, "no such token")

const tokenPrefix = "tok_"

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewID returns prefix + 26 base32 characters of 128 random bits.
func NewID(prefix string) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return prefix + strings.ToLower(b32.EncodeToString(b))
}

// ValidToken reports whether s looks like a token (so bad input is refused
// before it reaches the store).
func ValidToken(s string) bool { return ValidID(s, tokenPrefix) }

// ValidID reports whether s is prefix followed by an ID that NewID makes.
func ValidID(s, prefix string) bool {
	if !strings.HasPrefix(s, prefix) || len(s) != len(prefix)+26 {
		return false
	}
	for _, c := range s[len(prefix):] {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

func cardAD(merchant, token string) []byte {
	return []byte("paypage/card/v1|" + merchant + "|" + token)
}
func cvvAD(merchant, ref string) []byte { return []byte("paypage/cvv/v1|" + merchant + "|" + ref) }

func cardKey(token string) store.Key { return store.K("card", token) }

// Fingerprint is a keyed hash of the PAN for one merchant: the same card gives
// the same fingerprint there, and different ones at different merchants.
func (v *Vault) Fingerprint(merchant string, pan card.PAN) string {
	m := hmac.New(sha256.New, v.current().fpKey)
	m.Write([]byte("merchant|" + merchant + "|" + pan.Digits()))
	return "fp_" + hex.EncodeToString(m.Sum(nil)[:12])
}

// CardKey is a keyed hash of the PAN alone, for limits across merchants
// (card-testing protection). It is never shown.
func (v *Vault) CardKey(pan card.PAN) string {
	m := hmac.New(sha256.New, v.current().fpKey)
	m.Write([]byte("card|" + pan.Digits()))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Tokenize seals a card for a merchant and returns its new token's Info.
func (v *Vault) Tokenize(ctx context.Context, merchant string, c Card) (Info, error) {
	if merchant == "" || c.PAN.IsZero() {
		return Info{}, apperr.E(apperr.Invalid, "tokenize needs a merchant and a card")
	}
	token := NewID(tokenPrefix)
	r := v.current()
	plain, _ := json.Marshal(secret{PAN: c.PAN.Digits(), Name: c.Name})
	defer clear(plain)
	rec := record{
		Token: token, Merchant: merchant, Brand: c.PAN.Brand(), BIN: c.PAN.BIN(), Last4: c.PAN.Last4(),
		ExpMonth: c.Expiry.Month, ExpYear: c.Expiry.Year, Fingerprint: v.Fingerprint(merchant, c.PAN),
		KeyVersion: r.active,
		Sealed:     r.seal(plain, cardAD(merchant, token)), Created: v.Now().UTC(),
	}
	b, _ := json.Marshal(rec)
	if err := v.store.Commit(ctx, store.Create(cardKey(token), b, 0)); err != nil {
		return Info{}, err
	}
	return rec.info(), nil
}

func (r record) info() Info {
	return Info{
		Token: r.Token, Merchant: r.Merchant, Brand: r.Brand, BIN: r.BIN, Last4: r.Last4,
		ExpMonth: r.ExpMonth, ExpYear: r.ExpYear, Fingerprint: r.Fingerprint, Created: r.Created,
	}
}

func (v *Vault) load(ctx context.Context, token string) (record, int64, error) {
	if !ValidToken(token) {
		return record{}, 0, ErrNotFound
	}
	st, err := v.store.Get(ctx, cardKey(token))
	if errors.Is(err, store.ErrNotFound) {
		return record{}, 0, ErrNotFound
	}
	if err != nil {
		return record{}, 0, err
	}
	var rec record
	if err := json.Unmarshal(st.Value, &rec); err != nil {
		return record{}, 0, ErrCorrupt
	}
	return rec, st.Version, nil
}

// Info returns what may be shown of a merchant's token.
func (v *Vault) Info(ctx context.Context, merchant, token string) (Info, error) {
	rec, _, err := v.load(ctx, token)
	if err != nil {
		return Info{}, err
	}
	if rec.Merchant != merchant {
		return Info{}, ErrNotFound
	}
	return rec.info(), nil
}

// Detokenize opens a merchant's token. A token of another merchant is not found.
func (v *Vault) Detokenize(ctx context.Context, merchant, token string) (Card, Info, error) {
	rec, _, err := v.load(ctx, token)
	if err != nil {
		return Card{}, Info{}, err
	}
	if rec.Merchant != merchant {
		return Card{}, Info{}, ErrNotFound
	}
	return v.unseal(ctx, rec)
}

// Lookup opens any token, for an authorized processor (which charges cards of
// every merchant it serves). The record's own merchant is bound in its seal.
func (v *Vault) Lookup(ctx context.Context, token string) (Card, Info, error) {
	rec, _, err := v.load(ctx, token)
	if err != nil {
		return Card{}, Info{}, err
	}
	return v.unseal(ctx, rec)
}

// ErrNotAllowed is wrapped in the "no such token" answer of LookupFor to a
// token of a merchant the caller may not read.
var ErrNotAllowed = errors.New("the token's merchant is not allowed to this caller")

// LookupFor is Lookup for a caller allowed the cards of some merchants only
// (a processor): a token of another merchant is not found, as an unknown
// one, and is never decrypted; the Info then names only the token and its
// merchant, for the audit trail.
func (v *Vault) LookupFor(ctx context.Context, token string, allowed func(merchant string) bool) (Card, Info, error) {
	rec, _, err := v.load(ctx, token)
	if err != nil {
		return Card{}, Info{}, err
	}
	if !allowed(rec.Merchant) {
		return Card{}, Info{Token: rec.Token, Merchant: rec.Merchant}, apperr.Wrap(apperr.NotFound, ErrNotAllowed, "%s", ErrNotFound.Message)
	}
	return v.unseal(ctx, rec)
}

func (v *Vault) unseal(ctx context.Context, rec record) (Card, Info, error) {
	plain, err := v.open(ctx, rec.Sealed, cardAD(rec.Merchant, rec.Token))
	if err != nil {
		return Card{}, Info{}, err
	}
	defer clear(plain)
	var s secret
	if err := json.Unmarshal(plain, &s); err != nil {
		return Card{}, Info{}, ErrCorrupt
	}
	pan, err := card.ParsePAN(s.PAN)
	if err != nil {
		return Card{}, Info{}, ErrCorrupt
	}
	return Card{PAN: pan, Name: s.Name, Expiry: card.Expiry{Month: rec.ExpMonth, Year: rec.ExpYear}}, rec.info(), nil
}

// CVVKey is where a held CVV lives; its group keeps it beside the payment it serves.
func CVVKey(ref, group string) store.Key { return store.Key{Kind: "cvv", ID: ref, Group: group} }

// SealCVV returns the op that holds a CVV sealed for ttl under key, to commit
// with the state change that needs it. ref names its use (an attempt).
func (v *Vault) SealCVV(merchant string, key store.Key, cvv card.CVV, ttl time.Duration) store.Op {
	sealed := v.current().seal([]byte(cvv.Digits()), cvvAD(merchant, key.ID))
	return store.Op{Key: key, Value: sealed, IfVersion: store.Any, TTL: ttl}
}

// HoldCVV holds a CVV sealed for ttl.
func (v *Vault) HoldCVV(ctx context.Context, merchant string, key store.Key, cvv card.CVV, ttl time.Duration) error {
	return v.store.Commit(ctx, v.SealCVV(merchant, key, cvv, ttl))
}

// ErrCVVGone means the held CVV expired or was used already.
var ErrCVVGone = apperr.E(apperr.NotFound, "the security code is no longer held")

// TakeCVV returns a held CVV and deletes it in the same step.
func (v *Vault) TakeCVV(ctx context.Context, merchant string, key store.Key) (card.CVV, error) {
	sealed, err := v.store.Take(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return card.CVV{}, ErrCVVGone
	}
	if err != nil {
		return card.CVV{}, err
	}
	plain, err := v.open(ctx, sealed, cvvAD(merchant, key.ID))
	if err != nil {
		return card.CVV{}, err
	}
	return card.NewCVV(string(plain)), nil
}

// SealSecret seals a non-card secret (a webhook signing secret, say) under the
// active data key, bound to purpose.
func (v *Vault) SealSecret(purpose string, plain []byte) []byte {
	return v.current().seal(plain, []byte("paypage/secret/v1|"+purpose))
}

// OpenSecret opens what SealSecret sealed for the same purpose.
func (v *Vault) OpenSecret(ctx context.Context, purpose string, sealed []byte) ([]byte, error) {
	return v.open(ctx, sealed, []byte("paypage/secret/v1|"+purpose))
}

// DeriveKey returns a 32-byte key for a purpose (CSRF tokens, say), derived
// from the keyring so that every replica derives the same one.
func (v *Vault) DeriveKey(purpose string) []byte {
	m := hmac.New(sha256.New, v.current().fpKey)
	m.Write([]byte("derive|" + purpose))
	return m.Sum(nil)
}

// heldAD binds a held secret to its kind, merchant and the attempt it serves
// ("paypage/cvv/v1|..." for a security code, as cvvAD).
func heldAD(kind, merchant, ref string) []byte {
	return []byte("paypage/" + kind + "/v1|" + merchant + "|" + ref)
}

// SealHeld seals a secret that waits for an attempt (a security code, a 3-D
// Secure authentication value) under the active data key, bound to its kind,
// merchant and attempt: it opens for none other.
func (v *Vault) SealHeld(kind, merchant, ref string, plain []byte) []byte {
	return v.current().seal(plain, heldAD(kind, merchant, ref))
}

// OpenHeld opens what SealHeld sealed for the same kind, merchant and attempt.
func (v *Vault) OpenHeld(ctx context.Context, kind, merchant, ref string, sealed []byte) ([]byte, error) {
	return v.open(ctx, sealed, heldAD(kind, merchant, ref))
}
