package threeds

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/vault"
)

// SandboxCode is the one SMS code the sandbox bank accepts; its page says so.
const SandboxCode = "123456"

// Sandbox limits.
const (
	MaxCodeTries   = 3
	MaxResends     = 3
	ChallengeTTL   = 5 * time.Minute // the bank page times out after this
	sandboxVersion = "2.2.0"
)

// SandboxStatus is the 3-D Secure answer per sandbox card; cards not listed
// are authenticated frictionlessly.
var SandboxStatus = map[string]string{
	"4000000000003220": Challenge,
	"5555555555554444": Challenge,
	"2200000000000004": Challenge,
	"4000000000000051": NotAuth,
}

// Cards is what the sandbox issuer needs of the vault: it plays the bank,
// which knows its own cards, and keeps its authentication values sealed.
type Cards interface {
	Lookup(ctx context.Context, token string) (vault.Card, vault.Info, error)
	SealSecret(purpose string, plain []byte) ([]byte, error)
	OpenSecret(ctx context.Context, purpose string, sealed []byte) ([]byte, error)
}

// Sandbox is a built-in issuer access control server (ACS) with its
// directory server: it answers authentication requests and serves the
// challenge that the web package renders as the bank page.
type Sandbox struct {
	store store.Store
	cards Cards
	// ACSURL is the bank page's address for a transaction ID.
	ACSURL func(transID string) string
	Now    func() time.Time
}

var _ Server = (*Sandbox)(nil)

// NewSandbox returns the sandbox issuer.
func NewSandbox(s store.Store, c Cards, acsURL func(string) string) *Sandbox {
	return &Sandbox{store: s, cards: c, ACSURL: acsURL, Now: time.Now}
}

// Transaction is the sandbox's record of one authentication.
type Transaction struct {
	ID              string     `json:"id"`
	ACSTransID      string     `json:"acs_trans_id"`
	Status          string     `json:"status"` // C while the challenge is open, then Y or N
	Reason          string     `json:"reason,omitempty"`
	Brand           card.Brand `json:"brand"`
	MaskedPAN       string     `json:"masked_pan"`
	Merchant        string     `json:"merchant"` // the merchant's ID: whose framing policy the bank page follows
	MerchantName    string     `json:"merchant_name"`
	Amount          int64      `json:"amount"`
	Currency        string     `json:"currency"`
	Language        string     `json:"language"`
	NotificationURL string     `json:"notification_url"`
	Tries           int        `json:"tries"`
	Resends         int        `json:"resends"`
	Expires         time.Time  `json:"expires"`
	ECI             string     `json:"eci,omitempty"`
	// AuthValue is the authentication value (CAVV/AAV), sealed.
	AuthValue []byte `json:"auth_value_sealed,omitempty"`
	DSTransID string `json:"ds_trans_id"`
	// TimedOut: the challenge ended because nobody answered in time.
	TimedOut bool `json:"timed_out,omitempty"`
}

// Programme is the brand's 3-D Secure name as the bank page shows it.
func (t Transaction) Programme() string { return t.Brand.ThreeDSProgramme() }

// TriesLeft is how many wrong codes the shopper may still enter.
func (t Transaction) TriesLeft() int { return MaxCodeTries - t.Tries }

// Open reports whether the challenge still waits for a code.
func (t Transaction) Open() bool { return t.Status == Challenge }

func txKey(id string) store.Key { return store.K("acs_tx", id) }

// ErrUnknownTransaction is returned for a transaction ID the sandbox never issued.
var ErrUnknownTransaction = apperr.E(apperr.NotFound, "unknown 3-D Secure transaction")

// newAuthValue makes an authentication value for t, sealed for its record.
func (s *Sandbox) newAuthValue(t *Transaction) error {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	sealed, err := s.cards.SealSecret(authPurpose(t.ID), []byte(base64.StdEncoding.EncodeToString(b)))
	t.AuthValue = sealed
	return err
}

func authPurpose(id string) string { return "acs-auth|" + id }

// Authenticate answers by the sandbox table.
func (s *Sandbox) Authenticate(ctx context.Context, r Request) (Result, error) {
	c, info, err := s.cards.Lookup(ctx, r.Token)
	if err != nil {
		return Result{}, err
	}
	if info.Merchant != r.Merchant {
		return Result{}, apperr.E(apperr.Forbidden, "card belongs to another merchant")
	}
	status := SandboxStatus[c.PAN.Digits()]
	if status == "" {
		status = Authenticated
	}
	t := Transaction{
		ID: vault.NewID("3ds_"), ACSTransID: vault.NewID("acs_"), DSTransID: vault.NewID("ds_"),
		Status: status, Brand: info.Brand, MaskedPAN: c.PAN.Mask(), Merchant: r.Merchant, MerchantName: r.MerchantName,
		Amount: r.Amount, Currency: r.Currency, Language: r.Browser.Language,
		NotificationURL: r.NotificationURL, Expires: s.Now().Add(ChallengeTTL),
	}
	if status == NotAuth {
		t.Reason = "card authentication failed"
	}
	if status == Authenticated {
		t.ECI = ECI(info.Brand, status)
		if err := s.newAuthValue(&t); err != nil {
			return Result{}, err
		}
	}
	if err := s.save(ctx, t, 0); err != nil {
		return Result{}, err
	}
	res, err := s.result(ctx, t)
	if err != nil {
		return Result{}, err
	}
	if status == Challenge {
		res.ACSURL = s.ACSURL(t.ID)
		res.CReq = Encode(CReq{ThreeDSServerTransID: t.ID, ACSTransID: t.ACSTransID, ChallengeWindowSize: "05", MessageType: "CReq", MessageVersion: sandboxVersion})
	}
	return res, nil
}

