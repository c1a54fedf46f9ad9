package web

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/limit"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/templates"
)

// Every message key exists in every language, and no translation is empty
// or has different format verbs than the English one.
func TestCatalogComplete(t *testing.T) {
	c, err := LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	verbs := regexp.MustCompile(`%[sdv]`)
	for _, lang := range Languages {
		for key, en := range c["en"] {
			s, ok := c[lang][key]
			if !ok || strings.TrimSpace(s) == "" {
				t.Errorf("%s: missing %q", lang, key)
				continue
			}
			if a, b := verbs.FindAllString(en, -1), verbs.FindAllString(s, -1); strings.Join(a, "") != strings.Join(b, "") {
				t.Errorf("%s %q: verbs %v, English has %v", lang, key, b, a)
			}
		}
		for key := range c[lang] {
			if _, ok := c["en"][key]; !ok {
				t.Errorf("%s has %q that English lacks", lang, key)
			}
		}
	}
}

// Every key the templates and code name exists in the catalog.
func TestTemplateKeysExist(t *testing.T) {
	c, _ := LoadCatalog()
	re := regexp.MustCompile(`\.T "([a-z0-9_.]+)"`)
	files, _ := templates.FS.ReadDir(".")
	var missing []string
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".html") {
			continue
		}
		b, _ := templates.FS.ReadFile(f.Name())
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			if !c.Has(m[1]) {
				missing = append(missing, f.Name()+": "+m[1])
			}
		}
	}
	// Every refusal the card package can give, and every decline code.
	produced := map[string][]string{
		"number": {card.ErrRequired, card.ErrInvalid, card.ErrLuhn, card.ErrLength, card.ErrUnsupported, card.ErrUnknown},
		"name":   {card.ErrRequired, card.ErrLatin, card.ErrTooShort, card.ErrTooLong},
		"expiry": {card.ErrRequired, card.ErrInvalid, card.ErrExpired, card.ErrTooFar},
		"cvc":    {card.ErrRequired, card.ErrInvalid, card.ErrLength},
	}
	for field, codes := range produced {
		for _, code := range codes {
			if !c.Has("err." + field + "." + code) {
				missing = append(missing, "err."+field+"."+code)
			}
		}
	}
	for _, code := range []string{processor.DoNotHonor, processor.InsufficientFunds, processor.ExpiredCard, processor.IncorrectCVC,
		processor.NotEnabledInternet, processor.Unavailable, processor.AuthenticationFailed, processor.InvalidCard, processor.TryAgain, "qr_expired"} {
		if !c.Has("decline." + code) {
			missing = append(missing, "decline."+code)
		}
	}
	// The limits a shopper can hit, each told apart.
	l := limit.DefaultSubmissions(nil)
	for _, r := range []string{l.Card.Name, l.Client.Name, l.Merchant.Name, l.Global.Name} {
		if !c.Has("limit." + r) {
			missing = append(missing, "limit."+r)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("missing keys:\n%s", strings.Join(missing, "\n"))
	}
}

func TestStatusTable(t *testing.T) {
	for code, want := range map[string]int{apperr.Invalid: 400, apperr.NotFound: 404, apperr.Conflict: 409, apperr.Unavailable: 503, apperr.Unauthorized: 401, apperr.RateLimited: 429, apperr.IdemMismatch: 422} {
		if got := Status(apperr.E(code, "x")); got != want {
			t.Errorf("%s -> %d, want %d", code, got, want)
		}
	}
	if Status(http.ErrAbortHandler) != 500 {
		t.Error("an uncoded error is not a 500")
	}
}

func TestPickLang(t *testing.T) {
	tests := []struct{ query, accept, locale, want string }{
		{"", "", "", "en"},
		{"", "ru-RU,ru;q=0.9", "", "ru"},
		{"", "kk", "", "kk"},
		{"", "de-DE", "", "en"},
		{"", "ru", "kk", "kk"},
		{"en", "ru", "kk", "en"},
		{"xx", "ru", "", "ru"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/pay/x?lang="+tt.query, nil)
		r.Header.Set("Accept-Language", tt.accept)
		if got := pickLang(r, tt.locale); got != tt.want {
			t.Errorf("%+v: %s", tt, got)
		}
	}
}

func TestQRSVG(t *testing.T) {
	svg, err := QRSVG("https://pay.example/sandbox/kaspi/kqr_x")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "viewBox") || strings.Count(svg, "M") < 50 {
		t.Fatalf("svg %s", svg)
	}
}
