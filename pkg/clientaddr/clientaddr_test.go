package clientaddr_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/paypage/paypage/pkg/clientaddr"
)

func TestClient(t *testing.T) {
	t.Parallel()
	trusted, err := clientaddr.ParsePrefixes("10.0.0.0/8, 192.0.2.7, 2001:db8:ffff::/48")
	if err != nil {
		t.Fatal(err)
	}
	r := clientaddr.New(trusted)
	none := clientaddr.New(nil)
	tests := []struct {
		name   string
		res    *clientaddr.Resolver
		peer   string
		xff    []string
		client string
	}{
		{"no proxy: the peer", r, "203.0.113.5:4000", nil, "203.0.113.5"},
		{"untrusted peer: the header is ignored", r, "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"nothing trusted: the header is ignored", none, "10.0.0.1:4000", []string{"198.51.100.1"}, "10.0.0.1"},
		{"trusted peer: the last hop", r, "10.0.0.1:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"forged hops left of the real client are ignored", r, "10.0.0.1:4000", []string{"1.1.1.1, 2.2.2.2, 198.51.100.1"}, "198.51.100.1"},
		{"walk past trusted hops", r, "10.0.0.1:4000", []string{"1.1.1.1, 198.51.100.1, 192.0.2.7, 10.1.2.3"}, "198.51.100.1"},
		{"several header lines are one list", r, "10.0.0.1:4000", []string{"1.1.1.1, 198.51.100.1", "10.9.9.9"}, "198.51.100.1"},
		{"all hops trusted: the leftmost", r, "10.0.0.1:4000", []string{"10.2.2.2, 10.3.3.3"}, "10.2.2.2"},
		{"malformed hop: stop at the last good one", r, "10.0.0.1:4000", []string{"198.51.100.1, garbage, 10.3.3.3"}, "10.3.3.3"},
		{"malformed last hop: the proxy", r, "10.0.0.1:4000", []string{"1.1.1.1, not-an-ip"}, "10.0.0.1"},
		{"hop with a port", r, "10.0.0.1:4000", []string{"198.51.100.1:5555"}, "198.51.100.1"},
		{"IPv6 hop in brackets", r, "10.0.0.1:4000", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"IPv6 trusted peer", r, "[2001:db8:ffff::9]:4000", []string{"2001:db8:1::1"}, "2001:db8:1::1"},
		{"IPv4-mapped peer is IPv4", r, "[::ffff:10.0.0.1]:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"IPv4-mapped hop is IPv4", r, "10.0.0.1:4000", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
		{"empty header", r, "10.0.0.1:4000", []string{""}, "10.0.0.1"},
		{"bad peer", r, "pipe", nil, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.res.Client(tt.peer, tt.xff).String(); got != tt.client {
				t.Errorf("Client(%s, %q) = %s, want %s", tt.peer, tt.xff, got, tt.client)
			}
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	t.Parallel()
	got, err := clientaddr.ParsePrefixes(" 10.1.2.3/8 ,::ffff:192.0.2.1,2001:db8::1,")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.1/32", "2001:db8::1/128"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("%d: %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0.0/8,x"} {
		if _, err := clientaddr.ParsePrefixes(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if p, err := clientaddr.ParsePrefixes(""); err != nil || len(p) != 0 {
		t.Errorf("empty: %v %v", p, err)
	}
}

// IPv6 addresses of one /64 share a bucket; IPv4 addresses do not.
func TestBucket(t *testing.T) {
	t.Parallel()
	b := func(s string) string { return clientaddr.Bucket(netip.MustParseAddr(s)) }
	if b("2001:db8:1:2::1") != b("2001:db8:1:2:ffff:ffff:ffff:ffff") || b("2001:db8:1:2::1") != "2001:db8:1:2::/64" {
		t.Error("one /64 is more than one bucket")
	}
	if b("2001:db8:1:2::1") == b("2001:db8:1:3::1") {
		t.Error("two /64s share a bucket")
	}
	if b("192.0.2.1") == b("192.0.2.2") || b("192.0.2.1") != "192.0.2.1" || b("::ffff:192.0.2.1") != "192.0.2.1" {
		t.Error("IPv4 buckets")
	}
	if clientaddr.Bucket(netip.Addr{}) != "" {
		t.Error("the zero address has a bucket")
	}
	n := func(s string) string { return clientaddr.Network(netip.MustParseAddr(s)) }
	if n("2001:db8:1:2::1") != n("2001:db8:1:ffff::1") || n("2001:db8:1:2::1") != "2001:db8:1::/48" || n("2001:db8:2::1") == n("2001:db8:1::1") {
		t.Error("IPv6 networks are not /48s")
	}
	if n("192.0.2.1") != "" || n("::ffff:192.0.2.1") != "" || clientaddr.Network(netip.Addr{}) != "" {
		t.Error("IPv4 has a network bucket")
	}
}

// FuzzClient: any header from a trusted proxy gives the peer or one of the
// header's addresses, and nothing from an untrusted peer changes its address.
func FuzzClient(f *testing.F) {
	f.Add("10.0.0.1:4000", "198.51.100.1, 10.3.3.3")
	f.Add("203.0.113.5:1", "1.1.1.1")
	f.Add("[2001:db8:ffff::9]:4000", "[2001:db8::1]:443, garbage,,")
	f.Add("10.0.0.1:4000", "::ffff:198.51.100.1%eth0")
	trusted, _ := clientaddr.ParsePrefixes("10.0.0.0/8, 2001:db8:ffff::/48")
	r := clientaddr.New(trusted)
	f.Fuzz(func(t *testing.T, peer, xff string) {
		got := r.Client(peer, []string{xff})
		plain := r.Client(peer, nil)
		if !r.Trusted(plain) {
			if got != plain {
				t.Fatalf("untrusted peer %q: %s from the header %q", peer, got, xff)
			}
			return
		}
		if got != plain && !containsAddr(xff, got) {
			t.Fatalf("client %s is neither the peer %q nor in %q", got, peer, xff)
		}
		if got.Zone() != "" || got.Is4In6() {
			t.Fatalf("client %s keeps a zone or a mapped form", got)
		}
	})
}

func containsAddr(xff string, a netip.Addr) bool {
	for _, hop := range strings.Split(xff, ",") {
		if r := clientaddr.New(nil).Client(strings.TrimSpace(hop), nil); r == a {
			return true
		}
		if r, err := netip.ParseAddr(strings.Trim(strings.TrimSpace(hop), "[]")); err == nil && r.Unmap().WithZone("") == a {
			return true
		}
	}
	return false
}
