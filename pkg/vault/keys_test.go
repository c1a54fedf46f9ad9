package vault_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/threeds"
	"github.com/paypage/paypage/pkg/vault"
)

// counting is a store that counts reads and writes per record kind and ID.
type counting struct {
	store.Store
	mu     sync.Mutex
	gets   map[string]int
	writes map[string]int
}

func countingStore(s store.Store) *counting {
	return &counting{Store: s, gets: map[string]int{}, writes: map[string]int{}}
}

func (c *counting) Get(ctx context.Context, k store.Key) (store.Record, error) {
	c.mu.Lock()
	c.gets[k.Kind+"/"+k.ID]++
	c.mu.Unlock()
	return c.Store.Get(ctx, k)
}

func (c *counting) Commit(ctx context.Context, ops ...store.Op) error {
	c.mu.Lock()
	for _, op := range ops {
		c.writes[op.Key.Kind+"/"+op.Key.ID]++
	}
	c.mu.Unlock()
	return c.Store.Commit(ctx, ops...)
}

func (c *counting) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.gets)
	clear(c.writes)
}

func (c *counting) total(m map[string]int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// secrets is a Kind as another package describes its records: here a raw
// sealed value per record, bound to the record's ID.
var secrets = vault.Kind{
	Name: "test_secrets", StoreKind: "testsecret", Seals: []string{vault.KindSecret},
	Versions: func(b []byte) ([]uint32, error) {
		kv, ok := vault.KeyVersionOf(b)
		if !ok {
			return nil, vault.ErrCorrupt
		}
		return []uint32{kv}, nil
	},
	Reseal: func(_ context.Context, id string, b []byte, move vault.Mover) ([]byte, error) {
		return move(vault.KindSecret, "test|"+id, b)
	},
}

func putSecret(t *testing.T, s store.Store, v *vault.Vault, id, plain string) {
	t.Helper()
	b, err := v.SealSecret("test|"+id, []byte(plain))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, store.Put(store.K("testsecret", id), b)); err != nil {
		t.Fatal(err)
	}
}

// clock is a settable clock.
type clock struct {
	mu     sync.Mutex
	now    time.Time
	slept  []time.Duration
	during []func() // run during the next sleeps, one each
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Sleep is a vault's Sleep on the settable clock: it moves the clock on,
// records the wait, and calls the next of the test's hooks first.
func (c *clock) Sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	c.slept = append(c.slept, d)
	var hook func()
	if len(c.during) > 0 {
		hook, c.during = c.during[0], c.during[1:]
	}
	c.mu.Unlock()
	if hook != nil {
		hook()
	}
	c.Add(d)
	return nil
}

// waits returns the sleeps asked so far, and forgets them.
func (c *clock) waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.slept
	c.slept = nil
	return w
}

