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
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/store"
)

// Vault tokenizes and detokenizes cards, and seals other secrets. It starts
// sealed when it is made without a master key (NewSealed): every operation
// then answers ErrSealed until Unseal is given the key.
type Vault struct {
	store store.Store
	opts  Options
	log   *slog.Logger
	Now   func() time.Time
	// Sleep waits d, or until ctx ends (keys retire's settle times); tests
	// give it their settable clock's.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnReencrypt, when set, is called after each record Reencrypt moves
	// (progress reports; tests use it to interrupt a run).
	OnReencrypt func()

	mu   sync.RWMutex
	kek  KEK   // nil while sealed
	ring *ring // nil while sealed
	head int64 // the head record's version when the ring was read
	// seen is when this process first read that head: keys retire counts
	// its settle time from there, on this process's own clock.
	seen time.Time
	// confirmed is when a read of the head last showed the ring current
	// (taken before the read was sent); zero after a failed read. Nothing is
	// sealed under a ring not confirmed within SealFresh.
	confirmed time.Time
	refresh   sync.Mutex // one synchronous refresh at a time

	seals           counter
	budgetRotations atomic.Int64
	shares          unsealer
	holder          holderState
}

// Options are a vault's settings.
type Options struct {
	// SealBudget is how many values one data key may seal (AES-GCM with
	// random nonces); the vault rotates before a key reaches it. 0: DefaultSealBudget.
	SealBudget uint64
	// Logger receives warnings (a key near its budget); nil: slog.Default().
	Logger *slog.Logger
	// UnsealThreshold is how many key shares AddShare needs (--unseal-shares).
	UnsealThreshold int
	// CardReview, when set, files each new card in the store's due index this
	// long after it is sealed, for the retention review (retention.go).
	CardReview time.Duration
	// TombstoneTTL is how long a deleted card's tombstone answers
	// "token_deleted" (0: DefaultTombstoneTTL).
	TombstoneTTL time.Duration
	// ReloadKEK reads the master key again from where it came from (its
	// file), so a replica picks up the new key after keys rewrap without a
	// restart. Nil: it cannot (a key from the environment, or from shares).
	ReloadKEK func() (KEK, error)
	// OnBudgetRotation is told of each rotation this process makes because
	// a data key neared its seal budget (the audit trail records it). It is
	// called with the seal count's lock held: it must not seal, nor ask for
	// SealStats.
	OnBudgetRotation func(ctx context.Context, from, to uint32, seals uint64)
}

// DefaultSealBudget is 2^30 seals per data key, far below the 2^32 random
// nonces NIST SP 800-38D allows one AES-GCM key.
const DefaultSealBudget = 1 << 30

// SealFresh is how recently a replica must have read the keyring's head to
// seal under its ring: a replica that cannot read it (a partition, a
// master key it lacks) stops sealing within this time instead of going on
// under a version that keys retire may have destroyed. RetireSettle is
// longer.
const SealFresh = 5 * time.Second

// ErrSealed is returned by every operation of a sealed vault.
var ErrSealed = apperr.E(apperr.Unavailable, "the vault is sealed: the custodians must unseal it")

// errStale is what a seal answers when the ring could not be confirmed.
func errStale(err error) error {
	return apperr.Wrap(apperr.Unavailable, err, "the keyring could not be confirmed current: nothing is sealed under a key that may be retired; retry")
}

// Open loads the keyring from the store (creating it on a new store) and
// checks that the KEK opens it.
func Open(ctx context.Context, s store.Store, kek KEK) (*Vault, error) {
	return OpenWith(ctx, s, kek, Options{})
}

// OpenWith is Open with settings.
func OpenWith(ctx context.Context, s store.Store, kek KEK, opts Options) (*Vault, error) {
	v := NewSealed(s, opts)
	if err := v.Unseal(ctx, kek); err != nil {
		return nil, err
	}
	return v, nil
}

