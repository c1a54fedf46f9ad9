// Package clientaddr finds who is calling: the connection's peer, or, when
// the peer is a proxy the operator trusts, the nearest address in
// X-Forwarded-For that is not one of those proxies. Anyone can write
// X-Forwarded-For, so the header is believed only from trusted peers, and
// only as far back as the trusted hops go. Bucket groups addresses for
// limits: an IPv6 client holds a whole /64; Network, coarser, its /48.
package clientaddr

import (
	"fmt"
	"net/netip"
	"strings"
)

// Resolver reads client addresses behind a set of trusted proxies.
type Resolver struct {
	trusted []netip.Prefix
}

// New returns a resolver that trusts X-Forwarded-For from peers in trusted
// (none: the header is ignored).
func New(trusted []netip.Prefix) *Resolver { return &Resolver{trusted: trusted} }

// ParsePrefixes reads a comma-separated list of CIDR ranges or single
// addresses ("10.0.0.0/8, 192.0.2.7, 2001:db8::/32"); "" is none.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if p, err := netip.ParsePrefix(part); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR range nor an address", part)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Trusted reports whether a is one of the trusted proxies.
func (r *Resolver) Trusted(a netip.Addr) bool {
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Client returns the client's address for a request from the peer
// remoteAddr ("host:port") carrying the X-Forwarded-For header values xff,
// in the order they came. It walks the hops from the right past trusted
// proxies; the first one that is not trusted is the client. A malformed hop
// ends the walk at the last good one (a trusted proxy: the client is
// unknown, so it is counted as that proxy). The zero Addr means the peer
// itself could not be read.
func (r *Resolver) Client(remoteAddr string, xff []string) netip.Addr {
	client := parseAddr(remoteAddr)
	if !client.IsValid() || !r.Trusted(client) {
		return client
	}
	for i := len(xff) - 1; i >= 0; i-- {
		hops := strings.Split(xff[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			hop := parseAddr(strings.TrimSpace(hops[j]))
			if !hop.IsValid() {
				return client
			}
			client = hop
			if !r.Trusted(hop) {
				return client
			}
		}
	}
	return client
}

// parseAddr reads an address as X-Forwarded-For and RemoteAddr write it:
// bare, or with a port, IPv6 possibly in brackets. IPv4-mapped IPv6 becomes
// IPv4, and a zone is dropped.
func parseAddr(s string) netip.Addr {
	if len(s) > 64 {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone("")
}

// Bucket is the unit that limits count: an IPv4 address, or the /64 of an
// IPv6 address (one subscriber's network: a client holds all of it, so a
// limit per address would be 2^64 limits). "" for the zero Addr.
func Bucket(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.WithZone("").Prefix(64)
		return p.String()
	}
	return a.String()
}

// Network is the coarser unit an IPv6 client is counted under beside its
// Bucket: its /48, the most a subscriber or a host is commonly given (65,536
// /64s, each a bucket of its own). "" for IPv4 and the zero Addr, which
// Bucket counts alone.
func Network(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	a = a.Unmap()
	if !a.Is6() {
		return ""
	}
	p, _ := a.WithZone("").Prefix(48)
	return p.String()
}
