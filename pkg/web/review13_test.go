package web

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Review of issue 13 (reproduction, fails today): POST /csp-report needs no
// credential and is bounded only by one process-wide bucket (20, then 5 a
// second), not by source; each request appends up to 10 durable records to
// the "csp-reports" log, which nothing ever trims (pkg/web/integrity.go:
// 125-151; no TrimLog on it). One caller: 200 durable appends from a burst of
// 20 requests (50 a second after, ~4.3 million a day, forever), and every
// other browser's genuine reports are refused with 429 meanwhile.
func TestReviewCSPReportsCostDurableWrites(t *testing.T) {
	t.Parallel()
	st, url := limitServer(t, 1000)
	var batch bytes.Buffer
	batch.WriteString("[")
	for i := 0; i < 10; i++ {
		if i > 0 {
			batch.WriteString(",")
		}
		fmt.Fprintf(&batch, `{"type":"csp-violation","body":{"effectiveDirective":"script-src-elem","blockedURL":"https://evil%d.example/x.js","documentURL":"https://pay.example/pay/ses_x"}}`, i)
	}
	batch.WriteString("]")
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest("POST", url+"/csp-report", bytes.NewReader(batch.Bytes()))
		req.Header.Set("Content-Type", "application/reports+json")
		req.Header.Set("X-Forwarded-For", "203.0.113.66")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// A real browser elsewhere now reports one violation.
	req, _ := http.NewRequest("POST", url+"/csp-report", strings.NewReader(`{"csp-report":{"violated-directive":"script-src","blocked-uri":"inline","document-uri":"https://pay.example/pay/ses_y"}}`))
	req.Header.Set("Content-Type", "application/csp-report")
	req.Header.Set("X-Forwarded-For", "198.51.100.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n := st.appends.Load()
	t.Logf("20 unauthenticated report posts from one address: %d durable appends; another source then gets %d", n, resp.StatusCode)
	if n > 20 {
		t.Errorf("one unauthenticated source cost %d durable appends to an untrimmed log in a burst", n)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		t.Error("one source's flood refuses every other browser's reports (the bucket is global, not per source)")
	}
}
