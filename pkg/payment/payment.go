// Package payment holds the rules of a payment page: sessions that a shop
// creates, the attempts made on them (a card through 3-D Secure and the
// processor, or a Kaspi QR), the payment that results, and its refunds.
//
// The server drives every attempt to its end. An attempt in flight is owned
// through a lease written on its session; whoever holds the lease may call
// out (the issuer, the processor, Kaspi) and renews it while the call runs.
// Each session is filed in the store's due index under the time it needs a
// look next (the lease's end, the next poll of a challenge or a QR, its
// expiry), and Drive, run by the reconciler on every replica, takes it from
// there when nobody else does. So no outcome waits for a page view, and the
// shop hears how each session ended, once.
//
// Every change is one atomic, version-checked save of the session, its
// payment, the secrets they hold and the events they cause (the Repository
// port). The package knows nothing of HTTP, storage layout or presentation.
package payment

import (
	"slices"
	"strings"
	"time"

	"github.com/paypage/paypage/pkg/api"
	"github.com/paypage/paypage/pkg/card"
)

// Session statuses.
const (
	SessionOpen     = "open"
	SessionComplete = "complete"
	SessionExpired  = "expired"
	SessionFailed   = "failed" // the attempts ran out
)

// Payment statuses.
const (
	StatusProcessing        = "processing"
	StatusRequiresAction    = "requires_action"
	StatusSucceeded         = "succeeded"
	StatusFailed            = "failed"
	StatusRefunded          = "refunded"
	StatusPartiallyRefunded = "partially_refunded"
)

// Methods of payment.
const (
	MethodCard  = "card"
	MethodKaspi = "kaspi_qr"
)

// Stages of an attempt in flight.
const (
	StageClaimed        = "claimed"        // the session is held for a card; the card is being sealed
	StageAuthenticating = "authenticating" // the 3-D Secure authentication request is out
	StageChallenge      = "challenge"      // the shopper is at the bank's page
	StageAuthorizing    = "authorizing"    // the processor is asked
	StageKaspiStarting  = "kaspi_starting" // a Kaspi QR is being made
	StageKaspi          = "kaspi"          // the QR waits for the shopper's app
)

// Outcomes of an attempt besides decline codes.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeVoiding   = "voiding" // an approval that came too late, being voided
	OutcomeVoided    = "voided"  // an approval that came too late, voided at the processor
	// OutcomeNotCharged: an attempt given up unanswered, whose void found
	// nothing to cancel.
	OutcomeNotCharged = "not_charged"
)

// Session is a shop's request for one payment, and the page's state.
type Session struct {
	ID          string
	Merchant    string
	Amount      int64 // minor units
	Currency    string
	Reference   string
	Description string
	SuccessURL  string
	CancelURL   string
	Locale      string
	Methods     []string
	Status      string
	Created     time.Time
	ExpiresAt   time.Time
	Attempts    int // attempts that reached the issuer or the processor
	MaxAttempts int
	LastDecline *Decline
	// Live is the attempt in flight: one at a time.
	Live *Attempt
	// PurgeAt is when an ended session (and its payment) is deleted, at
	// the end of the record retention; zero: kept.
	PurgeAt time.Time
}

// Attempt is an attempt in flight.
type Attempt struct {
	ID      string
	Method  string
	Stage   string
	Started time.Time
	// Lease names who drives the attempt now, and until when.
	Lease Lease
	// Next is when the reconciler looks at the attempt again while nobody
	// holds it (the next poll of a challenge, a QR, or a lost answer).
	Next time.Time
	// Asks counts how often a lost answer was asked for again.
	Asks int
	// Authorizing is when the processor was first asked (stage authorizing).
	Authorizing time.Time
	// Checked is when Kaspi was last asked about the attempt's QR.
	Checked   time.Time
	Card      *Card
	Challenge *Challenge
	ThreeDS   *ThreeDS
	QR        *QR
}

// Lease is a claim on an attempt: only its owner calls out for it until it ends.
type Lease struct {
	Owner string
	Until time.Time
}

// HeldAt reports whether someone holds the lease at time now.
func (l Lease) HeldAt(now time.Time) bool { return l.Owner != "" && now.Before(l.Until) }

// Card is what may be shown of the card that paid: never the number.
type Card struct {
	Token       string
	Brand       card.Brand
	Last4       string
	ExpMonth    int
	ExpYear     int
	Fingerprint string
}

// Challenge is where the shopper passes the bank's check: post CReq to ACSURL.
type Challenge struct {
	TransID string
	ACSURL  string
	CReq    string
}

// ThreeDS is the 3-D Secure result shown on the payment.
type ThreeDS struct {
	Version     string
	TransStatus string
	ECI         string
	Challenged  bool
	DSTransID   string
	Reason      string
}

