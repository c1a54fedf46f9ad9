package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

// startChallenge pays with a challenge card and returns the browser, the
// session ID and the challenge redirect page.
func startChallenge(t *testing.T, e *env, number string) (*browser, string, page) {
	t.Helper()
	id := e.session(map[string]any{"locale": "en"})["id"].(string)
	b := e.browser()
	p := b.pay(id, number, "981")
	if !strings.Contains(p.body, `name="creq"`) {
		t.Fatalf("no challenge:\n%s", p.body)
	}
	return b, id, p
}

func sessionState(t *testing.T, e *env, id string) (string, map[string]any) {
	t.Helper()
	_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
	p, _ := s["payment"].(map[string]any)
	return s["status"].(string), p
}

func TestThreeDSChallenge(t *testing.T) {
	forEachStore(t, func(t *testing.T, o envOpts) {
		e := newEnv(t, o)

		t.Run("BankPageShowsTheFacts", func(t *testing.T) {
			b, id, p := startChallenge(t, e, "2200 0000 0000 0004")
			_, v := p.form(0)
			bank := b.do("POST", mustAction(p), v)
			for _, want := range []string{"MIR Accept", "Air Astana", "1\u202f500.00", "220000••••••0004", "the code is 123456", `autocomplete="one-time-code"`} {
				if !strings.Contains(bank.body, want) {
					t.Errorf("bank page lacks %q", want)
				}
			}
			if st, pay := sessionState(t, e, id); st != "open" || pay["status"] != "requires_action" {
				t.Fatalf("during the challenge: %s %v", st, pay["status"])
			}
			// The CVV waits, sealed, during the trip to the bank...
			if n := countKind(t, e, "cvv"); n != 1 {
				t.Fatalf("%d CVVs held during the challenge", n)
			}
			// ... and the page, reloaded meanwhile, sends the shopper back to the bank.
			if again := b.get("/pay/" + id); !strings.Contains(again.body, `name="creq"`) {
				t.Fatal("reload during the challenge lost it")
			}
			b.back(b.challenge(p, "cancel")) // end it, so the next cases start clean
			assertNoHeldCVV(t, e)
		})

		t.Run("WrongCodeThenRight", func(t *testing.T) {
			b, id, p := startChallenge(t, e, "5555 5555 5555 4444")
			bank := b.challenge(p, "000000")
			if !strings.Contains(bank.body, "Wrong code. Tries left: 2.") {
				t.Fatalf("after a wrong code:\n%s", bank.body)
			}
			bank = b.challenge(p, "resend", "123456")
			final, _ := b.back(bank)
			if st, pay := sessionState(t, e, id); st != "complete" || !strings.Contains(final.body, "Payment successful") || pay["three_d_secure"].(map[string]any)["eci"] != "02" {
				t.Fatalf("%s %v", st, pay)
			}
			assertNoHeldCVV(t, e)
		})

		t.Run("ThreeWrongCodes", func(t *testing.T) {
			auths := countKind(t, e, "sbx_auth")
			b, id, p := startChallenge(t, e, "4000 0000 0000 3220")
			bank := b.challenge(p, "111111", "222222", "333333")
			final, _ := b.back(bank)
			st, pay := sessionState(t, e, id)
			if st != "open" || pay["decline"].(map[string]any)["code"] != "authentication_failed" || !strings.Contains(final.body, "could not confirm that it is you") {
				t.Fatalf("%s %v\n%s", st, pay, final.body)
			}
			if countKind(t, e, "sbx_auth") != auths {
				t.Fatal("a failed authentication reached the processor")
			}
			if pay["three_d_secure"].(map[string]any)["trans_status"] != "N" {
				t.Fatalf("trans_status %v", pay["three_d_secure"])
			}
			assertNoHeldCVV(t, e)
		})

		t.Run("Cancel", func(t *testing.T) {
			b, id, p := startChallenge(t, e, "4000 0000 0000 3220")
			b.back(b.challenge(p, "cancel"))
			if _, pay := sessionState(t, e, id); pay["decline"].(map[string]any)["code"] != "authentication_failed" {
				t.Fatalf("%v", pay)
			}
		})

		t.Run("Timeout", func(t *testing.T) {
			b, id, p := startChallenge(t, e, "4000 0000 0000 3220")
			_, v := p.form(0)
			bank := b.do("POST", mustAction(p), v)
			e.clock.Advance(6 * time.Minute)
			defer e.clock.Advance(-6 * time.Minute)
			action, fv := bank.form(0)
			fv.Set("code", "123456")
			late := b.do("POST", action, fv)
			b.back(late)
			// The page's return and the reconciler may both reach for the
			// timed-out challenge; let whichever holds it finish.
			e.reconcile()
			// The shopper never answered in time: the challenge is abandoned,
			// not an attempt; the session stays open for another try.
			if st, pay := sessionState(t, e, id); st != "open" || pay["decline"].(map[string]any)["code"] != "try_again" ||
				pay["three_d_secure"].(map[string]any)["reason"] != "challenge timed out" || len(pay["attempts"].([]any)) != 0 {
				t.Fatalf("after the time ran out: %s %v", st, pay)
			}
			if _, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil); s["attempts"].(float64) != 0 {
				t.Fatalf("an abandoned challenge counted: %v", s)
			}
		})

		t.Run("TamperedAndReplayedResults", func(t *testing.T) {
			b, id, p := startChallenge(t, e, "4000 0000 0000 3220")
			bank := b.challenge(p, "111111", "222222", "333333") // authentication fails
			action, v := bank.form(0)
			// Tamper: claim transStatus Y in the CRes.
			var cres map[string]any
			raw, _ := base64.RawURLEncoding.DecodeString(v.Get("cres"))
			_ = json.Unmarshal(raw, &cres)
			cres["transStatus"] = "Y"
			forged, _ := json.Marshal(cres)
			b.follow(b.do("POST", action, url.Values{"cres": {base64.RawURLEncoding.EncodeToString(forged)}}))
			if st, pay := sessionState(t, e, id); st != "open" || pay["status"] != "failed" {
				t.Fatalf("a tampered CRes changed the outcome: %s %v", st, pay)
			}
			// Replay the genuine result: nothing changes, no second attempt.
			b.follow(b.do("POST", action, v))
			_, pay := sessionState(t, e, id)
			if n := len(pay["attempts"].([]any)); n != 1 {
				t.Fatalf("a replayed result made %d attempts", n)
			}

			// A good result replayed after the payment succeeded charges nothing twice.
			b2, id2, p2 := startChallenge(t, e, "4000 0000 0000 3220")
			good := b2.challenge(p2, "123456")
			b2.back(good)
			auths := countKind(t, e, "sbx_auth")
			gAction, gv := good.form(0)
			b2.follow(b2.do("POST", gAction, gv))
			if countKind(t, e, "sbx_auth") != auths {
				t.Fatal("a replayed result authorized again")
			}
			// The result posted to another session's page changes nothing there.
			b3, id3, _ := startChallenge(t, e, "4000 0000 0000 3220")
			b3.follow(b3.do("POST", "/pay/"+id3+"/3ds", gv))
			if st, pay := sessionState(t, e, id3); st != "open" || pay["status"] != "requires_action" {
				t.Fatalf("another session's result moved this one: %s %v", st, pay["status"])
			}
			// Garbage is a clean 400.
			if g := b3.do("POST", "/pay/"+id3+"/3ds", url.Values{"cres": {"%%%"}}); g.status != 400 {
				t.Fatalf("garbage CRes: %d", g.status)
			}
			if st, _ := sessionState(t, e, id2); st != "complete" {
				t.Fatal("paid session changed")
			}
		})
	})
}

func mustAction(p page) string {
	a, _ := p.form(0)
	return a
}

func TestThreeDSWithoutScript(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, _, p := startChallenge(t, e, "4000 0000 0000 3220")
	// The auto-posting form has a visible button for browsers without script.
	if !strings.Contains(p.body, `<button type="submit" class="pay" id="continue">Continue to your bank</button>`) || !strings.Contains(p.body, "data-autosubmit") {
		t.Fatalf("challenge redirect page:\n%s", p.body)
	}
}
