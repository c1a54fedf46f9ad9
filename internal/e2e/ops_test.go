package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/audit"
)

// Help, flags and exit codes of the real binary: help touches nothing.
func TestBinaryHelpAndFlags(t *testing.T) {
	w := newWorld(t, "bolt")
	cwd := t.TempDir()
	delete(w.env, "PAYPAGE_DATA") // the default, ./data, in cwd
	run := func(extra []string, args ...string) result {
		cmd := exec.Command(w.bin, args...)
		cmd.Env, cmd.Dir = w.environ(extra...), cwd
		out, err := cmd.Output()
		r := result{stdout: string(out)}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code, r.stderr = ee.ExitCode(), string(ee.Stderr)
		}
		return r
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"merchant", "--help"}, {"processor", "roll-key", "-h"}} {
		if r := run(nil, args...); r.code != 0 || !strings.Contains(r.stdout, "paypage") {
			t.Errorf("%v: exit %d\n%s", args, r.code, r.stdout+r.stderr)
		}
	}
	if r := run(nil, "merchant", "--help"); !strings.Contains(r.stdout, "paypage merchant roll-key") || strings.Contains(r.stdout, "processor add") {
		t.Errorf("merchant --help:\n%s", r.stdout)
	}
	if r := run(nil, "processor", "add", "--help"); !strings.Contains(r.stdout, "--merchants") || !strings.Contains(r.stdout, "PAYPAGE_DETOKENIZE_PER_SECOND") || strings.Contains(r.stdout, "--tls-cert") {
		t.Errorf("processor add --help:\n%s", r.stdout)
	}
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, nil, "no command given"},
		{nil, []string{"merchant"}, "merchant needs a command"},
		{nil, []string{"nonsense"}, `unknown command "nonsense"`},
		{nil, []string{"merchant", "add", "--nope"}, "flag provided but not defined"},
		{[]string{"PAYPAGE_WEBHOOK_ALLOW_PRIVATE=yes"}, []string{"merchant", "list"}, `PAYPAGE_WEBHOOK_ALLOW_PRIVATE: "yes" is not a boolean: use true, false, 1 or 0`},
		{nil, []string{"merchant", "list", "--webhook-allow-private=yes"}, `"yes" is not a boolean`},
		{[]string{"PAYPAGE_LIMIT_CARD_PER_DAY=-1"}, []string{"merchant", "list"}, "not a limit"},
	} {
		if r := run(tc.env, tc.args...); r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v %v: exit %d, want 2 with %q\n%s", tc.env, tc.args, r.code, tc.want, r.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(cwd, "data")); !os.IsNotExist(err) {
		t.Fatalf("help or a bad command line made ./data: %v", err)
	}
	// A bare boolean flag means true.
	if r := run([]string{"PAYPAGE_MASTER_KEY=" + strings.Repeat("3d", 32)}, "merchant", "add", "--name", "Shop", "--webhook-url", "https://127.0.0.1/h", "--webhook-allow-private"); r.code != 0 || strings.Contains(r.stderr, "warning") {
		t.Fatalf("bare --webhook-allow-private: exit %d\n%s", r.code, r.stderr)
	}
}