// QR is a Kaspi QR payment waiting to be scanned.
type QR struct {
	ID        string
	Payload   string // what the QR code encodes: the address the Kaspi.kz app opens
	ExpiresAt time.Time
}

// Decline says why an attempt was refused: our stable code and the network's.
type Decline struct {
	Code        string
	NetworkCode string
}

// Payment is the money movement of a session: at most one attempt succeeds.
type Payment struct {
	ID             string
	SessionID      string
	Merchant       string
	Amount         int64
	Currency       string
	Status         string
	Method         string
	Card           *Card
	KaspiQR        string // the QR's ID, for a Kaspi payment
	KaspiRef       string // Kaspi's payment reference once paid
	Decline        *Decline
	ThreeDS        *ThreeDS
	AuthCode       string
	ProcessorRef   string
	AmountRefunded int64
	Refunds        []Refund
	Attempts       []Result
	Created        time.Time
	Updated        time.Time
}

// Result is how an attempt ended: one that reached the issuer or the
// processor, or an approval that came too late and was voided.
type Result struct {
	ID           string
	Method       string
	Time         time.Time
	Outcome      string // succeeded, voiding, voided, or a decline code
	Last4        string
	Brand        string
	ProcessorRef string
	// NextTry is when a void that could not be confirmed is asked for again.
	NextTry time.Time
}

// Refund returns part or all of a payment to the card (or Kaspi account) that paid.
type Refund struct {
	ID           string
	Amount       int64
	Currency     string
	Status       string // pending, succeeded, failed
	FailureCode  string
	ProcessorRef string
	Created      time.Time
	// NextTry is when a pending refund is asked for again.
	NextTry time.Time
}

// Refund statuses.
const (
	RefundPending   = "pending"
	RefundSucceeded = "succeeded"
	RefundFailed    = "failed"
)

// Event types: what a shop hears, by the names of the wire contract.
const (
	EventPaymentSucceeded = api.EventPaymentSucceeded
	EventPaymentFailed    = api.EventPaymentFailed
	EventPaymentVoided    = api.EventPaymentVoided
	EventSessionExpired   = api.EventSessionExpired
	EventRefundSucceeded  = api.EventRefundSucceeded
	EventRefundFailed     = api.EventRefundFailed
)

// Event is what a change tells the shop. The repository writes it with the
// session, payment or refund as they are after the change.
type Event struct {
	Type   string
	Refund string // the refund's ID, for refund events
}

// StatusAt is the session's status at time now: an open session past its
// expiry with nothing in flight is expired, whether or not the reconciler
// has written it down yet.
func (s *Session) StatusAt(now time.Time) string {
	if s.Status == SessionOpen && s.Live == nil && !now.Before(s.ExpiresAt) {
		return SessionExpired
	}
	return s.Status
}

// AttemptsLeft is how many more attempts the shopper has.
func (s *Session) AttemptsLeft() int { return max(0, s.MaxAttempts-s.Attempts) }

// Allows reports whether the session offers a method.
func (s *Session) Allows(method string) bool { return slices.Contains(s.Methods, method) }

// ReturnURL fills {SESSION_ID} in u.
func (s *Session) ReturnURL(u string) string { return strings.ReplaceAll(u, "{SESSION_ID}", s.ID) }

// DueAt is when the session needs the reconciler next: its lease's end, the
// next look at its attempt in flight, or its expiry. Zero: never again.
func (s *Session) DueAt() time.Time {
	if a := s.Live; a != nil {
		if a.Lease.Owner != "" {
			return a.Lease.Until
		}
		if !a.Next.IsZero() {
			return a.Next
		}
		return a.Started
	}
	if s.Status == SessionOpen {
		return s.ExpiresAt
	}
	return s.PurgeAt
}

// DueAt is when the payment needs the reconciler next: a pending refund or
// a void to ask for again. Zero: never again.
func (p *Payment) DueAt() time.Time {
	var at time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	for _, r := range p.Refunds {
		if r.Status == RefundPending {
			earlier(r.NextTry)
		}
	}
	for _, r := range p.Attempts {
		if r.Outcome == OutcomeVoiding {
			earlier(r.NextTry)
		}
	}
	return at
}

// Held is what refunds already hold of a payment: succeeded and pending ones.
func (p *Payment) Held() int64 {
	var n int64
	for _, r := range p.Refunds {
		if r.Status != RefundFailed {
			n += r.Amount
		}
	}
	return n
}

// Group returns the store group shared by a session, its payment and what
// they hold: the ID without its prefix.
func Group(id string) string {
	if i := strings.IndexByte(id, '_'); i >= 0 {
		return id[i+1:]
	}
	return id
}

// PaymentIDFor returns the ID of a session's payment.
func PaymentIDFor(sessionID string) string { return "pay_" + Group(sessionID) }

// SessionIDFor returns the ID of a payment's session.
func SessionIDFor(paymentID string) string { return "ses_" + Group(paymentID) }
