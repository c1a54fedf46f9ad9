package account

import (
	"context"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/paypage/paypage/pkg/apperr"
)

// MaxFrameOrigins bounds a merchant's list of framing origins.
const MaxFrameOrigins = 10

// ParseFrameOrigin checks one origin a merchant allows to frame its payment
// pages and returns it in the form a Content-Security-Policy names it:
// "https://host" or "https://host:port", lower case. Only https; no path
// (a lone "/" is dropped), query, fragment or credentials; the host is a DNS
// name, or a wildcard "*." before a registrable domain or a name under one
// ("*.shop.example", which CSP matches for every subdomain, not the name
// itself; never "*.github.io" or "*.co.uk", a public suffix where anyone
// may host a page). No IP literals, no "*" alone, no CSP keywords.
func ParseFrameOrigin(s string) (string, error) {
	bad := apperr.Field("origins", "%q is not an https origin (https://shop.example, https://*.shop.example)", s)
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Scheme != "https" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" ||
		(u.Path != "" && u.Path != "/") || len(s) > 300 {
		return "", bad
	}
	host := strings.ToLower(u.Hostname())
	name, wild := strings.CutPrefix(host, "*.")
	if !validDNSName(name) || wild && !registrable(name) {
		return "", bad
	}
	out := "https://" + host
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != p {
			return "", bad
		}
		out += ":" + p
	} else if strings.HasSuffix(u.Host, ":") {
		return "", bad
	}
	return out, nil
}

// registrable reports whether name is a registrable domain (a public
// suffix and one label more: shop.example, shop.co.uk) or a name under one,
// by the Public Suffix List, its private section included (github.io,
// vercel.app).
func registrable(name string) bool {
	base, err := publicsuffix.EffectiveTLDPlusOne(name)
	return err == nil && (name == base || strings.HasSuffix(name, "."+base))
}

// validDNSName reports whether s is a host name: dot-separated labels of
// letters, digits and inner hyphens, not all digits at the end (an IP).
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

// ParseFrameOrigins checks a list of origins (see ParseFrameOrigin), drops
// repeats and bounds its length. An empty list allows no one.
func ParseFrameOrigins(list []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, s := range list {
		if strings.TrimSpace(s) == "" {
			continue
		}
		o, err := ParseFrameOrigin(s)
		if err != nil {
			return nil, err
		}
		if !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	if len(out) > MaxFrameOrigins {
		return nil, apperr.Field("origins", "at most %d origins", MaxFrameOrigins)
	}
	return out, nil
}

// SetFrameOrigins replaces the origins that may frame a merchant's payment
// pages and returns them as stored; an empty list allows no one.
func (s *Service) SetFrameOrigins(ctx context.Context, id string, origins []string) ([]string, error) {
	list, err := ParseFrameOrigins(origins)
	if err != nil {
		return nil, err
	}
	return list, s.updateMerchant(ctx, id, func(m *Merchant) { m.FrameOrigins = list })
}
