// Package pagecheck proves a live payment page is the one we ship (PCI DSS
// 6.4.3 and 11.6.1): a Manifest lists every script and stylesheet the pages
// load, with their SHA-384 and why they are there, the security headers
// the pages carry and the other headers they may; Verify fetches a page as
// a browser asks for it, and its assets, and names each difference: a
// script or style that is not listed or whose content changed, an inline
// script or style, an event-handler attribute, a security header that
// changed or went missing, a header not in the manifest (Refresh), and
// anything that sends the shopper or the form elsewhere (a form action or
// formaction, a meta refresh or a link to another origin, a base URL).
package pagecheck

import (
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/net/html"
)

// Asset is one script or stylesheet a payment page loads.
type Asset struct {
	Path    string `json:"path"`    // as the page references it, query included
	SHA384  string `json:"sha384"`  // "sha384-" + base64, the form of an integrity attribute
	Purpose string `json:"purpose"` // why the page loads it
}

// Manifest is what the payment pages are made of.
type Manifest struct {
	Pages         []string          `json:"pages"` // the pages it covers, as route templates
	Scripts       []Asset           `json:"scripts"`
	Styles        []Asset           `json:"styles"`
	Icons         []Asset           `json:"icons"`          // no integrity attribute exists for an icon: its content is checked
	InlineScripts []string          `json:"inline_scripts"` // SHA-384 of each inline script allowed: none
	Headers       map[string]string `json:"headers"`        // security headers, exact values
	// OtherHeaders are the other headers a page carries, any value; a
	// header in neither list (Refresh, Link, Location, ...) is a difference.
	OtherHeaders []string `json:"other_headers"`
	// LinkOrigins are the origins besides the page's own that its links may
	// lead to (a real Kaspi connector's app link, say): none. Forms,
	// formaction, meta refresh and every other URL stay on the page's origin.
	LinkOrigins []string `json:"link_origins"`
}

// Options change how Verify fetches and what it lets pass.
type Options struct {
	// UserAgent is the User-Agent the page is asked for with (""
	// BrowserUserAgent): a tampering proxy that serves the real page to
	// tools and its own to browsers must not tell the check apart.
	UserAgent string
	// AllowHeaders are headers a proxy of the operator's own adds (a CDN's),
	// allowed besides the manifest's.
	AllowHeaders []string
}

// BrowserUserAgent is what a desktop Chrome sends.
const BrowserUserAgent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

// Hash returns the SHA-384 of b in integrity-attribute form.
func Hash(b []byte) string {
	sum := sha512.Sum384(b)
	return "sha384-" + base64.StdEncoding.EncodeToString(sum[:])
}

// maxBody bounds what Verify reads of a page or an asset.
const maxBody = 4 << 20

// Verify is VerifyWith with the default options.
func Verify(ctx context.Context, client *http.Client, pageURL string, want Manifest) ([]string, error) {
	return VerifyWith(ctx, client, pageURL, want, Options{})
}

