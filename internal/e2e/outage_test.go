package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/paypage/paypage/pkg/store/redis/redistest"
)

// TestRedisOutage: while Redis does not answer, every request fails cleanly
// (503, nothing half-written) and the same requests succeed once it is back.
// The metrics carry route templates, never IDs.
func TestRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	e := newEnv(t, envOpts{store: srv.URL() + "?read_timeout=300ms&write_timeout=300ms&dial_timeout=300ms&max_retries=1", metrics: true})
	id := e.session(map[string]any{"locale": "en"})["id"].(string)
	b := e.browser()
	form := fillCardForm(b.cardForm(id), "4242 4242 4242 4242", "981")

	srv.Pause()
	st, body, h := e.api("POST", "/v1/sessions", e.key, map[string]any{"amount": 100, "currency": "KZT", "success_url": "https://s.example/ok", "cancel_url": "https://s.example/no"})
	if st != 503 || body["error"].(map[string]any)["code"] != "unavailable" || h.Get("Retry-After") == "" {
		t.Fatalf("create during the outage: %d %v", st, body)
	}
	if resp, err := http.Get(e.url + "/readyz"); err != nil || resp.StatusCode != 503 {
		t.Fatalf("readyz during the outage: %v %v", resp, err)
	}
	if p := b.do("POST", "/pay/"+id, form); p.status < 500 || strings.Contains(p.body, "Payment successful") {
		t.Fatalf("card during the outage: %d", p.status)
	}
	srv.Resume()

	p := b.follow(b.do("POST", "/pay/"+id, form))
	if !strings.Contains(p.body, "Payment successful") {
		t.Fatalf("retry after the outage:\n%s", p.body)
	}
	_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
	if s["status"] != "complete" || len(s["payment"].(map[string]any)["attempts"].([]any)) != 1 {
		t.Fatalf("after the retry: %v", s)
	}
	if n := countKind(t, e, "sbx_auth"); n != 1 {
		t.Fatalf("%d authorizations", n)
	}

	resp, err := http.Get(e.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`route="/v1/sessions"`, `route="/pay/{id}"`, `paypage_payment_attempts_total{method="card",outcome="succeeded"} 1`, `status="503"`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(string(m), "ses_") || strings.Contains(string(m), "4242") {
		t.Error("metrics carry IDs or card data")
	}
}

// TestMetricsOnTheirOwnAddress: with a metrics address, /metrics is served
// there and only there, and nothing else is.
func TestMetricsOnTheirOwnAddress(t *testing.T) {
	e := newEnv(t, envOpts{metrics: true})
	e.session(nil)
	get := func(u string) (int, string) { return httpGet(t, u) }
	if st, _ := get(e.url + "/metrics"); st != http.StatusNotFound {
		t.Fatalf("public /metrics: %d", st)
	}
	st, m := get(e.metrics + "/metrics")
	if st != http.StatusOK || !strings.Contains(m, `paypage_http_requests_total{method="POST",route="/v1/sessions",status="201"} 1`) {
		t.Fatalf("metrics address: %d\n%s", st, m)
	}
	for _, path := range []string{"/v1/sessions", "/healthz", "/pay/x"} {
		if st, _ := get(e.metrics + path); st != http.StatusNotFound {
			t.Errorf("metrics address serves %s: %d", path, st)
		}
	}
}