// NewSealed returns a vault without its master key: sealed until Unseal.
func NewSealed(s store.Store, opts Options) *Vault {
	if opts.SealBudget == 0 {
		opts.SealBudget = DefaultSealBudget
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Vault{store: s, opts: opts, log: opts.Logger, Now: time.Now, Sleep: sleep}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Unseal opens the keyring with kek: ErrWrongKEK when kek is not the master
// key the store's keyring was wrapped with.
func (v *Vault) Unseal(ctx context.Context, kek KEK) error {
	asked := v.Now()
	head, err := v.readHead(ctx)
	if err != nil {
		return err
	}
	r, err := loadRing(ctx, v.store, kek, v.Now())
	if err != nil {
		return err
	}
	v.mu.Lock()
	old := v.ring
	v.kek, v.ring, v.head, v.seen, v.confirmed = kek, r, head, v.Now(), asked
	v.mu.Unlock()
	if old != nil {
		old.drop()
	}
	return nil
}

// Seal drops the master key and the opened keys, and clears the key bytes
// the vault holds (at once, or as each request in flight lets go of them);
// until Unseal every operation answers ErrSealed.
func (v *Vault) Seal() {
	v.mu.Lock()
	old := v.ring
	v.kek, v.ring, v.confirmed = nil, nil, time.Time{}
	v.mu.Unlock()
	if old != nil {
		old.drop()
	}
}

// Sealed reports whether the vault lacks its master key.
func (v *Vault) Sealed() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.ring == nil
}

// KEKID names the keyring's master key, as the store records it ("" while
// sealed): what a rebuilt master key must match.
func (v *Vault) KEKID(ctx context.Context) (string, error) {
	rec, err := v.store.Get(ctx, keyringKey)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var doc keyringDoc
	if err := json.Unmarshal(rec.Value, &doc); err != nil {
		return "", apperr.E(apperr.Internal, "the keyring record in the store is corrupt")
	}
	return doc.KEKID, nil
}

// acquire returns the ring in use, held: the caller releases it.
func (v *Vault) acquire() (*ring, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.ring == nil {
		return nil, ErrSealed
	}
	v.ring.hold()
	return v.ring, nil
}

// sealing returns the ring to seal under, held: one confirmed current
// within SealFresh, after a synchronous read of the head when the last is
// older. A replica that cannot confirm its ring seals nothing (503).
func (v *Vault) sealing(ctx context.Context) (*ring, error) {
	if err := v.fresh(ctx); err != nil {
		return nil, err
	}
	return v.acquire()
}

// confirmedWithin reports whether the ring was confirmed within SealFresh.
func (v *Vault) confirmedWithin() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	age := v.Now().Sub(v.confirmed)
	return v.ring != nil && !v.confirmed.IsZero() && age >= 0 && age < SealFresh // a clock set back confirms again
}

