// Package account keeps the merchants and processors that may call paypage's
// APIs, and their secret keys through their life: made, rolled (the old key
// kept valid for a while), expired, disabled and enabled again. A secret key
// is shown once, when it is made; only its SHA-256 is stored (the keys are
// long and random, so a slow password hash would add nothing but latency),
// and it is compared in constant time.
//
// A key names its owner ("sk_test_mer_..._<secret>"), so Authenticate is one
// read of the owner's record, which holds every key's hash, whether the owner
// is disabled, and, for a processor, the merchants it serves. Rev counts the
// changes that bear on authentication, so a cache can tell whether what it
// holds is still current by that one number.
package account

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/vault"
)

// Kinds of principal.
const (
	KindMerchant  = "merchant"
	KindProcessor = "processor"
)

// Key prefixes. Until a real connector exists every account is in test
// mode, and its keys say so.
const (
	MerchantKeyPrefix  = "sk_test_"
	ProcessorKeyPrefix = "psk_test_"
)

// TouchEvery is how often a key's last use is written: at most once a
// minute per key, so authentication stays a read.
const TouchEvery = time.Minute

// Principal is who a secret key belongs to, and what authentication found
// about it.
type Principal struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	// Merchants are the merchants a processor serves.
	Merchants []string `json:"merchants,omitempty"`
	// Rate is a processor's own detokenize rate a second; nil: the setting.
	Rate *int64 `json:"rate,omitempty"`
}

// String names the principal for audit records: "merchant:mer_...".
func (p Principal) String() string { return p.Kind + ":" + p.ID }

// Serves reports whether a processor serves a merchant.
func (p Principal) Serves(merchant string) bool { return slices.Contains(p.Merchants, merchant) }

// Key is one secret key as stored: its hash, never the key.
type Key struct {
	Hash     []byte    `json:"hash"`
	Hint     string    `json:"hint"` // the key's prefix and last four characters, to tell keys apart
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires,omitzero"` // zero: until it is rolled
	LastUsed time.Time `json:"last_used,omitzero"`
}

// live reports whether the key still opens the door at now.
func (k Key) live(now time.Time) bool { return k.Expires.IsZero() || now.Before(k.Expires) }

// Credentials are what authenticates a principal.
type Credentials struct {
	Disabled bool `json:"disabled,omitempty"`
	// Rev counts the changes that bear on authentication (a roll, a
	// disable or enable, a grant or revoke, a rate); a key's last use does
	// not change it.
	Rev  int64 `json:"rev"`
	Keys []Key `json:"keys"`
}

// Merchant is a shop.
type Merchant struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	WebhookURL    string    `json:"webhook_url,omitempty"`
	WebhookSecret []byte    `json:"webhook_secret_sealed,omitempty"`
	Created       time.Time `json:"created"`
	// FrameOrigins may show the merchant's payment pages in a frame (none:
	// no one may); see SetFrameOrigins.
	FrameOrigins []string `json:"frame_origins,omitempty"`
	Credentials
}

// Processor is an acquirer's backend that may detokenize the cards of the
// merchants it serves.
type Processor struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Created   time.Time `json:"created"`
	Merchants []string  `json:"merchants"`
	Rate      *int64    `json:"rate,omitempty"`
	Credentials
}

// Service manages accounts. It caches the records it reads for CacheFor.
type Service struct {
	store store.Store
	vault *vault.Vault
	Now   func() time.Time
	cache cache
}

// New returns a Service.
func New(s store.Store, v *vault.Vault) *Service { return &Service{store: s, vault: v, Now: time.Now} }

func randomSecret(prefix string) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

