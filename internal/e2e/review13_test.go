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
	"syscall"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/store"
)

// Review of issue 13 (reproduction, fails today): only a service with
// --tls-cert listens for SIGHUP (internal/app/run.go:259-261 starts
// reloadOnHangup only when a.certs != nil). Served plain (behind a proxy) or
// with --acme-domain, SIGHUP keeps Go's default action and kills the
// process, though the README says "kill -HUP reads them again" and
// operators and tools (logrotate, systemd ExecReload) send it routinely. The
// same holds for a SIGHUP in the moment between start and the goroutine's
// signal.Notify.
func TestReviewSIGHUPDoesNotKillTheService(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--addr", addr, "--metrics-addr", "off", "--data", filepath.Join(dir, "data"))
	logs := startProcess(t, cmd)
	up := func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	for deadline := time.Now().Add(20 * time.Second); !up(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never up:\n%s", logs.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if !up() {
		t.Fatalf("a SIGHUP took the plain-HTTP service down:\n%s", logs.String())
	}
}

// Review of issue 13 (reproduction, fails today): POST /kaspi/notify needs
// no credential and no limit; a notification naming a live QR (its ID is in
// the QR the shopper's own page shows) claims the attempt (a durable write),
// asks Kaspi for the QR's status (an outbound call) and releases it (a
// second write): pkg/web/kaspi.go:143-160, pkg/payment/kaspi.go:130-199.
// A caller repeating it costs two durable writes and a call to Kaspi per
// request, without end.
func TestReviewKaspiNotifyIsUnbounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	id := e.session(map[string]any{"methods": []string{"card", "kaspi_qr"}, "locale": "en"})["id"].(string)
	b := e.browser()
	_, app := kaspiQR(t, e, b, id)
	qr := app[strings.LastIndex(app, "/")+1:]
	version := func() int64 { return sessionVersion(t, e, id) }
	before := version()
	const n = 100
	for i := 0; i < n; i++ {
		st, _, _ := e.api("POST", "/kaspi/notify", "", map[string]any{"qr_id": qr, "external_id": id}, "X-Forwarded-For", "203.0.113.66")
		if st != 200 && st != 429 {
			t.Fatalf("notification %d: %d", i, st)
		}
	}
	writes := version() - before
	t.Logf("%d unauthenticated notifications: the session was written %d times", n, writes)
	if writes > 10 {
		t.Errorf("%d unauthenticated notifications cost %d durable writes of the session (and as many calls to Kaspi)", n, writes)
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

// Review of issue 13 (reproduction, fails today): the listeners take any
// number of connections, and an idle keep-alive connection is held for
// IdleTimeout (120 s, internal/app/run.go:296-300) at about 20 KiB each.
// One client opening 6,000 connections, one GET /healthz on each, then
// leaving them idle, grows the real binary by ~130 MiB; 12,000 (100 new
// connections a second for two minutes) pass the Kubernetes manifest's 256
// MiB limit. It matters wherever paypage is reached directly: the compose
// file publishes its port, and --tls-cert/--acme-domain exist to serve the
// internet. (Measured by hand: 10,000 idle connections 18 -> 234 MiB;
// 10,700 half-sent headers 18 -> 258 MiB.)
func TestReviewIdleConnectionsBoundMemory(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--addr", addr, "--metrics-addr", "off", "--log-level", "warn", "--data", filepath.Join(dir, "data"))
	logs := startProcess(t, cmd)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never up:\n%s", logs.String())
		}
	}
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
}

// Review of issue 13 (reproduction, fails today): a detokenize call the
// processor makes with its good key, for a token that is not there (or was
// deleted by retention, or belongs to a merchant it no longer serves), is
// counted as a refusal of its source (pkg/web/api.go:325-333), and past 30
// such in a minute every call from that address, good key and good token
// included, is answered 429 before the key is looked up (api.go:46). A
// processor with a few stale tokens in a batch (or anyone sharing its NAT
// address) stops card authorizations for the rest of the minute.
func TestReviewProcessorLockedOutByItsOwnNotFounds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{refusals: 30})
	token := e.paidToken("4242 4242 4242 4242")
	for i := 0; i < 30; i++ {
		st, _, _ := e.api("POST", "/v1/detokenize", e.procKey, map[string]any{"token": fmt.Sprintf("tok_%026d", i)})
		if st != http.StatusNotFound {
			t.Fatalf("unknown token %d: %d", i, st)
		}
	}
	st, d, _ := e.api("POST", "/v1/detokenize", e.procKey, map[string]any{"token": token})
	if st != http.StatusOK {
		t.Fatalf("the processor's good key and a good token after 30 unknown tokens: %d %v", st, d)
	}
}

// Review of issue 13 (reproduction, fails today): a card submission the
// limits refuse still costs two durable writes of the session: SubmitCard
// claims the session with a new attempt (pkg/payment/card.go:153) before it
// asks the limits (card.go:157) and abandons the attempt after (a second
// write). A client over its limit keeps costing two writes (fsyncs on
// bolt) and four counter increments per 429, without end.
func TestReviewLimitedSubmissionCostsNoWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.app.Limiter.Client.Max = 1
	id := e.session(map[string]any{"locale": "en"})["id"].(string)
	b := e.browser()
	if p := b.pay(id, "4000 0000 0000 0002", "981"); p.status == http.StatusTooManyRequests {
		t.Fatalf("first submission limited")
	}
	version := func() int64 { return sessionVersion(t, e, id) }
	before := version()
	const n = 20
	for i := 0; i < n; i++ {
		if p := b.pay(id, luhnCard(300+i), "981"); p.status != http.StatusTooManyRequests {
			t.Fatalf("submission %d over the client limit: %d", i, p.status)
		}
	}
	if writes := version() - before; writes > 0 {
		t.Errorf("%d submissions refused by the client limit wrote the session %d times", n, writes)
	}
}

// sessionVersion is the stored session record's version: how many times it
// has been written.
func sessionVersion(t *testing.T, e *env, id string) int64 {
	t.Helper()
	r, err := e.app.Store().Get(context.Background(), store.Key{Kind: "session", ID: id, Group: payment.Group(id)})
	if err != nil {
		t.Fatal(err)
	}
	return r.Version
}
