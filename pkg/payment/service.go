package payment

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/threeds"
	"github.com/paypage/paypage/pkg/vault"
)

// Limits bound sessions and attempts.
type Limits struct {
	MaxAttempts   int           // per session: attempts that reached the issuer or the processor
	SessionTTL    time.Duration // default session lifetime
	MinSessionTTL time.Duration
	MaxSessionTTL time.Duration
}

// Timing is how long each step may take and how often an attempt in flight
// is looked at. The call deadline lies well inside the lease, and the lease
// is renewed while a call runs, so nobody else resumes an attempt whose
// owner is still waiting for an answer.
type Timing struct {
	Lease       time.Duration   // a claim on an attempt, renewed every third of it while a call runs
	CallTimeout time.Duration   // one call to the issuer, the processor or Kaspi
	AskAgain    []time.Duration // delays between asks for a lost authorization answer; the last repeats
	GiveUpAfter time.Duration   // an authorization still unanswered this long after it began is voided
	CVVHold     time.Duration   // a security code waits this long (the challenge at the bank included)
	Challenge   time.Duration   // how often an open challenge is asked about
	KaspiPoll   time.Duration   // how often a QR waiting to be paid is asked about
	KaspiQR     time.Duration   // how long a QR lives
	RefundRetry time.Duration   // a pending refund or void is asked for again after this
	// Retention is how long an ended session, its payment and its attempts
	// are kept after their last change (0: for ever).
	Retention time.Duration
}

// DefaultLimits are the production limits.
var DefaultLimits = Limits{MaxAttempts: 3, SessionTTL: 24 * time.Hour, MinSessionTTL: 5 * time.Minute, MaxSessionTTL: 24 * time.Hour}

// DefaultTiming is the production timing.
var DefaultTiming = Timing{
	Lease: 30 * time.Second, CallTimeout: 20 * time.Second,
	AskAgain:    []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second},
	GiveUpAfter: 3 * time.Minute, CVVHold: 10 * time.Minute, Challenge: 5 * time.Second,
	KaspiPoll: 3 * time.Second, KaspiQR: 5 * time.Minute, RefundRetry: time.Minute,
	Retention: DefaultRetention,
}

// DefaultRetention is how long records are kept by default: 400 days, enough
// for a chargeback to come and be answered.
const DefaultRetention = 400 * 24 * time.Hour