func hashKey(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func merchantKey(id string) store.Key  { return store.K("merchant", id) }
func processorKey(id string) store.Key { return store.K("processor", id) }

// recordKey is where a principal of a kind is stored.
func recordKey(kind, id string) store.Key {
	if kind == KindProcessor {
		return processorKey(id)
	}
	return merchantKey(id)
}

// newKey makes a secret key for a principal: the kind's prefix, the
// principal's ID, and 256 random bits. It returns the key and its record.
func (s *Service) newKey(kind, id string) (string, Key) {
	prefix := MerchantKeyPrefix
	if kind == KindProcessor {
		prefix = ProcessorKeyPrefix
	}
	secret := randomSecret(prefix + id + "_")
	return secret, Key{Hash: hashKey(secret), Hint: prefix + "..." + secret[len(secret)-4:], Created: s.Now().UTC()}
}

// parseKey reads the owner out of a secret key.
func parseKey(secret string) (kind, id string, ok bool) {
	var idPrefix, rest string
	switch {
	case strings.HasPrefix(secret, MerchantKeyPrefix):
		kind, idPrefix, rest = KindMerchant, "mer_", secret[len(MerchantKeyPrefix):]
	case strings.HasPrefix(secret, ProcessorKeyPrefix):
		kind, idPrefix, rest = KindProcessor, "prc_", secret[len(ProcessorKeyPrefix):]
	default:
		return "", "", false
	}
	body, ok := strings.CutPrefix(rest, idPrefix)
	if !ok {
		return "", "", false
	}
	i := strings.IndexByte(body, '_')
	if i <= 0 {
		return "", "", false
	}
	id = idPrefix + body[:i]
	return kind, id, recordKey(kind, id).Valid()
}

// ValidateWebhookURL accepts an absolute http or https URL.
func ValidateWebhookURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(s) > 2048 {
		return apperr.Field("webhook_url", "must be an absolute http(s) URL")
	}
	return nil
}

func validName(name string) error {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return apperr.Field("name", "a name of 1 to 200 characters is required")
	}
	return nil
}

// validRate accepts no rate (the setting) or a rate of 0 (no limit) or more.
func validRate(rate *int64) error {
	if rate != nil && *rate < 0 {
		return apperr.Field("rate", "must be 0 (no limit) or more calls a second")
	}
	return nil
}

// NewMerchant is what AddMerchant returns: the secrets appear here once.
type NewMerchant struct {
	ID            string `json:"id"`
	SecretKey     string `json:"secret_key"`
	WebhookSecret string `json:"webhook_secret"`
}

// AddMerchant creates a merchant with a new secret key and webhook secret.
func (s *Service) AddMerchant(ctx context.Context, name, webhookURL string) (NewMerchant, error) {
	if err := validName(name); err != nil {
		return NewMerchant{}, err
	}
	if err := ValidateWebhookURL(webhookURL); err != nil {
		return NewMerchant{}, err
	}
	id := vault.NewID("mer_")
	secret, key := s.newKey(KindMerchant, id)
	out := NewMerchant{ID: id, SecretKey: secret, WebhookSecret: randomSecret("whsec_")}
	sealed, err := s.vault.SealSecret(webhookPurpose(id), []byte(out.WebhookSecret))
	if err != nil {
		return NewMerchant{}, err
	}
	m := Merchant{
		ID: id, Name: strings.TrimSpace(name), WebhookURL: webhookURL, Created: s.Now().UTC(),
		WebhookSecret: sealed,
		Credentials:   Credentials{Rev: 1, Keys: []Key{key}},
	}
	b, _ := json.Marshal(m)
	if err := s.store.Commit(ctx, store.Create(merchantKey(id), b, 0)); err != nil {
		return NewMerchant{}, err
	}
	return out, nil
}

// ProcessorSpec is what a new processor is made with.
type ProcessorSpec struct {
	Name      string
	Merchants []string // the merchants it serves; none: it detokenizes nothing until granted
	Rate      *int64   // its own detokenize rate a second; nil: the setting
}

// NewProcessor is what AddProcessor returns: the secret appears here once.
type NewProcessor struct {
	ID        string   `json:"id"`
	SecretKey string   `json:"secret_key"`
	Merchants []string `json:"merchants"`
}

// AddProcessor creates a processor credential that serves the given
// merchants, each of which must exist.
func (s *Service) AddProcessor(ctx context.Context, spec ProcessorSpec) (NewProcessor, error) {
	if err := validName(spec.Name); err != nil {
		return NewProcessor{}, err
	}
	if err := validRate(spec.Rate); err != nil {
		return NewProcessor{}, err
	}
	merchants := []string{}
	for _, m := range spec.Merchants {
		if _, err := s.merchantForGrant(ctx, m); err != nil {
			return NewProcessor{}, err
		}
		if !slices.Contains(merchants, m) {
			merchants = append(merchants, m)
		}
	}
	id := vault.NewID("prc_")
	secret, key := s.newKey(KindProcessor, id)
	p := Processor{ID: id, Name: strings.TrimSpace(spec.Name), Created: s.Now().UTC(), Merchants: merchants, Rate: spec.Rate,
		Credentials: Credentials{Rev: 1, Keys: []Key{key}}}
	b, _ := json.Marshal(p)
	if err := s.store.Commit(ctx, store.Create(processorKey(id), b, 0)); err != nil {
		return NewProcessor{}, err
	}
	return NewProcessor{ID: id, SecretKey: secret, Merchants: merchants}, nil
}

