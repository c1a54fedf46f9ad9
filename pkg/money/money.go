// Package money knows the currencies paypage takes, how large an amount may
// be, and how an amount reads on a page.
package money

import (
	"fmt"
	"slices"
	"strings"
)

// currencies lists the ISO 4217 currencies we take, with their minor-unit exponent.
var currencies = map[string]int{
	"KZT": 2, "RUB": 2, "USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "CNY": 2, "AED": 2, "TRY": 2,
	"UZS": 2, "KGS": 2, "AZN": 2, "GEL": 2, "AMD": 2, "BYN": 2, "PLN": 2, "CZK": 2, "SEK": 2,
	"NOK": 2, "DKK": 2, "CAD": 2, "AUD": 2, "INR": 2, "THB": 2, "SGD": 2, "HKD": 2,
	"JPY": 0, "KRW": 0, "VND": 0, "KWD": 3, "BHD": 3, "OMR": 3,
}

// MaxAmount bounds an amount in minor units: large enough for any ticket, small
// enough that sums never overflow.
const MaxAmount = 1_000_000_000_00

// Currencies lists the codes of the currencies we take, sorted.
func Currencies() []string {
	out := make([]string, 0, len(currencies))
	for c := range currencies {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// ValidCurrency reports whether we take c (upper case ISO 4217).
func ValidCurrency(c string) bool { _, ok := currencies[c]; return ok }

// Format writes minor units as a decimal amount with the currency code,
// "12 345.67 KZT", grouped by thin spaces so it reads the same in every language.
func Format(amount int64, currency string) string {
	exp := currencies[currency]
	neg := amount < 0
	if neg {
		amount = -amount
	}
	unit := int64(1)
	for i := 0; i < exp; i++ {
		unit *= 10
	}
	whole, frac := amount/unit, amount%unit
	ws := fmt.Sprint(whole)
	var b strings.Builder
	for i, r := range ws {
		if i > 0 && (len(ws)-i)%3 == 0 {
			b.WriteRune('\u202f')
		}
		b.WriteRune(r)
	}
	s := b.String()
	if exp > 0 {
		s += fmt.Sprintf(".%0*d", exp, frac)
	}
	if neg {
		s = "-" + s
	}
	return s + "\u00a0" + currency
}