// Deps are what the service calls. Kaspi and Metrics may be nil.
type Deps struct {
	Repo      Repository
	Vault     Vault
	Processor processor.Processor
	ThreeDS   threeds.Server
	Kaspi     Kaspi
	Merchants Merchants
	Limiter   Limiter
	Metrics   Metrics
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Service runs sessions, attempts, payments and refunds.
type Service struct {
	repo      Repository
	vault     Vault
	processor processor.Processor
	threeDS   threeds.Server
	kaspi     Kaspi
	merchants Merchants
	limiter   Limiter
	metrics   Metrics
	now       func() time.Time
	limits    Limits
	timing    Timing
	owner     string // this replica's name in leases
	// notifyURL returns the 3-D Secure return address of a session.
	notifyURL func(sessionID string) string
}

// New builds the service; it refuses missing dependencies.
func New(d Deps, l Limits, t Timing, notifyURL func(sessionID string) string) (*Service, error) {
	switch {
	case d.Repo == nil:
		return nil, errors.New("payment: a repository is required")
	case d.Vault == nil:
		return nil, errors.New("payment: a vault is required")
	case d.Processor == nil:
		return nil, errors.New("payment: a processor is required")
	case d.ThreeDS == nil:
		return nil, errors.New("payment: a 3-D Secure server is required")
	case d.Merchants == nil:
		return nil, errors.New("payment: merchants are required")
	case d.Limiter == nil:
		return nil, errors.New("payment: a limiter is required")
	case notifyURL == nil:
		return nil, errors.New("payment: a 3-D Secure return address is required")
	case l.MaxAttempts < 1 || l.SessionTTL <= 0:
		return nil, fmt.Errorf("payment: limits %+v are incomplete", l)
	case t.Lease <= 0 || t.CallTimeout <= 0 || t.CallTimeout >= t.Lease || len(t.AskAgain) == 0:
		return nil, fmt.Errorf("payment: timing needs a lease longer than the call timeout and a schedule of asks")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Service{
		repo: d.Repo, vault: d.Vault, processor: d.Processor, threeDS: d.ThreeDS, kaspi: d.Kaspi,
		merchants: d.Merchants, limiter: d.Limiter, metrics: d.Metrics, now: d.Now,
		limits: l, timing: t, owner: vault.NewID("own_"), notifyURL: notifyURL,
	}, nil
}

// detach keeps a request's values but not its cancellation: once a step has
// begun the server finishes it, whatever the shopper's connection does (each
// call out has a deadline of its own).
func detach(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// Now is the service's clock.
func (svc *Service) Now() time.Time { return svc.now() }

// Limits returns the limits the service runs with.
func (svc *Service) Limits() Limits { return svc.limits }

// KaspiOffered reports whether Kaspi QR payments can be made here.
func (svc *Service) KaspiOffered() bool { return svc.kaspi != nil }

// CreateSession opens a session with the given ID (the caller's, so that a
// retried request under an idempotency key makes the same one). When the ID
// exists already, it returns that session, so a retry finds what the first
// try made.
func (svc *Service) CreateSession(ctx context.Context, merchant, id string, req CreateRequest) (Session, error) {
	ctx = detach(ctx)
	if err := req.Validate(svc.limits); err != nil {
		return Session{}, err
	}
	if !ValidSessionID(id) {
		return Session{}, fmt.Errorf("payment: session ID %q is not one NewSessionID makes", id)
	}
	now := svc.now().UTC()
	ttl := svc.limits.SessionTTL
	if req.ExpiresIn > 0 {
		ttl = time.Duration(req.ExpiresIn) * time.Second
	}
	s := Session{
		ID: id, Merchant: merchant, Amount: req.Amount, Currency: req.Currency,
		Reference: req.Reference, Description: req.Description, SuccessURL: req.SuccessURL, CancelURL: req.CancelURL,
		Locale: req.Locale, Methods: req.Methods, Status: SessionOpen, Created: now,
		ExpiresAt: now.Add(ttl).Truncate(time.Second), MaxAttempts: svc.limits.MaxAttempts,
	}
	err := svc.repo.Create(ctx, &s)
	if errors.Is(err, ErrConflict) {
		got, _, err := svc.Session(ctx, merchant, id)
		return got, err
	}
	return s, err
}

// NewSessionID returns a new session ID.
func NewSessionID() string { return vault.NewID("ses_") }

// ValidSessionID reports whether s looks like a session ID.
func ValidSessionID(s string) bool { return vault.ValidID(s, "ses_") }

// ValidPaymentID reports whether s looks like a payment ID.
func ValidPaymentID(s string) bool { return vault.ValidID(s, "pay_") }

// Session returns a merchant's session and, once it has one, its payment.
func (svc *Service) Session(ctx context.Context, merchant, id string) (Session, *Payment, error) {
	st, err := svc.load(ctx, id)
	if err != nil {
		return Session{}, nil, err
	}
	if st.Session.Merchant != merchant {
		return Session{}, nil, ErrSessionNotFound
	}
	return st.Session, st.Payment, nil
}

// SessionForPage returns a session and its payment for the shopper's page;
// the session ID is the shopper's capability. It only reads.
func (svc *Service) SessionForPage(ctx context.Context, id string) (Session, *Payment, error) {
	st, err := svc.load(ctx, id)
	if err != nil {
		return Session{}, nil, err
	}
	return st.Session, st.Payment, nil
}

// Payment returns a merchant's payment.
func (svc *Service) Payment(ctx context.Context, merchant, id string) (Payment, error) {
	if !ValidPaymentID(id) {
		return Payment{}, ErrPaymentNotFound
	}
	st, err := svc.repo.LoadPayment(ctx, id)
	if err != nil {
		return Payment{}, err
	}
	if st.Payment.Merchant != merchant {
		return Payment{}, ErrPaymentNotFound
	}
	return *st.Payment, nil
}

func (svc *Service) load(ctx context.Context, id string) (*State, error) {
	if !ValidSessionID(id) {
		return nil, ErrSessionNotFound
	}
	return svc.repo.Load(ctx, id)
}

func (svc *Service) merchantName(ctx context.Context, id string) string {
	n, err := svc.merchants.MerchantName(ctx, id)
	if err != nil {
		return ""
	}
	return n
}