func TestReplicasPickUpRotation(t *testing.T) {
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			e := open(t)
			cs := countingStore(e)
			a := mustVault(t, e, testKEK(t))
			b := mustVault(t, cs, testKEK(t))
			// Nothing changed: a refresh is one read of the small head record.
			cs.reset()
			if changed, err := b.Refresh(ctx); err != nil || changed {
				t.Fatalf("refresh without a change: %v %v", changed, err)
			}
			if cs.total(cs.gets) != 1 || cs.gets["keyring/head"] != 1 {
				t.Fatalf("a refresh read %v, want the head once", cs.gets)
			}
			if _, err := a.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
			// b, watching, seals under version 2 soon after, without a restart.
			wctx, stop := context.WithCancel(ctx)
			defer stop()
			go b.Watch(wctx, 20*time.Millisecond)
			deadline := time.Now().Add(5 * time.Second)
			for {
				i, err := b.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
				if err != nil {
					t.Fatal(err)
				}
				if string(rawRecord(t, e, i.Token)["key_version"]) == "2" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the replica still seals under version 1")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestStatusReencryptRetire(t *testing.T) {
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			e := open(t)
			v := mustVault(t, e, testKEK(t))
			clk := &clock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
			v.Now = clk.Now
			kinds := []vault.Kind{v.Cards(), vault.CVVHolds(), secrets}
			old, _ := v.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
			cvv, _ := card.ParseCVV("123", card.Visa)
			hold := vault.CVVKey("att_1", "g1")
			if err := v.HoldCVV(ctx, "mer_a", hold, cvv, time.Hour); err != nil {
				t.Fatal(err)
			}
			putSecret(t, e, v, "s1", "whsec_one")
			oldSealed := rawRecord(t, e, old.Token)["sealed"]

			clk.Add(time.Hour)
			if _, err := v.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
			st, err := v.Status(ctx, kinds...)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int{"cards": 1, "cvv_holds": 1, "test_secrets": 1}
			if got := st.Versions[0].Records; !equalCounts(got, want) || st.Versions[0].InUse != 3 || st.Versions[1].InUse != 0 {
				t.Fatalf("status after rotation: %+v", st.Versions)
			}
			if kinds := st.Versions[0].SealKinds; strings.Join(kinds, ",") != "card,cvv,secret" {
				t.Fatalf("version 1 sealed kinds %v", kinds)
			}

			// Right after the rotation a replica may still seal under 1:
			// retire first waits out the settle time, on its own clock, from
			// when it saw the rotation; then it counts what uses version 1.
			v.Sleep = clk.Sleep
			if err := v.Retire(ctx, 1, kinds...); !apperr.Is(err, apperr.Conflict) ||
				!strings.Contains(err.Error(), "1 cards, 1 cvv_holds, 1 test_secrets") {
				t.Fatalf("retire while in use: %v", err)
			}
			if w := clk.waits(); len(w) != 1 || w[0] != vault.RetireSettle {
				t.Fatalf("retire right after the rotation waited %v, want %v once", w, vault.RetireSettle)
			}
			clk.Add(2 * time.Minute)
			if err := v.Retire(ctx, 2, kinds...); !apperr.Is(err, apperr.Conflict) || !strings.Contains(err.Error(), "active") {
				t.Fatalf("retire the active version: %v", err)
			}
			// A list of kinds that misses one the version sealed cannot prove it unused.
			if err := v.Retire(ctx, 1, v.Cards(), vault.CVVHolds()); err == nil || !strings.Contains(err.Error(), `"secret"`) {
				t.Fatalf("retire without counting secrets: %v", err)
			}

			res, err := v.Reencrypt(ctx, kinds...)
			if err != nil || res.Moved != 2 || res.Expiring != 1 {
				t.Fatalf("reencrypt: %+v %v", res, err)
			}
			if err := v.Retire(ctx, 1, kinds...); err == nil || !strings.Contains(err.Error(), "1 cvv_holds") {
				t.Fatalf("retire with a CVV hold left: %v", err)
			}
			if _, err := v.TakeCVV(ctx, "mer_a", hold); err != nil { // used (or expired)
				t.Fatal(err)
			}
			clk.waits()
			if err := v.Retire(ctx, 1, kinds...); err != nil {
				t.Fatalf("retire: %v", err)
			}
			// Long after the rotation: no first wait, but the second settle,
			// after which nothing uses version 1 still.
			if w := clk.waits(); len(w) != 1 || w[0] != vault.RetireSettle {
				t.Fatalf("retire waited %v, want one second settle of %v", w, vault.RetireSettle)
			}
			st, _ = v.Status(ctx, kinds...)
			if len(st.Versions) != 1 || st.Versions[0].Version != 2 || len(st.Retired) != 1 || st.Retired[0].Version != 1 {
				t.Fatalf("status after retirement: %+v", st)
			}
			// What was sealed under version 1 never opens again, in this
			// process or a new one; what moved does.
			r := rawRecord(t, e, old.Token)
			moved := r["sealed"]
			r["sealed"], r["key_version"] = oldSealed, json.RawMessage("1")
			putRaw(t, e, old.Token, r)
			if _, _, err := v.Lookup(ctx, old.Token); !errors.Is(err, vault.ErrCorrupt) {
				t.Fatalf("a version-1 ciphertext after retirement: %v", err)
			}
			if _, _, err := mustVault(t, e, testKEK(t)).Lookup(ctx, old.Token); !errors.Is(err, vault.ErrCorrupt) {
				t.Fatalf("a new process opens a version-1 ciphertext: %v", err)
			}
			r["sealed"], r["key_version"] = moved, json.RawMessage("2")
			putRaw(t, e, old.Token, r)
			if c, _, err := v.Lookup(ctx, old.Token); err != nil || c.PAN.Digits() != "4242424242424242" {
				t.Fatalf("moved card after retirement: %v", err)
			}
			if err := v.Retire(ctx, 1, kinds...); !apperr.Is(err, apperr.NotFound) {
				t.Fatalf("retire twice: %v", err)
			}
			// A rotation never reuses a retired version number.
			clk.Add(time.Hour)
			if n, err := v.Rotate(ctx); err != nil || n != 3 {
				t.Fatalf("rotate after retirement: %d %v", n, err)
			}
		})
	}
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestFingerprintKeepsAcrossRotationAndRetirement(t *testing.T) {
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			e := open(t)
			v := mustVault(t, e, testKEK(t))
			clk := &clock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
			v.Now, v.Sleep = clk.Now, clk.Sleep
			first, _ := v.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
			otherShop, _ := v.Tokenize(ctx, "mer_b", testCard(t, "4242424242424242"))
			if !strings.HasPrefix(first.Fingerprint, "fp_") || first.Fingerprint == otherShop.Fingerprint {
				t.Fatalf("fingerprints %s %s", first.Fingerprint, otherShop.Fingerprint)
			}
			ck := v.CardKey(testCard(t, "4242424242424242").PAN)
			if _, err := v.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
			again, _ := v.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
			if again.Fingerprint != first.Fingerprint || v.CardKey(testCard(t, "4242424242424242").PAN) != ck {
				t.Fatalf("after rotation: %s, want %s", again.Fingerprint, first.Fingerprint)
			}
			if _, err := v.Reencrypt(ctx, v.Cards()); err != nil {
				t.Fatal(err)
			}
			clk.Add(time.Hour)
			if err := v.Retire(ctx, 1, v.Cards()); err != nil {
				t.Fatal(err)
			}
			// The key that made the first fingerprint is gone; the alias
			// written by the re-encryption still finds it.
			late, _ := v.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
			if late.Fingerprint != first.Fingerprint {
				t.Fatalf("after retirement: %s, want %s", late.Fingerprint, first.Fingerprint)
			}
			lateB, _ := v.Tokenize(ctx, "mer_b", testCard(t, "4242424242424242"))
			if lateB.Fingerprint != otherShop.Fingerprint {
				t.Fatalf("other shop after retirement: %s, want %s", lateB.Fingerprint, otherShop.Fingerprint)
			}
			// A card first seen now is fingerprinted under version 2, and says so.
			fresh, _ := v.Tokenize(ctx, "mer_a", testCard(t, "5555555555554444"))
			if !strings.HasPrefix(fresh.Fingerprint, "fp_v2_") {
				t.Fatalf("new card's fingerprint %s does not name version 2", fresh.Fingerprint)
			}
			if ck2 := v.CardKey(testCard(t, "4242424242424242").PAN); ck2 == ck || !strings.HasPrefix(ck2, "v2_") {
				t.Fatalf("card key after retirement %s", ck2)
			}
		})
	}
}

