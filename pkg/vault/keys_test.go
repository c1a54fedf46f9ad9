package vault_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/store"
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
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
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

			// Too soon after the rotation: a replica may still seal under 1.
			if err := v.Retire(ctx, 1, kinds...); !apperr.Is(err, apperr.Conflict) || !strings.Contains(err.Error(), "old") {
				t.Fatalf("retire right after rotation: %v", err)
			}
			clk.Add(2 * time.Minute)
			if err := v.Retire(ctx, 1, kinds...); !apperr.Is(err, apperr.Conflict) ||
				!strings.Contains(err.Error(), "1 cards, 1 cvv_holds, 1 test_secrets") {
				t.Fatalf("retire while in use: %v", err)
			}
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
			if err := v.Retire(ctx, 1, kinds...); err != nil {
				t.Fatalf("retire: %v", err)
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
			v.Now = clk.Now
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
	v.Now = clk.Now
	k1 := v.CSRFKeys()
	if len(k1) != 1 || len(k1[0]) != 32 {
		t.Fatalf("keys %d", len(k1))
	}
	if _, err := v.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	k2 := v.CSRFKeys()
	if len(k2) != 2 || string(k2[0]) == string(k1[0]) || string(k2[1]) != string(k1[0]) {
		t.Fatal("after rotation: want the new key first and the old one still accepted")
	}
	clk.Add(vault.CSRFGrace + time.Minute)
	if k3 := v.CSRFKeys(); len(k3) != 1 || string(k3[0]) != string(k2[0]) {
		t.Fatal("after the grace: want only the new key")
	}
}
