package payment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/limit"
	"github.com/paypage/paypage/pkg/money"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/threeds"
	"github.com/paypage/paypage/pkg/vault"
)

// Vault is what payments need of the card vault.
type Vault interface {
	Tokenize(ctx context.Context, merchant string, c vault.Card) (vault.Info, error)
	SealCVV(merchant string, key store.Key, cvv card.CVV, ttl time.Duration) store.Op
	TakeCVV(ctx context.Context, merchant string, key store.Key) (card.CVV, error)
	CardKey(pan card.PAN) string
}

// Merchants gives a merchant's display name.
type Merchants interface {
	MerchantName(ctx context.Context, id string) (string, error)
}

// Limits bound attempts and holds.
type Limits struct {
	MaxAttempts   int           // per session: attempts that reached the issuer or processor
	Client        limit.Rule    // submissions per client address
	Card          limit.Rule    // submissions per card, across merchants
	CVVHold       time.Duration // how long a CVV may wait for authorization (covers the 3-D Secure challenge)
	SessionTTL    time.Duration // default session lifetime
	MinSessionTTL time.Duration
	MaxSessionTTL time.Duration
	IdemTTL       time.Duration // how long an idempotency key is remembered
	StuckAfter    time.Duration // an attempt still authorizing after this is resumed
}

// DefaultLimits are the production defaults.
var DefaultLimits = Limits{
	MaxAttempts: 3,
	Client:      limit.Rule{Name: "client", Max: 20, Window: time.Hour},
	Card:        limit.Rule{Name: "card", Max: 10, Window: 24 * time.Hour},
	CVVHold:     10 * time.Minute, SessionTTL: 24 * time.Hour, MinSessionTTL: 5 * time.Minute, MaxSessionTTL: 24 * time.Hour,
	IdemTTL: 24 * time.Hour, StuckAfter: 30 * time.Second,
}

// Service runs sessions, attempts, payments and refunds.
type Service struct {
	Store     store.Store
	Vault     Vault
	Processor processor.Processor
	ThreeDS   threeds.Server
	Kaspi     Kaspi // may be nil: no Kaspi QR
	Merchants Merchants
	Counter   *limit.Counter
	Limits    Limits
	// PublicURL is the page's base URL, for the 3-D Secure return address.
	PublicURL string
	Now       func() time.Time
	// Outbox, when set, makes the op that queues an event for delivery; it is
	// committed with the event (the webhook package provides it).
	Outbox func(group string, e Event, now time.Time) store.Op
	// OnEvent, when set, is called after a commit that wrote events (to wake the webhook worker).
	OnEvent func()
	// OnAttempt, when set, is called with each finished attempt's method and outcome (metrics).
	OnAttempt func(method, outcome string)
}

// Group returns the store group of a session or payment ID: both share it.
func Group(id string) string {
	if i := strings.IndexByte(id, '_'); i >= 0 {
		return id[i+1:]
	}
	return id
}

func sessionKey(id string) store.Key { return store.Key{Kind: "session", ID: id, Group: Group(id)} }
func paymentKey(id string) store.Key { return store.Key{Kind: "payment", ID: id, Group: Group(id)} }
func eventKey(group, id string) store.Key {
	return store.Key{Kind: "event", ID: id, Group: group}
}

// PaymentIDFor returns the ID of a session's payment.
func PaymentIDFor(sessionID string) string { return "pay_" + Group(sessionID) }

// ValidSessionID reports whether s looks like a session ID.
func ValidSessionID(s string) bool { return vault.ValidID(s, "ses_") }

// ValidPaymentID reports whether s looks like a payment ID.
func ValidPaymentID(s string) bool { return vault.ValidID(s, "pay_") }

// ErrSessionNotFound is the answer for an unknown session or one of another merchant.
var ErrSessionNotFound = apperr.E(apperr.NotFound, "no such session")

// ErrPaymentNotFound is the answer for an unknown payment or one of another merchant.
var ErrPaymentNotFound = apperr.E(apperr.NotFound, "no such payment")

// loaded is a session and its payment with their store versions.
type loaded struct {
	s        Session
	sVersion int64
	p        *Payment
	pVersion int64
}

