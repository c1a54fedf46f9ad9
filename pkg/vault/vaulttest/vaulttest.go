// Package vaulttest gives tests and benchmarks a real vault over a store,
// under a fixed test key, and cards sealed in it.
package vaulttest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/vault"
)

// Open opens a vault over s under a fixed key-encrypting key.
func Open(tb testing.TB, s store.Store) *vault.Vault {
	tb.Helper()
	kek, err := vault.ParseKEK(strings.Repeat("ab", 32))
	if err != nil {
		tb.Fatal(err)
	}
	v, err := vault.Open(context.Background(), s, kek)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// Card seals a card number for a merchant, expiring in three years, and
// returns what the vault shows of it.
func Card(tb testing.TB, v *vault.Vault, merchant, number string) vault.Info {
	tb.Helper()
	pan, err := card.ParsePAN(number)
	if err != nil {
		tb.Fatal(err)
	}
	c := vault.Card{PAN: pan, Name: "IVAN PETROV", Expiry: card.Expiry{Month: 12, Year: time.Now().Year() + 3}}
	info, err := v.Tokenize(context.Background(), merchant, c)
	if err != nil {
		tb.Fatal(err)
	}
	return info
}
