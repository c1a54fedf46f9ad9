package payment

import (
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/money"
)

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

// Lengths of the shop's texts, in bytes.
const (
	MaxReference   = 200
	MaxDescription = 500
	MaxURL         = 2048
)

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
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(s) > MaxURL {
		return apperr.Field(param, "must be an absolute http(s) URL of at most %d bytes", MaxURL)
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
	if err := validText("reference", r.Reference, MaxReference); err != nil {
		return err
	}
	if err := validText("description", r.Description, MaxDescription); err != nil {
		return err
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
	if r.Methods == nil {
		r.Methods = []string{MethodCard}
	}
	if len(r.Methods) == 0 {
		return apperr.Field("methods", "must name at least one method: card, kaspi_qr")
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
	if r.ExpiresIn != 0 && (r.ExpiresIn < int64(l.MinSessionTTL/time.Second) || r.ExpiresIn > int64(l.MaxSessionTTL/time.Second)) {
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