// merchantForGrant checks that a merchant a processor is to serve exists.
func (s *Service) merchantForGrant(ctx context.Context, id string) (Merchant, error) {
	m, err := s.Merchant(ctx, id)
	if apperr.Is(err, apperr.NotFound) {
		return m, apperr.Field("merchant", "no merchant %q", id)
	}
	return m, err
}

// ErrUnauthorized is the one answer to a missing, malformed, unknown,
// expired or disabled key: the caller learns nothing about which.
var ErrUnauthorized = apperr.E(apperr.Unauthorized, "a valid secret key is required: Authorization: Bearer <secret key>")

// Authenticate returns the principal a secret key belongs to. It is one
// read of the owner's record; once a minute per key it also writes when the
// key was last used.
func (s *Service) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if len(secret) < 20 || len(secret) > 200 {
		return Principal{}, ErrUnauthorized
	}
	kind, id, ok := parseKey(secret)
	if !ok {
		return Principal{}, ErrUnauthorized
	}
	k := recordKey(kind, id)
	e, hit, err := s.record(ctx, k)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, ErrUnauthorized
	}
	if err != nil {
		return Principal{}, err
	}
	now := s.Now()
	h := hashKey(secret)
	found := findKey(e.creds.Keys, h)
	if found < 0 && hit {
		// A key made since the record was cached (a roll on another
		// replica) is good at once: read the record again.
		s.forget(k)
		if e, _, err = s.record(ctx, k); errors.Is(err, store.ErrNotFound) {
			return Principal{}, ErrUnauthorized
		} else if err != nil {
			return Principal{}, err
		}
		found = findKey(e.creds.Keys, h)
	}
	rec := e.creds
	if found < 0 || rec.Disabled || !rec.Keys[found].live(now) {
		return Principal{}, ErrUnauthorized
	}
	if now.Sub(s.lastTouch(e, h, rec.Keys[found].LastUsed)) >= TouchEvery {
		s.noteTouch(e, h, now)
		s.touch(ctx, k, e.rec, h, now)
	}
	p := Principal{Kind: kind, ID: id}
	if kind == KindProcessor {
		p.Merchants, p.Rate = rec.Merchants, rec.Rate
	}
	return p, nil
}

// findKey returns the index of the key with hash h, comparing every one in
// constant time; -1 when none has it.
func findKey(keys []Key, h []byte) int {
	found := -1
	for i, key := range keys {
		if subtle.ConstantTimeCompare(key.Hash, h) == 1 {
			found = i
		}
	}
	return found
}

// touch writes a key's last use into the record read at r. It is best
// effort: a record changed since (by another replica's touch, or an
// operator) is left as it is, and the next use tries again.
func (s *Service) touch(ctx context.Context, k store.Key, r store.Record, hash []byte, now time.Time) {
	var doc map[string]json.RawMessage
	var keys []Key
	if json.Unmarshal(r.Value, &doc) != nil || json.Unmarshal(doc["keys"], &keys) != nil {
		return
	}
	for i := range keys {
		if subtle.ConstantTimeCompare(keys[i].Hash, hash) == 1 {
			keys[i].LastUsed = now.UTC().Truncate(time.Second)
		}
	}
	doc["keys"], _ = json.Marshal(keys)
	b, _ := json.Marshal(doc)
	_ = s.store.Commit(ctx, store.Update(k, b, r.Version))
}

// Merchant reads a merchant.
func (s *Service) Merchant(ctx context.Context, id string) (Merchant, error) {
	k := merchantKey(id)
	if !k.Valid() {
		return Merchant{}, notFound(k)
	}
	e, _, err := s.record(ctx, k)
	if errors.Is(err, store.ErrNotFound) {
		return Merchant{}, notFound(k)
	}
	if err != nil {
		return Merchant{}, err
	}
	return e.asMerchant()
}

// Processor reads a processor.
func (s *Service) Processor(ctx context.Context, id string) (Processor, error) {
	var p Processor
	return p, s.get(ctx, processorKey(id), &p)
}

