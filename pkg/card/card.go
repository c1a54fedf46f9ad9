// Package card parses and checks what a shopper types about a payment card:
// the number (PAN), the expiry, the security code and the cardholder name.
// It does no I/O. Its PAN and CVV types redact themselves in every format,
// so card data cannot reach a log or an error by accident.
package card

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Error is a refusal of one field, with a stable code that a page translates.
type Error struct {
	Field string // "number", "expiry", "cvc", "name"
	Code  string // "required", "invalid", "luhn", "length", "unsupported", "expired", ...
}

func (e *Error) Error() string { return "card " + e.Field + ": " + e.Code }

// Field codes.
const (
	ErrRequired    = "required"
	ErrInvalid     = "invalid"     // characters that do not belong
	ErrLuhn        = "luhn"        // check digit wrong: a typo
	ErrLength      = "length"      // wrong number of digits for the brand
	ErrUnsupported = "unsupported" // a brand we recognise but do not accept
	ErrUnknown     = "unknown"     // no known brand
	ErrExpired     = "expired"
	ErrTooFar      = "too_far" // expiry implausibly far ahead
	ErrLatin       = "latin"   // name not in Latin letters
	ErrTooShort    = "too_short"
	ErrTooLong     = "too_long"
)

func fieldErr(field, code string) error { return &Error{Field: field, Code: code} }

// PAN is a validated primary account number. It prints as its mask in every
// fmt verb, in slog and in JSON; Digits returns the number itself.
type PAN struct {
	digits string
	brand  Brand
}

// ParsePAN accepts a number typed with or without spaces or dashes, checks
// digits, Luhn and the brand's lengths, and returns the PAN. Brands that are
// recognised but not accepted give ErrUnsupported.
func ParsePAN(s string) (PAN, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return PAN{}, fieldErr("number", ErrRequired)
	}
	var b strings.Builder
	for i, r := range []rune(s) {
		switch {
		case i >= 40: // far too long whatever the separators
			return PAN{}, fieldErr("number", ErrLength)
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '\u00a0':
		default:
			return PAN{}, fieldErr("number", ErrInvalid)
		}
	}
	d := b.String()
	if len(d) < 12 || len(d) > 19 {
		return PAN{}, fieldErr("number", ErrLength)
	}
	if !Luhn(d) {
		return PAN{}, fieldErr("number", ErrLuhn)
	}
	brand := DetectBrand(d)
	if brand == Unknown {
		return PAN{}, fieldErr("number", ErrUnknown)
	}
	if !brand.validLength(len(d)) {
		return PAN{}, fieldErr("number", ErrLength)
	}
	if !brand.Accepted() {
		return PAN{}, fieldErr("number", ErrUnsupported)
	}
	return PAN{digits: d, brand: brand}, nil
}

// Digits returns the full number. Call it only to seal it in the vault or to
// hand it to an authorized processor.
func (p PAN) Digits() string { return p.digits }

// Brand returns the card scheme.
func (p PAN) Brand() Brand { return p.brand }

// BIN returns the leading digits that may be kept and shown in clear: the
// first six of a number of 16 digits or more, none of a shorter one. It is
// exactly what Mask shows before the hidden digits.
func (p PAN) BIN() string { return p.digits[:shown(len(p.digits))] }

// Last4 returns the last four digits.
func (p PAN) Last4() string { return last(p.digits, 4) }

// IsZero reports whether p holds no number.
func (p PAN) IsZero() bool { return p.digits == "" }

// Mask returns the number with all but the first six and last four digits
// hidden, the most PCI DSS 3.4.1 lets us show.
func (p PAN) Mask() string { return Mask(p.digits) }

// String returns the mask.
func (p PAN) String() string { return p.Mask() }

// GoString returns the mask.
func (p PAN) GoString() string { return "card.PAN(" + p.Mask() + ")" }

// Format writes the mask whatever the verb.
func (p PAN) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(p.Mask())) }

// LogValue returns the mask for log/slog.
func (p PAN) LogValue() slog.Value { return slog.StringValue(p.Mask()) }

// MarshalText returns the mask, so encoders never write the number.
func (p PAN) MarshalText() ([]byte, error) { return []byte(p.Mask()), nil }

// Mask hides all but the first six and the last four digits of a number of
// 16 digits or more, and all but the last four of a shorter one: PCI DSS
// 3.4.1 allows at most the BIN and the last four, and for a 13- or 15-digit
// number six and four would leave only three or five digits hidden.
func Mask(digits string) string {
	n := len(digits)
	if n == 0 {
		return ""
	}
	head, tail := shown(n), min(4, n/2)
	return digits[:head] + strings.Repeat("•", n-head-tail) + digits[n-tail:]
}

// shown is how many leading digits of an n-digit number may be shown.
func shown(n int) int {
	if n >= 16 {
		return 6
	}
	return 0
}

