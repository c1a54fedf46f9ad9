// Package pagecheck proves a live payment page is the one we ship (PCI DSS
// 6.4.3 and 11.6.1): a Manifest lists every script and stylesheet the pages
// load, with their SHA-384 and why they are there, and the security headers
// the pages carry; Verify fetches a page and its assets and names each
// difference: a script or style that is not listed or whose content
// changed, an inline script or style, an event-handler attribute, a
// security header that changed or went missing.
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
}

// Hash returns the SHA-384 of b in integrity-attribute form.
func Hash(b []byte) string {
	sum := sha512.Sum384(b)
	return "sha384-" + base64.StdEncoding.EncodeToString(sum[:])
}

// maxBody bounds what Verify reads of a page or an asset.
const maxBody = 4 << 20

// Verify fetches the page at pageURL, then each script and stylesheet it
// loads, and returns every difference from want, each a sentence naming
// what differs. No differences: the page is as shipped. The error is for a
// page that could not be fetched at all.
func Verify(ctx context.Context, client *http.Client, pageURL string, want Manifest) ([]string, error) {
	base, err := url.Parse(pageURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("verify-page: %q is not an http(s) URL", pageURL)
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
			if (at.Key == "href" || at.Key == "src" || at.Key == "action") && strings.HasPrefix(strings.ToLower(strings.TrimSpace(at.Val)), "javascript:") {
				diffs = append(diffs, fmt.Sprintf("<%s> has a javascript: URL", n.Data))
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

func fetch(ctx context.Context, client *http.Client, u string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
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
