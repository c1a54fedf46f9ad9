package payment

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/card"
)

// FuzzCardForm: a card form body as the page posts it
// (application/x-www-form-urlencoded), parsed as the page parses it. No
// body panics; a refusal names known fields only and never carries the
// number or the code back, in its text or its JSON; an accepted card has
// a number that passes Luhn and a code as long as its brand's, and prints
// masked.
func FuzzCardForm(f *testing.F) {
	f.Add("number=4242+4242+4242+4242&name=IVAN+PETROV&exp_month=12&exp_year=30&cvc=981")
	f.Add("number=3782-822463-10005&name=A+B&exp_month=1&exp_year=2031&cvc=7319")
	f.Add("number=4242424242424241&name=%D0%98%D0%B2%D0%B0%D0%BD&exp_month=13&exp_year=99&cvc=1")
	f.Add("number=%00%ff&cvc=&exp_month=-1&exp_year=1e9&name=" + strings.Repeat("A", 300))
	f.Add("number=2200000000000004&number=4242424242424242&name=X+Y&exp_month=02&exp_year=29&cvc=123")
	svc := &Service{now: func() time.Time { return time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC) }}
	fields := map[string]bool{"number": true, "name": true, "expiry": true, "cvc": true}
	f.Fuzz(func(t *testing.T, body string) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return // the page answers a malformed form before it reaches the card
		}
		in := CardInput{Number: form.Get("number"), Name: form.Get("name"), ExpMonth: form.Get("exp_month"), ExpYear: form.Get("exp_year"), CVC: form.Get("cvc")}
		c, cvv, err := svc.parseCard(in)
		digits := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, in.Number)
		if err != nil {
			var fe FieldErrors
			if !errors.As(err, &fe) || len(fe) == 0 {
				t.Fatalf("refusal %v is not field errors", err)
			}
			b, _ := json.Marshal(fe)
			for _, e := range fe {
				if !fields[e.Field] {
					t.Fatalf("refusal of an unknown field %q", e.Field)
				}
			}
			for _, secret := range []string{digits, strings.TrimSpace(in.CVC)} {
				if len(secret) >= 3 && (strings.Contains(err.Error(), secret) || strings.Contains(string(b), secret)) {
					t.Fatalf("the refusal %q carries what was typed", err.Error())
				}
			}
			return
		}
		if !card.Luhn(c.PAN.Digits()) || len(cvv.Digits()) != c.PAN.Brand().CVVLength() {
			t.Fatalf("accepted %s with a code of %d digits", c.PAN.Mask(), len(cvv.Digits()))
		}
		if s := fmt.Sprintf("%v %+v %s", c, c, c.PAN); strings.Contains(s, c.PAN.Digits()) {
			t.Fatalf("an accepted card prints its number: %s", s)
		}
	})
}

// FuzzReturnURL: a success or cancel URL the shop sends. An accepted one
// is an absolute http(s) URL, and stays one, on the same scheme, once the
// session ID is put in for {SESSION_ID}.
func FuzzReturnURL(f *testing.F) {
	for _, s := range []string{"https://shop.example/ok?session={SESSION_ID}", "http://127.0.0.1:9/x", "https://{SESSION_ID}.shop.example/",
		"javascript:alert(1)", "//evil.example", "https://shop.example{SESSION_ID}@evil.example/", "https://[::1]:443/a#{SESSION_ID}", ""} {
		f.Add(s)
	}
	s := Session{ID: "ses_abcdefghijklmnopqrstuvwxyz"}
	f.Fuzz(func(t *testing.T, raw string) {
		if err := validReturnURL("success_url", raw); err != nil {
			return
		}
		u, err := url.Parse(s.ReturnURL(raw))
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			t.Fatalf("accepted %q, which becomes %q: %v", raw, s.ReturnURL(raw), err)
		}
	})
}