// Every operator command works beside a running service, on both stores:
// it goes through the service's socket (mode 0600), the kernel names the
// operator in the audit trail, what it made is live in the service at once,
// and with the service gone the same commands open the store themselves.
func TestOperatorBesideService(t *testing.T) {
	onBothStores(t, func(t *testing.T, w *world) {
		svc := w.serve()
		sock := filepath.Join(w.env["PAYPAGE_DATA"], "paypage.sock")
		st, err := os.Stat(sock)
		if err != nil || st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
			t.Fatalf("socket %v %v", st.Mode(), err)
		}
		id, key := w.merchant("Air Astana")
		// The service knows the new key at once: the command went into its store.
		if code, s, _ := svc.as(id, key, "").api("POST", "/v1/sessions", key, map[string]any{"amount": 1000, "currency": "KZT",
			"success_url": "https://shop.example/ok", "cancel_url": "https://shop.example/no"}); code != 201 {
			t.Fatalf("session with the new key: %d %v", code, s)
		}
		w.processor("Acquirer", "--merchants", id)
		w.ok(nil, "keys", "status")
		w.ok(nil, "keys", "rotate")
		w.ok(nil, "events", "list")
		w.ok(nil, "merchant", "list")

		me, _ := user.Current()
		recs := w.audit()
		if len(recs) != 3 || recs[0].Action != "merchant.add" || recs[0].Object != id || recs[1].Action != "processor.add" || recs[2].Action != "keys.rotate" {
			t.Fatalf("audit: %+v", recs)
		}
		for _, r := range recs {
			if o := r.Operator; o == nil || o.Via != "socket" || o.UID != os.Getuid() || o.User != me.Username ||
				r.Actor != "operator:"+me.Username || o.PID == 0 || o.PID == svc.cmd.Process.Pid {
				t.Fatalf("operator not named by the kernel: %+v %+v", r, r.Operator)
			}
		}
		if !svc.logged(`"msg":"operator command","command":"merchant add","user":"` + me.Username + `","uid":` + strconv.Itoa(os.Getuid())) {
			t.Fatalf("the service does not log the operator's command:\n%s", svc.logs.String())
		}
		// A command meant for another store is refused, not carried out there.
		if r := w.cli([]string{"PAYPAGE_STORE=redis://127.0.0.1:1/0"}, "merchant", "add", "--name", "Elsewhere"); r.code != 1 || !strings.Contains(r.stderr, "runs on another store") {
			t.Fatalf("another store through the socket: %+v", r)
		}

		// The service stopped: the socket is gone and commands open the store.
		svc.stop()
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Fatalf("the socket outlived the service: %v", err)
		}
		w.merchant("Offline shop")
		recs = w.audit()
		if last := recs[len(recs)-1]; last.Action != "merchant.add" || last.Operator == nil || last.Operator.Via != "direct" || last.Operator.UID != os.Getuid() {
			t.Fatalf("direct: %+v", last)
		}

		// A service killed outright leaves its socket: commands find nobody
		// answers and open the store; the next serve replaces the socket.
		svc = w.serve()
		svc.kill()
		if _, err := os.Stat(sock); err != nil {
			t.Fatal("a killed service removed its socket")
		}
		w.ok(nil, "keys", "status")
		w.serve()
		w.processor("After restart")
		if last := w.audit(); last[len(last)-1].Operator.Via != "socket" {
			t.Fatalf("after restart: %+v", last[len(last)-1])
		}
	})
}

