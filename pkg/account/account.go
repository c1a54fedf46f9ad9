// Package account keeps the merchants and processors that may call paypage's
// APIs, and checks their secret keys. A secret key is shown once, when it is
// made; only its SHA-256 is stored (the keys are long and random, so a slow
// password hash would add nothing but latency), and it is compared in
// constant time.
package account

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
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

// Principal is who a secret key belongs to.
type Principal struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

// String names the principal for audit records: "merchant:mer_...".
func (p Principal) String() string { return p.Kind + ":" + p.ID }

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
}

// Processor is an acquirer's backend that may detokenize.
type Processor struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

// keyRecord is stored under the key's hash.
type keyRecord struct {
	Principal
	Hash []byte `json:"hash"`
}

// Service manages accounts.
type Service struct {
	store store.Store
	vault *vault.Vault
	Now   func() time.Time
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
	out := NewMerchant{ID: id, SecretKey: randomSecret("sk_"), WebhookSecret: randomSecret("whsec_")}
	m := Merchant{
		ID: id, Name: strings.TrimSpace(name), WebhookURL: webhookURL, Created: s.Now().UTC(),
		WebhookSecret: s.vault.SealSecret("webhook|"+id, []byte(out.WebhookSecret)),
	}
	b, _ := json.Marshal(m)
	if err := s.store.Commit(ctx, store.Create(merchantKey(id), b, 0)); err != nil {
		return NewMerchant{}, err
	}
	if err := s.addKey(ctx, Principal{KindMerchant, id}, out.SecretKey); err != nil {
		return NewMerchant{}, err
	}
	return out, nil
}

// NewProcessor is what AddProcessor returns: the secret appears here once.
type NewProcessor struct {
	ID        string `json:"id"`
	SecretKey string `json:"secret_key"`
}

// AddProcessor creates a processor credential.
func (s *Service) AddProcessor(ctx context.Context, name string) (NewProcessor, error) {
	if err := validName(name); err != nil {
		return NewProcessor{}, err
	}
	id := vault.NewID("prc_")
	out := NewProcessor{ID: id, SecretKey: randomSecret("psk_")}
	b, _ := json.Marshal(Processor{ID: id, Name: strings.TrimSpace(name), Created: s.Now().UTC()})
	if err := s.store.Commit(ctx, store.Create(processorKey(id), b, 0)); err != nil {
		return NewProcessor{}, err
	}
	if err := s.addKey(ctx, Principal{KindProcessor, id}, out.SecretKey); err != nil {
		return NewProcessor{}, err
	}
	return out, nil
}

func (s *Service) addKey(ctx context.Context, p Principal, secret string) error {
	h := hashKey(secret)
	b, _ := json.Marshal(keyRecord{Principal: p, Hash: h})
	return s.store.Commit(ctx, store.Create(store.K("apikey", hex.EncodeToString(h)), b, 0))
}

// ErrUnauthorized is the one answer to a missing, malformed or unknown key.
var ErrUnauthorized = apperr.E(apperr.Unauthorized, "a valid secret key is required: Authorization: Bearer <secret key>")

// Authenticate returns the principal a secret key belongs to.
func (s *Service) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if len(secret) < 20 || len(secret) > 200 {
		return Principal{}, ErrUnauthorized
	}
	h := hashKey(secret)
	r, err := s.store.Get(ctx, store.K("apikey", hex.EncodeToString(h)))
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, ErrUnauthorized
	}
	if err != nil {
		return Principal{}, err
	}
	var k keyRecord
	if err := json.Unmarshal(r.Value, &k); err != nil || subtle.ConstantTimeCompare(k.Hash, h) != 1 {
		return Principal{}, ErrUnauthorized
	}
	return k.Principal, nil
}

// Merchant reads a merchant.
func (s *Service) Merchant(ctx context.Context, id string) (Merchant, error) {
	var m Merchant
	return m, s.get(ctx, merchantKey(id), &m)
}

// Processor reads a processor.
func (s *Service) Processor(ctx context.Context, id string) (Processor, error) {
	var p Processor
	return p, s.get(ctx, processorKey(id), &p)
}

func (s *Service) get(ctx context.Context, k store.Key, into any) error {
	if !k.Valid() {
		return store.ErrNotFound
	}
	r, err := s.store.Get(ctx, k)
	if err != nil {
		return err
	}
	return json.Unmarshal(r.Value, into)
}

// WebhookSecret returns a merchant's webhook signing secret.
func (s *Service) WebhookSecret(ctx context.Context, m Merchant) (string, error) {
	b, err := s.vault.OpenSecret(ctx, "webhook|"+m.ID, m.WebhookSecret)
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
	sealed := s.vault.SealSecret("webhook|"+id, []byte(secret))
	err := s.updateMerchant(ctx, id, func(m *Merchant) { m.WebhookSecret = sealed })
	return secret, err
}

// updateMerchant changes a merchant record with a compare-and-set.
func (s *Service) updateMerchant(ctx context.Context, id string, change func(*Merchant)) error {
	if !merchantKey(id).Valid() {
		return store.ErrNotFound
	}
	for {
		r, err := s.store.Get(ctx, merchantKey(id))
		if err != nil {
			return err
		}
		var m Merchant
		if err := json.Unmarshal(r.Value, &m); err != nil {
			return err
		}
		change(&m)
		b, _ := json.Marshal(m)
		err = s.store.Commit(ctx, store.Update(merchantKey(id), b, r.Version))
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
}

// MerchantName returns a merchant's display name.
func (s *Service) MerchantName(ctx context.Context, id string) (string, error) {
	m, err := s.Merchant(ctx, id)
	return m.Name, err
}