func TestRecordKeepsNoMoreDigitsThanTheMask(t *testing.T) {
	t.Parallel()
	e := engines(t)["bolt"](t)
	v := mustVault(t, e, testKEK(t))
	// Every length an accepted brand issues (12 and 14 digits: none does; pkg/card covers them).
	for _, n := range []string{"4222222222222", "378282246310005", "4242424242424242", "35301113333000000", "220000000000000000", "2200000000000000004"} {
		p, err := card.ParsePAN(n)
		if err != nil {
			// Build Luhn-valid numbers of the lengths that are not sandbox rows.
			p, err = card.ParsePAN(luhnFix(n))
			if err != nil {
				t.Fatalf("%s: %v", n, err)
			}
		}
		i, err := v.Tokenize(ctx, "mer_a", vault.Card{PAN: p, Expiry: card.Expiry{Month: 1, Year: 2031}})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := e.Get(ctx, store.K("card", i.Token))
		var rec struct{ BIN, Last4 string }
		_ = json.Unmarshal(raw.Value, &rec)
		lead := p.Mask()[:strings.Index(p.Mask(), "•")]
		if rec.BIN != lead || rec.Last4 != p.Digits()[len(p.Digits())-4:] {
			t.Errorf("%d digits: the record keeps %q + %q, the mask shows %s", len(p.Digits()), rec.BIN, rec.Last4, p.Mask())
		}
		if len(p.Digits()) < 16 && rec.BIN != "" {
			t.Errorf("%d digits: leading digits kept: %q", len(p.Digits()), rec.BIN)
		}
	}
}

// luhnFix replaces the last digit with the Luhn check digit.
func luhnFix(n string) string {
	for d := '0'; d <= '9'; d++ {
		s := n[:len(n)-1] + string(d)
		if card.Luhn(s) {
			return s
		}
	}
	return n
}

