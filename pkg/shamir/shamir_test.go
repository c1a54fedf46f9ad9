package shamir

import (
	"bytes"
	"errors"
	"testing"
)

func TestFieldKnownVectors(t *testing.T) {
	t.Parallel()
	tests := []struct{ a, b, want byte }{
		{0x57, 0x83, 0xc1}, // FIPS-197 section 4.2
		{0x57, 0x13, 0xfe}, // FIPS-197 section 4.2.1
		{0x53, 0xca, 0x01}, // inverses (FIPS-197 section 5.1.1)
		{0x00, 0xff, 0x00},
		{0x01, 0xab, 0xab},
	}
	for _, tt := range tests {
		if got := mul(tt.a, tt.b); got != tt.want {
			t.Errorf("mul(%#x, %#x) = %#x, want %#x", tt.a, tt.b, got, tt.want)
		}
		if got := mul(tt.b, tt.a); got != tt.want {
			t.Errorf("mul(%#x, %#x) = %#x, want %#x", tt.b, tt.a, got, tt.want)
		}
	}
	for a := 1; a < 256; a++ {
		if mul(byte(a), inv(byte(a))) != 1 {
			t.Fatalf("inv(%#x) = %#x is no inverse", a, inv(byte(a)))
		}
	}
}

func TestCombineKnownVectors(t *testing.T) {
	t.Parallel()
	// f(x) = 0x42 + 0x01 x (k = 2): f(1) = 0x43, f(2) = 0x40, f(3) = 0x41.
	// g(x) = 0x07 + 0x02 x + 0x03 x^2 (k = 3): g(1) = 0x06, g(2) = mul(2,2)^mul(3,4)^7 = 4^0x0c^7 = 0x0f, g(3) = 6^mul(3,5)^7 = 6^0x0f^7 = 0x0e.
	tests := []struct {
		name   string
		shares []Share
		want   []byte
	}{
		{"Line12", []Share{{1, []byte{0x43}}, {2, []byte{0x40}}}, []byte{0x42}},
		{"Line32", []Share{{3, []byte{0x41}}, {2, []byte{0x40}}}, []byte{0x42}},
		{"Parabola", []Share{{1, []byte{0x06}}, {2, []byte{0x0f}}, {3, []byte{0x0e}}}, []byte{0x07}},
	}
	for _, tt := range tests {
		got, err := Combine(tt.shares)
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("%s: Combine = %x, %v; want %x", tt.name, got, err, tt.want)
		}
	}
}

func TestAnyKOfNRebuild(t *testing.T) {
	t.Parallel()
	secret := []byte("thirty-two bytes of master key!!")
	for _, p := range []struct{ n, k int }{{2, 2}, {3, 2}, {5, 3}, {7, 7}, {10, 4}} {
		shares, err := Split(secret, p.n, p.k)
		if err != nil {
			t.Fatal(err)
		}
		// Every subset of size k, and the whole set.
		for mask := 1; mask < 1<<p.n; mask++ {
			var sub []Share
			for i := range p.n {
				if mask&(1<<i) != 0 {
					sub = append(sub, shares[i])
				}
			}
			if len(sub) < p.k {
				continue
			}
			got, err := Combine(sub)
			if err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("%d of %d (mask %b): got %q, %v", p.k, p.n, mask, got, err)
			}
		}
	}
}

func TestFewerThanKRevealNothing(t *testing.T) {
	t.Parallel()
	secret := bytes.Repeat([]byte{0xa5}, 32)
	shares, err := Split(secret, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := range shares {
		for j := i + 1; j < len(shares); j++ {
			got, err := Combine([]Share{shares[i], shares[j]})
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(got, secret) {
				t.Fatalf("two shares of a 3-threshold split rebuilt the secret")
			}
		}
	}
	// One share's bytes are uniform whatever the secret: split 0x00 and 0xff
	// many times and check each byte value appears about equally often.
	for _, s := range []byte{0x00, 0xff} {
		var hist [256]int
		const rounds = 256 * 64
		for range rounds / 32 {
			sh, err := Split(bytes.Repeat([]byte{s}, 32), 3, 2)
			if err != nil {
				t.Fatal(err)
			}
			for _, y := range sh[0].Y {
				hist[y]++
			}
		}
		for v, c := range hist {
			if c < 20 || c > 120 { // expected 64; these bounds are > 5 standard deviations away
				t.Fatalf("secret %#x: share byte %#x appeared %d times of %d: not uniform", s, v, c, rounds)
			}
		}
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	a, _ := Split([]byte("secret-a"), 3, 2)
	b, _ := Split([]byte("a longer secret"), 3, 2)
	tests := []struct {
		name   string
		shares []Share
		want   error
	}{
		{"OneShare", a[:1], ErrTooFewShares},
		{"Repeated", []Share{a[0], a[0]}, ErrRepeatedShare},
		{"Mixed", []Share{a[0], b[1]}, ErrMixedShares},
		{"ZeroX", []Share{{0, []byte{1}}, {1, []byte{1}}}, ErrBadShare},
		{"Empty", []Share{{1, nil}, {2, nil}}, ErrBadShare},
	}
	for _, tt := range tests {
		if _, err := Combine(tt.shares); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	for _, p := range []struct{ n, k int }{{3, 1}, {2, 3}, {256, 2}, {0, 0}} {
		if _, err := Split([]byte("x"), p.n, p.k); !errors.Is(err, ErrParams) {
			t.Errorf("Split(n=%d, k=%d) err = %v", p.n, p.k, err)
		}
	}
	if _, err := Split(nil, 3, 2); !errors.Is(err, ErrParams) {
		t.Errorf("Split of nothing: %v", err)
	}
}
