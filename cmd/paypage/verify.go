package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/paypage/paypage/pkg/pagecheck"
	"github.com/paypage/paypage/pkg/web"
)

// verifyPageCmd checks a live payment page against the manifest of this
// binary's release (PCI DSS 11.6.1): the page's scripts, styles, inline code
// and security headers, and the manifest the service serves.
type verifyPageCmd struct {
	URL          string
	Timeout      time.Duration
	UserAgent    string
	AllowHeaders string
}

func (c *verifyPageCmd) flags(fs *flag.FlagSet) {
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "how long to wait for the page and its assets")
	fs.StringVar(&c.UserAgent, "user-agent", pagecheck.BrowserUserAgent, "the User-Agent to ask with: a browser's, so a proxy that cloaks its tampering from tools shows it")
	fs.StringVar(&c.AllowHeaders, "allow-header", "", "headers your own proxy or CDN adds to the pages, comma separated (`NAMES`): allowed besides the manifest's")
}

func (c *verifyPageCmd) setArgs(args []string) error {
	if len(args) != 1 {
		return errors.New("give the URL of one payment page (https://pay.example/pay/ses_...)")
	}
	c.URL = args[0]
	return nil
}

func (c *verifyPageCmd) run(ctx context.Context, m *Main) error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("verify-page: %q is not an http(s) URL", c.URL)
	}
	origin := u.Scheme + "://" + u.Host
	want, err := web.BuildManifest(origin)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var allow []string
	for _, h := range strings.Split(c.AllowHeaders, ",") {
		if h = strings.TrimSpace(h); h != "" {
			allow = append(allow, h)
		}
	}
	diffs, err := pagecheck.VerifyWith(ctx, client, c.URL, want, pagecheck.Options{UserAgent: c.UserAgent, AllowHeaders: allow})
	if err != nil {
		return err
	}
	served, err := fetchManifest(ctx, client, origin+web.ManifestPath, c.UserAgent)
	if err != nil {
		diffs = append(diffs, "the page manifest could not be read: "+err.Error())
	} else {
		diffs = append(diffs, pagecheck.Compare(served, want)...)
	}
	for _, d := range diffs {
		fmt.Fprintln(m.Stdout, "DIFFERS:", d)
	}
	if len(diffs) > 0 {
		return fmt.Errorf("verify-page: %d differences from the manifest", len(diffs))
	}
	fmt.Fprintf(m.Stdout, "OK: %s matches the manifest (%d scripts, %d stylesheets, %d headers)\n", c.URL, len(want.Scripts), len(want.Styles), len(want.Headers))
	return nil
}

func fetchManifest(ctx context.Context, client *http.Client, u, userAgent string) (pagecheck.Manifest, error) {
	var m pagecheck.Manifest
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return m, err
	}
	req.Header.Set("User-Agent", userAgent)
	res, err := client.Do(req)
	if err != nil {
		return m, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return m, fmt.Errorf("%s answered %s", u, res.Status)
	}
	err = json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&m)
	return m, err
}
