package egress_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/egress"
)

// Every special-purpose range of RFC 6890's registries (IPv4 and IPv6, with
// the later additions), each in the forms that reach it: plain, IPv4-mapped,
// NAT64 and 6to4. A range's first and last addresses are both tried.
func TestCheckAddr(t *testing.T) {
	t.Parallel()
	refused := []string{
		// IPv4 special-purpose registry
		"0.0.0.0", "0.255.255.255", // this network
		"10.0.0.1", "10.255.255.255", // private
		"100.64.0.1", "100.100.100.200", "100.127.255.255", // shared (CGN); Alibaba Cloud's metadata
		"127.0.0.1", "127.255.255.254", // loopback
		"169.254.169.254", "169.254.0.1", // link local, metadata
		"172.16.0.1", "172.31.255.255", // private
		"192.0.0.1", "192.0.0.8", "192.0.0.9", "192.0.0.170", "192.0.0.255", // IETF protocol assignments, DS-Lite, NAT64 discovery
		"192.0.2.1",                      // TEST-NET-1
		"192.88.99.1",                    // 6to4 relay anycast
		"192.168.0.1", "192.168.255.255", // private
		"198.18.0.1", "198.19.255.255", // benchmarking
		"198.51.100.7",                 // TEST-NET-2
		"203.0.113.9",                  // TEST-NET-3
		"224.0.0.1", "239.255.255.255", // multicast
		"240.0.0.1", "254.255.255.255", // reserved
		"255.255.255.255", // broadcast
		// IPv6 special-purpose registry
		"::", "::1", // unspecified, loopback
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.1.2.3", "::ffff:100.64.0.1", // IPv4-mapped
		"::127.0.0.1", "::8.8.8.8", // IPv4-compatible (deprecated): never unwrapped
		"::ffff:0:8.8.8.8",                                                                     // IPv4-translated (SIIT)
		"64:ff9b::a9fe:a9fe", "64:ff9b::127.0.0.1", "64:ff9b::10.0.0.1", "64:ff9b::100.64.0.1", // NAT64 to private
		"64:ff9b:1::8.8.8.8",                 // local-use NAT64 (RFC 8215)
		"100::1", "100::ffff:ffff:ffff:ffff", // discard-only
		"2001::1", "2001:0:4136:e378::1", // Teredo
		"2001:1::1", "2001:2::1", "2001:10::1", "2001:20::1", "2001:1ff:ffff::1", // IETF assignments: PCP, benchmarking, ORCHID
		"2001:db8::1", "2001:db8:ffff::1", // documentation
		"3fff::1", "3fff:fff::1", // documentation (RFC 9637)
		"2002:7f00:1::1", "2002:a9fe:a9fe::", "2002:0a00:0001::1", "2002:c0a8:0101::", // 6to4 wrapping private IPv4
		"5f00::1",                 // SRv6 SIDs (RFC 9602)
		"fc00::1", "fd12:3456::1", // unique local
		"fec0::1", "feff::1", // site local (deprecated)
		"fe80::1", "fe80::1%eth0", // link local
		"ff02::1", "ff0e::1", // multicast
		"4000::1", "8000::1", "e000::1", // outside 2000::/3: unassigned
	}
	allowed := []string{
		"8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0",
		"192.0.1.1", "192.0.3.1", "192.169.0.1", "198.17.255.255", "198.20.0.1", "223.255.255.255",
		"::ffff:8.8.8.8",    // IPv4-mapped public
		"64:ff9b::8.8.8.8",  // NAT64 of a public address
		"2002:0808:0808::1", // 6to4 of a public address
		"2001:4860:4860::8888", "2a00:1450:4001::1", "2606:4700::1111", "2620:4f:8000::1",
	}
	for _, s := range refused {
		ip := netip.MustParseAddr(s)
		if err := egress.CheckAddr(ip); !errors.Is(err, egress.ErrRefused) {
			t.Errorf("%s allowed", s)
		}
	}
	for _, s := range allowed {
		if err := egress.CheckAddr(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s refused: %v", s, err)
		}
	}
	if err := egress.CheckAddr(netip.Addr{}); err == nil {
		t.Error("the zero address allowed")
	}
}

