// Package api is paypage's wire contract: the JSON shapes the shop and
// processor APIs take and answer, the webhook events, and how a webhook is
// signed. It depends on the standard library only, so a shop's or a
// processor's build (pkg/client) pulls in nothing of the server. The server
// makes these views from its domain values in pkg/apiview; openapi.yaml
// describes the same shapes, and the end-to-end tests check every answer
// against it.
package api

import (
	"encoding/json"
	"time"
)

// Session is a session as the shop sees it.
type Session struct {
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

// Payment is a payment as the shop sees it.
type Payment struct {
	ID                 string    `json:"id"`
	Object             string    `json:"object"`
	SessionID          string    `json:"session_id"`
	Amount             int64     `json:"amount"`
	Currency           string    `json:"currency"`
	Status             string    `json:"status"`
	Method             string    `json:"method"`
	Card               *Card     `json:"card,omitempty"`
	Kaspi              *Kaspi    `json:"kaspi,omitempty"`
	Decline            *Decline  `json:"decline,omitempty"`
	ThreeDSecure       *ThreeDS  `json:"three_d_secure,omitempty"`
	AuthCode           string    `json:"auth_code,omitempty"`
	ProcessorReference string    `json:"processor_reference,omitempty"`
	AmountRefunded     int64     `json:"amount_refunded"`
	Refunds            []Refund  `json:"refunds"`
	Attempts           []Attempt `json:"attempts"`
	Created            time.Time `json:"created"`
	Updated            time.Time `json:"updated"`
}

// Card is what a shop may see of a card: never the number.
type Card struct {
	Token       string `json:"token"`
	Brand       string `json:"brand"`
	Last4       string `json:"last4"`
	ExpMonth    int    `json:"exp_month"`
	ExpYear     int    `json:"exp_year"`
	Fingerprint string `json:"fingerprint"`
}

// Kaspi describes a Kaspi QR payment.
type Kaspi struct {
	QRID      string `json:"qr_id"`
	Reference string `json:"reference,omitempty"`
}

// Decline says why an attempt was refused.
type Decline struct {
	Code        string `json:"code"`
	NetworkCode string `json:"network_code,omitempty"`
	Message     string `json:"message"`
}

// ThreeDS is the 3-D Secure result.
type ThreeDS struct {
	Version     string `json:"version"`
	TransStatus string `json:"trans_status"`
	ECI         string `json:"eci,omitempty"`
	Challenged  bool   `json:"challenged"`
	DSTransID   string `json:"ds_trans_id,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// Attempt is how one attempt ended.
type Attempt struct {
	ID      string    `json:"id"`
	Method  string    `json:"method"`
	Time    time.Time `json:"time"`
	Outcome string    `json:"outcome"` // succeeded, a decline code, voiding, voided or not_charged
	Last4   string    `json:"last4,omitempty"`
	Brand   string    `json:"brand,omitempty"`
}

// Refund is a refund as the shop sees it.
type Refund struct {
	ID                 string    `json:"id"`
	Object             string    `json:"object"`
	PaymentID          string    `json:"payment_id"`
	Amount             int64     `json:"amount"`
	Currency           string    `json:"currency"`
	Status             string    `json:"status"`
	FailureCode        string    `json:"failure_code,omitempty"`
	ProcessorReference string    `json:"processor_reference,omitempty"`
	Created            time.Time `json:"created"`
}

// RefundEvent is the data of refund.succeeded and refund.failed.
type RefundEvent struct {
	Refund  Refund  `json:"refund"`
	Payment Payment `json:"payment"`
}

// Event is a webhook event: the body of a delivery, and an item of
// GET /v1/events (which adds Object and Delivery).
type Event struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Created  time.Time       `json:"created"`
	Merchant string          `json:"merchant"`
	Data     json.RawMessage `json:"data"` // a Payment, a Session or a RefundEvent, by Type
	Object   string          `json:"object,omitempty"`
	Delivery *Delivery       `json:"delivery,omitempty"`
}

// Event types.
const (
	EventPaymentSucceeded = "payment.succeeded"
	EventPaymentFailed    = "payment.failed"
	EventPaymentVoided    = "payment.voided"
	EventSessionExpired   = "session.expired"
	EventRefundSucceeded  = "refund.succeeded"
	EventRefundFailed     = "refund.failed"
)

// Delivery is where an event's delivery stands.
type Delivery struct {
	State         string     `json:"state"` // pending, delivered, failing, gave_up, disabled
	Attempts      int        `json:"attempts"`
	LastError     string     `json:"last_error,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
}

// EventList is the answer of GET /v1/events.
type EventList struct {
	Object string  `json:"object"` // "list"
	Data   []Event `json:"data"`
}

// SessionParams is what a shop sends to POST /v1/sessions.
type SessionParams struct {
	Amount      int64    `json:"amount"`   // minor units
	Currency    string   `json:"currency"` // ISO 4217
	Reference   string   `json:"reference,omitempty"`
	Description string   `json:"description,omitempty"`
	SuccessURL  string   `json:"success_url"`
	CancelURL   string   `json:"cancel_url"`
	Locale      string   `json:"locale,omitempty"`     // en, ru or kk
	Methods     []string `json:"methods,omitzero"`     // card, kaspi_qr; nil: card (an empty list is sent, and refused)
	ExpiresIn   int64    `json:"expires_in,omitempty"` // seconds; 0: the default
}

// RefundParams is what a shop sends to POST /v1/payments/{id}/refunds.
type RefundParams struct {
	Amount *int64 `json:"amount,omitempty"` // nil: what is left
}

// DetokenizeParams is what a processor sends to POST /v1/detokenize.
type DetokenizeParams struct {
	Token string `json:"token"`
}

// CardDetails is the card behind a token, as POST /v1/detokenize answers
// it to a processor: the only answer that carries a card number.
type CardDetails struct {
	PAN            string `json:"pan"`
	ExpMonth       int    `json:"exp_month"`
	ExpYear        int    `json:"exp_year"`
	CardholderName string `json:"cardholder_name"`
	Brand          string `json:"brand"`
	Merchant       string `json:"merchant"`
}

// ErrorBody is every error answer: {"error": {...}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong: a stable code, a message for people,
// and the request field at fault, if one is.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
}
