package load

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Review of issue 15: the challenge scenario counts a payment that never
// met a 3-D Secure challenge. pay (scenarios.go) takes the challenge only
// when the submit answers 200 and accepts a 303 straight to the result for
// either card, so a service that stops challenging the challenge card (a
// sandbox or 3-D Secure change) keeps its "challenge" row, at the
// frictionless flow's speed and 4 requests an operation instead of 7.
func TestReview15ChallengeScenarioNeedsAChallenge(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/sessions", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"id":"ses_1"}`)
	})
	mux.HandleFunc("GET /pay/{id}", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "csrf", Value: "c"})
		fmt.Fprint(w, `<form id="card-form" method="post" action="/pay/ses_1"><input type="hidden" name="csrf" value="t"></form>`)
	})
	mux.HandleFunc("POST /pay/{id}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/pay/ses_1/result", http.StatusSeeOther) // frictionless: no bank page
	})
	mux.HandleFunc("GET /pay/{id}/result", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<p class="state complete">Paid</p>`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	rep, err := Run(context.Background(), Config{Target: srv.URL, Scenario: "challenge", MerchantKey: "sk_test",
		Concurrency: 1, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total.Ops > 0 {
		t.Errorf("%d challenge payments counted (%d requests) though the service never showed a bank page", rep.Total.Ops, rep.Total.Requests)
	}
}