// VerifyWith fetches the page at pageURL as a browser would ask for it,
// then each script and stylesheet it loads, and returns every difference
// from want, each a sentence naming what differs: assets, inline code,
// security headers, headers not in the manifest, and anything that would
// send the shopper or what they type elsewhere (a form action, formaction,
// a meta refresh, a base URL, a link or any URL to another origin). No
// differences: the page is as shipped. The error is for a page that could
// not be fetched at all.
func VerifyWith(ctx context.Context, client *http.Client, pageURL string, want Manifest, opts Options) ([]string, error) {
	base, err := url.Parse(pageURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("verify-page: %q is not an http(s) URL", pageURL)
	}
	if opts.UserAgent == "" {
		opts.UserAgent = BrowserUserAgent
	}
	fetch := func(ctx context.Context, client *http.Client, u string) (*http.Response, []byte, error) {
		return fetchAs(ctx, client, u, opts.UserAgent)
	}
	res, body, err := fetch(ctx, client, pageURL)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("verify-page: %s answered %s", pageURL, res.Status)
	}
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(want.Headers)) {
		if got := res.Header.Values(k); len(got) == 0 {
			diffs = append(diffs, fmt.Sprintf("header %s is missing (manifest: %q)", k, want.Headers[k]))
		} else if len(got) > 1 || got[0] != want.Headers[k] {
			diffs = append(diffs, fmt.Sprintf("header %s is %q (manifest: %q)", k, strings.Join(got, ", "), want.Headers[k]))
		}
	}
	diffs = append(diffs, unexpectedHeaders(res.Header, want, opts.AllowHeaders)...)
	doc, err := html.Parse(strings.NewReader(string(body)))
	if err != nil {
		return nil, fmt.Errorf("verify-page: the page is not HTML: %w", err)
	}
	seen := map[string]bool{}
	checkAsset := func(kind, ref, integrity string, listed []Asset) {
		u, err := base.Parse(ref)
		if err != nil {
			diffs = append(diffs, fmt.Sprintf("%s %q: not a URL", kind, ref))
			return
		}
		if u.Scheme != base.Scheme || u.Host != base.Host {
			diffs = append(diffs, fmt.Sprintf("%s %s is loaded from another origin", kind, u))
			return
		}
		path := u.RequestURI()
		seen[path] = true
		i := slices.IndexFunc(listed, func(a Asset) bool { return a.Path == path })
		if i < 0 {
			diffs = append(diffs, fmt.Sprintf("%s %s is not in the manifest", kind, path))
			return
		}
		a := listed[i]
		if kind != "icon" && integrity != a.SHA384 {
			diffs = append(diffs, fmt.Sprintf("%s %s has integrity %q (manifest: %s)", kind, path, integrity, a.SHA384))
		}
		r, b, err := fetch(ctx, client, u.String())
		switch {
		case err != nil:
			diffs = append(diffs, fmt.Sprintf("%s %s could not be fetched: %v", kind, path, err))
		case r.StatusCode != http.StatusOK:
			diffs = append(diffs, fmt.Sprintf("%s %s answered %s", kind, path, r.Status))
		case Hash(b) != a.SHA384:
			diffs = append(diffs, fmt.Sprintf("%s %s has content %s (manifest: %s)", kind, path, Hash(b), a.SHA384))
		}
	}
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		for _, at := range n.Attr {
			if strings.HasPrefix(strings.ToLower(at.Key), "on") {
				diffs = append(diffs, fmt.Sprintf("<%s> has an inline event handler %s", n.Data, at.Key))
			}
			if urlAttrs[at.Key] {
				diffs = append(diffs, leaves(base, n, at, want.LinkOrigins)...)
			}
		}
		switch {
		case n.Data == "base":
			diffs = append(diffs, fmt.Sprintf("<base href=%q> changes where every relative URL of the page leads", attr(n, "href")))
		case n.Data == "meta" && strings.EqualFold(attr(n, "http-equiv"), "refresh"):
			if u, ok := refreshURL(base, attr(n, "content")); ok && !sameOrigin(u, base) {
				diffs = append(diffs, fmt.Sprintf("<meta http-equiv=refresh> sends the shopper to %s", u.Redacted()))
			}
		}
		switch {
		case n.Data == "script" && attr(n, "src") != "":
			checkAsset("script", attr(n, "src"), attr(n, "integrity"), want.Scripts)
		case n.Data == "script":
			code := text(n)
			if !slices.Contains(want.InlineScripts, Hash([]byte(code))) {
				diffs = append(diffs, fmt.Sprintf("inline script %s (%d bytes) is not in the manifest", Hash([]byte(code)), len(code)))
			}
		case n.Data == "link" && slices.Contains(strings.Fields(strings.ToLower(attr(n, "rel"))), "stylesheet"):
			checkAsset("stylesheet", attr(n, "href"), attr(n, "integrity"), want.Styles)
		case n.Data == "link" && slices.Contains(strings.Fields(strings.ToLower(attr(n, "rel"))), "icon"):
			checkAsset("icon", attr(n, "href"), "", want.Icons)
		case n.Data == "link" && slices.Contains([]string{"preload", "modulepreload", "prefetch"}, strings.ToLower(attr(n, "rel"))):
			diffs = append(diffs, fmt.Sprintf("<link rel=%s href=%s> is not in the manifest", attr(n, "rel"), attr(n, "href")))
		case n.Data == "style":
			diffs = append(diffs, fmt.Sprintf("inline style %s is not in the manifest", Hash([]byte(text(n)))))
		case n.Data == "iframe" || n.Data == "object" || n.Data == "embed":
			diffs = append(diffs, fmt.Sprintf("<%s> is not in the manifest", n.Data))
		}
	}
	for _, a := range slices.Concat(want.Scripts, want.Styles, want.Icons) {
		if !seen[a.Path] {
			diffs = append(diffs, fmt.Sprintf("%s (%s) is missing from the page", a.Path, a.Purpose))
		}
	}
	return diffs, nil
}