// Keys are rolled, expire, are disabled and enabled over a running service,
// and list their last use, never themselves.
func TestKeyLifeCycle(t *testing.T) {
	onBothStores(t, func(t *testing.T, w *world) {
		svc := w.serve()
		mid, k1 := w.merchant("Shop")
		if !strings.HasPrefix(k1, "sk_test_") {
			t.Fatalf("merchant key %q is not a test key", k1)
		}
		e := svc.as(mid, k1, "")
		status := func(key string) int {
			code, _, _ := e.api("GET", "/v1/events", key, nil)
			return code
		}
		if status(k1) != 200 {
			t.Fatal("a new key refused")
		}
		var roll map[string]any
		w.ok(&roll, "merchant", "roll-key", "--id", mid, "--old-expires-in", "1h")
		k2 := roll["secret_key"].(string)
		if !strings.HasPrefix(k2, "sk_test_") || status(k1) != 200 || status(k2) != 200 {
			t.Fatalf("after a roll with 1h: old %d, new %d", status(k1), status(k2))
		}
		w.ok(&roll, "merchant", "roll-key", "--id", mid, "--old-expires-in", "0s")
		k3 := roll["secret_key"].(string)
		if status(k1) != 401 || status(k2) != 401 || status(k3) != 200 {
			t.Fatalf("after a roll with 0s: %d %d %d", status(k1), status(k2), status(k3))
		}
		w.ok(nil, "merchant", "disable", "--id", mid)
		if code, body, _ := e.api("POST", "/v1/sessions", k3, map[string]any{"amount": 1}); code != 401 || body["error"].(map[string]any)["code"] != "unauthorized" {
			t.Fatalf("a disabled merchant's key: %d %v", code, body)
		}
		w.ok(nil, "merchant", "enable", "--id", mid)
		if status(k3) != 200 {
			t.Fatal("enabled again, still refused")
		}

		// A processor's keys, over detokenize.
		e.key = k3
		token := e.paidToken("4242 4242 4242 4242")
		pid, p1 := w.processor("Acquirer", "--merchants", mid)
		if !strings.HasPrefix(p1, "psk_test_") {
			t.Fatalf("processor key %q is not a test key", p1)
		}
		detok := func(key string) int {
			code, _, _ := e.api("POST", "/v1/detokenize", key, map[string]any{"token": token})
			return code
		}
		if detok(p1) != 200 {
			t.Fatal("processor refused")
		}
		w.ok(&roll, "processor", "roll-key", "--id", pid, "--old-expires-in", "0s")
		p2 := roll["secret_key"].(string)
		if detok(p1) != 401 || detok(p2) != 200 {
			t.Fatalf("processor roll: old %d new %d", detok(p1), detok(p2))
		}
		w.ok(nil, "processor", "disable", "--id", pid)
		if detok(p2) != 401 {
			t.Fatal("a disabled processor detokenizes")
		}
		w.ok(nil, "processor", "enable", "--id", pid)
		if detok(p2) != 200 {
			t.Fatal("an enabled processor refused")
		}

		// The lists show each key's hint and last use, never a key or a hash.
		for _, kind := range []string{"merchant", "processor"} {
			r := w.ok(nil, kind, "list")
			for _, secret := range []string{k1, k2, k3, p1, p2, `"hash"`} {
				if strings.Contains(r.stdout, secret) {
					t.Fatalf("%s list shows %s:\n%s", kind, secret, r.stdout)
				}
			}
			var list []struct {
				ID       string
				Mode     string
				Disabled bool
				Keys     []struct {
					Hint     string
					LastUsed *string `json:"last_used"`
				}
			}
			if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0].Mode != "test" || list[0].Disabled ||
				len(list[0].Keys) != 1 || list[0].Keys[0].LastUsed == nil {
				t.Fatalf("%s list: %v\n%s", kind, err, r.stdout)
			}
		}
		// Each change is audited with who made it.
		me, _ := user.Current()
		want := []string{"merchant.add", "merchant.roll_key", "merchant.roll_key", "merchant.disable", "merchant.enable",
			"processor.add", "processor.roll_key", "processor.disable", "processor.enable"}
		var got []string
		for _, ev := range w.audit() {
			if ev.Operator != nil {
				got = append(got, ev.Action)
				if ev.Actor != "operator:"+me.Username || ev.Outcome != audit.Success {
					t.Fatalf("audit: %+v", ev)
				}
			}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("audited %v, want %v", got, want)
		}
		w.fails("no merchant", "merchant", "roll-key", "--id", "mer_nope")
		w.fails("no processor", "processor", "disable", "--id", "prc_nope")
	})
}

// A processor detokenizes only the tokens of the merchants it serves: another
// merchant's token answers 404 as an unknown one, audited as refused.
func TestProcessorScope(t *testing.T) {
	onBothStores(t, func(t *testing.T, w *world) {
		svc := w.serve()
		aID, aKey := w.merchant("Shop A")
		bID, bKey := w.merchant("Shop B")
		pid, pkey := w.processor("Acquirer", "--merchants", aID)
		ea, eb := svc.as(aID, aKey, pkey), svc.as(bID, bKey, pkey)
		ta, tb := ea.paidToken("4242 4242 4242 4242"), eb.paidToken("4242 4242 4242 4242")
		detok := func(token string) (int, map[string]any) {
			code, body, _ := ea.api("POST", "/v1/detokenize", pkey, map[string]any{"token": token})
			return code, body
		}
		if code, body := detok(ta); code != 200 || body["merchant"] != aID || body["pan"] != "4242424242424242" {
			t.Fatalf("own merchant's token: %d %v", code, body)
		}
		codeB, bodyB := detok(tb)
		codeU, bodyU := detok("tok_" + strings.Repeat("a", 26))
		if codeB != 404 || bodyB["pan"] != nil || codeU != 404 || bodyB["error"].(map[string]any)["message"] != bodyU["error"].(map[string]any)["message"] {
			t.Fatalf("another merchant's token: %d %v; unknown: %d %v", codeB, bodyB, codeU, bodyU)
		}
		refused := 0
		for _, ev := range w.audit("--merchant", bID) {
			if ev.Action == "detokenize" && ev.Outcome == audit.Failure && ev.Object == tb && ev.Actor == "processor:"+pid {
				refused++
				if !strings.Contains(ev.Reason, "not served") {
					t.Fatalf("refusal reason %q", ev.Reason)
				}
			}
		}
		if refused != 1 {
			t.Fatalf("%d refusals audited under merchant B", refused)
		}
		w.ok(nil, "processor", "grant", "--id", pid, "--merchant", bID)
		if code, body := detok(tb); code != 200 || body["merchant"] != bID {
			t.Fatalf("after grant: %d %v", code, body)
		}
		w.ok(nil, "processor", "revoke", "--id", pid, "--merchant", aID)
		if code, _ := detok(ta); code != 404 {
			t.Fatalf("after revoke: %d", code)
		}
		var list []struct{ Merchants []string }
		w.ok(&list, "processor", "list")
		if len(list) != 1 || strings.Join(list[0].Merchants, ",") != bID {
			t.Fatalf("processor list: %+v", list)
		}
		w.fails("no merchant", "processor", "grant", "--id", pid, "--merchant", "mer_nope")
		w.fails("does not serve", "processor", "revoke", "--id", pid, "--merchant", aID)
		if r := w.cli(nil, "processor", "add", "--name", "Unscoped"); r.code != 0 || !strings.Contains(r.stderr, "serves no merchant yet") {
			t.Fatalf("a processor for nobody: %+v", r)
		}
	})
}

