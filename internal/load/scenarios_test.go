package load

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// shop is a service shaped like paypage's pages (templates/pay.html,
// redirect.html, acs.html) whose card post answers as submit says:
// "frictionless" (303 to the result), "challenge" (the page that sends the
// shopper to the bank), "field error" (the card page again, with submitCode
// as its status). With broken, the bank answers every post with a page
// whose form has no code field.
// bankPosts counts the posts to the bank.
func shop(t *testing.T, submit string, submitCode int, broken bool, bankPosts *atomic.Int64) *httptest.Server {
	t.Helper()
	const cardPage = `<nav><form method="post" action="/pay/ses_1/kaspi"><input type="hidden" name="csrf" value="k"></form></nav>
<form method="post" action="/pay/ses_1" class="card" novalidate id="card-form">
<input type="hidden" name="csrf" value="t">%s<input id="number" name="number"></form>`
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/sessions", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"id":"ses_1"}`)
	})
	mux.HandleFunc("GET /pay/{id}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, cardPage, "")
	})
	mux.HandleFunc("POST /pay/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PostFormValue("csrf") != "t" || r.PostFormValue("number") == "" {
			http.Error(w, "not the card form", http.StatusBadRequest)
			return
		}
		switch submit {
		case "frictionless":
			http.Redirect(w, r, "/pay/ses_1/result", http.StatusSeeOther)
		case "challenge":
			fmt.Fprint(w, `<section class="state redirect" role="status"><form method="post" action="/sandbox/acs/tx_1" data-autosubmit id="redirect-form">
<input type="hidden" name="creq" value="eyJ9"><input type="hidden" name="lang" value="en"></form></section>`)
		case "field error":
			w.WriteHeader(submitCode)
			fmt.Fprintf(w, cardPage, `<div class="summary" role="alert" id="error-summary"></div><input id="cvc" name="cvc" aria-invalid="true">`)
		}
	})
	mux.HandleFunc("POST /sandbox/acs/{tx}", func(w http.ResponseWriter, r *http.Request) {
		bankPosts.Add(1)
		switch {
		case broken:
			fmt.Fprint(w, `<p>maintenance</p><form method="post" action="/sandbox/acs/tx_1"><input type="hidden" name="csrf" value="a"></form>`)
		case r.PostFormValue("creq") != "":
			fmt.Fprint(w, `<form method="post" action="/sandbox/acs/tx_1" class="card" novalidate><input type="hidden" name="csrf" value="a">
<input id="code" name="code" type="text"></form>`)
		case r.PostFormValue("code") == sandboxSMSCode && r.PostFormValue("csrf") == "a":
			fmt.Fprint(w, `<section class="state redirect"><form method="post" action="http://pay.example/pay/ses_1/3ds" data-autosubmit id="redirect-form">
<input type="hidden" name="cres" value="eyJ0"></form></section>`)
		default:
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `<form method="post" action="/sandbox/acs/tx_1"><input id="code" name="code" aria-invalid="true"></form>`)
		}
	})
	mux.HandleFunc("POST /pay/{id}/3ds", func(w http.ResponseWriter, r *http.Request) {
		if r.PostFormValue("cres") == "" {
			http.Error(w, "no CRes", http.StatusBadRequest)
			return
		}
		http.Redirect(w, r, "/pay/ses_1/result", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /pay/{id}/result", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<section class="state complete" role="status" id="state"><h1>Paid</h1></section>`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// Each payment scenario counts its own flow only: a challenge payment must
// meet the bank's page, a frictionless one must not, and a card page shown
// again with a field error is a failure of the submit, never posted on to
// the bank. The bank's page is known by its form (the CReq), whatever its
// status.
func TestPayMeetsItsOwnFlow(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name       string
		submit     string
		submitCode int
		broken     bool
		challenge  bool
		want       string // the failure; "" for a payment made
		requests   uint64 // when made
	}{
		{"pay", "frictionless", 0, false, false, "", 3},
		{"challenge", "challenge", 0, false, true, "", 6},
		{"challenge without a bank page", "frictionless", 0, false, true, "submit 303 no challenge", 0},
		{"pay meets a challenge", "challenge", 0, false, false, "submit 200 challenge", 0},
		{"challenge card page again, 200", "field error", http.StatusOK, false, true, "submit 200 field error", 0},
		{"pay card page again, 422", "field error", http.StatusUnprocessableEntity, false, false, "submit 422 field error", 0},
		{"bank without a code form", "challenge", 0, true, true, "bank 200 no code form", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var bankPosts atomic.Int64
			srv := shop(t, c.submit, c.submitCode, c.broken, &bankPosts)
			r := &run{cfg: Config{Target: srv.URL, ProcessorTarget: srv.URL}, tr: newTransport(1)}
			w := r.newWorker(0)
			err := w.pay(context.Background(), "ses_1", frictionlessCard, c.challenge)
			got := ""
			if err != nil {
				got = errorKey(err)
			}
			if got != c.want {
				t.Fatalf("pay: %q, want %q", got, c.want)
			}
			if c.want == "" && w.requests != c.requests {
				t.Errorf("%d requests, want %d", w.requests, c.requests)
			}
			if c.submit != "challenge" && bankPosts.Load() != 0 {
				t.Errorf("%d posts to the bank though the service never sent the shopper there", bankPosts.Load())
			}
		})
	}
}

// The review of issue 15: a service that stops challenging the challenge
// card (a sandbox or 3-D Secure change) kept the challenge scenario's row,
// at the frictionless flow's speed. A run counts no such payment.
func TestChallengeScenarioCountsNoPaymentWithoutABankPage(t *testing.T) {
	t.Parallel()
	var bankPosts atomic.Int64
	srv := shop(t, "frictionless", 0, false, &bankPosts)
	rep, err := Run(context.Background(), Config{Target: srv.URL, Scenario: "challenge", MerchantKey: "sk_test",
		Concurrency: 1, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total.Ops > 0 {
		t.Errorf("%d challenge payments counted (%d requests) though the service never showed a bank page", rep.Total.Ops, rep.Total.Requests)
	}
	if rep.Total.Errors == 0 || rep.Total.ErrorsBy["submit 303 no challenge"] != rep.Total.Errors {
		t.Errorf("errors: %v, want each a submit 303 no challenge", rep.Total.ErrorsBy)
	}
}
