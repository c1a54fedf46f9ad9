package e2e

import (
	"regexp"
	"testing"
)

// TestReview16NoTimedRefreshWithoutScript: commit 0c4efa6 says the
// processing page "polls (no timed refresh, WCAG 2.2.1)"; with JavaScript
// off (DESIGN invariant 5) the Kaspi QR page and the processing page still
// reload themselves every 5 and 3 seconds (<noscript><meta
// http-equiv="refresh">), a refresh the shopper cannot stop (WCAG F41).
// axe-core never sees it: it runs with script on, where <noscript> is not
// parsed, so "zero violations" does not cover the no-script pages.
func TestReview16NoTimedRefreshWithoutScript(t *testing.T) {
	e := newEnv(t, envOpts{})
	id := e.session(map[string]any{"methods": []string{"kaspi_qr"}, "locale": "en"})["id"].(string)
	q, _ := kaspiQR(t, e, e.browser(), id)
	if m := regexp.MustCompile(`<noscript><meta http-equiv="refresh" content="[0-9]+"></noscript>`).FindString(q.body); m != "" {
		t.Fatalf("the Kaspi page without script: %s", m)
	}
}
