// Package shamir splits a secret into n shares of which any k rebuild it and
// fewer than k tell nothing about it: Shamir's secret sharing over GF(2^8),
// one random polynomial of degree k-1 per byte of the secret, its constant
// term the byte. A share is the polynomials' values at one non-zero x.
//
// Field arithmetic is written without tables or branches on secret values,
// so its timing does not depend on the secret.
package shamir

import (
	"crypto/rand"
	"errors"
	"fmt"
)

// Share is one custodian's part: the point X (1..255) and the polynomials'
// values there, one byte per byte of the secret.
type Share struct {
	X byte
	Y []byte
}

// Errors a split or a combination reports.
var (
	ErrParams        = errors.New("shamir: need 2 <= threshold <= shares <= 255 and a non-empty secret")
	ErrTooFewShares  = errors.New("shamir: fewer shares than the threshold")
	ErrRepeatedShare = errors.New("shamir: the same share was given twice")
	ErrMixedShares   = errors.New("shamir: shares of different lengths: they come from different splits")
	ErrBadShare      = errors.New("shamir: a share has x = 0 or no data")
)

// Split makes n shares of secret, any k of which rebuild it.
func Split(secret []byte, n, k int) ([]Share, error) {
	if len(secret) == 0 || k < 2 || k > n || n > 255 {
		return nil, ErrParams
	}
	coef := make([]byte, k-1) // the random coefficients of one byte's polynomial
	defer clear(coef)
	shares := make([]Share, n)
	for i := range shares {
		shares[i] = Share{X: byte(i + 1), Y: make([]byte, len(secret))}
	}
	for b, s := range secret {
		if _, err := rand.Read(coef); err != nil {
			return nil, fmt.Errorf("shamir: %w", err)
		}
		for i := range shares {
			shares[i].Y[b] = eval(s, coef, shares[i].X)
		}
	}
	return shares, nil
}

// eval returns s + c[0]x + c[1]x^2 + ... by Horner's rule.
func eval(s byte, c []byte, x byte) byte {
	var y byte
	for i := len(c) - 1; i >= 0; i-- {
		y = mul(y, x) ^ c[i]
	}
	return mul(y, x) ^ s
}

// Combine rebuilds the secret from shares by Lagrange interpolation at x = 0.
// Given k or more shares of one split it returns the secret; given fewer it
// returns bytes unrelated to the secret, which is why callers check the
// result (the vault compares it with the key its store was sealed with).
func Combine(shares []Share) ([]byte, error) {
	if len(shares) < 2 {
		return nil, ErrTooFewShares
	}
	n := len(shares[0].Y)
	seen := map[byte]bool{}
	for _, s := range shares {
		if s.X == 0 || len(s.Y) == 0 {
			return nil, ErrBadShare
		}
		if len(s.Y) != n {
			return nil, ErrMixedShares
		}
		if seen[s.X] {
			return nil, ErrRepeatedShare
		}
		seen[s.X] = true
	}
	out := make([]byte, n)
	for i, si := range shares {
		// The Lagrange basis polynomial of share i at 0: prod x_j / (x_j - x_i); minus is xor.
		num, den := byte(1), byte(1)
		for j, sj := range shares {
			if j != i {
				num = mul(num, sj.X)
				den = mul(den, sj.X^si.X)
			}
		}
		l := mul(num, inv(den))
		for b := range out {
			out[b] ^= mul(si.Y[b], l)
		}
	}
	return out, nil
}

// mul multiplies in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1 (AES's field),
// in constant time.
func mul(a, b byte) byte {
	var p byte
	for range 8 {
		p ^= a & -(b & 1)
		hi := -(a >> 7)
		a = a<<1 ^ 0x1b&hi
		b >>= 1
	}
	return p
}

// inv returns a^254, the inverse of a non-zero a (a^255 = 1).
func inv(a byte) byte {
	r := byte(1)
	for range 7 { // a^(2+4+...+128) = a^254
		a = mul(a, a)
		r = mul(r, a)
	}
	return r
}