func TestSealBudget(t *testing.T) {
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			e := open(t)
			cs := countingStore(e)
			// The default budget: a block of counts per reservation, not a write per seal.
			v, err := vault.OpenWith(ctx, cs, testKEK(t), vault.Options{})
			if err != nil {
				t.Fatal(err)
			}
			cs.reset()
			for range 300 {
				if _, err := v.SealSecret("p", []byte("x")); err != nil {
					t.Fatal(err)
				}
			}
			if w := cs.writes["keyring/seals"]; w != 1 {
				t.Fatalf("300 seals wrote the count %d times, want once", w)
			}
			if st := v.SealStats(); st.Version != 1 || st.Seals < 300 || st.Budget != vault.DefaultSealBudget {
				t.Fatalf("seal stats %+v", st)
			}

			// A small budget shared by two replicas: the key rotates before it.
			const budget = 64
			a, err := vault.OpenWith(ctx, e, testKEK(t), vault.Options{SealBudget: budget})
			if err != nil {
				t.Fatal(err)
			}
			b, err := vault.OpenWith(ctx, e, testKEK(t), vault.Options{SealBudget: budget})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 200 {
				x := a
				if i%2 == 1 {
					x = b
				}
				if _, err := x.SealSecret("p", []byte("x")); err != nil {
					t.Fatal(err)
				}
			}
			st, err := a.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Active < 3 {
				t.Fatalf("after 200 seals under a budget of %d (and 300 before), active version %d", budget, st.Active)
			}
			for _, ks := range st.Versions[1:] { // version 1 took the 300 seals under the default budget
				if ks.Seals > budget {
					t.Errorf("version %d sealed %d, over the budget %d", ks.Version, ks.Seals, budget)
				}
			}
			if a.SealStats().BudgetRotations+b.SealStats().BudgetRotations == 0 {
				t.Fatal("no budget rotation counted")
			}
		})
	}
}

func TestCSRFKeysRotateWithAGrace(t *testing.T) {
	t.Parallel()
	e := engines(t)["bolt"](t)
	v := mustVault(t, e, testKEK(t))
	clk := &clock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	v.Now, v.Sleep = clk.Now, clk.Sleep
	msg := []byte("cookie|ses_1")
	k1 := v.CSRFTags(msg)
	if len(k1) != 1 || len(k1[0]) != 32 {
		t.Fatalf("tags %d", len(k1))
	}
	rotated := clk.Now()
	if _, err := v.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	k2 := v.CSRFTags(msg)
	if len(k2) != 2 || string(k2[0]) == string(k1[0]) || string(k2[1]) != string(k1[0]) {
		t.Fatal("after rotation: want the new key first and the old one still accepted")
	}
	// Version 1 retired within the grace: its CSRF key alone stays, so a
	// form opened before the rotation still posts, here and in a new process.
	clk.Add(time.Hour)
	if err := v.Retire(ctx, 1, v.Cards(), vault.CVVHolds(), secrets); err != nil {
		t.Fatal(err)
	}
	fresh := vault.NewSealed(e, vault.Options{})
	fresh.Now = clk.Now
	if err := fresh.Unseal(ctx, testKEK(t)); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*vault.Vault{v, fresh} {
		if k := x.CSRFTags(msg); len(k) != 2 || string(k[0]) != string(k2[0]) || string(k[1]) != string(k1[0]) {
			t.Fatal("after retiring version 1 within the grace: a form made under it no longer posts")
		}
	}
	st, err := v.Status(ctx)
	if err != nil || len(st.Retired) != 1 || !st.Retired[0].CSRFUntil.Equal(rotated.Add(vault.CSRFGrace)) {
		t.Fatalf("status of the retired version: %+v %v", st.Retired, err)
	}
	clk.Add(vault.CSRFGrace)
	if k3 := v.CSRFTags(msg); len(k3) != 1 || string(k3[0]) != string(k2[0]) {
		t.Fatal("after the grace: want only the new key")
	}
	// The next change of the ring drops the kept key from the store.
	if _, err := v.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	rec, _ := e.Get(ctx, store.K("keyring", "main"))
	if strings.Contains(string(rec.Value), `"csrf_until"`) {
		t.Fatalf("a CSRF key past its grace is still in the keyring: %s", rec.Value)
	}
}

// headless is a store whose reads of the keyring's head fail, as on a Redis
// Cluster node that cannot reach the head's slot while card writes to other
// slots still succeed (or a replica whose poll is stuck).
type headless struct {
	store.Store
	cut atomic.Bool
}

func (h *headless) Get(ctx context.Context, k store.Key) (store.Record, error) {
	if h.cut.Load() && k.Kind == "keyring" && k.ID == "head" {
		return store.Record{}, store.ErrUnavailable
	}
	return h.Store.Get(ctx, k)
}