// fresh confirms the ring, reading the head when the last confirmation is
// older than SealFresh (one reader at a time; the others wait for it).
func (v *Vault) fresh(ctx context.Context) error {
	if v.confirmedWithin() {
		return nil
	}
	v.refresh.Lock()
	defer v.refresh.Unlock()
	if v.confirmedWithin() {
		return nil
	}
	if v.Sealed() {
		return ErrSealed
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := v.Refresh(ctx); err != nil {
		return errStale(err)
	}
	if !v.confirmedWithin() {
		if v.Sealed() {
			return ErrSealed
		}
		return errStale(errors.New("the head was read but the ring not confirmed"))
	}
	return nil
}

// Ready reports whether the vault can seal: ErrSealed, or why its keyring
// could not be confirmed current (readiness probes take the replica out).
func (v *Vault) Ready(ctx context.Context) error { return v.fresh(ctx) }

// unconfirm records a failed read: nothing is sealed until one succeeds.
func (v *Vault) unconfirm() {
	v.mu.Lock()
	v.confirmed = time.Time{}
	v.mu.Unlock()
}

func (v *Vault) readHead(ctx context.Context) (int64, error) {
	rec, err := v.store.Get(ctx, headKey)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	return rec.Version, err
}

// reload rereads the keyring, for a key version another process added or
// retired, and returns it held. A keyring that keys rewrap wrapped under
// another master key is opened with that key when Options.ReloadKEK finds
// it (the key file was replaced); otherwise, while its versions are the keys
// this process holds, it goes on with them (and says so), and once a version
// it lacks appears it fails: the replica then seals nothing.
func (v *Vault) reload(ctx context.Context) (*ring, error) {
	v.mu.RLock()
	kek, cur := v.kek, v.ring
	if cur != nil {
		cur.hold()
	}
	v.mu.RUnlock()
	if kek == nil || cur == nil {
		return nil, ErrSealed
	}
	defer cur.release()
	asked := v.Now()
	head, err := v.readHead(ctx)
	if err != nil {
		return nil, err
	}
	rec, err := v.store.Get(ctx, keyringKey)
	if err != nil {
		return nil, err
	}
	use := kek
	r, err := openRing(rec, kek, v.Now())
	if errors.Is(err, ErrWrongKEK) {
		r, use, err = v.rewrapped(rec, kek, cur, head)
	}
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	if v.kek != kek { // sealed or rewrapped here meanwhile
		sealed := v.kek == nil
		v.mu.Unlock()
		r.drop()
		if sealed {
			return nil, ErrSealed
		}
		return nil, apperr.E(apperr.Unavailable, "the master key changed meanwhile: retry")
	}
	old := v.ring
	if head != v.head {
		v.seen = v.Now()
	}
	v.kek, v.ring, v.head, v.confirmed = use, r, head, asked
	r.hold()
	v.mu.Unlock()
	old.drop()
	return r, nil
}

// rewrapped opens a keyring that kek does not open: with the master key
// Options.ReloadKEK reads now, when that is the ring's; else with the keys
// cur holds, when the ring has no version cur lacks.
func (v *Vault) rewrapped(rec store.Record, kek KEK, cur *ring, head int64) (*ring, KEK, error) {
	var doc keyringDoc
	if err := json.Unmarshal(rec.Value, &doc); err != nil {
		return nil, nil, ErrWrongKEK
	}
	if v.opts.ReloadKEK != nil {
		if next, err := v.opts.ReloadKEK(); err == nil && next.ID() == doc.KEKID {
			if r, err := openRing(rec, next, v.Now()); err == nil {
				v.log.Info("picked up the new master key the keyring is wrapped with", "kek", next.ID())
				return r, next, nil
			}
		}
	}
	if cur == nil {
		return nil, nil, ErrWrongKEK
	}
	r, ok := cur.carry(doc, rec.Version, v.Now())
	if !ok {
		return nil, nil, apperr.Wrap(apperr.Unavailable, ErrWrongKEK, "the keyring has a key version wrapped under master key %s, and this replica holds %s: give it the new master key", doc.KEKID, kek.ID())
	}
	if head != v.head {
		v.log.Warn("the keyring is wrapped under another master key (keys rewrap): going on with the keys held; give this replica the new master key before the next keys rotate",
			"keyring_kek", doc.KEKID, "held_kek", kek.ID())
	}
	return r, kek, nil
}

// wrapping returns the master key to wrap keys of r's keyring with: the
// one it is wrapped with. A replica still on the old master key after keys
// rewrap (it goes on with the keys it holds) wraps nothing: a key it wrapped
// would not open for the others.
func (v *Vault) wrapping(r *ring) (KEK, error) {
	v.mu.RLock()
	kek := v.kek
	v.mu.RUnlock()
	if kek == nil {
		return nil, ErrSealed
	}
	if kek.ID() != r.doc.KEKID {
		return nil, apperr.E(apperr.Conflict, "this process holds master key %s, and the keyring is wrapped under %s (keys rewrap): give it the new key first", kek.ID(), r.doc.KEKID)
	}
	return kek, nil
}

// Refresh reads the keyring's small head record and, when another process
// changed the ring (a rotation, a retirement), rereads the ring. It reports
// whether it did. A failed read leaves the ring unconfirmed: nothing is
// sealed until a read succeeds.
func (v *Vault) Refresh(ctx context.Context) (bool, error) {
	v.mu.RLock()
	sealed, seen := v.ring == nil, v.head
	behind := !sealed && v.opts.ReloadKEK != nil && v.kek.ID() != v.ring.doc.KEKID
	v.mu.RUnlock()
	if sealed {
		return false, nil
	}
	asked := v.Now()
	head, err := v.readHead(ctx)
	if err != nil {
		v.unconfirm()
		return false, err
	}
	if head == seen && !behind {
		v.mu.Lock()
		if v.head == head && v.ring != nil {
			v.confirmed = asked
		}
		v.mu.Unlock()
		return false, nil
	}
	r, err := v.reload(ctx)
	if err != nil {
		if !errors.Is(err, ErrSealed) {
			v.unconfirm()
		}
		return false, err
	}
	r.release()
	return true, nil
}

// Watch calls Refresh every interval until ctx ends, so a key rotated by
// another process is used here within that interval, and records in the
// store which master key this replica holds (Announce).
func (v *Vault) Watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	defer v.withdraw()
	v.announceDue(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if changed, err := v.Refresh(ctx); err != nil && ctx.Err() == nil {
			v.log.Warn("rereading the keyring: sealing nothing until it is read", "err", err.Error())
		} else if changed {
			if r, err := v.acquire(); err == nil {
				v.log.Info("keyring changed: sealing under the active data key", "active_version", r.active)
				r.release()
			}
		}
		v.announceDue(ctx)
	}
}

