package card_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/card"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func code(err error) string {
	var e *card.Error
	if errors.As(err, &e) {
		return e.Field + ":" + e.Code
	}
	if err != nil {
		return "other:" + err.Error()
	}
	return ""
}

func TestParsePAN(t *testing.T) {
	tests := []struct {
		in    string
		brand card.Brand
		err   string
	}{
		{"4242424242424242", card.Visa, ""},
		{"4242 4242 4242 4242", card.Visa, ""},
		{" 4242-4242-4242-4242 ", card.Visa, ""},
		{"4000 0000 0000 3220", card.Visa, ""},
		{"5555 5555 5555 4444", card.Mastercard, ""},
		{"2223 0031 2200 3222", card.Mastercard, ""},
		{"3782 822463 10005", card.Amex, ""},
		{"3530 1113 3330 0000", card.JCB, ""},
		{"2200 0000 0000 0004", card.MIR, ""},
		{"4222222222222", card.Visa, ""}, // 13-digit Visa
		{"", "", "number:required"},
		{"   ", "", "number:required"},
		{"4242 4242 4242 4241", "", "number:luhn"},
		{"4242x4242", "", "number:invalid"},
		{"４２４２４２４２４２４２４２４２", "", "number:invalid"}, // full-width digits
		{"42424242424", "", "number:length"},
		{"42424242424242424242", "", "number:length"},
		{strings.Repeat("4", 100), "", "number:length"},
		{"6011 1111 1111 1117", "", "number:unsupported"}, // Discover
		{"6200 0000 0000 0005", "", "number:unsupported"}, // UnionPay
		{"6759 6498 2643 8453", "", "number:unsupported"}, // Maestro
		{"3056 9300 0902 0004", "", "number:unsupported"}, // Diners
		{"9999 9999 9999 9995", "", "number:unknown"},
		{"55555555555555552", "", "number:length"}, // 17-digit "Mastercard"
		{"424242424242424", "", "number:length"},   // 15-digit "Visa"
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := card.ParsePAN(tt.in)
			if got := code(err); got != tt.err {
				t.Fatalf("error = %q, want %q", got, tt.err)
			}
			if err == nil && p.Brand() != tt.brand {
				t.Fatalf("brand = %q, want %q", p.Brand(), tt.brand)
			}
		})
	}
}

