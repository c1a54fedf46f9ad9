// Package api is the shop's and the processor's view of paypage: the JSON
// shapes the APIs answer and the webhooks carry, made from the domain values
// of pkg/payment. It adds what a shop reads beside our codes (an English
// message for each decline) and never holds card data beyond what a shop
// may see.
package api

import (
	"strings"
	"time"

	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/processor"
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

// PageURL is the shopper's page of a session under a public base URL.
func PageURL(base, sessionID string) string {
	return strings.TrimRight(base, "/") + "/pay/" + sessionID
}

// SessionOf is the view of a session at time now, with its payment if given.
func SessionOf(s payment.Session, p *payment.Payment, url string, now time.Time) Session {
	v := Session{
		ID: s.ID, Object: "session", URL: url, Status: s.StatusAt(now),
		Amount: s.Amount, Currency: s.Currency, Reference: s.Reference, Description: s.Description,
		SuccessURL: s.SuccessURL, CancelURL: s.CancelURL, Locale: s.Locale, Methods: s.Methods,
		Created: s.Created, ExpiresAt: s.ExpiresAt, Attempts: s.Attempts, MaxAttempts: s.MaxAttempts,
	}
	if p != nil {
		pv := PaymentOf(*p)
		v.PaymentID, v.Payment = p.ID, &pv
	}
	return v
}

// PaymentOf is the view of a payment.
func PaymentOf(p payment.Payment) Payment {
	v := Payment{
		ID: p.ID, Object: "payment", SessionID: p.SessionID, Amount: p.Amount, Currency: p.Currency,
		Status: p.Status, Method: p.Method, AuthCode: p.AuthCode, ProcessorReference: p.ProcessorRef,
		AmountRefunded: p.AmountRefunded, Refunds: []Refund{}, Attempts: []Attempt{}, Created: p.Created, Updated: p.Updated,
	}
	if c := p.Card; c != nil {
		v.Card = &Card{Token: c.Token, Brand: string(c.Brand), Last4: c.Last4, ExpMonth: c.ExpMonth, ExpYear: c.ExpYear, Fingerprint: c.Fingerprint}
	}
	if p.KaspiQR != "" {
		v.Kaspi = &Kaspi{QRID: p.KaspiQR, Reference: p.KaspiRef}
	}
	if d := p.Decline; d != nil {
		v.Decline = &Decline{Code: d.Code, NetworkCode: d.NetworkCode, Message: DeclineMessage(d.Code)}
	}
	if t := p.ThreeDS; t != nil {
		v.ThreeDSecure = &ThreeDS{Version: t.Version, TransStatus: t.TransStatus, ECI: t.ECI, Challenged: t.Challenged, DSTransID: t.DSTransID, Reason: t.Reason}
	}
	for _, r := range p.Refunds {
		v.Refunds = append(v.Refunds, RefundOf(p.ID, r))
	}
	for _, a := range p.Attempts {
		v.Attempts = append(v.Attempts, Attempt{ID: a.ID, Method: a.Method, Time: a.Time, Outcome: a.Outcome, Last4: a.Last4, Brand: a.Brand})
	}
	return v
}

// RefundOf is the view of a payment's refund.
func RefundOf(paymentID string, r payment.Refund) Refund {
	return Refund{
		ID: r.ID, Object: "refund", PaymentID: paymentID, Amount: r.Amount, Currency: r.Currency, Status: r.Status,
		FailureCode: r.FailureCode, ProcessorReference: r.ProcessorRef, Created: r.Created,
	}
}

// declineMessages are the English texts the API shows beside a decline
// code; the page shows its own translations of the same codes.
var declineMessages = map[string]string{
	processor.DoNotHonor:           "The bank declined the payment. Please use another card or contact your bank.",
	processor.InsufficientFunds:    "There are not enough funds on the card.",
	processor.ExpiredCard:          "The card has expired.",
	processor.IncorrectCVC:         "The card details were entered incorrectly.",
	processor.NotEnabledInternet:   "The card is not enabled for internet payments. Please contact your bank.",
	processor.Unavailable:          "The payment system is temporarily unavailable. Nothing was charged; please try again.",
	processor.AuthenticationFailed: "3-D Secure authentication failed.",
	processor.InvalidCard:          "The card cannot be used for this payment.",
	processor.TryAgain:             "The payment could not be completed in time. Nothing was charged; please try again.",
	processor.QRExpired:            "The QR code expired before it was paid. Nothing was charged.",
}

// DeclineMessage returns the English message for a decline code.
func DeclineMessage(code string) string {
	if m, ok := declineMessages[code]; ok {
		return m
	}
	return "The payment was declined."
}
