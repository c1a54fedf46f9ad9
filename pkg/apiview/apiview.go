// Package apiview makes the API's views (pkg/api) from the domain values
// of pkg/payment: what the shop API answers and the webhooks carry. It adds
// what a shop reads beside our codes (an English message for each decline)
// and never puts card data beyond what a shop may see into a view.
package apiview

import (
	"strings"
	"time"

	"github.com/paypage/paypage/pkg/api"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/processor"
)

// PageURL is the shopper's page of a session under a public base URL.
func PageURL(base, sessionID string) string {
	return strings.TrimRight(base, "/") + "/pay/" + sessionID
}

// SessionOf is the view of a session at time now, with its payment if given.
func SessionOf(s payment.Session, p *payment.Payment, url string, now time.Time) api.Session {
	v := api.Session{
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
func PaymentOf(p payment.Payment) api.Payment {
	v := api.Payment{
		ID: p.ID, Object: "payment", SessionID: p.SessionID, Amount: p.Amount, Currency: p.Currency,
		Status: p.Status, Method: p.Method, AuthCode: p.AuthCode, ProcessorReference: p.ProcessorRef,
		AmountRefunded: p.AmountRefunded, Refunds: []api.Refund{}, Attempts: []api.Attempt{}, Created: p.Created, Updated: p.Updated,
	}
	if c := p.Card; c != nil {
		v.Card = &api.Card{Token: c.Token, Brand: string(c.Brand), Last4: c.Last4, ExpMonth: c.ExpMonth, ExpYear: c.ExpYear, Fingerprint: c.Fingerprint}
	}
	if p.KaspiQR != "" {
		v.Kaspi = &api.Kaspi{QRID: p.KaspiQR, Reference: p.KaspiRef}
	}
	if d := p.Decline; d != nil {
		v.Decline = &api.Decline{Code: d.Code, NetworkCode: d.NetworkCode, Message: DeclineMessage(d.Code, p.Method)}
	}
	if t := p.ThreeDS; t != nil {
		v.ThreeDSecure = &api.ThreeDS{Version: t.Version, TransStatus: t.TransStatus, ECI: t.ECI, Challenged: t.Challenged, DSTransID: t.DSTransID, Reason: t.Reason}
	}
	for _, r := range p.Refunds {
		v.Refunds = append(v.Refunds, RefundOf(p.ID, r))
	}
	for _, a := range p.Attempts {
		v.Attempts = append(v.Attempts, api.Attempt{ID: a.ID, Method: a.Method, Time: a.Time, Outcome: a.Outcome, Last4: a.Last4, Brand: a.Brand})
	}
	return v
}

// RefundOf is the view of a payment's refund.
func RefundOf(paymentID string, r payment.Refund) api.Refund {
	return api.Refund{
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

// kaspiDeclineMessages replace a card's words where they would be wrong for
// a Kaspi QR payment ("use another card").
var kaspiDeclineMessages = map[string]string{
	processor.DoNotHonor:        "The payment was declined in the Kaspi.kz app.",
	processor.InsufficientFunds: "There was not enough money in Kaspi.kz for the payment.",
}

// DeclineMessage returns the English message for a decline code of an
// attempt by method.
func DeclineMessage(code, method string) string {
	if m, ok := kaspiDeclineMessages[code]; ok && method == payment.MethodKaspi {
		return m
	}
	if m, ok := declineMessages[code]; ok {
		return m
	}
	return "The payment was declined."
}
