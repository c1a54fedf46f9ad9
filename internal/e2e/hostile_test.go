package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRefusalFlood: a thousand unauthenticated detokenize calls from one
// source write nothing durable while they come (the issue measured one
// audit record and one fsync each); past the limit they are refused with
// 429 before any key is looked up; the trail then holds one record per
// reason with the count. Another source is not held up, and one IPv6 /64 is
// one source however its addresses rotate.
func TestRefusalFlood(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{refusals: 30, trusted: "127.0.0.0/8"})
	before, err := e.app.Audit.List(context.Background(), "", 100_000)
	if err != nil {
		t.Fatal(err)
	}
	from := func(addr string) []string { return []string{"X-Forwarded-For", addr} }
	statuses := map[int]int{}
	for i := 0; i < 1000; i++ {
		key := ""
		if i%2 == 1 {
			key = "psk_" + strconv.Itoa(i) + "_not_a_key_at_all_xxxxxxxxxxxx"
		}
		st, _, h := e.api("POST", "/v1/detokenize", key, map[string]any{"token": "tok_x"}, from("203.0.113.7")...)
		statuses[st]++
		if st == 429 && h.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}
	if statuses[401] != 30 || statuses[429] != 970 {
		t.Fatalf("statuses %v", statuses)
	}
	during, _ := e.app.Audit.List(context.Background(), "", 100_000)
	if len(during) != len(before) {
		t.Fatalf("the flood wrote %d audit records as it came", len(during)-len(before))
	}
	// The flooding source is held up even with a good key; another is not.
	if st, _, _ := e.api("POST", "/v1/detokenize", e.procKey, map[string]any{"token": "tok_x"}, from("203.0.113.7")...); st != 429 {
		t.Fatalf("the flooding source with a good key: %d", st)
	}
	if st, _, _ := e.api("GET", "/v1/sessions/ses_x", "sk_wrong_key_for_this_merchant_xxxxxxxx", nil, from("198.51.100.9")...); st != 401 {
		t.Fatalf("another source: %d", st)
	}
	// Rotating addresses inside one IPv6 /64 is one source.
	for i := 0; i < 40; i++ {
		e.api("POST", "/v1/detokenize", "", map[string]any{}, from(fmt.Sprintf("2001:db8:1:2::%x", i+1))...)
	}
	if st, _, _ := e.api("POST", "/v1/detokenize", "", map[string]any{}, from("2001:db8:1:2:ffff::1")...); st != 429 {
		t.Fatalf("a new address in the same /64: %d", st)
	}

	got := map[string]int64{}
	n := 0
	for _, ev := range e.auditTrail()[len(before):] {
		n++
		got[ev.Source+" "+ev.Actor+" "+ev.Action+" "+ev.Reason] += ev.Count
	}
	want := map[string]int64{
		"203.0.113.7 unknown detokenize unauthorized":       30,
		"203.0.113.7 unknown detokenize rate_limited":       971,
		"198.51.100.9 unknown authenticate unauthorized":    1,
		"2001:db8:1:2::/64 unknown detokenize unauthorized": 30,
		"2001:db8:1:2::/64 unknown detokenize rate_limited": 11,
	}
	if n != len(want) || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%d records: %v\nwant %v", n, got, want)
	}
}

// The refusal limit is 30 a minute by default, and off when set so (the
// settings' 0), as every limit.
func TestRefusalLimitOff(t *testing.T) {
	t.Parallel()
	def := newEnv(t, envOpts{})
	for i := 1; i <= 31; i++ {
		st, _, _ := def.api("POST", "/v1/detokenize", "", map[string]any{})
		if want := map[bool]int{true: http.StatusTooManyRequests, false: http.StatusUnauthorized}[i > 30]; st != want {
			t.Fatalf("refusal %d by default: %d, want %d", i, st, want)
		}
	}
	e := newEnv(t, envOpts{refusals: -1})
	for i := 0; i < 100; i++ {
		if st, _, _ := e.api("POST", "/v1/detokenize", "", map[string]any{}); st != http.StatusUnauthorized {
			t.Fatalf("call %d: %d", i, st)
		}
	}
}

