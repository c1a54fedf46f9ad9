// Package threeds runs our side of the EMV 3-D Secure 2 browser flow: an
// authentication request, the transaction status that answers it (Y, A, C,
// N, U, R), the challenge at the issuer's page, and the trusted result that
// comes back, with the ECI and authentication value for authorization.
//
// Server is what a real 3-D Secure server connector implements; Sandbox is a
// built-in issuer (ACS) that decides by the sandbox card table and shows a
// bank page asking for an SMS code.
package threeds

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"

	"github.com/paypage/paypage/pkg/card"
)

// Transaction statuses of EMV 3DS 2.
const (
	Authenticated = "Y" // frictionless: authenticated
	Attempted     = "A" // attempted: the issuer does not take part, liability shifts
	Challenge     = "C" // the shopper must pass a challenge
	NotAuth       = "N" // not authenticated
	Unavailable   = "U" // authentication could not be performed
	Rejected      = "R" // rejected by the issuer: do not authorize
)

// Browser is what our page learned of the shopper's browser.
type Browser struct {
	IP             string `json:"ip"`
	UserAgent      string `json:"user_agent"`
	AcceptHeader   string `json:"accept_header"`
	Language       string `json:"language"`
	JavaScript     bool   `json:"javascript"`
	ScreenWidth    int    `json:"screen_width,omitempty"`
	ScreenHeight   int    `json:"screen_height,omitempty"`
	TimezoneOffset int    `json:"tz_offset,omitempty"`
}

// Request is an authentication request (AReq) as our side builds it.
type Request struct {
	Merchant     string
	MerchantName string
	Amount       int64
	Currency     string
	Token        string     // the card, by its vault token
	Brand        card.Brand // for the programme name and ECI values
	MaskedPAN    string     // first six and last four, for the bank page
	Browser      Browser
	// NotificationURL is where the issuer's page sends the shopper back (with the CRes).
	NotificationURL string
}

// Result is the answer (ARes, or the final RReq after a challenge).
type Result struct {
	TransID     string `json:"trans_id"` // the 3DS Server transaction ID
	TransStatus string `json:"trans_status"`
	ECI         string `json:"eci,omitempty"`
	AuthValue   string `json:"-"` // CAVV/AAV: goes to authorization, never shown
	DSTransID   string `json:"ds_trans_id,omitempty"`
	Version     string `json:"version"`
	Reason      string `json:"reason,omitempty"` // transStatusReason, as text
	// Abandoned: the challenge timed out with no answer from the shopper
	// (transStatus N, reason "transaction timed out at the ACS").
	Abandoned bool `json:"abandoned,omitempty"`
	// ACSURL and CReq are set when TransStatus is C: post CReq to ACSURL.
	ACSURL string `json:"-"`
	CReq   string `json:"-"`
}

// Success reports whether the result lets the payment go to authorization.
func (r Result) Success() bool {
	return r.TransStatus == Authenticated || r.TransStatus == Attempted
}

// Server authenticates cardholders.
type Server interface {
	// Authenticate sends the authentication request.
	Authenticate(ctx context.Context, r Request) (Result, error)
	// Outcome returns the final result of a challenged transaction, as the
	// directory server reported it (the RReq): never what the browser carried.
	Outcome(ctx context.Context, transID string) (Result, error)
}

// ECI returns the electronic commerce indicator for a brand and status.
func ECI(b card.Brand, status string) string {
	mc := b == card.Mastercard
	switch status {
	case Authenticated:
		if mc {
			return "02"
		}
		return "05"
	case Attempted:
		if mc {
			return "01"
		}
		return "06"
	}
	if mc {
		return "00"
	}
	return "07"
}

// CRes is the challenge response the issuer's page posts back through the
// browser. It only names the transaction: the result is read from Outcome.
type CRes struct {
	ThreeDSServerTransID string `json:"threeDSServerTransID"`
	ACSTransID           string `json:"acsTransID"`
	MessageType          string `json:"messageType"`
	MessageVersion       string `json:"messageVersion"`
	TransStatus          string `json:"transStatus"`
}

// CReq is the challenge request posted to the issuer's page.
type CReq struct {
	ThreeDSServerTransID string `json:"threeDSServerTransID"`
	ACSTransID           string `json:"acsTransID"`
	ChallengeWindowSize  string `json:"challengeWindowSize"`
	MessageType          string `json:"messageType"`
	MessageVersion       string `json:"messageVersion"`
}

// Encode returns v as base64url JSON, the form CReq and CRes travel in.
func Encode(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCRes reads a base64url CRes.
func DecodeCRes(s string) (CRes, error) {
	var c CRes
	if len(s) > 4096 {
		return c, errors.New("cres too long")
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		if b, err = base64.URLEncoding.DecodeString(s); err != nil {
			return c, errors.New("cres is not base64url")
		}
	}
	if err := json.Unmarshal(b, &c); err != nil || c.ThreeDSServerTransID == "" {
		return c, errors.New("cres is not a challenge response")
	}
	return c, nil
}