// TestReplicaThatCannotReadTheRingSealsNothing (from the review of issue 14): "every replica picks
// up a new active data key within 10 seconds", and retire "refuses while
// anything still uses version N". The 10 s is a wall-clock assumption
// (keys.go RetireSettle) with no fence: a replica whose head poll fails only
// logs a warning (vault.go Watch) and keeps sealing under the version it
// holds, after that version was retired elsewhere. The card it stores never
// opens again.
func TestReplicaThatCannotReadTheRingSealsNothing(t *testing.T) {
	e := engines(t)["bolt"](t)
	clk := &clock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	op := mustVault(t, e, testKEK(t)) // the operator's process
	op.Now, op.Sleep = clk.Now, clk.Sleep
	partitioned := &headless{Store: e}
	replica := mustVault(t, partitioned, testKEK(t))
	if _, err := op.Tokenize(ctx, "mer_a", testCard(t, "5555555555554444")); err != nil { // version 1 in use
		t.Fatal(err)
	}
	partitioned.cut.Store(true)
	if _, err := op.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute) // well past RetireSettle
	if _, err := op.Reencrypt(ctx, op.Cards()); err != nil {
		t.Fatal(err)
	}
	if err := op.Retire(ctx, 1, op.Cards()); err != nil {
		t.Fatalf("retire: %v", err)
	}
	// The replica tried to poll (as Watch does every 3 s) and could not.
	if _, err := replica.Refresh(ctx); err == nil {
		t.Fatal("the head read should fail in this test")
	}
	i, err := replica.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
	if err != nil {
		// Refusing to seal on a ring it cannot confirm is the fix: a 503,
		// readiness says so, and it seals again once it reads the head.
		if !apperr.Is(err, apperr.Unavailable) || replica.Ready(ctx) == nil {
			t.Fatalf("refused with %v; ready: %v", err, replica.Ready(ctx))
		}
		partitioned.cut.Store(false)
		i, err := replica.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
		if err != nil || string(rawRecord(t, e, i.Token)["key_version"]) != "2" || replica.Ready(ctx) != nil {
			t.Fatalf("once the head reads again: %v", err)
		}
		return
	}
	if _, _, err := op.Lookup(ctx, i.Token); err != nil {
		t.Fatalf("a card stored a minute after version 1 was retired was sealed under version %s and never opens again: %v",
			rawRecord(t, e, i.Token)["key_version"], err)
	}
}

// failingSeals is a store whose writes of the seal count fail.
type failingSeals struct{ store.Store }

func (f failingSeals) Commit(ctx context.Context, ops ...store.Op) error {
	for _, op := range ops {
		if op.Key.Kind == "keyring" && op.Key.ID == "seals" {
			return store.ErrUnavailable
		}
	}
	return f.Store.Commit(ctx, ops...)
}

// TestSealNotMadeWithoutItsCount: a seal is counted (its block reserved in
// the store) before it is made; when the count cannot be written the seal
// is refused, so no restart can lose a seal the count never saw.
func TestSealNotMadeWithoutItsCount(t *testing.T) {
	t.Parallel()
	e := engines(t)["bolt"](t)
	v := mustVault(t, failingSeals{e}, testKEK(t))
	if _, err := v.SealSecret("p", []byte("x")); !apperr.Is(err, apperr.Unavailable) {
		t.Fatalf("a seal whose count could not be reserved: %v", err)
	}
	if _, err := v.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242")); !apperr.Is(err, apperr.Unavailable) {
		t.Fatalf("a card whose count could not be reserved: %v", err)
	}
	n := 0
	_ = e.Scan(ctx, "card", func(string, store.Record) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d cards stored without their count", n)
	}
	// Reserved, the block covers the next seals without a write each.
	ok := mustVault(t, e, testKEK(t))
	for range 3 {
		if _, err := ok.SealSecret("p", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if st := ok.SealStats(); st.Seals < 3 {
		t.Fatalf("count %d after 3 seals", st.Seals)
	}
}

// TestReencryptKeepsTimeToLive (from the review of issue 14): keys reencrypt rewrites each record
// with store.Update (keys.go Reencrypt), whose TTL is 0, "keeps it
// forever". The sandbox issuer's transactions hold a sealed 3-D Secure
// authentication value "for a day" (threeds/sandbox.go save: TTL 24h);
// after a re-encryption they never expire. The store's Record carries
// ExpiresAt, which Reencrypt ignores.
func TestReencryptKeepsTimeToLive(t *testing.T) {
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			e := open(t)
			v := mustVault(t, e, testKEK(t))
			const id = "3ds_aaaaaaaaaaaaaaaaaaaaaaaaaa"
			sealed, err := v.SealSecret("acs-auth|"+id, []byte("AAABBBCCCDDDEEEFFF=="))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(map[string]any{"id": id, "auth_value_sealed": sealed})
			k := store.K("acs_tx", id)
			if err := e.Commit(ctx, store.Op{Key: k, Value: b, IfVersion: 0, TTL: 24 * time.Hour}); err != nil {
				t.Fatal(err)
			}
			if _, err := v.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
			res, err := v.Reencrypt(ctx, threeds.SandboxAuthValues())
			if err != nil || res.Moved != 1 {
				t.Fatalf("reencrypt: %+v %v", res, err)
			}
			rec, err := e.Get(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			if rec.ExpiresAt.IsZero() {
				t.Fatal("after keys reencrypt the sandbox 3-D Secure transaction (a sealed authentication value) no longer expires")
			}
		})
	}
}