func TestDetectBrandWhileTyping(t *testing.T) {
	tests := map[string]card.Brand{
		"4": card.Visa, "5": card.Unknown, "51": card.Mastercard, "2221": card.Mastercard,
		"2720": card.Mastercard, "2721": card.Unknown, "2200": card.MIR, "2204": card.MIR,
		"2205": card.Unknown, "34": card.Amex, "37": card.Amex, "3528": card.JCB, "3589": card.JCB,
		"3590": card.Unknown, "62": card.UnionPay, "6011": card.Discover, "65": card.Discover,
		"6304": card.Maestro, "": card.Unknown,
	}
	for in, want := range tests {
		if got := card.DetectBrand(in); got != want {
			t.Errorf("DetectBrand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPANNeverPrintsItself(t *testing.T) {
	p, err := card.ParsePAN("4242 4242 4242 4242")
	if err != nil {
		t.Fatal(err)
	}
	cvv, _ := card.ParseCVV("123", card.Visa)
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "pan", p, "cvv", cvv)
	js, _ := json.Marshal(struct {
		P card.PAN
		C card.CVV
	}{p, cvv})
	outs := []string{
		fmt.Sprint(p), fmt.Sprintf("%v %s %d %x %q %#v %+v", p, p, p, p, p, p, p),
		fmt.Sprintf("%v %s %d %x %#v", cvv, cvv, cvv, cvv, cvv),
		fmt.Sprintf("%+v", struct{ P card.PAN }{p}), fmt.Sprintf("%v", []card.PAN{p}),
		logs.String(), string(js), fmt.Errorf("wrapped: %v", p).Error(),
	}
	for _, s := range outs {
		if strings.Contains(s, "4242424242424242") || strings.Contains(s, "123") {
			t.Errorf("card data printed: %s", s)
		}
	}
	if got, want := p.Mask(), "424242••••••4242"; got != want {
		t.Errorf("Mask = %q, want %q", got, want)
	}
	if p.BIN() != "424242" || p.Last4() != "4242" || p.Digits() != "4242424242424242" {
		t.Errorf("BIN/Last4/Digits wrong: %s %s", p.BIN(), p.Last4())
	}
}

// TestMaskAndBINAgreeWithPCI checks, for every length a PAN can have, that
// Mask shows at most the BIN and the last four (PCI DSS 3.4.1), none of the
// leading digits below 16, and that BIN (what the vault keeps in clear) is
// never more than the leading digits Mask shows.
func TestMaskAndBINAgreeWithPCI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		digits     string
		head, tail int
	}{
		{"501800000009", 0, 4},        // 12: Maestro
		{"4222222222222", 0, 4},       // 13: Visa
		{"30569309025904", 0, 4},      // 14: Diners
		{"378282246310005", 0, 4},     // 15: American Express
		{"4242424242424242", 6, 4},    // 16
		{"22000000000000004", 6, 4},   // 17: MIR
		{"353011133330000001", 6, 4},  // 18: JCB
		{"2200000000000000004", 6, 4}, // 19: MIR
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(len(tt.digits)), func(t *testing.T) {
			n := len(tt.digits)
			want := tt.digits[:tt.head] + strings.Repeat("•", n-tt.head-tt.tail) + tt.digits[n-tt.tail:]
			if got := card.Mask(tt.digits); got != want {
				t.Errorf("Mask = %s, want %s", got, want)
			}
			p := card.PANOf(tt.digits)
			if p.Mask() != want {
				t.Errorf("PAN.Mask = %s, want %s", p.Mask(), want)
			}
			if bin := p.BIN(); bin != tt.digits[:tt.head] || !strings.HasPrefix(p.Mask(), bin) {
				t.Errorf("BIN = %q keeps more than Mask shows (%s)", bin, p.Mask())
			}
			if p.Last4() != tt.digits[n-4:] {
				t.Errorf("Last4 = %s", p.Last4())
			}
		})
	}
}

func TestParseCVV(t *testing.T) {
	tests := []struct {
		in    string
		brand card.Brand
		err   string
	}{
		{"123", card.Visa, ""},
		{"1234", card.Amex, ""},
		{"123", card.Amex, "cvc:length"},
		{"1234", card.Visa, "cvc:length"},
		{"12", card.MIR, "cvc:length"},
		{"12a", card.JCB, "cvc:invalid"},
		{"", card.Visa, "cvc:required"},
	}
	for _, tt := range tests {
		_, err := card.ParseCVV(tt.in, tt.brand)
		if got := code(err); got != tt.err {
			t.Errorf("ParseCVV(%q, %s) error = %q, want %q", tt.in, tt.brand, got, tt.err)
		}
	}
}

func TestParseExpiry(t *testing.T) {
	tests := []struct {
		m, y string
		want card.Expiry
		err  string
	}{
		{"12", "29", card.Expiry{Month: 12, Year: 2029}, ""},
		{"1", "2030", card.Expiry{Month: 1, Year: 2030}, ""},
		{"11", "26", card.Expiry{Month: 11, Year: 2026}, ""}, // valid through the last day of this month
		{"10", "26", card.Expiry{}, "expiry:expired"},
		{"13", "29", card.Expiry{}, "expiry:invalid"},
		{"0", "29", card.Expiry{}, "expiry:invalid"},
		{"12", "299", card.Expiry{}, "expiry:invalid"},
		{"ab", "29", card.Expiry{}, "expiry:invalid"},
		{"12", "2099", card.Expiry{}, "expiry:too_far"},
		{"", "29", card.Expiry{}, "expiry:required"},
	}
	for _, tt := range tests {
		got, err := card.ParseExpiry(tt.m, tt.y, now)
		if code(err) != tt.err || got != tt.want {
			t.Errorf("ParseExpiry(%q, %q) = %v, %q; want %v, %q", tt.m, tt.y, got, code(err), tt.want, tt.err)
		}
	}
}