// refusedDetokenize sets up merchants A and B, a processor serving A only
// (ea is A's shop and that processor), and n tokens of B, and has the
// processor ask for each: 404s.
func refusedDetokenize(t *testing.T, w *world, svc *service, n int) (ea *env, bID, pid string, tokens []string) {
	t.Helper()
	aID, aKey := w.merchant("Shop A")
	bID, bKey := w.merchant("Shop B")
	pid, pkey := w.processor("Acquirer", "--merchants", aID)
	ea, eb := svc.as(aID, aKey, pkey), svc.as(bID, bKey, pkey)
	for i := 0; i < n; i++ {
		tokens = append(tokens, eb.paidToken("4242 4242 4242 4242"))
	}
	for _, tok := range tokens {
		if code, body, _ := ea.api("POST", "/v1/detokenize", pkey, map[string]any{"token": tok}); code != 404 {
			t.Fatalf("another merchant's token: %d %v", code, body)
		}
	}
	return ea, bID, pid, tokens
}

// A processor's refused detokenize call (another merchant's token) is
// audited before it is answered, like a success: the record is there even
// when the replica dies (SIGKILL) right after, with nothing flushed.
func TestOutOfScopeDetokenizeAuditedBeforeAnswer(t *testing.T) {
	w := newWorld(t, "bolt")
	svc := w.serve()
	_, bID, pid, tokens := refusedDetokenize(t, w, svc, 1)
	svc.kill()
	for _, ev := range w.audit("--merchant", bID) {
		if ev.Action == "detokenize" && ev.Outcome == audit.Failure && ev.Actor == "processor:"+pid && ev.Object == tokens[0] && ev.Count == 0 {
			return
		}
	}
	t.Fatalf("processor %s was refused merchant %s's token %s, then the replica crashed: no audit record of it", pid, bID, tokens[0])
}

// Each refused token is named in a record of its own (DESIGN, invariant 4:
// "which token"), and an authenticated processor's 404s do not count
// toward --limit-refusals-per-minute: with a limit of 1 it gets 404, not
// 429, for every token it asks about, and its own merchant's cards after.
func TestOutOfScopeDetokenizeAuditedPerToken(t *testing.T) {
	w := newWorld(t, "bolt")
	svc := w.serve("PAYPAGE_LIMIT_REFUSALS_PER_MINUTE=1")
	ea, bID, pid, tokens := refusedDetokenize(t, w, svc, 3)
	var objects []string
	for _, ev := range w.audit("--merchant", bID) {
		if ev.Action == "detokenize" && ev.Actor == "processor:"+pid {
			if ev.Count != 0 || ev.Reason != "refused: merchant not served" || ev.Outcome != audit.Failure || ev.Source == "" {
				t.Fatalf("refusal record %+v", ev)
			}
			objects = append(objects, ev.Object)
		}
	}
	if strings.Join(objects, " ") != strings.Join(tokens, " ") {
		t.Fatalf("refused tokens %q, records name %q", tokens, objects)
	}
	if code, body, _ := ea.api("POST", "/v1/detokenize", ea.procKey, map[string]any{"token": ea.paidToken("4242 4242 4242 4242")}); code != 200 {
		t.Fatalf("its own merchant's card after the refusals: %d %v", code, body)
	}
}

