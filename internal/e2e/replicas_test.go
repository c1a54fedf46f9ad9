package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startProcess starts cmd with its output in the buffer it returns, and
// stops it (SIGTERM, then waits) when the test ends.
func startProcess(t *testing.T, cmd *exec.Cmd) *syncBuffer {
	t.Helper()
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	return logs
}

// replica is a real `paypage serve` process.
type replica struct {
	*env
	cmd *exec.Cmd
}

// startServe starts `paypage serve` on a free address (metrics off, unless
// extra names an address) with the environment base plus extra, and waits
// until it is ready (or up and sealed); it is stopped when the test ends,
// if it still runs.
func startServe(t *testing.T, bin string, base []string, extra ...string) *replica {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(append(append([]string(nil), base...), "PAYPAGE_ADDR="+addr, "PAYPAGE_METRICS_ADDR=off"), extra...)
	logs := startProcess(t, cmd)
	e := &env{t: t, url: "http://" + addr, seen: &syncBuffer{}, logs: logs}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(e.url + "/readyz"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 || strings.Contains(string(b), `"sealed"`) { // sealed: up, waiting for its custodians
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("paypage serve never ready:\n%s", logs.String())
		}
	}
	return &replica{env: e, cmd: cmd}
}

// kill stops the process at once, as a crash would (SIGKILL).
func (r *replica) kill() {
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestTwoProcessesOnOneRedis runs two real paypage processes on one Redis:
// sessions made at one replica are paid at the other, and every webhook
// event is delivered once, never twice at the same time. The operator's
// events commands work beside them.
func TestTwoProcessesOnOneRedis(t *testing.T) {
	bin := buildBinary(t)
	redis := redisURL(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "master.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("5a", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t)
	rc.plan = func(int) (int, time.Duration) { return 200, 30 * time.Millisecond }
	base := append(os.Environ(), "PAYPAGE_STORE="+redis, "PAYPAGE_MASTER_KEY_FILE="+keyFile, "PAYPAGE_DATA="+filepath.Join(dir, "data"),
		"PAYPAGE_WEBHOOK_ALLOW_PRIVATE=true", "PAYPAGE_WEBHOOK_SCHEDULE=200ms,400ms", "PAYPAGE_WEBHOOK_TIMEOUT=1s")
	cli := func(args ...string) []byte {
		cmd := exec.Command(bin, args...)
		cmd.Env = base
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("paypage %v: %v", args, err)
		}
		return out
	}
	var m struct {
		ID            string `json:"id"`
		SecretKey     string `json:"secret_key"`
		WebhookSecret string `json:"webhook_secret"`
	}
	if err := json.Unmarshal(cli("merchant", "add", "--name", "Air Astana", "--webhook-url", rc.srv.URL), &m); err != nil {
		t.Fatal(err)
	}
	rc.setSecret(m.WebhookSecret)

	var replicas []*env
	metricsAddr := freeAddr(t) // the first replica serves /metrics apart
	for i := 0; i < 2; i++ {
		var extra []string
		if i == 0 {
			extra = append(extra, "PAYPAGE_METRICS_ADDR="+metricsAddr)
		}
		r := startServe(t, bin, base, extra...)
		r.key, r.merchant = m.SecretKey, m.ID
		replicas = append(replicas, r.env)
	}

	const n = 10
	for i := 0; i < n; i++ {
		made, paidAt := replicas[i%2], replicas[(i+1)%2]
		id := made.session(nil)["id"].(string)
		c := []struct{ n, cvc string }{{"4242 4242 4242 4242", "981"}, {"2223 0031 2200 3222", "981"}, {"3530 1113 3330 0000", "981"}}[i%3]
		b := paidAt.browser()
		if p := b.follow(b.pay(id, c.n, c.cvc)); !strings.Contains(p.body, "Payment successful") {
			t.Fatalf("payment %d at the other replica:\n%s", i, p.body)
		}
	}
	got := rc.waitFor(t, n)
	if resp, err := http.Get(replicas[0].url + "/metrics"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("/metrics on the public address beside --metrics-addr: %v %v", resp, err)
	}
	if resp, err := http.Get("http://" + metricsAddr + "/metrics"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics on --metrics-addr: %v %v", resp, err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `paypage_payment_attempts_total{method="card",outcome="succeeded"} 5`) {
			t.Fatalf("replica 0's metrics:\n%s", b)
		}
	}
	// A second delivery of an event could only come once a lease ran out:
	// the try's timeout (1 s here) and 5 s more. Wait past that.
	time.Sleep(7 * time.Second)
	rc.mu.Lock()
	if len(rc.ids) != n || rc.overlp != 0 || rc.bad != 0 {
		t.Fatalf("%d events delivered, %d overlapping, %d bad signatures", len(rc.ids), rc.overlp, rc.bad)
	}
	for id, c := range rc.ids {
		if c != 1 {
			t.Fatalf("event %s delivered %d times", id, c)
		}
	}
	rc.mu.Unlock()

	// The operator lists the events and sends one again: same ID, delivered again.
	var listed []map[string]any
	if err := json.Unmarshal(cli("events", "list", "--merchant", m.ID), &listed); err != nil || len(listed) != n {
		t.Fatalf("events list: %d, %v", len(listed), err)
	}
	if d := listed[0]["delivery"].(map[string]any); d["state"] != "delivered" {
		t.Fatalf("delivery %v", d)
	}
	evt := got[0]["id"].(string)
	cli("events", "resend", "--id", evt)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c := rc.count(evt)
		if c == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resent event %s delivered %d times", evt, c)
		}
	}
}

// Two replicas on one Redis share one detokenize bucket: a processor gets
// no more calls through by spreading them over replicas.
func TestDetokenizeBucketSharedByReplicas(t *testing.T) {
	w := newWorld(t, "redis")
	a := w.serve("PAYPAGE_DETOKENIZE_PER_SECOND=5")
	mid, key := w.merchant("Shop")
	_, pkey := w.processor("Acquirer", "--merchants", mid)
	token := a.as(mid, key, pkey).paidToken("4242 4242 4242 4242")
	w2 := &world{t: t, bin: w.bin, env: map[string]string{}}
	for k, v := range w.env {
		w2.env[k] = v
	}
	w2.env["PAYPAGE_DATA"] = filepath.Join(t.TempDir(), "data2")
	b := w2.serve("PAYPAGE_DETOKENIZE_PER_SECOND=5")
	time.Sleep(1100 * time.Millisecond) // the bucket full again
	ea, eb := a.as(mid, key, pkey), b.as(mid, key, pkey)
	ok := 0
	start := time.Now()
	for i := 0; i < 20; i++ {
		e := ea
		if i%2 == 1 {
			e = eb
		}
		if code, _, _ := e.api("POST", "/v1/detokenize", pkey, map[string]any{"token": token}); code == 200 {
			ok++
		}
	}
	// Burst 5, plus 5 a second for the time the calls took.
	if max := 5 + int(time.Since(start).Seconds()*5) + 1; ok > max {
		t.Fatalf("%d of 20 calls across two replicas passed, more than %d", ok, max)
	}
}
