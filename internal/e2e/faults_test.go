package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReplicaKilledMidPayment kills a real `paypage serve` replica (SIGKILL,
// no chance to clean up) while three payments are in its hands: a card whose
// authorization outlives the call's deadline (4000 0000 0000 0267, approved
// after 40 s), a card at the bank's challenge, and a Kaspi QR just paid in
// the app. Nobody looks at the pages again: the shopper whose challenge is
// open passes it at the bank and closes the browser. The other replica ends
// every one by itself, and the shop's receiver hears exactly one
// payment.succeeded per session within a minute of the crash.
func TestReplicaKilledMidPayment(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes for about a minute")
	}
	bin := buildBinary(t)
	redis := redisURL(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "master.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("6b", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t)
	base := append(os.Environ(), "PAYPAGE_STORE="+redis, "PAYPAGE_MASTER_KEY_FILE="+keyFile, "PAYPAGE_DATA="+filepath.Join(dir, "data"),
		"PAYPAGE_WEBHOOK_ALLOW_PRIVATE=true", "PAYPAGE_WEBHOOK_SCHEDULE=200ms,400ms")
	a := startServe(t, bin, base)
	var m struct {
		ID            string `json:"id"`
		SecretKey     string `json:"secret_key"`
		WebhookSecret string `json:"webhook_secret"`
	}
	if err := json.Unmarshal(runCLI(t, bin, base, "merchant", "add", "--name", "Air Astana", "--webhook-url", rc.srv.URL), &m); err != nil {
		t.Fatal(err)
	}
	rc.setSecret(m.WebhookSecret)
	b := startServe(t, bin, base)
	for _, r := range []*replica{a, b} {
		r.key, r.merchant = m.SecretKey, m.ID
	}
	defer func() {
		if t.Failed() {
			t.Logf("replica b:\n%s", b.logs.String())
		}
	}()

	// A Kaspi QR made at replica a.
	kaspiID := a.session(map[string]any{"methods": []string{"card", "kaspi_qr"}, "locale": "en"})["id"].(string)
	_, app := kaspiQR(t, a.env, a.browser(), kaspiID)
	// A challenge open at replica a's page.
	challengeID := a.session(map[string]any{"locale": "en"})["id"].(string)
	shopper := a.browser()
	challenge := shopper.pay(challengeID, "4000 0000 0000 3220", "981")
	acsURL, creq := challenge.form(0)
	if creq.Get("creq") == "" {
		t.Fatalf("no challenge:\n%s", challenge.body)
	}
	// A slow authorization in flight at replica a: the post waits for it.
	slowID := a.session(nil)["id"].(string)
	slow := a.browser()
	form := fillCardForm(slow.cardForm(slowID), "4000 0000 0000 0267", "981")
	go func() {
		if resp, err := slow.c.PostForm(a.url+"/pay/"+slowID, form); err == nil {
			resp.Body.Close()
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, pay := sessionState(t, b.env, slowID); pay != nil && pay["status"] == "processing" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow authorization never started")
		}
	}
	time.Sleep(500 * time.Millisecond) // at the processor now
	// The Kaspi QR is paid in the app; then replica a dies.
	if p := scan(t, a.env, app, "pay"); p.status != 200 {
		t.Fatalf("app: %d", p.status)
	}
	a.kill()
	crashed := time.Now()

	// The challenge's shopper passes the bank's check (the bank is reached
	// through replica b now) and closes the browser: the bank's answer never
	// comes back to our page.
	bankURL := b.url + strings.TrimPrefix(acsURL, a.url)
	sb := b.browser()
	bank := sb.do("POST", bankURL, creq)
	action, code := bank.form(0)
	code.Set("code", "123456")
	if done := sb.do("POST", action, code); !strings.Contains(done.body, `name="cres"`) {
		t.Fatalf("the bank did not finish:\n%s", done.body)
	}

	sessions := map[string]string{slowID: "slow authorization", challengeID: "open challenge", kaspiID: "Kaspi QR paid in the app"}
	heard := func() map[string][]string {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		out := map[string][]string{}
		for _, ev := range rc.got {
			data, _ := ev["data"].(map[string]any)
			sid, _ := data["session_id"].(string)
			out[sid] = append(out[sid], ev["type"].(string))
		}
		return out
	}
	for {
		got := heard()
		if len(got[slowID]) > 0 && len(got[challengeID]) > 0 && len(got[kaspiID]) > 0 {
			break
		}
		if time.Since(crashed) > time.Minute {
			t.Fatalf("a minute after the crash the shop has heard %v", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("every session ended %s after the crash", time.Since(crashed).Round(time.Second))
	time.Sleep(2 * time.Second) // room for a duplicate to show
	got := heard()
	for id, what := range sessions {
		if len(got[id]) != 1 || got[id][0] != "payment.succeeded" {
			t.Errorf("%s: the shop heard %v, want one payment.succeeded", what, got[id])
		}
		st, pay := sessionState(t, b.env, id)
		if st != "complete" || pay["status"] != "succeeded" || len(pay["attempts"].([]any)) != 1 {
			t.Errorf("%s: session %s, payment %v", what, st, pay)
		}
	}
	if len(got) != len(sessions) {
		t.Errorf("events for other sessions: %v", got)
	}
}

// runCLI runs a paypage operator command and returns its standard output.
func runCLI(t *testing.T, bin string, env []string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("paypage %v: %v", args, err)
	}
	return out
}