// detokenizeBurst makes n detokenize calls at once and counts the answers.
func detokenizeBurst(e *env, key, token string, n int) (ok, limited int, retryAfter string) {
	for i := 0; i < n; i++ {
		code, _, h := e.api("POST", "/v1/detokenize", key, map[string]any{"token": token})
		switch code {
		case 200:
			ok++
		case 429:
			limited++
			retryAfter = h.Get("Retry-After")
		default:
			e.t.Fatalf("detokenize: %d", code)
		}
	}
	return ok, limited, retryAfter
}

// Limits are settings: the per-card limit (sandbox cards not counted), the
// per-client limit (0 turns it off), detokenize calls a second per processor
// and a processor's own rate. A shopper over a limit reads which one and
// when to try again, in their language; the log says which limit.
func TestLimitsAsSettings(t *testing.T) {
	onBothStores(t, func(t *testing.T, w *world) {
		svc := w.serve("PAYPAGE_LIMIT_CARD_PER_DAY=2", "PAYPAGE_LIMIT_CLIENT_PER_HOUR=0", "PAYPAGE_DETOKENIZE_PER_SECOND=1")
		mid, key := w.merchant("Shop")
		pid, pkey := w.processor("Acquirer", "--merchants", mid)
		e := svc.as(mid, key, pkey)
		b := e.browser()
		b.lang = "ru"
		// A card that is not a sandbox card: the third submission is refused.
		for i := 1; i <= 3; i++ {
			id := e.session(nil)["id"].(string)
			p := b.pay(id, "4111 1111 1111 1111", "981")
			if i < 3 && p.status != 303 {
				t.Fatalf("try %d: %d", i, p.status)
			}
			// Retry-After is what is left of the day the first try began.
			if ra, _ := strconv.Atoi(p.header.Get("Retry-After")); i == 3 && (p.status != 429 || !strings.Contains(p.body, "С этой карты было слишком много попыток оплаты. Попробуйте снова в течение 24 часов") ||
				ra > 86400 || ra < 86400-120) {
				t.Fatalf("third try: %d %v\n%s", p.status, p.header, p.body)
			}
		}
		if !svc.logged(`"msg":"limit reached","limit":"card"`) {
			t.Fatalf("the log does not say which limit:\n%s", svc.logs.String())
		}
		// The main sandbox card, 18 times more (21 submissions from one
		// address, over the default of 20: that limit is off).
		var token string
		for i := 0; i < 18; i++ {
			token = e.paidToken("4242 4242 4242 4242")
		}
		// Detokenize: one a second, then the processor's own rate.
		if ok, limited, ra := detokenizeBurst(e, pkey, token, 3); ok != 1 || limited != 2 || ra != "1" {
			t.Fatalf("1 a second: %d ok, %d limited, Retry-After %q", ok, limited, ra)
		}
		w.ok(nil, "processor", "set-rate", "--id", pid, "--rate", "5")
		// One bucket per processor whatever its rate: the new rate fills it
		// from where it stood, 5 tokens in a second.
		time.Sleep(1100 * time.Millisecond)
		if ok, limited, _ := detokenizeBurst(e, pkey, token, 8); ok < 5 || ok > 6 || limited == 0 {
			t.Fatalf("5 a second: %d ok, %d limited", ok, limited)
		}
		w.ok(nil, "processor", "set-rate", "--id", pid, "--rate", "0")
		if ok, _, _ := detokenizeBurst(e, pkey, token, 30); ok != 30 {
			t.Fatalf("no limit: %d of 30", ok)
		}
		w.ok(nil, "processor", "set-rate", "--id", pid, "--rate", "default")
		if _, limited, _ := detokenizeBurst(e, pkey, token, 3); limited == 0 {
			t.Fatal("back to the setting: nothing limited")
		}
		limitedAudits := 0
		for _, ev := range w.audit("--merchant", "") {
			if ev.Action == "detokenize" && ev.Reason == "rate_limited" {
				limitedAudits++
			}
		}
		if limitedAudits == 0 {
			t.Fatal("rate-limited calls are not audited")
		}
		if r := w.cli(nil, "processor", "set-rate", "--id", pid, "--rate", "-3"); r.code != 2 || !strings.Contains(r.stderr, "use a whole number") {
			t.Fatalf("a negative rate: %+v", r)
		}

		// The per-client limit, in a service of its own.
		w2 := newWorld(t, map[bool]string{true: "bolt", false: "redis"}[w.env["PAYPAGE_STORE"] == ""])
		svc2 := w2.serve("PAYPAGE_LIMIT_CLIENT_PER_HOUR=3")
		mid2, key2 := w2.merchant("Shop")
		e2 := svc2.as(mid2, key2, "")
		b2 := e2.browser()
		for i := 1; i <= 4; i++ {
			p := b2.pay(e2.session(map[string]any{"locale": "en"})["id"].(string), "4242 4242 4242 4242", "981")
			if i == 4 && (p.status != 429 || !strings.Contains(p.body, "Too many payment attempts from your network. Please try again within an hour.")) {
				t.Fatalf("fourth try from one address: %d\n%s", p.status, p.body)
			}
		}
		if !svc2.logged(`"msg":"limit reached","limit":"client"`) {
			t.Fatalf("the log does not say which limit:\n%s", svc2.logs.String())
		}
	})
}

