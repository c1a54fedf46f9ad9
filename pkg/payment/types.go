// Package payment holds the rules of a payment page: sessions that a shop
// creates, the card attempts made on them (through 3-D Secure and the
// processor), the payment that results and its refunds. Every state change is
// one atomic, version-checked store commit over the session's group, with the
// webhook events it causes, so a double click, two replicas or a replayed
// result can never charge or refund twice.
package payment

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/processor"
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

// Session is a shop's request for one payment, and the page's state.
type Session struct {
	ID          string    `json:"id"`
	Merchant    string    `json:"merchant"`
	Amount      int64     `json:"amount"`
	Currency    string    `json:"currency"`
	Reference   string    `json:"reference,omitempty"`
	Description string    `json:"description,omitempty"`
	SuccessURL  string    `json:"success_url"`
	CancelURL   string    `json:"cancel_url"`
	Locale      string    `json:"locale,omitempty"`
	Methods     []string  `json:"methods"`
	Status      string    `json:"status"`
	Created     time.Time `json:"created"`
	ExpiresAt   time.Time `json:"expires_at"`
	Attempts    int       `json:"attempts"`
	MaxAttempts int       `json:"max_attempts"`
	PaymentID   string    `json:"payment_id,omitempty"`
	RequestHash string    `json:"request_hash,omitempty"`
	Pending     *Pending  `json:"pending,omitempty"`
	LastDecline *Decline  `json:"last_decline,omitempty"`
}

// Pending is the attempt in flight, if any: one at a time per session.
type Pending struct {
	AttemptID string    `json:"attempt_id"`
	Method    string    `json:"method"`
	Stage     string    `json:"stage"` // authenticating, challenge, authorizing, kaspi
	Token     string    `json:"token,omitempty"`
	TransID   string    `json:"trans_id,omitempty"`
	ACSURL    string    `json:"acs_url,omitempty"`
	CReq      string    `json:"creq,omitempty"`
	Since     time.Time `json:"since"`
	QRID      string    `json:"qr_id,omitempty"`
	QRPayload string    `json:"qr_payload,omitempty"`
	QRExpires time.Time `json:"qr_expires,omitzero"`
	// Auth is the 3-D Secure result, kept until authorization.
	Auth *processor.Authentication `json:"auth,omitempty"`
}

// Stages of a pending attempt.
const (
	StageAuthenticating = "authenticating"
	StageChallenge      = "challenge"
	StageAuthorizing    = "authorizing"
	StageKaspi          = "kaspi"
)