// TestReencryptTrimsLegacyBINs (from the review of issue 14): "a record keeps at most as many leading
// digits as card.Mask shows for that length". Records written before the
// change keep "bin": the first six of a 13-digit Visa (10 of 13 digits in
// clear with last4). Nothing migrates them: keys reencrypt opens every card
// yet leaves the bin as it was (keys.go moveCard).
func TestReencryptTrimsLegacyBINs(t *testing.T) {
	e := engines(t)["bolt"](t)
	v := mustVault(t, e, testKEK(t))
	p, err := card.ParsePAN("4222222222222")
	if err != nil {
		t.Fatal(err)
	}
	i, err := v.Tokenize(ctx, "mer_a", vault.Card{PAN: p, Expiry: card.Expiry{Month: 1, Year: 2031}})
	if err != nil {
		t.Fatal(err)
	}
	r := rawRecord(t, e, i.Token)
	r["bin"] = json.RawMessage(`"422222"`) // what the code before f55ef79..aed093a stored
	putRaw(t, e, i.Token, r)
	if _, err := v.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Reencrypt(ctx, v.Cards()); err != nil {
		t.Fatal(err)
	}
	if got := string(rawRecord(t, e, i.Token)["bin"]); got != `""` {
		t.Fatalf("a 13-digit card's record still keeps bin %s after keys reencrypt (10 of 13 digits in clear)", got)
	}
}

// TestRetireDestroysTheLegacyFingerprintKey (from the review of issue 14): "keys retire destroys
// version N's three keys". A keyring made before this change keeps version
// 1's fingerprint key in keyringDoc.FingerprintKey (keyring.go), which
// without() never drops: after version 1 is retired, the key that made
// every "fp_..." fingerprint (and the CSRF key derived from it) is still
// wrapped in the store, and in every backup.
func TestRetireDestroysTheLegacyFingerprintKey(t *testing.T) {
	e := engines(t)["bolt"](t)
	kek := testKEK(t)
	// The keyring as the code before issue 14 wrote it (git show 52cace7:pkg/vault/keyring.go).
	fp, err := kek.Wrap([]byte(strings.Repeat("f", 32)), []byte("paypage/fingerprint-key"))
	if err != nil {
		t.Fatal(err)
	}
	dek, err := kek.Wrap([]byte(strings.Repeat("d", 32)), []byte("paypage/dek/v1"))
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(map[string]any{"kek_id": kek.ID(), "fingerprint_key": fp,
		"versions": []map[string]any{{"version": 1, "wrapped": dek, "created": time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}}})
	if err := e.Commit(ctx, store.Create(store.K("keyring", "main"), doc, 0)); err != nil {
		t.Fatal(err)
	}
	v := mustVault(t, e, kek)
	clk := &clock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	v.Now, v.Sleep = clk.Now, clk.Sleep
	if _, err := v.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242")); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Reencrypt(ctx, v.Cards()); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	if err := v.Retire(ctx, 1, v.Cards()); err != nil {
		t.Fatal(err)
	}
	rec, err := e.Get(ctx, store.K("keyring", "main"))
	if err != nil {
		t.Fatal(err)
	}
	var left struct {
		FingerprintKey []byte `json:"fingerprint_key"`
	}
	_ = json.Unmarshal(rec.Value, &left)
	if left.FingerprintKey != nil {
		if k, err := kek.Unwrap(left.FingerprintKey, []byte("paypage/fingerprint-key")); err == nil {
			t.Fatalf("version 1 is retired, yet its fingerprint key still unwraps from the keyring (%d bytes)", len(k))
		}
	}
}

