package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/store"
)

// Review of issue 13 (reproduction, fails today): POST /kaspi/notify needs
// no credential and no limit; a notification naming a live QR (its ID is in
// the QR the shopper's own page shows) claims the attempt (a durable write),
// asks Kaspi for the QR's status (an outbound call) and releases it (a
// second write): pkg/web/kaspi.go:143-160, pkg/payment/kaspi.go:130-199.
// A caller repeating it costs two durable writes and a call to Kaspi per
// request, without end.
func TestReviewKaspiNotifyIsUnbounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	id := e.session(map[string]any{"methods": []string{"card", "kaspi_qr"}, "locale": "en"})["id"].(string)
	b := e.browser()
	_, app := kaspiQR(t, e, b, id)
	qr := app[strings.LastIndex(app, "/")+1:]
	version := func() int64 { return sessionVersion(t, e, id) }
	before := version()
	const n = 100
	for i := 0; i < n; i++ {
		st, _, _ := e.api("POST", "/kaspi/notify", "", map[string]any{"qr_id": qr, "external_id": id}, "X-Forwarded-For", "203.0.113.66")
		if st != 200 && st != 429 {
			t.Fatalf("notification %d: %d", i, st)
		}
	}
	writes := version() - before
	t.Logf("%d unauthenticated notifications: the session was written %d times", n, writes)
	if writes > 10 {
		t.Errorf("%d unauthenticated notifications cost %d durable writes of the session (and as many calls to Kaspi)", n, writes)
	}
}

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

// Review of issue 13 (reproduction, fails today): a card submission the
// limits refuse still costs two durable writes of the session: SubmitCard
// claims the session with a new attempt (pkg/payment/card.go:153) before it
// asks the limits (card.go:157) and abandons the attempt after (a second
// write). A client over its limit keeps costing two writes (fsyncs on
// bolt) and four counter increments per 429, without end.
func TestReviewLimitedSubmissionCostsNoWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.app.Limiter.Client.Max = 1
	id := e.session(map[string]any{"locale": "en"})["id"].(string)
	b := e.browser()
	if p := b.pay(id, "4000 0000 0000 0002", "981"); p.status == http.StatusTooManyRequests {
		t.Fatalf("first submission limited")
	}
	version := func() int64 { return sessionVersion(t, e, id) }
	before := version()
	const n = 20
	for i := 0; i < n; i++ {
		if p := b.pay(id, luhnCard(300+i), "981"); p.status != http.StatusTooManyRequests {
			t.Fatalf("submission %d over the client limit: %d", i, p.status)
		}
	}
	if writes := version() - before; writes > 0 {
		t.Errorf("%d submissions refused by the client limit wrote the session %d times", n, writes)
	}
}

// sessionVersion is the stored session record's version: how many times it
// has been written.
func sessionVersion(t *testing.T, e *env, id string) int64 {
	t.Helper()
	r, err := e.app.Store().Get(context.Background(), store.Key{Kind: "session", ID: id, Group: payment.Group(id)})
	if err != nil {
		t.Fatal(err)
	}
	return r.Version
}