// Starting a Kaspi QR counts against the client limit, and a shopper who
// hits it there is told which limit and when too, with Retry-After from
// what is left of the hour; the log says which limit.
func TestKaspiLimitSaysWhichAndWhen(t *testing.T) {
	w := newWorld(t, "bolt")
	svc := w.serve("PAYPAGE_LIMIT_CLIENT_PER_HOUR=1")
	mid, key := w.merchant("Shop")
	e := svc.as(mid, key, "")
	b := e.browser()
	b.lang = "en"
	var last page
	for i := 0; i < 2; i++ {
		id := e.session(map[string]any{"methods": []string{"card", "kaspi_qr"}, "locale": "en"})["id"].(string)
		card := b.get("/pay/" + id)
		var v map[string][]string
		for n := 0; ; n++ {
			a, fv := card.form(n)
			if a == "" {
				t.Fatalf("no Kaspi form:\n%s", card.body)
			}
			if a == "/pay/"+id+"/kaspi" {
				v = fv
				break
			}
		}
		v["action"] = []string{"start"}
		last = b.do("POST", "/pay/"+id+"/kaspi", v)
	}
	if last.status != 429 {
		t.Fatalf("second Kaspi start from one address over a limit of 1: %d", last.status)
	}
	ra, _ := strconv.Atoi(last.header.Get("Retry-After"))
	if !strings.Contains(last.body, "Too many payment attempts from your network. Please try again within an hour.") ||
		!svc.logged(`"msg":"limit reached","limit":"client"`) || ra > 3600 || ra < 3600-120 {
		t.Fatalf("the shopper is not told which limit and when (Retry-After %q), or the log does not say which:\n%s",
			last.header.Get("Retry-After"), last.body)
	}
}

// Every shopper page says "Test mode" in the shopper's language.
func TestTestModeBanner(t *testing.T) {
	w := newWorld(t, "bolt")
	svc := w.serve()
	mid, key := w.merchant("Shop")
	e := svc.as(mid, key, "")
	id := e.session(map[string]any{"methods": []string{"card", "kaspi_qr"}})["id"].(string)
	b := e.browser()
	for lang, text := range map[string]string{
		"en": "Test mode: no real payment is made.",
		"ru": "Тестовый режим: настоящий платёж не проводится.",
		"kk": "Сынақ режимі: нақты төлем жасалмайды.",
	} {
		b.lang = lang
		for _, path := range []string{"/pay/" + id, "/pay/" + id + "/kaspi", "/pay/nope"} {
			if p := b.follow(b.get(path)); !strings.Contains(p.body, `<p class="testmode" role="note">`+text) {
				t.Errorf("%s in %s: no banner\n%s", path, lang, p.body)
			}
		}
	}
	b.lang = "en"
	bank := b.challenge(b.pay(e.session(nil)["id"].(string), "4000 0000 0000 3220", "981"))
	if !strings.Contains(bank.body, `class="testmode"`) {
		t.Fatalf("the sandbox bank page has no banner:\n%s", bank.body)
	}
}