// open decrypts with the cached ring, rereading it once when the ciphertext
// names a key version the cache does not have.
func (v *Vault) open(ctx context.Context, sealed, ad []byte) ([]byte, error) {
	r, err := v.acquire()
	if err != nil {
		return nil, err
	}
	if kv, ok := KeyVersionOf(sealed); ok && r.terms[kv] == nil {
		r.release()
		if r, err = v.reload(ctx); err != nil {
			return nil, err
		}
	}
	defer r.release()
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
	BIN         string     `json:"bin"` // only what card.Mask shows: none under 16 digits
	Last4       string     `json:"last4"`
	ExpMonth    int        `json:"exp_month"`
	ExpYear     int        `json:"exp_year"`
	Fingerprint string     `json:"fingerprint"`
	// FPVersion is the fingerprint key version under which this card is
	// recognised again: its fingerprint's own, or the one of an alias that
	// re-encryption made (0: 1, from before keys had terms).
	FPVersion  uint32    `json:"fp_version,omitempty"`
	KeyVersion uint32    `json:"key_version"`
	Sealed     []byte    `json:"sealed"`
	Created    time.Time `json:"created"`
	// Owner is the session the card was entered on, for the retention review.
	Owner string `json:"owner,omitempty"`
}

func (r record) fpVersion() uint32 { return max(1, r.FPVersion) }

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

// What the vault seals, each kind bound to its own additional data. Seal
// refuses other kinds, so that every kind has a counter in keys status
// before a key version that sealed it can be retired.
const (
	KindCard   = "card"   // a card record's PAN and name, bound to merchant|token
	KindCVV    = "cvv"    // a held security code, bound to merchant|attempt
	KindSecret = "secret" // a webhook signing secret and the like, bound to its purpose
	KindAuth   = "auth"   // a 3-D Secure authentication value, bound to its record
)

var sealKinds = []string{KindCard, KindCVV, KindSecret, KindAuth}

// ad is the additional data of a sealed value: its kind and what it is bound
// to, so a ciphertext moved to another record or kind does not open.
func ad(kind, bind string) []byte { return []byte("paypage/" + kind + "/v1|" + bind) }

func cardBind(merchant, token string) string { return merchant + "|" + token }

func cardKey(token string) store.Key { return store.K("card", token) }

// fingerprintKey is an alias: a card's keyed hash under a newer fingerprint
// key, holding the fingerprint the card was first shown with.
func fingerprintKey(fp string) store.Key { return store.K("fingerprint", fp) }

// SealValue seals plain under the active data key as a value of kind, bound to
// bind (the record it belongs to): it opens only with the same kind and bind.
// The seal is counted against the key's budget.
func (v *Vault) SealValue(kind, bind string, plain []byte) ([]byte, error) {
	if !slices.Contains(sealKinds, kind) {
		return nil, apperr.E(apperr.Internal, "vault: unknown sealed kind %q", kind)
	}
	ctx := context.Background()
	r, err := v.sealing(ctx)
	if err != nil {
		return nil, err
	}
	defer r.release()
	if err := v.count(ctx, r, kind); err != nil {
		return nil, err
	}
	return r.seal(plain, ad(kind, bind)), nil
}

// OpenValue opens what SealValue sealed with the same kind and bind.
func (v *Vault) OpenValue(ctx context.Context, kind, bind string, sealed []byte) ([]byte, error) {
	return v.open(ctx, sealed, ad(kind, bind))
}

// fingerprint returns the fingerprint to show for a card at a merchant, and
// the key version under which it is recognised. A card keeps the fingerprint
// it was first shown with across rotations: it is made under the oldest live
// fingerprint key, and an alias under a newer key (which re-encryption
// writes before the old key can be retired) carries the first one forward.
func (v *Vault) fingerprint(ctx context.Context, r *ring, merchant string, pan card.PAN) (string, uint32, error) {
	msg := "merchant|" + merchant + "|" + pan.Digits()
	for _, kv := range r.doc.Versions {
		rec, err := v.store.Get(ctx, fingerprintKey(r.fingerprint(kv.Version, msg)))
		if err == nil {
			return string(rec.Value), kv.Version, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return "", 0, err
		}
	}
	return r.fingerprint(r.oldest, msg), r.oldest, nil
}