func (s *Service) get(ctx context.Context, k store.Key, into any) error {
	if !k.Valid() {
		return notFound(k)
	}
	e, _, err := s.record(ctx, k)
	if errors.Is(err, store.ErrNotFound) {
		return notFound(k)
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(e.rec.Value, into)
}

func notFound(k store.Key) error { return apperr.E(apperr.NotFound, "no %s %q", k.Kind, k.ID) }

// update changes a stored principal with a compare-and-set, again on a
// concurrent change, and returns it as written.
func update[T any](ctx context.Context, s *Service, k store.Key, change func(*T) error) (T, error) {
	for {
		var v T
		if !k.Valid() {
			return v, notFound(k)
		}
		r, err := s.store.Get(ctx, k)
		if errors.Is(err, store.ErrNotFound) {
			return v, notFound(k)
		}
		if err != nil {
			return v, err
		}
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return v, err
		}
		if err := change(&v); err != nil {
			return v, err
		}
		b, _ := json.Marshal(v)
		err = s.store.Commit(ctx, store.Update(k, b, r.Version))
		if err == nil {
			s.forget(k)
		}
		if !errors.Is(err, store.ErrConflict) {
			return v, err
		}
	}
}

// changeCreds changes the credentials of a principal of either kind and
// counts the change in Rev.
func (s *Service) changeCreds(ctx context.Context, kind, id string, change func(*Credentials) error) error {
	bump := func(c *Credentials) error {
		if err := change(c); err != nil {
			return err
		}
		c.Rev++
		return nil
	}
	var err error
	if kind == KindProcessor {
		_, err = update(ctx, s, processorKey(id), func(p *Processor) error { return bump(&p.Credentials) })
	} else {
		_, err = update(ctx, s, merchantKey(id), func(m *Merchant) error { return bump(&m.Credentials) })
	}
	return err
}

// NewKey is what RollKey returns: the new secret appears here once.
type NewKey struct {
	ID           string    `json:"id"`
	SecretKey    string    `json:"secret_key"`
	OldExpiresAt time.Time `json:"old_keys_expire_at"`
}

// RollKey gives a principal a new secret key and keeps its older keys valid
// for oldExpiresIn more (0: they stop at once; a key already due to expire
// sooner keeps its time). Expired keys are dropped.
func (s *Service) RollKey(ctx context.Context, kind, id string, oldExpiresIn time.Duration) (NewKey, error) {
	if oldExpiresIn < 0 {
		return NewKey{}, apperr.Field("old_expires_in", "must not be negative")
	}
	secret, key := s.newKey(kind, id)
	now := s.Now().UTC()
	until := now.Add(oldExpiresIn)
	err := s.changeCreds(ctx, kind, id, func(c *Credentials) error {
		keep := c.Keys[:0]
		for _, k := range c.Keys {
			if k.Expires.IsZero() || until.Before(k.Expires) {
				k.Expires = until
			}
			if oldExpiresIn > 0 && k.live(now) {
				keep = append(keep, k)
			}
		}
		c.Keys = append(keep, key)
		return nil
	})
	if err != nil {
		return NewKey{}, err
	}
	return NewKey{ID: id, SecretKey: secret, OldExpiresAt: until}, nil
}

// SetDisabled refuses (true) or accepts again (false) every key of a
// principal, at once.
func (s *Service) SetDisabled(ctx context.Context, kind, id string, disabled bool) error {
	return s.changeCreds(ctx, kind, id, func(c *Credentials) error {
		c.Disabled = disabled
		return nil
	})
}

// Grant lets a processor detokenize a merchant's cards.
func (s *Service) Grant(ctx context.Context, processorID, merchantID string) error {
	if _, err := s.merchantForGrant(ctx, merchantID); err != nil {
		return err
	}
	_, err := update(ctx, s, processorKey(processorID), func(p *Processor) error {
		if !slices.Contains(p.Merchants, merchantID) {
			p.Merchants = append(p.Merchants, merchantID)
		}
		p.Rev++
		return nil
	})
	return err
}

// Revoke stops a processor from detokenizing a merchant's cards.
func (s *Service) Revoke(ctx context.Context, processorID, merchantID string) error {
	_, err := update(ctx, s, processorKey(processorID), func(p *Processor) error {
		if !slices.Contains(p.Merchants, merchantID) {
			return apperr.Field("merchant", "processor %s does not serve %q", p.ID, merchantID)
		}
		p.Merchants = slices.DeleteFunc(p.Merchants, func(m string) bool { return m == merchantID })
		p.Rev++
		return nil
	})
	return err
}