// The audit trail names who did what to whom: merchant and processor
// creation, key rolls, disables, grants, webhook URL and secret changes
// (an operator, as the kernel names them), and every refund (the merchant
// that asked); "audit list --merchant" shows one merchant's records only.
func TestAuditTrail(t *testing.T) {
	onBothStores(t, func(t *testing.T, w *world) {
		svc := w.serve()
		aID, aKey := w.merchant("Shop A", "--webhook-url", "https://shop-a.example/hooks")
		bID, _ := w.merchant("Shop B")
		pid, _ := w.processor("Acquirer", "--merchants", aID+","+bID)
		w.ok(nil, "merchant", "set-webhook", "--id", aID, "--webhook-url", "https://shop-a.example/v2")
		w.ok(nil, "merchant", "set-webhook", "--id", aID, "--webhook-url", "https://shop-a.example/v2", "--roll-secret")
		w.ok(nil, "merchant", "roll-key", "--id", aID)
		w.ok(nil, "processor", "revoke", "--id", pid, "--merchant", bID)
		w.ok(nil, "processor", "grant", "--id", pid, "--merchant", bID)
		w.ok(nil, "merchant", "disable", "--id", bID)

		e := svc.as(aID, aKey, "")
		id := e.session(nil)["id"].(string)
		b := e.browser()
		b.follow(b.pay(id, "4242 4242 4242 4242", "981"))
		_, s, _ := e.api("GET", "/v1/sessions/"+id, aKey, nil)
		pay := s["payment"].(map[string]any)["id"].(string)
		if code, r, _ := e.api("POST", "/v1/payments/"+pay+"/refunds", aKey, map[string]any{"amount": 500}); code != 201 {
			t.Fatalf("refund: %d %v", code, r)
		}
		if code, _, _ := e.api("POST", "/v1/payments/"+pay+"/refunds", aKey, map[string]any{"amount": 10_000_000}); code != 400 {
			t.Fatalf("refund over the amount: %d", code)
		}

		me, _ := user.Current()
		op := "operator:" + me.Username
		type rec struct{ actor, action, outcome string }
		var got []rec
		for _, ev := range w.audit("--merchant", aID) {
			if ev.Merchant != aID {
				t.Fatalf("--merchant %s lists %+v", aID, ev)
			}
			got = append(got, rec{ev.Actor, ev.Action, ev.Outcome})
		}
		want := []rec{
			{op, "merchant.add", audit.Success}, {op, "processor.add", audit.Success},
			{op, "merchant.set_webhook", audit.Success}, {op, "merchant.set_webhook", audit.Success},
			{op, "merchant.roll_webhook_secret", audit.Success}, {op, "merchant.roll_key", audit.Success},
			{"merchant:" + aID, "refund", audit.Success}, {"merchant:" + aID, "refund", audit.Failure},
		}
		if len(got) != len(want) {
			t.Fatalf("merchant A's trail:\n%v\nwant\n%v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("record %d: %v, want %v (all: %v)", i, got[i], want[i], got)
			}
		}
		var bActions []string
		for _, ev := range w.audit("--merchant", bID) {
			bActions = append(bActions, ev.Action)
		}
		if strings.Join(bActions, " ") != "merchant.add processor.add processor.revoke processor.grant merchant.disable" {
			t.Fatalf("merchant B's trail: %v", bActions)
		}
		if n := len(w.audit("--merchant", bID, "--limit", "2")); n != 2 {
			t.Fatalf("--limit 2 with --merchant: %d", n)
		}
	})
}