func TestUnwrap(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"::ffff:169.254.169.254": "169.254.169.254",
		"64:ff9b::a9fe:a9fe":     "169.254.169.254",
		"2002:a9fe:a9fe:1::5":    "169.254.169.254",
		"2001:4860::1":           "2001:4860::1",
		"8.8.8.8":                "8.8.8.8",
	} {
		if got := egress.Unwrap(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("Unwrap(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestCheckDialAndURL(t *testing.T) {
	t.Parallel()
	dial := []struct {
		addr string
		ok   bool
	}{
		{"8.8.8.8:443", true},
		{"8.8.8.8:80", true},
		{"[2001:4860:4860::8888]:443", true},
		{"8.8.8.8:8443", false},
		{"8.8.8.8:22", false},
		{"127.0.0.1:443", false},
		{"[::ffff:127.0.0.1]:443", false},
		{"[64:ff9b::a9fe:a9fe]:80", false},
		{"[fe80::1%eth0]:443", false},
		{"example.com:443", false}, // never a name: the check runs after resolution
	}
	for _, tt := range dial {
		if err := egress.CheckDial("tcp", tt.addr, nil); (err == nil) != tt.ok {
			t.Errorf("CheckDial(%s): %v", tt.addr, err)
		}
	}
	urls := []struct {
		url          string
		allowPrivate bool
		ok           bool
	}{
		{"https://shop.example/hooks", false, true},
		{"https://shop.example:443/hooks", false, true},
		{"http://shop.example/hooks", false, false},
		{"http://shop.example/hooks", true, true},
		{"http://127.0.0.1:9999/hooks", true, true},
		{"https://shop.example:8443/hooks", false, false},
		{"https://169.254.169.254/latest", false, false},
		{"https://[::ffff:10.0.0.1]/", false, false},
		{"https://user:pass@shop.example/", false, false},
		{"ftp://shop.example/", true, false},
		{"/relative", true, false},
		{"https://shop.example:99999/", false, false},
	}
	for _, tt := range urls {
		if err := egress.CheckURL(tt.url, tt.allowPrivate); (err == nil) != tt.ok {
			t.Errorf("CheckURL(%s, %v): %v", tt.url, tt.allowPrivate, err)
		}
	}
}

// The client refuses a loopback receiver at dial time (the test server's
// port is not 80 or 443 either, and its scheme is http: each refusal is
// one of the guard's), follows no redirect, and honours cancellation.
func TestClient(t *testing.T) {
	t.Parallel()
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		http.Redirect(w, r, "http://example.invalid/", http.StatusFound)
	}))
	defer srv.Close()
	_, err := egress.NewClient(time.Second, false).Post(srv.URL, "application/json", nil)
	if !errors.Is(err, egress.ErrRefused) || hits != 0 {
		t.Fatalf("loopback delivery: err=%v hits=%d", err, hits)
	}
	// The dial-time check alone: a name that resolves to loopback, on 443.
	if _, err := egress.NewClient(time.Second, false).Get("https://localhost/"); !errors.Is(err, egress.ErrRefused) {
		t.Fatalf("a name resolving to loopback: %v", err)
	}
	resp, err := egress.NewClient(time.Second, true).Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || hits != 1 {
		t.Fatalf("redirect followed: %d, %d hits", resp.StatusCode, hits)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL, nil)
	if _, err := egress.NewClient(time.Second, true).Do(req); err == nil {
		t.Fatal("cancelled request went out")
	}
}

// FuzzCheckURL: a webhook URL is the shop's to choose. No input panics,
// and one that passes without allowPrivate is https, on port 443 or 80,
// and, when its host is a literal address, a public one.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{"https://shop.example/hooks", "https://[::ffff:10.0.0.1]/", "https://0x7f.1/", "https://2130706433/",
		"https://shop.example:443@169.254.169.254/", "HTTPS://SHOP.EXAMPLE:80/", "https://[64:ff9b::a9fe:a9fe]:443/", "http://x", "https://%31%32%37.0.0.1/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if egress.CheckURL(raw, false) != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "https" || u.User != nil {
			t.Fatalf("accepted %q", raw)
		}
		if p := u.Port(); p != "" && p != "443" && p != "80" {
			t.Fatalf("accepted %q on port %s", raw, p)
		}
		if ip, err := netip.ParseAddr(u.Hostname()); err == nil && egress.CheckAddr(ip) != nil {
			t.Fatalf("accepted %q, a private address", raw)
		}
	})
}