// SetRate sets a processor's own detokenize rate a second (nil: back to the
// setting; 0: no limit).
func (s *Service) SetRate(ctx context.Context, processorID string, rate *int64) error {
	if err := validRate(rate); err != nil {
		return err
	}
	_, err := update(ctx, s, processorKey(processorID), func(p *Processor) error {
		p.Rate = rate
		p.Rev++
		return nil
	})
	return err
}

// KeyView is a key as lists show it: never the key or its hash.
type KeyView struct {
	Hint     string     `json:"hint"`
	Created  time.Time  `json:"created"`
	Expires  *time.Time `json:"expires,omitempty"`
	LastUsed *time.Time `json:"last_used"`
}

// PrincipalView is a merchant or processor as lists show it.
type PrincipalView struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Mode       string    `json:"mode"` // "test": until a real connector exists
	Disabled   bool      `json:"disabled"`
	Created    time.Time `json:"created"`
	WebhookURL string    `json:"webhook_url,omitempty"`
	Merchants  []string  `json:"merchants,omitempty"`
	Rate       *int64    `json:"rate,omitempty"`
	Keys       []KeyView `json:"keys"`
}

func (s *Service) view(id, name string, created time.Time, c Credentials) PrincipalView {
	v := PrincipalView{ID: id, Name: name, Mode: "test", Disabled: c.Disabled, Created: created, Keys: []KeyView{}}
	now := s.Now()
	for _, k := range c.Keys {
		if !k.live(now) {
			continue
		}
		kv := KeyView{Hint: k.Hint, Created: k.Created}
		if !k.Expires.IsZero() {
			kv.Expires = &k.Expires
		}
		if !k.LastUsed.IsZero() {
			kv.LastUsed = &k.LastUsed
		}
		v.Keys = append(v.Keys, kv)
	}
	return v
}

// ListMerchants returns every merchant, oldest first, with its live keys.
func (s *Service) ListMerchants(ctx context.Context) ([]PrincipalView, error) {
	return list(ctx, s, "merchant", func(m Merchant) PrincipalView {
		v := s.view(m.ID, m.Name, m.Created, m.Credentials)
		v.WebhookURL = m.WebhookURL
		return v
	})
}

// ListProcessors returns every processor, oldest first, with its live keys
// and the merchants it serves.
func (s *Service) ListProcessors(ctx context.Context) ([]PrincipalView, error) {
	return list(ctx, s, "processor", func(p Processor) PrincipalView {
		v := s.view(p.ID, p.Name, p.Created, p.Credentials)
		v.Merchants, v.Rate = p.Merchants, p.Rate
		if v.Merchants == nil {
			v.Merchants = []string{}
		}
		return v
	})
}

func list[T any](ctx context.Context, s *Service, kind string, view func(T) PrincipalView) ([]PrincipalView, error) {
	out := []PrincipalView{}
	err := s.store.Scan(ctx, kind, func(_ string, r store.Record) error {
		var v T
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return err
		}
		out = append(out, view(v))
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, err
}

// WebhookSecret returns a merchant's webhook signing secret.
func (s *Service) WebhookSecret(ctx context.Context, m Merchant) (string, error) {
	b, err := s.vault.OpenSecret(ctx, webhookPurpose(m.ID), m.WebhookSecret)
	return string(b), err
}

// SetWebhookURL changes a merchant's webhook endpoint ("" turns webhooks off).
func (s *Service) SetWebhookURL(ctx context.Context, id, webhookURL string) error {
	if err := ValidateWebhookURL(webhookURL); err != nil {
		return err
	}
	return s.updateMerchant(ctx, id, func(m *Merchant) { m.WebhookURL = webhookURL })
}

// RollWebhookSecret gives a merchant a new webhook signing secret, returned
// once; deliveries from then on are signed with it.
func (s *Service) RollWebhookSecret(ctx context.Context, id string) (string, error) {
	secret := randomSecret("whsec_")
	sealed, err := s.vault.SealSecret(webhookPurpose(id), []byte(secret))
	if err != nil {
		return "", err
	}
	return secret, s.updateMerchant(ctx, id, func(m *Merchant) { m.WebhookSecret = sealed })
}

// updateMerchant changes a merchant record with a compare-and-set.
func (s *Service) updateMerchant(ctx context.Context, id string, change func(*Merchant)) error {
	_, err := update(ctx, s, merchantKey(id), func(m *Merchant) error { change(m); return nil })
	return err
}

// MerchantName returns a merchant's display name.
func (s *Service) MerchantName(ctx context.Context, id string) (string, error) {
	m, err := s.Merchant(ctx, id)
	return m.Name, err
}
