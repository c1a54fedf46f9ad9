package payment

import (
	"context"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/limit"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/vault"
)

// State is a session and its payment (nil before the first attempt) as
// loaded, with the versions the repository checks when they are saved.
type State struct {
	Session Session
	Payment *Payment
	Rev     Rev
}

// Rev is the repository's record of what version of each record a State
// was loaded at; the rules never read it.
type Rev struct {
	Session int64
	Payment int64
	// PaymentSum is a digest of the payment as loaded: a save that leaves
	// the payment as it was does not count as its change.
	PaymentSum [32]byte
}

// Held is a secret held sealed beside a session until an attempt takes it:
// a security code, or a 3-D Secure authentication value.
type Held struct {
	Kind   string // HeldCVV or HeldAuth
	Ref    string // the attempt it serves
	Sealed []byte
	TTL    time.Duration
}

// Kinds of held secrets.
const (
	HeldCVV  = "cvv"
	HeldAuth = "auth"
)

// Change is what a save writes beside the session and payment.
type Change struct {
	Events []Event
	Hold   []Held // secrets to hold
	Drop   []Held // secrets to delete (Kind and Ref)
}

// Repository keeps sessions and payments. Save writes the state, the change
// and the state's due times (Session.DueAt, Payment.DueAt) in one atomic
// step, checked against the versions the state was loaded at.
type Repository interface {
	// Create stores a new session; ErrConflict when its ID exists.
	Create(ctx context.Context, s *Session) error
	// Load reads a session and its payment; ErrSessionNotFound when absent.
	Load(ctx context.Context, sessionID string) (*State, error)
	// LoadPayment reads a payment and its session; ErrPaymentNotFound when absent.
	LoadPayment(ctx context.Context, paymentID string) (*State, error)
	// Save writes st and c; ErrConflict when either record changed since it
	// was loaded. On success st.Rev is the new versions.
	Save(ctx context.Context, st *State, c Change) error
	// Take reads a held secret and deletes it in the same step; ErrHeldGone
	// when it expired or was taken.
	Take(ctx context.Context, sessionID, kind, ref string) ([]byte, error)
	// Forget takes a key the due index names out of it when its record is
	// gone (expired or deleted).
	Forget(ctx context.Context, kind, id string) error
	// Delete removes a session and its payment, as loaded (ErrConflict when
	// either changed since): the end of their retention.
	Delete(ctx context.Context, st *State) error
}

// Errors the repository returns.
var (
	ErrConflict        = apperr.E(apperr.Conflict, "changed concurrently")
	ErrSessionNotFound = apperr.E(apperr.NotFound, "no such session")
	ErrPaymentNotFound = apperr.E(apperr.NotFound, "no such payment")
	ErrHeldGone        = apperr.E(apperr.NotFound, "the held secret is gone")
)

// Vault is what payments need of the card vault.
type Vault interface {
	// TokenizeFor seals a card entered on a session (its owner, which the
	// retention review asks whether the card is used).
	TokenizeFor(ctx context.Context, merchant string, c vault.Card, owner string) (vault.Info, error)
	// CardKey is a keyed hash of the PAN alone, for limits across merchants.
	CardKey(pan card.PAN) string
	// SealHeld seals a secret of a kind for a merchant, bound to ref.
	SealHeld(kind, merchant, ref string, plain []byte) ([]byte, error)
	// Sealed reports whether the vault is sealed (its key wiped): nothing
	// opens until the custodians unseal it.
	Sealed() bool
	// OpenHeld opens what SealHeld sealed with the same kind, merchant and ref.
	OpenHeld(ctx context.Context, kind, merchant, ref string, sealed []byte) ([]byte, error)
}

// Merchants gives a merchant's display name.
type Merchants interface {
	MerchantName(ctx context.Context, id string) (string, error)
}

// Limiter bounds card and QR submissions (card-testing protection).
type Limiter interface {
	// Submission counts one; it refuses with a rate_limited error that
	// wraps *limit.Exceeded.
	Submission(ctx context.Context, s limit.Submission) error
	// Check refuses a submission a limit is reached for already, without
	// counting it (so a refusal writes nothing).
	Check(ctx context.Context, s limit.Submission) error
}

// Metrics counts what the rules do; nil counts nothing.
type Metrics interface {
	AttemptEnded(method, outcome string)
}

// Processor is the acquirer's port (pkg/processor has the sandbox).
type Processor = processor.Processor