// StatusAt is the session's status at time now: an open session past its
// expiry is expired even before a sweeper writes it down.
func (s *Session) StatusAt(now time.Time) string {
	if s.Status == SessionOpen && s.Pending == nil && !now.Before(s.ExpiresAt) {
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

// Payment is the money movement of a session: at most one succeeds.
type Payment struct {
	ID             string          `json:"id"`
	SessionID      string          `json:"session_id"`
	Merchant       string          `json:"merchant"`
	Amount         int64           `json:"amount"`
	Currency       string          `json:"currency"`
	Status         string          `json:"status"`
	Method         string          `json:"method"`
	Card           *CardDetails    `json:"card,omitempty"`
	Kaspi          *KaspiDetails   `json:"kaspi,omitempty"`
	Decline        *Decline        `json:"decline,omitempty"`
	ThreeDS        *ThreeDSDetails `json:"three_d_secure,omitempty"`
	AuthCode       string          `json:"auth_code,omitempty"`
	ProcessorRef   string          `json:"processor_reference,omitempty"`
	AmountRefunded int64           `json:"amount_refunded"`
	Refunds        []Refund        `json:"refunds"`
	Attempts       []Attempt       `json:"attempts"`
	Created        time.Time       `json:"created"`
	Updated        time.Time       `json:"updated"`
}

// CardDetails is what the shop may see of the card: never the number.
type CardDetails struct {
	Token       string     `json:"token"`
	Brand       card.Brand `json:"brand"`
	Last4       string     `json:"last4"`
	ExpMonth    int        `json:"exp_month"`
	ExpYear     int        `json:"exp_year"`
	Fingerprint string     `json:"fingerprint"`
}

// KaspiDetails describes a Kaspi QR payment.
type KaspiDetails struct {
	QRID      string `json:"qr_id"`
	Reference string `json:"reference,omitempty"`
}

// Decline says why an attempt was refused.
type Decline struct {
	Code        string `json:"code"`
	NetworkCode string `json:"network_code,omitempty"`
	Message     string `json:"message"`
}

// ThreeDSDetails is the 3-D Secure result shown on the payment.
type ThreeDSDetails struct {
	Version     string `json:"version"`
	TransStatus string `json:"trans_status"`
	ECI         string `json:"eci,omitempty"`
	Challenged  bool   `json:"challenged"`
	DSTransID   string `json:"ds_trans_id,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// Attempt is one try that reached the issuer or the processor.
type Attempt struct {
	ID      string    `json:"id"`
	Method  string    `json:"method"`
	Time    time.Time `json:"time"`
	Outcome string    `json:"outcome"` // succeeded, or a decline code
	Last4   string    `json:"last4,omitempty"`
	Brand   string    `json:"brand,omitempty"`
}

// Refund returns part or all of a payment to the card (or Kaspi account) that paid.
type Refund struct {
	ID          string    `json:"id"`
	Amount      int64     `json:"amount"`
	Currency    string    `json:"currency"`
	Status      string    `json:"status"` // pending, succeeded, failed
	Reason      string    `json:"failure_code,omitempty"`
	Reference   string    `json:"processor_reference,omitempty"`
	Created     time.Time `json:"created"`
	IdemKeyHash string    `json:"-"`
}

// Refund statuses.
const (
	RefundPending   = "pending"
	RefundSucceeded = "succeeded"
	RefundFailed    = "failed"
)

// Event is a webhook event, written in the same commit as the change that causes it.
type Event struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Created  time.Time       `json:"created"`
	Merchant string          `json:"merchant"`
	Data     json.RawMessage `json:"data"`
}

// Event types.
const (
	EventPaymentSucceeded = "payment.succeeded"
	EventPaymentFailed    = "payment.failed"
	EventSessionExpired   = "session.expired"
	EventRefundSucceeded  = "refund.succeeded"
	EventRefundFailed     = "refund.failed"
)

// SessionView is a session as the shop sees it (API answers, webhooks).
type SessionView struct {
	ID          string    `json:"id"`
	Object      string    `json:"object"`
	URL         string    `json:"url"`
	Status      string    `json:"status"`
	Amount      int64     `json:"amount"`
	Currency    string    `json:"currency"`
	Reference   string    `json:"reference,omitempty"`
	Description string    `json:"description,omitempty"`
	SuccessURL  string    `json:"success_url"`
	CancelURL   string    `json:"cancel_url"`
	Locale      string    `json:"locale,omitempty"`
	Methods     []string  `json:"methods"`
	Created     time.Time `json:"created"`
	ExpiresAt   time.Time `json:"expires_at"`
	Attempts    int       `json:"attempts"`
	MaxAttempts int       `json:"max_attempts"`
	PaymentID   string    `json:"payment_id,omitempty"`
	Payment     *Payment  `json:"payment,omitempty"`
}

// View is the session as the shop sees it at time now, with its payment if given.
func (s *Session) View(publicURL string, now time.Time, p *Payment) SessionView {
	return SessionView{
		ID: s.ID, Object: "session", URL: strings.TrimRight(publicURL, "/") + "/pay/" + s.ID, Status: s.StatusAt(now),
		Amount: s.Amount, Currency: s.Currency, Reference: s.Reference, Description: s.Description,
		SuccessURL: s.SuccessURL, CancelURL: s.CancelURL, Locale: s.Locale, Methods: s.Methods,
		Created: s.Created, ExpiresAt: s.ExpiresAt, Attempts: s.Attempts, MaxAttempts: s.MaxAttempts,
		PaymentID: s.PaymentID, Payment: p,
	}
}
