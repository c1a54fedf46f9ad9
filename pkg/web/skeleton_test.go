package web

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http/httptest"
	"net/url"
	"testing"
)

// The pages filled from skeletons are the template's pages byte for byte:
// every state and language of the card page and the redirect page, with
// the shop's texts and the URLs as a shop may send them, hostile ones
// included; a string the skeleton cannot hold as the template would runs
// the template instead.
func TestSkeletonsMatchTemplate(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	texts := []string{"Air Astana", `<script>alert("x")</script>`, "it's A&B + C > D", "Эйр Астана", "Қазақстан әуе жолы",
		"nul\x00byte", "bad\xffutf8", "ppabcdefgh1x", ""}
	urls := []string{"/pay/ses_x", "https://shop.example/ok?session=ses_x&x=1", "javascript:alert(1)", "https://shop.example/a b?q=<x>",
		"//evil.example/x", "/pay/ses_x?lang=ru&a=%3C", "HTTPS://UPPER.example/", "data:text/html,<b>"}
	fast, slow := 0, 0
	check := func(name, page string, d *pageData) {
		t.Helper()
		var want bytes.Buffer
		if err := ts.pages[page].ExecuteTemplate(&want, "layout", d); err != nil {
			t.Fatal(err)
		}
		for range 2 { // learning the shape, then from the skeleton
			buf, ok := ts.skeletons.fill(ts.Server, page, d)
			if !ok {
				slow++
				continue
			}
			fast++
			got := bytes.Clone(buf.Bytes())
			ts.skeletons.done(buf)
			if !bytes.Equal(got, want.Bytes()) {
				i := 0
				for i < len(got) && i < len(want.Bytes()) && got[i] == want.Bytes()[i] {
					i++
				}
				t.Fatalf("%s: skeleton differs from the template at byte %d:\nskeleton: %q\ntemplate: %q", name, i,
					got[max(0, i-80):min(len(got), i+80)], want.Bytes()[max(0, i-80):min(len(want.Bytes()), i+80)])
			}
		}
	}
	r := httptest.NewRequest("GET", "/pay/ses_x?lang=ru", nil)
	for _, lang := range Languages {
		for _, state := range []string{"form", "complete", "expired", "failed", "processing", "notfound", "error"} {
			for i, text := range texts {
				u := urls[i%len(urls)]
				d := ts.newPage(r, lang)
				d.Order = &orderView{Merchant: text, Description: text, Reference: texts[(i+1)%len(texts)], Amount: "1 500,00 ₸"}
				d.State, d.Action, d.CancelURL, d.CSRF = state, "/pay/ses_x", u, "csrf-"+text
				d.Heading, d.Body = d.T("state.complete.title"), d.T("state.complete.body", text)
				if state != "form" {
					d.LinkURL, d.LinkText, d.Refresh = u, d.T("state.return"), "1;url="+u
				}
				d.Kaspi, d.KaspiURL = i%2 == 0, "/pay/ses_x/kaspi"
				d.CardOffered = i%4 != 1 // else the Kaspi-only choice
				if state == "processing" {
					d.Poll = u
				}
				if i%3 == 0 {
					d.DeclineTitle, d.Decline, d.AttemptsLeft, d.Notice = d.T("decline.title.not_completed"), d.T("decline.default"), 2, d.T("state.unavailable")
				}
				check(fmt.Sprintf("pay %s %s %d", lang, state, i), "pay", d)
			}
		}
		for i, text := range texts {
			d := ts.newPage(r, lang)
			d.Order = &orderView{Merchant: text, Amount: "10.00 USD"}
			d.Heading, d.Body, d.LinkText = d.T("threeds.title"), d.T("threeds.body"), d.T("threeds.button")
			d.Action = urls[i%len(urls)]
			d.Hidden = []hidden{{"creq", "eyJ0aHJlZURTU2VydmVyVHJhbnNJRCI6" + text}, {"lang", lang}}
			check(fmt.Sprintf("redirect %s %d", lang, i), "redirect", d)
		}
	}
	// The plain pages come from skeletons; the others ran the template.
	if fast == 0 || slow == 0 {
		t.Fatalf("%d pages from skeletons, %d from the template", fast, slow)
	}
	d := ts.newPage(r, "en")
	d.Order = &orderView{Merchant: "Air Astana", Amount: "1 500,00 ₸"}
	d.State, d.Action, d.CancelURL, d.CSRF, d.CardOffered = "form", "/pay/ses_x", "/pay/ses_x/cancel", "tok", true
	if _, ok := ts.skeletons.fill(ts.Server, "pay", d); !ok {
		t.Fatal("the card page in its plain form runs the template")
	}
	t.Logf("%d pages from skeletons, %d from the template", fast, slow)
}

// A page whose strings sit where the template escapes them otherwise than
// as HTML or a URL (a script, a style) never comes from a skeleton.
func TestSkeletonRefusesOtherContexts(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	for _, c := range []struct {
		body string
		ok   bool
	}{
		{`<p title="{{.CSRF}}">{{.CSRF}}</p><a href="{{.CSRF}}">x</a>`, true},
		{`<a href="/x?t={{.CSRF}}">x</a>`, false}, // a query escapes otherwise
		{`<script>var token = "{{.CSRF}}";</script>`, false},
		{`<p style="color: {{.CSRF}}">x</p>`, false},
		{`<a href="#" onclick="go('{{.CSRF}}')">x</a>`, false},
	} {
		body := c.body
		tpl, err := template.New("layout").Parse(`{{define "layout"}}` + body + `{{end}}`)
		if err != nil {
			t.Fatal(err)
		}
		ts.pages["redirect"], ts.skeletons = tpl, newSkeletons()
		d := ts.newPage(httptest.NewRequest("GET", "/pay/ses_x", nil), "en")
		d.CSRF = "/abc"
		if _, ok := ts.skeletons.fill(ts.Server, "redirect", d); ok != c.ok {
			t.Errorf("%s: filled from a skeleton: %v, want %v", body, ok, c.ok)
		}
	}
}

// A language link is what url.URL makes of the page's URL with lang set.
func TestLangURL(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"/pay/ses_x", "/pay/ses_x?lang=ru", "/pay/ses_x?a=1&b=%3C", "/pay/a%3Fb", "/pay/a%2Fb", "/pay/ä", "/pay/a b", "/", "/pay/ses_x/3ds"} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("lang", "kk")
		want := (&url.URL{Path: u.Path, RawQuery: q.Encode()}).String()
		if got := langURL(u, "kk"); got != want {
			t.Errorf("%s: %q, want %q", raw, got, want)
		}
	}
}