// Compare names the differences between a served manifest and the expected one.
func Compare(got, want Manifest) []string {
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) == string(w) {
		return nil
	}
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(want.Headers)) {
		if got.Headers[k] != want.Headers[k] {
			diffs = append(diffs, fmt.Sprintf("the served manifest says header %s is %q (expected %q)", k, got.Headers[k], want.Headers[k]))
		}
	}
	gs, _ := json.Marshal(slices.Concat(got.Scripts, got.Styles, got.Icons))
	ws, _ := json.Marshal(slices.Concat(want.Scripts, want.Styles, want.Icons))
	if string(gs) != string(ws) {
		diffs = append(diffs, fmt.Sprintf("the served manifest lists assets %s (expected %s)", gs, ws))
	}
	if len(diffs) == 0 {
		diffs = append(diffs, "the served manifest differs from the expected one")
	}
	return diffs
}

// urlAttrs are the attributes whose value is a URL the browser follows,
// loads or posts to.
var urlAttrs = map[string]bool{"href": true, "src": true, "action": true, "formaction": true, "poster": true, "data": true, "ping": true, "cite": true, "background": true, "xlink:href": true}

// leaves names a URL attribute that leads off the page's origin: to
// another origin (a link may go to one of linkOrigins), or by a scheme that
// is not http(s) (javascript:; data: only for an image).
func leaves(base *url.URL, n *html.Node, at html.Attribute, linkOrigins []string) []string {
	v := strings.TrimSpace(at.Val)
	u, err := base.Parse(v)
	if err != nil {
		return []string{fmt.Sprintf("<%s %s=%q> is not a URL", n.Data, at.Key, v)}
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	case "javascript":
		return []string{fmt.Sprintf("<%s> has a javascript: URL", n.Data)}
	case "data":
		if n.Data == "img" && at.Key == "src" {
			return nil
		}
		return []string{fmt.Sprintf("<%s %s> has a data: URL", n.Data, at.Key)}
	default:
		return []string{fmt.Sprintf("<%s %s> has a %s: URL", n.Data, at.Key, u.Scheme)}
	}
	if sameOrigin(u, base) {
		return nil
	}
	origin := u.Scheme + "://" + u.Host
	if (n.Data == "a" || n.Data == "area") && at.Key == "href" && slices.Contains(linkOrigins, origin) {
		return nil
	}
	switch {
	case at.Key == "action" || at.Key == "formaction":
		return []string{fmt.Sprintf("<%s %s> posts to another origin: %s", n.Data, at.Key, u.Redacted())}
	case n.Data == "a" || n.Data == "area":
		return []string{fmt.Sprintf("<%s href> links to another origin: %s", n.Data, u.Redacted())}
	}
	// scripts and stylesheets from another origin are named with the assets
	if (n.Data == "script" && at.Key == "src") || (n.Data == "link" && at.Key == "href") {
		return nil
	}
	return []string{fmt.Sprintf("<%s %s> loads from another origin: %s", n.Data, at.Key, u.Redacted())}
}

func sameOrigin(u, base *url.URL) bool {
	return strings.EqualFold(u.Scheme, base.Scheme) && strings.EqualFold(u.Host, base.Host)
}

// refreshURL is where a meta refresh's content ("5; url=...") leads: the
// page itself when it names no URL.
func refreshURL(base *url.URL, content string) (*url.URL, bool) {
	_, rest, ok := strings.Cut(content, ";")
	if !ok {
		_, rest, ok = strings.Cut(content, ",")
	}
	rest = strings.TrimSpace(rest)
	if !ok || rest == "" {
		return base, true
	}
	if k, v, found := strings.Cut(rest, "="); found && strings.EqualFold(strings.TrimSpace(k), "url") {
		rest = strings.Trim(strings.TrimSpace(v), `'"`)
	}
	u, err := base.Parse(rest)
	return u, err == nil
}

// unexpectedHeaders names the headers of a page that neither the manifest
// nor the operator's list allows; a Refresh header says where it leads.
func unexpectedHeaders(h http.Header, want Manifest, allow []string) []string {
	known := map[string]bool{}
	for k := range want.Headers {
		known[http.CanonicalHeaderKey(k)] = true
	}
	for _, k := range slices.Concat(want.OtherHeaders, allow) {
		known[http.CanonicalHeaderKey(k)] = true
	}
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if known[k] {
			continue
		}
		if k == "Refresh" {
			diffs = append(diffs, fmt.Sprintf("header Refresh %q sends the shopper away", h.Get(k)))
			continue
		}
		diffs = append(diffs, fmt.Sprintf("header %s is not in the manifest (%q)", k, h.Get(k)))
	}
	return diffs
}

// fetchAs fetches u as a browser asks for a page.
func fetchAs(ctx context.Context, client *http.Client, u, userAgent string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	req.Header.Set("Accept-Language", "en-US,en;q=0.9")
	res, err := client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("verify-page: %w", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		return nil, nil, fmt.Errorf("verify-page: reading %s: %w", u, err)
	}
	return res, b, nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	}
	return b.String()
}
