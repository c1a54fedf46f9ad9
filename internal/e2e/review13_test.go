package e2e

import (
	"fmt"
	"net/http"
	"testing"
)

// Review of issue 13 (reproduction, fails today): a detokenize call the
// processor makes with its good key, for a token that is not there (or was
// deleted by retention, or belongs to a merchant it no longer serves), is
// counted as a refusal of its source (pkg/web/api.go:325-333), and past 30
// such in a minute every call from that address, good key and good token
// included, is answered 429 before the key is looked up (api.go:46). A
// processor with a few stale tokens in a batch (or anyone sharing its NAT
// address) stops card authorizations for the rest of the minute.
func TestReviewProcessorLockedOutByItsOwnNotFounds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{refusals: 30})
	token := e.paidToken("4242 4242 4242 4242")
	for i := 0; i < 30; i++ {
		st, _, _ := e.api("POST", "/v1/detokenize", e.procKey, map[string]any{"token": fmt.Sprintf("tok_%026d", i)})
		if st != http.StatusNotFound {
			t.Fatalf("unknown token %d: %d", i, st)
		}
	}
	st, d, _ := e.api("POST", "/v1/detokenize", e.procKey, map[string]any{"token": token})
	if st != http.StatusOK {
		t.Fatalf("the processor's good key and a good token after 30 unknown tokens: %d %v", st, d)
	}
}
