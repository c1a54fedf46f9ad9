package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemo runs `paypage demo` (the real binary) and drives it in Chromium
// end to end: the demo shop's page creates a session through the Go client,
// the shopper pays on paypage's page (another origin), lands back at the
// shop, and the shop shows the payment.succeeded webhook it verified.
func TestDemo(t *testing.T) {
	bin := buildBinary(t)
	b := startChrome(t)
	out := &syncBuffer{}
	cmd := exec.Command(bin, "demo", "--addr", "127.0.0.1:0", "--shop-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "PAYPAGE_LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	urls := regexp.MustCompile(`the shop: +(http://127\.0\.0\.1:\d+).*\n +the service: +(http://127\.0\.0\.1:\d+)`)
	var m []string
	for deadline := time.Now().Add(30 * time.Second); m == nil; time.Sleep(100 * time.Millisecond) {
		if m = urls.FindStringSubmatch(out.String()); m == nil && time.Now().After(deadline) {
			t.Fatalf("the demo never said where it is:\n%s", out.String())
		}
	}
	shop, service := m[1], m[2]

	p := b.MustPage("").Timeout(60 * time.Second)
	defer p.Close()
	desktop(p).MustNavigate(shop).MustWaitLoad()
	p.MustElement("#buy").MustClick()
	waitURL(t, p, service+"/pay/ses_") // paypage's page, on its own origin
	fillCard(p, "4242 4242 4242 4242", "981")
	p.MustElement("#pay").MustClick()
	back := waitURL(t, p, shop+"/return?session=ses_")
	ev := find(t, p, ".event-type") // the return page looks again until the webhook is in
	if got := ev.MustText(); got != "payment.succeeded" {
		t.Fatalf("event %q", got)
	}
	page := p.MustElement("main").MustText()
	for _, want := range []string{"Verified with client.ParseWebhook", "complete", "visa ending 4242", `"type": "payment.succeeded"`} {
		if !strings.Contains(page, want) {
			t.Fatalf("the return page %s lacks %q:\n%s", back, want, page)
		}
	}
	if strings.Contains(page, "4242424242424242") || strings.Contains(page, "4242 4242 4242 4242") {
		t.Fatal("the shop shows a card number")
	}

	// Ctrl-C stops both, cleanly.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo ended with %v:\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the demo did not stop on SIGINT")
	}
}
