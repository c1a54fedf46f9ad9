package money_test

import (
	"testing"

	"github.com/paypage/paypage/pkg/money"
)

func TestFormat(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		amount   int64
		currency string
		want     string
	}{
		{150000, "KZT", "1\u202f500.00\u00a0KZT"},
		{5, "USD", "0.05\u00a0USD"},
		{123456789, "JPY", "123\u202f456\u202f789\u00a0JPY"},
		{1234, "KWD", "1.234\u00a0KWD"},
		{-250, "EUR", "-2.50\u00a0EUR"},
	} {
		if got := money.Format(tt.amount, tt.currency); got != tt.want {
			t.Errorf("Format(%d, %s) = %q, want %q", tt.amount, tt.currency, got, tt.want)
		}
	}
	if !money.ValidCurrency("KZT") || money.ValidCurrency("kzt") || money.ValidCurrency("XXX") {
		t.Error("ValidCurrency")
	}
}