// CardKey is a keyed hash of the PAN alone, for limits across merchants
// (card-testing protection). It is never shown. It is made under the oldest
// live fingerprint key, so it stays the same across a rotation and changes
// once, when that key is retired ("" while sealed).
func (v *Vault) CardKey(pan card.PAN) string {
	r, err := v.acquire()
	if err != nil {
		return ""
	}
	defer r.release()
	m := hmac.New(sha256.New, r.terms[r.oldest].fp)
	m.Write([]byte("card|" + pan.Digits()))
	sum := hex.EncodeToString(m.Sum(nil)[:16])
	if r.oldest == 1 {
		return sum
	}
	return fmt.Sprintf("v%d_%s", r.oldest, sum)
}

// Tokenize seals a card for a merchant and returns its new token's Info.
func (v *Vault) Tokenize(ctx context.Context, merchant string, c Card) (Info, error) {
	return v.TokenizeFor(ctx, merchant, c, "")
}

// TokenizeFor is Tokenize for a card sealed on behalf of owner (the session
// it was entered on): the retention review asks the owner whether the card
// is used, and deletes it when it is not.
func (v *Vault) TokenizeFor(ctx context.Context, merchant string, c Card, owner string) (Info, error) {
	if merchant == "" || c.PAN.IsZero() {
		return Info{}, apperr.E(apperr.Invalid, "tokenize needs a merchant and a card")
	}
	r, err := v.sealing(ctx)
	if err != nil {
		return Info{}, err
	}
	defer r.release()
	fp, fpv, err := v.fingerprint(ctx, r, merchant, c.PAN)
	if err != nil {
		return Info{}, err
	}
	if err := v.count(ctx, r, KindCard); err != nil {
		return Info{}, err
	}
	token := NewID(tokenPrefix)
	plain, _ := json.Marshal(secret{PAN: c.PAN.Digits(), Name: c.Name})
	defer clear(plain)
	rec := record{
		Token: token, Merchant: merchant, Brand: c.PAN.Brand(), BIN: c.PAN.BIN(), Last4: c.PAN.Last4(),
		ExpMonth: c.Expiry.Month, ExpYear: c.Expiry.Year, Fingerprint: fp, FPVersion: fpv,
		KeyVersion: r.active, Sealed: r.seal(plain, ad(KindCard, cardBind(merchant, token))), Created: v.Now().UTC(), Owner: owner,
	}
	b, _ := json.Marshal(rec)
	op := store.Create(cardKey(token), b, 0)
	if owner != "" && v.opts.CardReview > 0 {
		op = op.At(rec.Created.Add(v.opts.CardReview))
	}
	if err := v.store.Commit(ctx, op); err != nil {
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
		return record{}, 0, v.deleted(ctx, token)
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
		return Info{}, hideDeleted(err, func(m string) bool { return m == merchant })
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
		return Card{}, Info{}, hideDeleted(err, func(m string) bool { return m == merchant })
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
	return v.LookupForAfter(ctx, token, allowed, nil)
}

// LookupForAfter is LookupFor that opens nothing before gate (when given)
// allows it: the caller does gate's work (spending its rate limit) while
// the record is read, and a refusal from gate is the answer, whatever the
// record.
func (v *Vault) LookupForAfter(ctx context.Context, token string, allowed func(merchant string) bool, gate func() error) (Card, Info, error) {
	rec, _, err := v.load(ctx, token)
	if gate != nil {
		if err := gate(); err != nil {
			return Card{}, Info{}, err
		}
	}
	if err != nil {
		return Card{}, Info{}, hideDeleted(err, allowed)
	}
	if !allowed(rec.Merchant) {
		return Card{}, Info{Token: rec.Token, Merchant: rec.Merchant}, apperr.Wrap(apperr.NotFound, ErrNotAllowed, "%s", ErrNotFound.Message)
	}
	return v.unseal(ctx, rec)
}

func (v *Vault) unseal(ctx context.Context, rec record) (Card, Info, error) {
	plain, err := v.open(ctx, rec.Sealed, ad(KindCard, cardBind(rec.Merchant, rec.Token)))
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
func (v *Vault) SealCVV(merchant string, key store.Key, cvv card.CVV, ttl time.Duration) (store.Op, error) {
	sealed, err := v.SealValue(KindCVV, cardBind(merchant, key.ID), []byte(cvv.Digits()))
	if err != nil {
		return store.Op{}, err
	}
	return store.Op{Key: key, Value: sealed, IfVersion: store.Any, TTL: ttl}, nil
}

// HoldCVV holds a CVV sealed for ttl.
func (v *Vault) HoldCVV(ctx context.Context, merchant string, key store.Key, cvv card.CVV, ttl time.Duration) error {
	op, err := v.SealCVV(merchant, key, cvv, ttl)
	if err != nil {
		return err
	}
	return v.store.Commit(ctx, op)
}

// ErrCVVGone means the held CVV expired or was used already.
var ErrCVVGone = apperr.E(apperr.NotFound, "the security code is no longer held")

// TakeCVV returns a held CVV and deletes it in the same step.
func (v *Vault) TakeCVV(ctx context.Context, merchant string, key store.Key) (card.CVV, error) {
	if v.Sealed() { // do not destroy a hold that could not be opened
		return card.CVV{}, ErrSealed
	}
	sealed, err := v.store.Take(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return card.CVV{}, ErrCVVGone
	}
	if err != nil {
		return card.CVV{}, err
	}
	plain, err := v.OpenValue(ctx, KindCVV, cardBind(merchant, key.ID), sealed)
	if err != nil {
		return card.CVV{}, err
	}
	return card.NewCVV(string(plain)), nil
}

// SealSecret seals a non-card secret (a webhook signing secret, say) under the
// active data key, bound to purpose: SealValue(KindSecret, purpose, plain).
func (v *Vault) SealSecret(purpose string, plain []byte) ([]byte, error) {
	return v.SealValue(KindSecret, purpose, plain)
}

// OpenSecret opens what SealSecret sealed for the same purpose.
func (v *Vault) OpenSecret(ctx context.Context, purpose string, sealed []byte) ([]byte, error) {
	return v.OpenValue(ctx, KindSecret, purpose, sealed)
}

// CSRFGrace is how long after a rotation forms made under the previous
// key version still post: the longest a payment session lives.
const CSRFGrace = 24 * time.Hour

// CSRFTags returns the HMAC-SHA256 of msg under each key CSRF tokens are
// accepted with: the active version's first (new tokens use it), then the
// previous version's (live, or kept after its retirement) until CSRFGrace
// after the rotation, so a form open in a tab survives a rotation and a
// retirement. The keys never leave the vault. Nil while sealed.
func (v *Vault) CSRFTags(msg []byte) [][]byte {
	r, err := v.acquire()
	if err != nil {
		return nil
	}
	defer r.release()
	a := r.terms[r.active]
	keys := [][]byte{a.csrf}
	if v.Now().Sub(a.created) < CSRFGrace {
		if p := r.terms[r.doc.previous()]; p != nil {
			keys = append(keys, p.csrf)
		} else if r.graceCSRF != nil { // retired, its CSRF key kept for the grace
			keys = append(keys, r.graceCSRF)
		}
	}
	tags := make([][]byte, len(keys))
	for i, k := range keys {
		m := hmac.New(sha256.New, k)
		m.Write(msg)
		tags[i] = m.Sum(nil)
	}
	return tags
}

// SealHeld seals a secret that waits for an attempt (a security code, a 3-D
// Secure authentication value: KindCVV, KindAuth) under the active data key,
// bound to its kind, merchant and attempt: it opens for none other. It is
// SealValue(kind, merchant+"|"+ref, plain), counted like every seal;
// ErrSealed while the vault is sealed.
func (v *Vault) SealHeld(kind, merchant, ref string, plain []byte) ([]byte, error) {
	return v.SealValue(kind, cardBind(merchant, ref), plain)
}

// OpenHeld opens what SealHeld sealed for the same kind, merchant and attempt.
func (v *Vault) OpenHeld(ctx context.Context, kind, merchant, ref string, sealed []byte) ([]byte, error) {
	return v.OpenValue(ctx, kind, cardBind(merchant, ref), sealed)
}