// TestRetireSettlesOnItsOwnClock (from the review of issue 14) is the clock-skew form of
// the stale-replica race: Retire measures RetireSettle with the retiring
// process's clock against the Created time the rotating process wrote
// (keys.go Retire). An operator host 15 s ahead retires at once, while a
// replica that has not polled yet still seals under version 1.
func TestRetireSettlesOnItsOwnClock(t *testing.T) {
	e := engines(t)["bolt"](t)
	// One clock for the time that passes, so the settle times run at once:
	// the operator's host reads it 15 s ahead, and its waits move it on.
	clk := &clock{now: time.Now()}
	rotator := mustVault(t, e, testKEK(t))
	replica := mustVault(t, e, testKEK(t)) // polls every 3 s; its next poll is not due yet
	operator := mustVault(t, e, testKEK(t))
	rotator.Now, replica.Now = clk.Now, clk.Now
	operator.Now = func() time.Time { return clk.Now().Add(15 * time.Second) } // a skewed host clock
	operator.Sleep = clk.Sleep
	if _, err := rotator.Tokenize(ctx, "mer_a", testCard(t, "5555555555554444")); err != nil { // version 1 in use
		t.Fatal(err)
	}
	if _, err := rotator.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := operator.Reencrypt(ctx, operator.Cards()); err != nil {
		t.Fatal(err)
	}
	if err := operator.Retire(ctx, 1, operator.Cards()); err != nil {
		t.Logf("retire refused: %v", err)
		return // refused: sound
	}
	// The operator saw the rotation just now, on its own clock: it waited a
	// whole settle before it counted use, and a second before it destroyed.
	if w := clk.waits(); len(w) != 2 || w[0] != vault.RetireSettle || w[1] != vault.RetireSettle {
		t.Fatalf("retire right after the rotation waited %v, want two settles of %v", w, vault.RetireSettle)
	}
	i, err := replica.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := mustVault(t, e, testKEK(t)).Lookup(ctx, i.Token); errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("retired 0 s after the rotation (operator clock 15 s ahead); a card sealed in the replica's poll window never opens: %v", err)
	}
}

// TestRewrapThenRotateStrandsNoReplica (from the review of issue 14) is the same race with no
// fault at all, following the README's ceremony (step 8, then 4-6): after
// keys rewrap, a replica still running on the old master key cannot reread
// the ring (Refresh answers ErrWrongKEK; Watch only logs it), so it never
// learns of the next rotation and keeps sealing under the old active
// version, which keys retire then destroys.
func TestRewrapThenRotateStrandsNoReplica(t *testing.T) {
	e := engines(t)["bolt"](t)
	clk := &clock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	op := mustVault(t, e, testKEK(t))
	op.Now, op.Sleep = clk.Now, clk.Sleep
	replica := mustVault(t, e, testKEK(t)) // a serving replica, not restarted yet
	if _, err := op.Tokenize(ctx, "mer_a", testCard(t, "5555555555554444")); err != nil {
		t.Fatal(err)
	}
	next, _ := vault.ParseKEK(strings.Repeat("ef", 32))
	if err := op.Rewrap(ctx, next); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute)
	if _, err := op.Reencrypt(ctx, op.Cards()); err != nil {
		t.Fatal(err)
	}
	if err := op.Retire(ctx, 1, op.Cards()); err != nil {
		t.Fatalf("retire: %v", err)
	}
	_, rerr := replica.Refresh(ctx)
	i, err := replica.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
	if err != nil {
		return // refusing to seal on a ring it cannot reread is the fix
	}
	if _, _, err := mustVault(t, e, next).Lookup(ctx, i.Token); err != nil {
		t.Fatalf("after rewrap + rotate + retire, a replica (refresh: %v) sealed a card under version %s that never opens: %v",
			rerr, rawRecord(t, e, i.Token)["key_version"], err)
	}
}

// TestRetireChecksAgainAfterTheSecondSettle: a value sealed under the old
// version before the replicas saw the rotation may reach the store late.
// Retire counts use once the first settle is over, waits a second one and
// counts again before it destroys: a record that lands in between is seen,
// and the version stays.
func TestRetireChecksAgainAfterTheSecondSettle(t *testing.T) {
	t.Parallel()
	e := engines(t)["bolt"](t)
	clk := &clock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	v := mustVault(t, e, testKEK(t))
	v.Now, v.Sleep = clk.Now, clk.Sleep
	late, err := v.SealSecret("test|late", []byte("whsec_late")) // sealed under 1, its write still on the way
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	kinds := []vault.Kind{v.Cards(), vault.CVVHolds(), secrets}
	clk.during = []func(){func() { // during the second settle
		if err := e.Commit(ctx, store.Put(store.K("testsecret", "late"), late)); err != nil {
			t.Error(err)
		}
	}}
	if err := v.Retire(ctx, 1, kinds...); !apperr.Is(err, apperr.Conflict) || !strings.Contains(err.Error(), "1 test_secrets") {
		t.Fatalf("a version-1 value that landed during the second settle: retire answered %v", err)
	}
	if b, err := v.OpenSecret(ctx, "test|late", late); err != nil || string(b) != "whsec_late" {
		t.Fatalf("the late value no longer opens: %v", err)
	}
}

