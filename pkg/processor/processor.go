// Package processor is the way out to the acquirer: the Processor interface
// that a real connector implements, the decline codes, and a sandbox that
// decides by the sandbox card table.
package processor

import (
	"context"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/card"
)

// Authentication is the 3-D Secure result carried into authorization.
type Authentication struct {
	Version     string `json:"version"`
	TransStatus string `json:"trans_status"`
	ECI         string `json:"eci"`
	AuthValue   string `json:"auth_value,omitempty"` // CAVV / AAV: kept for authorization, never shown to the shop
	DSTransID   string `json:"ds_trans_id,omitempty"`
}

// AuthorizeRequest asks to authorize (and capture) a payment.
type AuthorizeRequest struct {
	ID        string // our attempt ID: the processor's idempotency key
	SessionID string // the session the attempt pays (ses_...): one per order, on every attempt
	Merchant  string
	Token     string   // the vault token; the processor detokenizes it
	CVV       card.CVV // sent once: a lost answer is asked for by Inquire, never by a second Authorize
	Amount    int64    // minor units
	Currency  string
	Reference string // the shop's own order reference: free text, possibly empty
	ThreeDS   *Authentication
}

// Result is the processor's answer. A decline is a Result, not an error;
// an error means the answer is unknown (the processor was not reached).
type Result struct {
	Approved    bool   `json:"approved"`
	Code        string `json:"code,omitempty"`         // our decline code, "" when approved
	NetworkCode string `json:"network_code,omitempty"` // ISO 8583 response code
	AuthCode    string `json:"auth_code,omitempty"`
	Reference   string `json:"reference,omitempty"` // the processor's ID for the payment
}

// RefundRequest returns money to the card that paid.
type RefundRequest struct {
	ID        string // our refund ID: the idempotency key
	Reference string // the authorization's Reference
	Token     string
	Amount    int64
	Currency  string
}

// RefundResult is the processor's answer to a refund.
type RefundResult struct {
	Approved  bool   `json:"approved"`
	Code      string `json:"code,omitempty"`
	Reference string `json:"reference,omitempty"`
}

// VoidRequest cancels an authorization (a reversal), by the authorization's
// request ID: an approval that came too late, or one whose answer never came.
type VoidRequest struct {
	ID        string // the authorization's request ID (our attempt ID)
	Reference string // the authorization's Reference, when known
	Amount    int64
	Currency  string
}

// VoidResult is the processor's answer to a void.
type VoidResult struct {
	// Voided reports that an approval was reversed; false means the
	// processor holds no approval under the ID (and, having recorded the
	// void, will approve none later).
	Voided bool `json:"voided"`
}

// Processor authorizes, voids and refunds. Every call is idempotent by its
// request ID.
type Processor interface {
	Authorize(ctx context.Context, r AuthorizeRequest) (Result, error)
	// Inquire asks again for the answer to an authorization by its request
	// ID, as the processor gave it (or gives it now). ErrUnknown when the
	// processor has no final answer under the ID: it never saw it, or is
	// still deciding. That is an unknown, never a decline.
	Inquire(ctx context.Context, id string) (Result, error)
	Void(ctx context.Context, r VoidRequest) (VoidResult, error)
	Refund(ctx context.Context, r RefundRequest) (RefundResult, error)
}

// ErrUnknown is Inquire's answer when the processor has no final answer.
var ErrUnknown = apperr.E(apperr.Unavailable, "the processor has no answer for this authorization yet")

// Decline codes: our stable names, beside the ISO 8583 codes.
const (
	DoNotHonor           = "do_not_honor"
	InsufficientFunds    = "insufficient_funds"
	ExpiredCard          = "expired_card"
	IncorrectCVC         = "incorrect_cvc"
	NotEnabledInternet   = "card_not_enabled_for_internet"
	Unavailable          = "processor_unavailable"
	AuthenticationFailed = "authentication_failed"
	InvalidCard          = "invalid_card"
	TryAgain             = "try_again" // the attempt could not finish (its security code expired); nothing charged
	LimitExceeded        = "attempts_exceeded"
	QRExpired            = "qr_expired" // a Kaspi QR that nobody paid in time; nothing charged
)

// Known reports whether code is one of the decline codes above: the ones
// the shop API names (a connector's other code is recorded as DoNotHonor).
func Known(code string) bool {
	switch code {
	case DoNotHonor, InsufficientFunds, ExpiredCard, IncorrectCVC, NotEnabledInternet, Unavailable,
		AuthenticationFailed, InvalidCard, TryAgain, LimitExceeded, QRExpired:
		return true
	}
	return false
}

// NetworkCodes maps our codes to ISO 8583 response codes.
var NetworkCodes = map[string]string{
	DoNotHonor:         "05",
	InsufficientFunds:  "51",
	ExpiredCard:        "54",
	IncorrectCVC:       "82",
	NotEnabledInternet: "57",
	Unavailable:        "91",
	InvalidCard:        "14",
}

// Retryable reports whether the shopper may simply try again with the same card.
func Retryable(code string) bool { return code == Unavailable || code == TryAgain }