func (svc *Service) load(ctx context.Context, sessionID string) (*loaded, error) {
	if !ValidSessionID(sessionID) {
		return nil, ErrSessionNotFound
	}
	r, err := svc.Store.Get(ctx, sessionKey(sessionID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrSessionNotFound
	}
	if err != nil {
		return nil, err
	}
	l := &loaded{sVersion: r.Version}
	if err := json.Unmarshal(r.Value, &l.s); err != nil {
		return nil, fmt.Errorf("session record: %w", err)
	}
	if l.s.PaymentID != "" {
		pr, err := svc.Store.Get(ctx, paymentKey(l.s.PaymentID))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if err == nil {
			if l.p, err = decodePayment(pr.Value); err != nil {
				return nil, err
			}
			l.pVersion = pr.Version
		}
	}
	return l, nil
}

// commit writes the session and payment (if any) with version checks, the
// given extra ops and events, all in one atomic step.
func (svc *Service) commit(ctx context.Context, l *loaded, extra []store.Op, events ...Event) error {
	sb, _ := json.Marshal(l.s)
	ops := []store.Op{store.Update(sessionKey(l.s.ID), sb, l.sVersion)}
	if l.p != nil {
		l.p.Updated = svc.Now().UTC()
		ops = append(ops, store.Update(paymentKey(l.p.ID), encodePayment(l.p), l.pVersion))
	}
	ops = append(ops, extra...)
	ops = append(ops, svc.eventOps(Group(l.s.ID), events)...)
	if err := svc.Store.Commit(ctx, ops...); err != nil {
		return err
	}
	l.sVersion++
	if l.p != nil {
		l.pVersion++
	}
	if len(events) > 0 && svc.OnEvent != nil {
		svc.OnEvent()
	}
	return nil
}

// eventOps writes events, and queues them for delivery, in a commit's group.
func (svc *Service) eventOps(group string, events []Event) []store.Op {
	var ops []store.Op
	for _, e := range events {
		b, _ := json.Marshal(e)
		ops = append(ops, store.Create(eventKey(group, e.ID), b, 0))
		if svc.Outbox != nil {
			ops = append(ops, svc.Outbox(group, e, svc.Now()))
		}
	}
	return ops
}

func (svc *Service) event(typ, merchant string, obj any) Event {
	b, _ := json.Marshal(obj)
	return Event{ID: vault.NewID("evt_"), Type: typ, Created: svc.Now().UTC(), Merchant: merchant, Data: b}
}

// CreateRequest is what a shop sends to open a session.
type CreateRequest struct {
	Amount      int64    `json:"amount"`
	Currency    string   `json:"currency"`
	Reference   string   `json:"reference"`
	Description string   `json:"description"`
	SuccessURL  string   `json:"success_url"`
	CancelURL   string   `json:"cancel_url"`
	Locale      string   `json:"locale"`
	Methods     []string `json:"methods"`
	ExpiresIn   int64    `json:"expires_in"` // seconds; 0 for the default
}

// Locales the page speaks.
var Locales = []string{"en", "ru", "kk"}

func validText(param, s string, maxLen int) error {
	if len(s) > maxLen {
		return apperr.Field(param, "must be at most %d bytes", maxLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return apperr.Field(param, "must not contain control characters")
		}
	}
	return nil
}

func validReturnURL(param, s string) error {
	if s == "" {
		return apperr.Field(param, "is required")
	}
	u, err := url.Parse(strings.ReplaceAll(s, "{SESSION_ID}", "x"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(s) > 2048 {
		return apperr.Field(param, "must be an absolute http(s) URL")
	}
	return nil
}

// Validate checks a create request and fills defaults.
func (r *CreateRequest) Validate(l Limits) error {
	r.Currency = strings.ToUpper(strings.TrimSpace(r.Currency))
	switch {
	case r.Amount <= 0 || r.Amount > money.MaxAmount:
		return apperr.Field("amount", "must be a positive whole number of minor units, at most %d", int64(money.MaxAmount))
	case r.Currency == "":
		return apperr.Field("currency", "is required")
	case !money.ValidCurrency(r.Currency):
		return apperr.Field("currency", "is not a currency we take")
	}
	for _, f := range []struct {
		p, v string
		n    int
	}{{"reference", r.Reference, 200}, {"description", r.Description, 500}} {
		if err := validText(f.p, f.v, f.n); err != nil {
			return err
		}
	}
	if err := validReturnURL("success_url", r.SuccessURL); err != nil {
		return err
	}
	if err := validReturnURL("cancel_url", r.CancelURL); err != nil {
		return err
	}
	if r.Locale != "" && !slices.Contains(Locales, r.Locale) {
		return apperr.Field("locale", "must be one of en, ru, kk")
	}
	if len(r.Methods) == 0 {
		r.Methods = []string{MethodCard}
	}
	seen := map[string]bool{}
	for _, m := range r.Methods {
		if m != MethodCard && m != MethodKaspi {
			return apperr.Field("methods", "unknown method %q: use card or kaspi_qr", truncate(m, 20))
		}
		if seen[m] {
			return apperr.Field("methods", "lists %s twice", m)
		}
		seen[m] = true
	}
	if seen[MethodKaspi] && r.Currency != "KZT" {
		return apperr.Field("methods", "kaspi_qr takes KZT only")
	}
	if r.ExpiresIn != 0 && (time.Duration(r.ExpiresIn)*time.Second < l.MinSessionTTL || time.Duration(r.ExpiresIn)*time.Second > l.MaxSessionTTL) {
		return apperr.Field("expires_in", "must be between %d and %d seconds", int(l.MinSessionTTL.Seconds()), int(l.MaxSessionTTL.Seconds()))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// CreateSession opens a session for a merchant. With an idempotency key, a
// retry of the same request returns the first session, and a different
// request under the same key is refused.
func (svc *Service) CreateSession(ctx context.Context, merchant, idemKey string, req CreateRequest) (Session, bool, error) {
	if err := req.Validate(svc.Limits); err != nil {
		return Session{}, false, err
	}
	body, _ := json.Marshal(req)
	h := sha256.Sum256(body)
	reqHash := hex.EncodeToString(h[:])
	create := func() (string, error) {
		s, err := svc.createSession(ctx, merchant, req, reqHash)
		return s.ID, err
	}
	if idemKey == "" {
		id, err := create()
		if err != nil {
			return Session{}, false, err
		}
		s, _, err := svc.Session(ctx, merchant, id)
		return s, false, err
	}
	id, replay, err := svc.idempotent(ctx, "sessions", merchant, idemKey, reqHash, create)
	if err != nil {
		return Session{}, false, err
	}
	s, _, err := svc.Session(ctx, merchant, id)
	return s, replay, err
}

func (svc *Service) createSession(ctx context.Context, merchant string, req CreateRequest, reqHash string) (Session, error) {
	now := svc.Now().UTC()
	ttl := svc.Limits.SessionTTL
	if req.ExpiresIn > 0 {
		ttl = time.Duration(req.ExpiresIn) * time.Second
	}
	s := Session{
		ID: vault.NewID("ses_"), Merchant: merchant, Amount: req.Amount, Currency: req.Currency,
		Reference: req.Reference, Description: req.Description, SuccessURL: req.SuccessURL, CancelURL: req.CancelURL,
		Locale: req.Locale, Methods: req.Methods, Status: SessionOpen, Created: now,
		ExpiresAt: now.Add(ttl).Truncate(time.Second), MaxAttempts: svc.Limits.MaxAttempts, RequestHash: reqHash,
	}
	b, _ := json.Marshal(s)
	return s, svc.Store.Commit(ctx, store.Create(sessionKey(s.ID), b, 0), store.Create(openKey(s.ID), []byte(s.ExpiresAt.Format(time.RFC3339)), 0))
}

// openKey marks an open session, so the expiry sweep reads only those.
func openKey(id string) store.Key { return store.Key{Kind: "open_session", ID: id, Group: Group(id)} }

// ExpireSessions ends the open sessions past their expiry, each with its
// session.expired event, and returns how many it ended.
func (svc *Service) ExpireSessions(ctx context.Context) (int, error) {
	now := svc.Now()
	var due []string
	err := svc.Store.Scan(ctx, "open_session", func(id string, r store.Record) error {
		if t, err := time.Parse(time.RFC3339, string(r.Value)); err == nil && !now.Before(t) {
			due = append(due, id)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range due {
		l, err := svc.load(ctx, id)
		if err != nil {
			continue
		}
		if l.s.Pending != nil || l.s.StatusAt(now) != SessionExpired {
			continue // an attempt in flight finishes first
		}
		l.s.Status = SessionExpired
		ev := svc.event(EventSessionExpired, l.s.Merchant, l.s.View(svc.PublicURL, now, l.p))
		if err := svc.commit(ctx, l, []store.Op{store.Delete(openKey(id))}, ev); err != nil {
			if errors.Is(err, store.ErrConflict) {
				continue
			}
			return n, err
		}
		n++
	}
	return n, nil
}

type idemRecord struct {
	Hash   string    `json:"hash"`
	Result string    `json:"result,omitempty"` // the created object's ID, once done
	Locked time.Time `json:"locked"`           // a request holds the key until then
}

// idempotent runs do once per (scope, merchant, key): a retry with the same
// request hash gets the first result; another request under the key is
// refused; a request still running elsewhere gives a conflict to retry.
func (svc *Service) idempotent(ctx context.Context, scope, merchant, key, reqHash string, do func() (string, error)) (string, bool, error) {
	if len(key) > 255 || strings.TrimSpace(key) == "" {
		return "", false, apperr.Field("Idempotency-Key", "must be 1 to 255 characters")
	}
	kh := sha256.Sum256([]byte(scope + "|" + merchant + "|" + key))
	k := store.K("idem", hex.EncodeToString(kh[:]))
	now := svc.Now()
	for {
		r, err := svc.Store.Get(ctx, k)
		var ver int64
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return "", false, err
		default:
			var rec idemRecord
			_ = json.Unmarshal(r.Value, &rec)
			if rec.Hash != reqHash {
				return "", false, apperr.E(apperr.IdemMismatch, "this Idempotency-Key was used with a different request")
			}
			if rec.Result != "" {
				return rec.Result, true, nil
			}
			if now.Before(rec.Locked) {
				return "", false, apperr.E(apperr.Conflict, "a request with this Idempotency-Key is in progress; retry")
			}
			ver = r.Version // its holder died: take it over
		}
		lock, _ := json.Marshal(idemRecord{Hash: reqHash, Locked: now.Add(30 * time.Second)})
		err = svc.Store.Commit(ctx, store.Op{Key: k, Value: lock, IfVersion: ver, TTL: svc.Limits.IdemTTL})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return "", false, err
		}
		id, err := do()
		if err != nil {
			_ = svc.Store.Commit(ctx, store.Op{Key: k, Delete: true, IfVersion: ver + 1})
			return "", false, err
		}
		done, _ := json.Marshal(idemRecord{Hash: reqHash, Result: id})
		if err := svc.Store.Commit(ctx, store.Op{Key: k, Value: done, IfVersion: ver + 1, TTL: svc.Limits.IdemTTL}); err != nil {
			return "", false, err
		}
		return id, false, nil
	}
}

// Session returns a merchant's session and, once it has one, its payment.
func (svc *Service) Session(ctx context.Context, merchant, id string) (Session, *Payment, error) {
	l, err := svc.load(ctx, id)
	if err != nil {
		return Session{}, nil, err
	}
	if l.s.Merchant != merchant {
		return Session{}, nil, ErrSessionNotFound
	}
	return l.s, l.p, nil
}

// SessionForPage returns a session and its payment for the shopper's page.
// The session ID is the shopper's capability.
func (svc *Service) SessionForPage(ctx context.Context, id string) (Session, *Payment, error) {
	l, err := svc.load(ctx, id)
	if err != nil {
		return Session{}, nil, err
	}
	if err := svc.resumeStuck(ctx, l); err != nil {
		return Session{}, nil, err
	}
	return l.s, l.p, nil
}

// Payment returns a merchant's payment.
func (svc *Service) Payment(ctx context.Context, merchant, id string) (Payment, error) {
	p, _, err := svc.loadPayment(ctx, merchant, id)
	if err != nil {
		return Payment{}, err
	}
	return *p, nil
}
