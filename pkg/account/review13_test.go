package account_test

import (
	"testing"

	"github.com/paypage/paypage/pkg/account"
)

// Review of issue 13 (reproduction, fails today): a wildcard is accepted
// before any two labels (pkg/account/frame.go:30-33), including public
// suffixes where anyone can host a page: "*.github.io", "*.co.uk",
// "*.vercel.app". A merchant who lists one lets every stranger on that
// suffix frame its payment page (and pay the stranger's order with a
// victim's card inside a look-alike shop). The wildcard's base should be a
// registrable domain (golang.org/x/net/publicsuffix.EffectiveTLDPlusOne).
func TestReviewFrameWildcardOverPublicSuffix(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"https://*.github.io", "https://*.co.uk", "https://*.vercel.app", "https://*.com.kz"} {
		if got, err := account.ParseFrameOrigin(in); err == nil {
			t.Errorf("%s accepted as %s: every site on a public suffix may frame the merchant's pages", in, got)
		}
	}
}