// TestProcessorAPIApart: with --processor-addr the processor API is served
// there alone (so a network policy can open that port to the processor's
// network only) and answers 404 on the public address.
func TestProcessorAPIApart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{processor: true})
	token := e.paidToken("4242 4242 4242 4242")
	if st, d, _ := e.api("POST", "/v1/detokenize", e.procKey, map[string]any{"token": token}); st != 404 || d["pan"] != nil {
		t.Fatalf("detokenize on the public address: %d %v", st, d)
	}
	proc := *e
	proc.url = e.processor
	st, d, h := proc.api("POST", "/v1/detokenize", e.procKey, map[string]any{"token": token})
	if st != 200 || d["pan"] != "4242424242424242" || h.Get("Content-Security-Policy") == "" {
		t.Fatalf("detokenize on the processor address: %d %v", st, d)
	}
	for _, path := range []string{"/pay/x", "/healthz", "/v1/sessions"} {
		resp, err := http.Get(e.processor + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 && resp.StatusCode != 405 {
			t.Errorf("the processor address serves %s: %d", path, resp.StatusCode)
		}
	}
}

// luhnCard is a Visa-like number that is no sandbox card, valid by Luhn.
func luhnCard(i int) string {
	body := fmt.Sprintf("411111111%06d", i)
	sum := 0
	for j := len(body) - 1; j >= 0; j-- {
		d := int(body[j] - '0')
		if (len(body)-j)%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return body + strconv.Itoa((10-sum%10)%10)
}

// TestDistributedCardTesting: a card-testing run that spreads over
// addresses and cards, each under its own limit, is stopped by the
// merchant's velocity limit, and the shopper is told; the other shops go
// on. An IPv6 client rotating addresses inside its /64 is one client.
func TestDistributedCardTesting(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{trusted: "127.0.0.0/8"})
	e.app.Limiter.Merchant.Max = 5
	for i := 1; i <= 6; i++ {
		id := e.session(map[string]any{"locale": "en"})["id"].(string)
		b := e.browser()
		b.xff = fmt.Sprintf("198.51.100.%d", i)
		p := b.pay(id, luhnCard(i), "981")
		if i <= 5 && p.status != http.StatusSeeOther {
			t.Fatalf("submission %d: %d\n%s", i, p.status, p.body)
		}
		if i == 6 {
			if p.status != http.StatusTooManyRequests || !strings.Contains(p.body, "Too many payments are being made to this shop") {
				t.Fatalf("the sixth submission to the shop: %d\n%s", p.status, p.body)
			}
			if _, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil); s["payment"] != nil {
				t.Fatal("a refused submission made a payment")
			}
		}
	}
	if !strings.Contains(e.logs.String(), `"msg":"limit reached","limit":"merchant"`) {
		t.Error("the log does not say which limit")
	}
	other, err := e.app.Accounts.AddMerchant(context.Background(), "Other Shop", "")
	if err != nil {
		t.Fatal(err)
	}
	st, s, _ := e.api("POST", "/v1/sessions", other.SecretKey, map[string]any{"amount": 100, "currency": "KZT",
		"success_url": "https://other.example/ok", "cancel_url": "https://other.example/no"})
	if st != http.StatusCreated {
		t.Fatalf("other shop's session: %d %v", st, s)
	}
	b := e.browser()
	b.xff = "198.51.100.99"
	if p := b.pay(s["id"].(string), luhnCard(99), "981"); p.status != http.StatusSeeOther {
		t.Fatalf("another shop during the run: %d", p.status)
	}

	// One IPv6 /64 is one client, however it rotates.
	e.app.Limiter.Merchant.Max, e.app.Limiter.Client.Max = 0, 2
	for i := 1; i <= 3; i++ {
		id := e.session(map[string]any{"locale": "en"})["id"].(string)
		b := e.browser()
		b.xff = fmt.Sprintf("2001:db8:7:7::%x", i*1000)
		p := b.pay(id, luhnCard(200+i), "981")
		if want := map[bool]int{true: http.StatusTooManyRequests, false: http.StatusSeeOther}[i == 3]; p.status != want {
			t.Fatalf("IPv6 address %d of one /64: %d, want %d", i, p.status, want)
		}
	}

	// One IPv6 /48 walking its 65,536 /64s is held to the network limit,
	// and told so; another /48 is not.
	e.app.Limiter.Network.Max = 3
	for i := 1; i <= 4; i++ {
		id := e.session(map[string]any{"locale": "en"})["id"].(string)
		b := e.browser()
		b.xff = fmt.Sprintf("2001:db8:48:%x::1", i)
		p := b.pay(id, luhnCard(300+i), "981")
		if want := map[bool]int{true: http.StatusTooManyRequests, false: http.StatusSeeOther}[i == 4]; p.status != want {
			t.Fatalf("/64 number %d of one /48: %d, want %d", i, p.status, want)
		}
		if i == 4 && !strings.Contains(p.body, "Too many payment attempts from your network") {
			t.Fatalf("the network limit's notice:\n%s", p.body)
		}
	}
	id := e.session(map[string]any{"locale": "en"})["id"].(string)
	b = e.browser()
	b.xff = "2001:db8:49::1"
	if p := b.pay(id, luhnCard(310), "981"); p.status != http.StatusSeeOther {
		t.Fatalf("another /48: %d", p.status)
	}
	if !strings.Contains(e.logs.String(), `"msg":"limit reached","limit":"network"`) {
		t.Error("the log does not name the network limit")
	}
}