// A development master key is made only for the embedded store on a
// loopback address; otherwise serve and the operator's commands refuse to
// start without a master key, and say how to make one.
func TestMasterKeyRequired(t *testing.T) {
	t.Run("bolt on a public address", func(t *testing.T) {
		w := newWorld(t, "bolt")
		svc, err := w.start("PAYPAGE_ADDR=0.0.0.0:" + strings.Split(freeAddr(t), ":")[1])
		if err == nil {
			t.Fatal("serve started on 0.0.0.0 with a development key")
		}
		if !svc.logged("openssl rand -hex 32 > master.key") || !svc.logged("PAYPAGE_MASTER_KEY") {
			t.Fatalf("no way out said:\n%s", svc.logs.String())
		}
		if _, err := os.Stat(filepath.Join(w.env["PAYPAGE_DATA"], "master.key")); !os.IsNotExist(err) {
			t.Fatalf("a development key was written: %v", err)
		}
		// With a key it starts.
		w.env["PAYPAGE_MASTER_KEY"] = strings.Repeat("4d", 32)
		svc, err = w.start("PAYPAGE_ADDR=0.0.0.0:" + strings.Split(freeAddr(t), ":")[1])
		if err != nil {
			t.Fatalf("with PAYPAGE_MASTER_KEY: %v\n%s", err, svc.logs.String())
		}
		if strings.Contains(svc.logs.String(), "DEVELOPMENT MASTER KEY") {
			t.Fatal("a development key beside a real one")
		}
	})
	t.Run("redis", func(t *testing.T) {
		w := newWorld(t, "redis")
		delete(w.env, "PAYPAGE_MASTER_KEY_FILE")
		if _, err := w.start(); err == nil {
			t.Fatal("serve started on Redis with a development key")
		}
		w.fails("openssl rand -hex 32", "merchant", "add", "--name", "Shop")
		if _, err := os.Stat(filepath.Join(w.env["PAYPAGE_DATA"], "master.key")); !os.IsNotExist(err) {
			t.Fatalf("a development key was written: %v", err)
		}
	})
	t.Run("bolt on loopback", func(t *testing.T) {
		w := newWorld(t, "bolt")
		svc := w.serve()
		if !svc.logged("DEVELOPMENT MASTER KEY generated") {
			t.Fatalf("no warning:\n%s", svc.logs.String())
		}
	})
	// Neither on an https public URL nor behind a trusted proxy: those
	// are reached by others.
	for _, setting := range []string{"PAYPAGE_PUBLIC_URL=https://pay.example.com", "PAYPAGE_TRUSTED_PROXIES=10.0.0.0/8"} {
		t.Run(setting, func(t *testing.T) {
			w := newWorld(t, "bolt")
			if svc, err := w.start(setting); err == nil || !svc.logged("openssl rand -hex 32") {
				t.Fatalf("serve with %s and no master key: %v\n%s", setting, err, svc.logs.String())
			}
			if _, err := os.Stat(filepath.Join(w.env["PAYPAGE_DATA"], "master.key")); !os.IsNotExist(err) {
				t.Fatalf("a development key was written: %v", err)
			}
		})
	}
	// A store sealed by a real key gets no development key beside it: not
	// from an operator command that opens the store itself (it never makes
	// one, and decides nothing by its own --addr), nor from serve.
	t.Run("beside a real key", func(t *testing.T) {
		w := newWorld(t, "bolt")
		w.env["PAYPAGE_MASTER_KEY"] = strings.Repeat("5e", 32)
		svc := w.serve("PAYPAGE_ADDR=0.0.0.0:" + strings.Split(freeAddr(t), ":")[1])
		w.merchant("Shop")
		svc.stop()
		delete(w.env, "PAYPAGE_MASTER_KEY")
		devKey := filepath.Join(w.env["PAYPAGE_DATA"], "master.key")
		if r := w.cli(nil, "merchant", "list"); r.code != 1 || !strings.Contains(r.stderr, "an operator command never makes one") || !strings.Contains(r.stderr, "PAYPAGE_MASTER_KEY") {
			t.Fatalf("an operator command without the key: %+v", r)
		}
		if _, err := os.Stat(devKey); err == nil {
			t.Fatal("an operator command wrote a development master key beside a store sealed by another key")
		}
		if svc, err := w.start(); err == nil || !svc.logged("sealed by a master key that is not given here") {
			t.Fatalf("serve on loopback without the key: %v\n%s", err, svc.logs.String())
		}
		if _, err := os.Stat(devKey); err == nil {
			t.Fatal("serve wrote a development master key beside a store sealed by another key")
		}
	})
}

// --addr 127.0.0.1:0 picks a free port, and the public URL (and so every
// page link) names that port, not 0.
func TestPublicURLOfAPickedPort(t *testing.T) {
	w := newWorld(t, "bolt")
	cmd := exec.Command(w.bin, "serve")
	cmd.Env = w.environ("PAYPAGE_ADDR=127.0.0.1:0")
	logs := startProcess(t, cmd)
	var public string
	for deadline := time.Now().Add(20 * time.Second); public == ""; time.Sleep(50 * time.Millisecond) {
		for _, line := range strings.Split(logs.String(), "\n") {
			var l struct {
				Msg       string `json:"msg"`
				PublicURL string `json:"public_url"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "paypage serving" {
				public = l.PublicURL
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("never served:\n%s", logs.String())
		}
	}
	if !strings.HasPrefix(public, "http://127.0.0.1:") || strings.HasSuffix(public, ":0") {
		t.Fatalf("public URL %q", public)
	}
	mid, key := w.merchant("Shop")
	e := &env{t: t, url: public, merchant: mid, key: key, seen: &syncBuffer{}, logs: logs}
	if u := e.session(nil)["url"].(string); !strings.HasPrefix(u, public+"/pay/") {
		t.Fatalf("session URL %q, public URL %q", u, public)
	}
}