// TestRotationWaitsForReplicasToHoldTheNewMasterKey: after keys rewrap, a
// serving replica still on the old master key goes on sealing with the keys
// it holds; keys rotate refuses, naming it, until it holds the new key
// (here it rereads its key file, which now has the new key), and a replica
// that stops takes its line out.
func TestRotationWaitsForReplicasToHoldTheNewMasterKey(t *testing.T) {
	t.Parallel()
	e := engines(t)["bolt"](t)
	old := testKEK(t)
	next, _ := vault.ParseKEK(strings.Repeat("ef", 32))
	var keyFile atomic.Value // what the replica's --master-key-file holds
	keyFile.Store(old)
	replica, err := vault.OpenWith(ctx, e, old, vault.Options{ReloadKEK: func() (vault.KEK, error) { return keyFile.Load().(vault.KEK), nil }})
	if err != nil {
		t.Fatal(err)
	}
	envKey := mustVault(t, e, old) // a replica whose key came from the environment: it cannot reread it
	for _, r := range []*vault.Vault{replica, envKey} {
		if err := r.Announce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	op := mustVault(t, e, old)
	if err := op.Rewrap(ctx, next); err != nil {
		t.Fatal(err)
	}
	// The replicas go on: same versions, the keys they hold.
	for _, r := range []*vault.Vault{replica, envKey} {
		if _, err := r.Refresh(ctx); err != nil {
			t.Fatalf("refresh after rewrap: %v", err)
		}
		if _, err := r.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242")); err != nil {
			t.Fatalf("a replica on the old master key stopped sealing after rewrap: %v", err)
		}
	}
	if _, err := op.Rotate(ctx); !apperr.Is(err, apperr.Conflict) || !strings.Contains(err.Error(), old.ID()) {
		t.Fatalf("rotate while replicas hold the old master key: %v", err)
	}
	// A replica on the old key wraps nothing under it (the others could not open it).
	if _, err := envKey.Rotate(ctx); !apperr.Is(err, apperr.Conflict) || !strings.Contains(err.Error(), "give it the new key first") {
		t.Fatalf("rotate by a replica on the old master key: %v", err)
	}
	// The key file now holds the new key: the replica picks it up.
	keyFile.Store(next)
	if _, err := replica.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := replica.Announce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Rotate(ctx); err == nil || !strings.Contains(err.Error(), old.ID()) {
		t.Fatalf("rotate while one replica still holds the old master key: %v", err)
	}
	// The other one stops (to be restarted with the new key): its line goes.
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { envKey.Watch(wctx, time.Hour); close(done) }()
	stop()
	<-done
	st, err := op.Status(ctx)
	if err != nil || len(st.Replicas) != 1 || st.Replicas[0].KEK != next.ID() {
		t.Fatalf("replicas after one stopped: %+v %v", st.Replicas, err)
	}
	if n, err := op.Rotate(ctx); err != nil || n != 2 {
		t.Fatalf("rotate once every replica holds the new key: %d %v", n, err)
	}
	if _, err := replica.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	i, err := replica.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
	if err != nil || string(rawRecord(t, e, i.Token)["key_version"]) != "2" {
		t.Fatalf("the replica that picked up the new key does not seal under version 2: %v", err)
	}
}

// TestFingerprintsAreKeyedHashes (PCI DSS 3.5.1.1): a fingerprint is a
// keyed hash of the card number: another keyring (another key) gives the
// same card another fingerprint, and no unkeyed hash of the number, alone
// or with the merchant, is it.
func TestFingerprintsAreKeyedHashes(t *testing.T) {
	t.Parallel()
	pan := "4242424242424242"
	var fps []string
	for range 2 {
		v := mustVault(t, engines(t)["bolt"](t), testKEK(t)) // a new store: a new fingerprint key
		i, err := v.Tokenize(ctx, "mer_a", testCard(t, pan))
		if err != nil {
			t.Fatal(err)
		}
		fps = append(fps, strings.TrimPrefix(i.Fingerprint, "fp_"))
	}
	if fps[0] == fps[1] {
		t.Fatal("two keyrings give the same card the same fingerprint: the hash is not keyed")
	}
	for _, msg := range []string{pan, "mer_a" + pan, "merchant|mer_a|" + pan} {
		sum := sha256.Sum256([]byte(msg))
		if strings.HasPrefix(hex.EncodeToString(sum[:]), fps[0]) {
			t.Fatalf("the fingerprint is the unkeyed SHA-256 of %q", msg)
		}
	}
}