func (s *Sandbox) result(ctx context.Context, t Transaction) (Result, error) {
	eci := t.ECI
	if eci == "" && t.Status != Challenge {
		eci = ECI(t.Brand, t.Status)
	}
	r := Result{TransID: t.ID, TransStatus: t.Status, ECI: eci, DSTransID: t.DSTransID, Version: sandboxVersion, Reason: t.Reason, Abandoned: t.TimedOut}
	if len(t.AuthValue) > 0 {
		v, err := s.cards.OpenSecret(ctx, authPurpose(t.ID), t.AuthValue)
		if err != nil {
			return Result{}, err
		}
		r.AuthValue = string(v)
	}
	return r, nil
}

func (s *Sandbox) save(ctx context.Context, t Transaction, version int64) error {
	b, _ := json.Marshal(t)
	return s.store.Commit(ctx, store.Op{Key: txKey(t.ID), Value: b, IfVersion: version, TTL: 24 * time.Hour})
}

// Transaction reads a transaction; one whose time ran out reads as failed
// (timed out). It only reads.
func (s *Sandbox) Transaction(ctx context.Context, id string) (Transaction, int64, error) {
	if !vault.ValidID(id, "3ds_") {
		return Transaction{}, 0, ErrUnknownTransaction
	}
	r, err := s.store.Get(ctx, txKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return Transaction{}, 0, ErrUnknownTransaction
	}
	if err != nil {
		return Transaction{}, 0, err
	}
	var t Transaction
	if err := json.Unmarshal(r.Value, &t); err != nil {
		return Transaction{}, 0, err
	}
	if t.Open() && !s.Now().Before(t.Expires) {
		t.fail("challenge timed out")
		t.TimedOut = true
	}
	return t, r.Version, nil
}

// Outcome returns the result of a transaction.
func (s *Sandbox) Outcome(ctx context.Context, id string) (Result, error) {
	t, _, err := s.Transaction(ctx, id)
	if err != nil {
		return Result{}, err
	}
	return s.result(ctx, t)
}

// update changes an open transaction with a compare-and-set, retrying on a
// concurrent change; a closed one is returned as it is.
func (s *Sandbox) update(ctx context.Context, id string, change func(t *Transaction) bool) (Transaction, error) {
	for {
		t, ver, err := s.Transaction(ctx, id)
		if err != nil || !t.Open() || !change(&t) {
			return t, err
		}
		err = s.save(ctx, t, ver)
		if !errors.Is(err, store.ErrConflict) {
			return t, err
		}
	}
}

func (t *Transaction) fail(reason string) {
	t.Status, t.Reason, t.ECI = NotAuth, reason, ECI(t.Brand, NotAuth)
}

// SubmitCode checks an SMS code. The right code authenticates; the third
// wrong one fails the transaction. It returns the transaction after the try.
func (s *Sandbox) SubmitCode(ctx context.Context, id, code string) (Transaction, error) {
	var sealErr error // the vault sealed meanwhile: nothing changes
	t, err := s.update(ctx, id, func(t *Transaction) bool {
		if code == SandboxCode {
			t.Status, t.ECI = Authenticated, ECI(t.Brand, Authenticated)
			sealErr = s.newAuthValue(t)
			return sealErr == nil
		}
		t.Tries++
		if t.Tries >= MaxCodeTries {
			t.fail("wrong code entered 3 times")
		}
		return true
	})
	if sealErr != nil {
		return t, sealErr
	}
	return t, err
}

// Resend "sends" the SMS again, up to MaxResends times.
func (s *Sandbox) Resend(ctx context.Context, id string) (Transaction, error) {
	return s.update(ctx, id, func(t *Transaction) bool {
		if t.Resends >= MaxResends {
			return false
		}
		t.Resends++
		return true
	})
}

// Cancel ends an open challenge as not authenticated (the shopper gave up).
func (s *Sandbox) Cancel(ctx context.Context, id string) (Transaction, error) {
	return s.update(ctx, id, func(t *Transaction) bool { t.fail("cancelled by the cardholder"); return true })
}

// CRes returns the challenge response the bank page posts back.
func (t Transaction) CRes() string {
	return Encode(CRes{ThreeDSServerTransID: t.ID, ACSTransID: t.ACSTransID, MessageType: "CRes", MessageVersion: sandboxVersion, TransStatus: t.Status})
}