func TestExpiryLastDayOfMonth(t *testing.T) {
	e := card.Expiry{Month: 2, Year: 2028}
	if e.Expired(time.Date(2028, 2, 29, 23, 59, 59, 0, time.UTC)) {
		t.Error("expired on its last day")
	}
	if !e.Expired(time.Date(2028, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Error("still valid the day after")
	}
}

func TestParseExpiryString(t *testing.T) {
	for in, want := range map[string]string{"12/29": "", "12 / 2029": "", "1229": "", "12-29": "", "1/29": "", "12": "expiry:invalid", "": "expiry:required", "10/26": "expiry:expired"} {
		if _, err := card.ParseExpiryString(in, now); code(err) != want {
			t.Errorf("ParseExpiryString(%q) = %q, want %q", in, code(err), want)
		}
	}
}

func TestParseName(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"IVAN PETROV", "IVAN PETROV", ""},
		{"  Anne-Marie   O'Neil Jr. ", "Anne-Marie O'Neil Jr.", ""},
		{"ИВАН ПЕТРОВ", "", "name:latin"},
		{"Zoë Smith", "", "name:latin"},
		{"J", "", "name:too_short"},
		{"--", "", "name:too_short"},
		{strings.Repeat("A", 46), "", "name:too_long"},
		{"John <script>", "", "name:latin"},
		{"", "", "name:required"},
	}
	for _, tt := range tests {
		got, err := card.ParseName(tt.in)
		if got != tt.want || code(err) != tt.err {
			t.Errorf("ParseName(%q) = %q, %q; want %q, %q", tt.in, got, code(err), tt.want, tt.err)
		}
	}
}

func TestLuhn(t *testing.T) {
	for in, want := range map[string]bool{"79927398713": true, "79927398710": false, "0": true, "": false, "12a": false} {
		if card.Luhn(in) != want {
			t.Errorf("Luhn(%q) != %v", in, want)
		}
	}
}

func FuzzParsePAN(f *testing.F) {
	for _, s := range []string{"4242 4242 4242 4242", "3782-822463-10005", "", "abc", "2200000000000004"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := card.ParsePAN(s)
		if err != nil {
			var ce *card.Error
			if !errors.As(err, &ce) || ce.Field != "number" {
				t.Fatalf("uncoded error %v", err)
			}
			if strings.ContainsAny(err.Error(), "0123456789") {
				t.Fatalf("error mentions digits: %v", err)
			}
			return
		}
		if !card.Luhn(p.Digits()) || !p.Brand().Accepted() || len(p.Digits()) < 12 {
			t.Fatalf("accepted a bad number")
		}
		if strings.Contains(fmt.Sprint(p), p.Digits()) {
			t.Fatalf("PAN printed itself")
		}
	})
}

func FuzzParseExpiry(f *testing.F) {
	f.Add("12", "29")
	f.Add("1", "2030")
	f.Add("", "x")
	f.Fuzz(func(t *testing.T, m, y string) {
		e, err := card.ParseExpiry(m, y, now)
		if err == nil && (e.Month < 1 || e.Month > 12 || e.Expired(now)) {
			t.Fatalf("accepted %v", e)
		}
		_, _ = card.ParseExpiryString(m+"/"+y, now)
	})
}

func FuzzParseName(f *testing.F) {
	f.Add("IVAN PETROV")
	f.Add("Zoë")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := card.ParseName(s)
		if err != nil {
			return
		}
		for _, r := range n {
			if r > 127 {
				t.Fatalf("accepted non-Latin %q", n)
			}
		}
		if len(n) > 45 {
			t.Fatalf("accepted long name")
		}
	})
}

func FuzzParseCVV(f *testing.F) {
	f.Add("123", true)
	f.Fuzz(func(t *testing.T, s string, amex bool) {
		b := card.Visa
		if amex {
			b = card.Amex
		}
		c, err := card.ParseCVV(s, b)
		if err == nil && len(c.Digits()) != b.CVVLength() {
			t.Fatalf("accepted %d digits", len(c.Digits()))
		}
	})
}

func BenchmarkParsePAN(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := card.ParsePAN("4242 4242 4242 4242"); err != nil {
			b.Fatal(err)
		}
	}
}
