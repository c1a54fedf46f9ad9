package account_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/paypage/paypage/pkg/account"
)

func TestParseFrameOrigin(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://shop.example":         "https://shop.example",
		"https://Shop.Example/":        "https://shop.example",
		"https://shop.example:8443":    "https://shop.example:8443",
		"https://*.shop.example":       "https://*.shop.example",
		"https://*.shop.co.uk":         "https://*.shop.co.uk",
		"https://*.pay.shop.github.io": "https://*.pay.shop.github.io",
		"https://localhost":            "https://localhost",
		" https://xn--80ak6aa92e.com ": "https://xn--80ak6aa92e.com",
	} {
		got, err := account.ParseFrameOrigin(in)
		if err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{
		"http://shop.example",                 // https only
		"shop.example",                        // no scheme
		"https://shop.example/checkout",       // a path
		"https://shop.example?x=1",            // a query
		"https://shop.example#top",            // a fragment
		"https://user@shop.example",           // credentials
		"https://*",                           // everyone
		"https://*.example",                   // a whole top-level domain
		"https://*.github.io",                 // public suffixes (private section):
		"https://*.vercel.app",                // anyone may host a page there
		"https://*.co.uk", "https://*.com.kz", // public suffixes (ICANN section)
		"https://shop.*.example",     // a wildcard inside
		"https://*shop.example",      // not a label wildcard
		"*",                          // CSP's everyone
		"'self'", "'none'", "https:", // keywords and schemes
		"https://192.0.2.1", "https://[::1]", // IP literals
		"https://shop.example:0", "https://shop.example:99999", "https://shop.example:",
		"https://shop.example; script-src *", // CSP injection
		"https://shop example", "https://-shop.example", "https://shop_x.example",
		"https://" + strings.Repeat("a", 300) + ".example",
	} {
		if got, err := account.ParseFrameOrigin(bad); err == nil {
			t.Errorf("%q accepted as %q", bad, got)
		}
	}
}

func TestParseFrameOrigins(t *testing.T) {
	t.Parallel()
	got, err := account.ParseFrameOrigins([]string{"https://a.example", "", "https://A.example/", "https://b.example"})
	if err != nil || strings.Join(got, " ") != "https://a.example https://b.example" {
		t.Fatalf("%v %v", got, err)
	}
	if got, err := account.ParseFrameOrigins(nil); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	var many []string
	for i := 0; i <= account.MaxFrameOrigins; i++ {
		many = append(many, "https://s"+strings.Repeat("x", i)+".example")
	}
	if _, err := account.ParseFrameOrigins(many); err == nil {
		t.Fatal("too many origins accepted")
	}
}

// FuzzParseFrameOrigin: an origin that passes is one CSP source, https, with
// no path, quote, separator or space that could add a directive, and
// parses back to itself.
func FuzzParseFrameOrigin(f *testing.F) {
	for _, s := range []string{"https://shop.example", "https://*.shop.example:8443/", "https://shop.example; script-src *", "https://a b", "https://'self'", "https://xn--e1afmkfd.xn--p1ai"} {
		f.Add(s)
	}
	origin := regexp.MustCompile(`^https://(\*\.)?[a-z0-9.-]+(:[0-9]{1,5})?$`)
	f.Fuzz(func(t *testing.T, s string) {
		o, err := account.ParseFrameOrigin(s)
		if err != nil {
			return
		}
		if !origin.MatchString(o) {
			t.Fatalf("%q became %q", s, o)
		}
		if again, err := account.ParseFrameOrigin(o); err != nil || again != o {
			t.Fatalf("%q does not parse back to itself: %q %v", o, again, err)
		}
	})
}