// vmHWM is a process's peak resident memory in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// serveBinary starts the real binary on a free address with extra
// settings, waits until it answers, and returns it and its address.
func serveBinary(t *testing.T, extra ...string) (*exec.Cmd, string) {
	t.Helper()
	bin := buildBinary(t)
	addr := freeAddr(t)
	args := append([]string{"serve", "--addr", addr, "--metrics-addr", "off", "--log-level", "warn", "--data", filepath.Join(t.TempDir(), "data")}, extra...)
	cmd := exec.Command(bin, args...)
	logs := startProcess(t, cmd)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			return cmd, addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("never up:\n%s", logs.String())
		}
	}
}

// TestIdleConnectionsBoundMemory: one client opening 6,000 keep-alive
// connections to the real binary, one GET /healthz on each, then leaving
// them idle, grows it by at most 32 MiB: --max-connections-per-address
// closes the ones past its cap at once. (Unbounded, with a 120 s idle
// timeout, they grew it by ~130 MiB; 10,000 idle connections 18 -> 234
// MiB, 10,700 half-sent headers 18 -> 258 MiB, past the Kubernetes
// manifest's 256 MiB limit.)
func TestIdleConnectionsBoundMemory(t *testing.T) {
	cmd, addr := serveBinary(t)
	before := vmHWM(t, cmd.Process.Pid)
	const n = 6000
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break // refused: a bound on connections is what this asks for
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			break
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			break
		}
		resp.Body.Close()
	}
	grown := vmHWM(t, cmd.Process.Pid) - before
	t.Logf("%d idle keep-alive connections held: the service grew by %d MiB", len(conns), grown>>20)
	if grown > 32<<20 {
		t.Errorf("%d idle connections from one client grew the service by %d MiB: nothing bounds connections", len(conns), grown>>20)
	}
	if len(conns) > 129 {
		t.Errorf("one address held %d connections, past --max-connections-per-address (128)", len(conns))
	}
}

// TestHalfSentHeadersBoundMemory: 3,000 connections from 30 loopback
// addresses (each under the per-address cap), each sending 8 KB of a header
// that never ends, grow the real binary by at most 32 MiB under
// --max-connections 256: the rest wait in the kernel's backlog. Once they
// close, a new client is served. (With --max-connections 0, the same grew it
// by 48 MiB; 8 MiB under the bound.)
func TestHalfSentHeadersBoundMemory(t *testing.T) {
	cmd, addr := serveBinary(t, "--max-connections", "256")
	before := vmHWM(t, cmd.Process.Pid)
	partial := []byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 8<<10))
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 3000; i++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i/100))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if _, err := c.Write(partial); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	grown := vmHWM(t, cmd.Process.Pid) - before
	t.Logf("%d connections with half a header: the service grew by %d MiB", len(conns), grown>>20)
	if grown > 32<<20 {
		t.Errorf("%d connections with half-sent headers grew the service by %d MiB", len(conns), grown>>20)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a new client once they closed: %v %v", resp, err)
	}
	resp.Body.Close()
}