// Luhn reports whether a string of digits passes the Luhn (mod 10) check.
func Luhn(digits string) bool {
	if digits == "" {
		return false
	}
	sum, double := 0, false
	for i := len(digits) - 1; i >= 0; i-- {
		c := digits[i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// CVV is a card security code (CVV2, CVC2, CID, CVP2). It prints as "***".
type CVV struct{ v string }

// ParseCVV checks the code's length for the brand: four digits for American
// Express, three for the others.
func ParseCVV(s string, b Brand) (CVV, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return CVV{}, fieldErr("cvc", ErrRequired)
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return CVV{}, fieldErr("cvc", ErrInvalid)
		}
	}
	if len(s) != b.CVVLength() {
		return CVV{}, fieldErr("cvc", ErrLength)
	}
	return CVV{v: s}, nil
}

// NewCVV wraps a code taken back from the vault, without checks.
func NewCVV(s string) CVV { return CVV{v: s} }

// Digits returns the code itself, for sealing and for authorization only.
func (c CVV) Digits() string { return c.v }

// IsZero reports whether c holds no code.
func (c CVV) IsZero() bool { return c.v == "" }

// String returns "***".
func (c CVV) String() string { return "***" }

// GoString returns a redacted form.
func (c CVV) GoString() string { return "card.CVV(***)" }

// Format writes "***" whatever the verb.
func (c CVV) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("***")) }

// LogValue returns "***" for log/slog.
func (c CVV) LogValue() slog.Value { return slog.StringValue("***") }

// MarshalText returns "***".
func (c CVV) MarshalText() ([]byte, error) { return []byte("***"), nil }

// Expiry is a card's expiry month; the card is valid through its last day.
type Expiry struct {
	Month int // 1..12
	Year  int // four digits
}

// maxYearsAhead bounds how far ahead an expiry may be: cards are issued for
// at most a few years, so a larger value is a typo.
const maxYearsAhead = 20

// ParseExpiry reads a month ("1", "01") and a year ("29" or "2029") and
// checks that the card has not expired at now.
func ParseExpiry(month, year string, now time.Time) (Expiry, error) {
	month, year = strings.TrimSpace(month), strings.TrimSpace(year)
	if month == "" || year == "" {
		return Expiry{}, fieldErr("expiry", ErrRequired)
	}
	m, ok := atoi(month, 2)
	if !ok || m < 1 || m > 12 {
		return Expiry{}, fieldErr("expiry", ErrInvalid)
	}
	y, ok := atoi(year, 4)
	if !ok || (len(year) != 2 && len(year) != 4) {
		return Expiry{}, fieldErr("expiry", ErrInvalid)
	}
	if len(year) == 2 {
		y += 2000
	}
	e := Expiry{Month: m, Year: y}
	now = now.UTC()
	if e.Expired(now) {
		return Expiry{}, fieldErr("expiry", ErrExpired)
	}
	if y > now.Year()+maxYearsAhead {
		return Expiry{}, fieldErr("expiry", ErrTooFar)
	}
	return e, nil
}

// ParseExpiryString reads "MM/YY", "MM / YYYY", "MMYY" or "MM-YY".
func ParseExpiryString(s string, now time.Time) (Expiry, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Expiry{}, fieldErr("expiry", ErrRequired)
	}
	if i := strings.IndexAny(s, "/-."); i >= 0 {
		return ParseExpiry(s[:i], s[i+1:], now)
	}
	if len(s) == 4 || len(s) == 6 {
		return ParseExpiry(s[:2], s[2:], now)
	}
	return Expiry{}, fieldErr("expiry", ErrInvalid)
}

// Expired reports whether the card is past its last valid day at t (UTC).
func (e Expiry) Expired(t time.Time) bool {
	end := time.Date(e.Year, time.Month(e.Month)+1, 1, 0, 0, 0, 0, time.UTC)
	return !t.UTC().Before(end)
}

// String returns "MM/YY".
func (e Expiry) String() string { return fmt.Sprintf("%02d/%02d", e.Month, e.Year%100) }

// Name limits: ISO/IEC 7813 track 1 allows 26 characters; we allow a little
// more for names typed in full, and refuse anything longer as a mistake.
const (
	minName = 2
	maxName = 45
)

// ParseName checks a cardholder name as printed on the card: Latin letters,
// spaces, hyphens, apostrophes and dots; runs of spaces become one.
func ParseName(s string) (string, error) {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "", fieldErr("name", ErrRequired)
	}
	letters := 0
	for _, r := range s {
		switch {
		case r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
			letters++
		case r == ' ', r == '-', r == '\'', r == '.':
		default:
			return "", fieldErr("name", ErrLatin)
		}
	}
	if letters < minName {
		return "", fieldErr("name", ErrTooShort)
	}
	if len(s) > maxName {
		return "", fieldErr("name", ErrTooLong)
	}
	return s, nil
}

func atoi(s string, maxLen int) (int, bool) {
	if s == "" || len(s) > maxLen {
		return 0, false
	}
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
		n = n*10 + int(r-'0')
	}
	return n, true
}

func last(s string, n int) string { return s[len(s)-min(n, len(s)):] }
