// Package egress guards the connections paypage opens to addresses that
// others choose (a shop's webhook endpoint): only public, globally routed
// destinations on the web's ports, checked on the address actually dialled,
// so that neither DNS nor an address written in another form (IPv4-mapped,
// NAT64, 6to4) reaches the cloud's metadata service or the internal network.
package egress

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// ErrRefused is wrapped by every refusal of this package.
var ErrRefused = errors.New("egress refused")

// Ports are the only destination ports allowed.
var Ports = []uint16{443, 80}

// special are the IPv4 ranges that are not global unicast destinations:
// RFC 6890's special-purpose registry (with its later additions) where it
// says "not globally reachable", and the multicast and reserved blocks.
var special4 = prefixes(
	"0.0.0.0/8",          // "this network" (RFC 791)
	"10.0.0.0/8",         // private (RFC 1918)
	"100.64.0.0/10",      // shared address space, carrier-grade NAT (RFC 6598); some clouds' metadata
	"127.0.0.0/8",        // loopback
	"169.254.0.0/16",     // link local, the usual metadata address
	"172.16.0.0/12",      // private
	"192.0.0.0/24",       // IETF protocol assignments (RFC 6890), DS-Lite, NAT64 discovery
	"192.0.2.0/24",       // documentation TEST-NET-1 (RFC 5737)
	"192.88.99.0/24",     // 6to4 relay anycast (RFC 7526, deprecated)
	"192.168.0.0/16",     // private
	"198.18.0.0/15",      // benchmarking (RFC 2544)
	"198.51.100.0/24",    // documentation TEST-NET-2
	"203.0.113.0/24",     // documentation TEST-NET-3
	"224.0.0.0/4",        // multicast
	"240.0.0.0/4",        // reserved (RFC 1112)
	"255.255.255.255/32", // limited broadcast
)

// Refused4 are the IPv4 ranges the guard refuses (a copy): what a network
// policy's egress rule for webhooks must leave out too.
func Refused4() []netip.Prefix { return slices.Clone(special4) }

// IPv6 is allowed only inside global unicast 2000::/3 (which leaves out ::/8
// with the unspecified, loopback, IPv4-compatible and IPv4-translated forms,
// 64:ff9b:1::/48, 100::/64, fc00::/7, fec0::/10, fe80::/10 and ff00::/8),
// and there, not in these:
var special6 = prefixes(
	"2001::/23",     // IETF protocol assignments: Teredo 2001::/32, benchmarking 2001:2::/48, ORCHID
	"2001:db8::/32", // documentation (RFC 3849)
	"3fff::/20",     // documentation (RFC 9637)
)

var (
	global6 = netip.MustParsePrefix("2000::/3")
	nat64   = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052 well-known prefix: IPv4 in the last 32 bits
	sixto4  = netip.MustParsePrefix("2002::/16")    // RFC 3056: IPv4 in bits 16 to 48
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// Unwrap returns the IPv4 address an IPv6 address carries in its
// IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::a.b.c.d) or 6to4
// (2002:aabb:ccdd::) form, and the address itself otherwise.
func Unwrap(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	switch {
	case nat64.Contains(ip):
		b := ip.As16()
		return netip.AddrFrom4([4]byte(b[12:16]))
	case sixto4.Contains(ip):
		b := ip.As16()
		return netip.AddrFrom4([4]byte(b[2:6]))
	}
	return ip
}

// CheckAddr returns nil when ip, unwrapped, is a global unicast address,
// and an error wrapping ErrRefused otherwise.
func CheckAddr(ip netip.Addr) error {
	if !ip.IsValid() {
		return fmt.Errorf("%w: not an IP address", ErrRefused)
	}
	u := Unwrap(ip)
	in := func(ps []netip.Prefix) bool {
		for _, p := range ps {
			if p.Contains(u) {
				return true
			}
		}
		return false
	}
	if u.Is4() && !in(special4) || u.Is6() && global6.Contains(u) && !in(special6) {
		return nil
	}
	return fmt.Errorf("%w: %s is not a public address", ErrRefused, ip)
}

// CheckPort returns nil for an allowed destination port.
func CheckPort(port uint16) error {
	for _, p := range Ports {
		if port == p {
			return nil
		}
	}
	return fmt.Errorf("%w: port %d (only 443 and 80)", ErrRefused, port)
}

// CheckDial checks a dialled "host:port" address: a literal public IP on an
// allowed port. It is a net.Dialer's Control, so it sees the address after
// DNS resolution.
func CheckDial(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	if err := CheckAddr(ap.Addr()); err != nil {
		return err
	}
	return CheckPort(ap.Port())
}

// CheckURL checks an endpoint URL before any connection: absolute, https
// (or http when allowPrivate), and, unless allowPrivate, on port 443 or 80
// and not a literal private address. The dial-time check stays the one that
// counts: a name may resolve anywhere.
func CheckURL(raw string, allowPrivate bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || len(raw) > 2048 {
		return fmt.Errorf("%w: not an absolute URL without credentials", ErrRefused)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowPrivate:
	default:
		return fmt.Errorf("%w: the scheme must be https", ErrRefused)
	}
	if allowPrivate {
		return nil
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return fmt.Errorf("%w: bad port", ErrRefused)
		}
		if err := CheckPort(uint16(n)); err != nil {
			return err
		}
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
		return CheckAddr(ip)
	}
	return nil
}

// NewClient returns an HTTP client for calls to addresses others choose: it
// follows no redirects, uses no proxy, times out, and, unless allowPrivate
// (development, tests), refuses every request that CheckURL refuses and
// every connection that CheckDial refuses.
func NewClient(timeout time.Duration, allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: timeout}
	if !allowPrivate {
		d.Control = CheckDial
	}
	var rt http.RoundTripper = &http.Transport{DialContext: d.DialContext, TLSHandshakeTimeout: timeout, ResponseHeaderTimeout: timeout, MaxIdleConnsPerHost: 4, Proxy: nil}
	rt = checkedTransport{rt, allowPrivate}
	return &http.Client{
		Transport:     rt,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// checkedTransport refuses a request whose URL CheckURL refuses, before it dials.
type checkedTransport struct {
	next         http.RoundTripper
	allowPrivate bool
}

func (t checkedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := CheckURL(r.URL.String(), t.allowPrivate); err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	return t.next.RoundTrip(r)
}
