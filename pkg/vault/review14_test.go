package vault_test

// Reproductions from the hostile review of issue 14 (branch review14). Each
// test states the promise it attacks and fails while the defect is there.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/threeds"
	"github.com/paypage/paypage/pkg/vault"
)

// TestReview14SealDuringTrafficDoesNotPanic: `paypage seal` on a serving
// replica. Seal wipes the ring that requests in flight already hold
// (vault.go Seal -> ring.wipe clears r.terms and the fp/csrf bytes), so a
// seal running at that moment dereferences r.terms[r.active] == nil
// (keyring.go ring.seal) or hashes with a zeroed fingerprint key. Promise:
// "paypage seal wipes the key from memory" and the service answers 503, not
// a crash.
func TestReview14SealDuringTrafficDoesNotPanic(t *testing.T) {
	e := engines(t)["bolt"](t)
	v := mustVault(t, e, testKEK(t))
	pan := testCard(t, "4242424242424242").PAN
	var panics atomic.Int64
	var first atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				func() {
					defer func() {
						if r := recover(); r != nil {
							panics.Add(1)
							first.CompareAndSwap(nil, fmt.Sprint(r))
						}
					}()
					_, _ = v.SealSecret("p", []byte("x"))
					_ = v.CardKey(pan)
				}()
			}
		})
	}
	for range 10000 {
		v.Seal()
		if err := v.Unseal(ctx, testKEK(t)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if n := panics.Load(); n > 0 {
		t.Fatalf("%d seals in flight panicked while the vault was sealed, first: %v", n, first.Load())
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

// TestReview14StaleReplicaCannotSealUnderARetiredKey: "every replica picks
// up a new active data key within 10 seconds", and retire "refuses while
// anything still uses version N". The 10 s is a wall-clock assumption
// (keys.go RetireSettle) with no fence: a replica whose head poll fails only
// logs a warning (vault.go Watch) and keeps sealing under the version it
// holds, after that version was retired elsewhere. The card it stores never
// opens again.
func TestReview14StaleReplicaCannotSealUnderARetiredKey(t *testing.T) {
	e := engines(t)["bolt"](t)
	clk := &clock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	op := mustVault(t, e, testKEK(t)) // the operator's process
	op.Now = clk.Now
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
		return // refusing to seal on a ring it cannot confirm is the fix
	}
	if _, _, err := op.Lookup(ctx, i.Token); err != nil {
		t.Fatalf("a card stored a minute after version 1 was retired was sealed under version %s and never opens again: %v",
			rawRecord(t, e, i.Token)["key_version"], err)
	}
}

// TestReview14ReencryptKeepsTimeToLive: keys reencrypt rewrites each record
// with store.Update (keys.go Reencrypt), whose TTL is 0, "keeps it
// forever". The sandbox issuer's transactions hold a sealed 3-D Secure
// authentication value "for a day" (threeds/sandbox.go save: TTL 24h);
// after a re-encryption they never expire. The store's Record carries
// ExpiresAt, which Reencrypt ignores.
func TestReview14ReencryptKeepsTimeToLive(t *testing.T) {
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

// TestReview14ReencryptTrimsOldBINs: "a record keeps at most as many leading
// digits as card.Mask shows for that length". Records written before the
// change keep "bin": the first six of a 13-digit Visa (10 of 13 digits in
// clear with last4). Nothing migrates them: keys reencrypt opens every card
// yet leaves the bin as it was (keys.go moveCard).
func TestReview14ReencryptTrimsOldBINs(t *testing.T) {
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

// TestReview14RetireDestroysTheLegacyFingerprintKey: "keys retire destroys
// version N's three keys". A keyring made before this change keeps version
// 1's fingerprint key in keyringDoc.FingerprintKey (keyring.go), which
// without() never drops: after version 1 is retired, the key that made
// every "fp_..." fingerprint (and the CSRF key derived from it) is still
// wrapped in the store, and in every backup.
func TestReview14RetireDestroysTheLegacyFingerprintKey(t *testing.T) {
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
	v.Now = clk.Now
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

// TestReview14RetireUnderASkewedClock is the clock-skew form of
// the stale-replica race: Retire measures RetireSettle with the retiring
// process's clock against the Created time the rotating process wrote
// (keys.go Retire). An operator host 15 s ahead retires at once, while a
// replica that has not polled yet still seals under version 1.
func TestReview14RetireUnderASkewedClock(t *testing.T) {
	e := engines(t)["bolt"](t)
	rotator := mustVault(t, e, testKEK(t))
	replica := mustVault(t, e, testKEK(t)) // polls every 3 s; its next poll is not due yet
	operator := mustVault(t, e, testKEK(t))
	operator.Now = func() time.Time { return time.Now().Add(15 * time.Second) }                // a skewed host clock
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
	i, err := replica.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := mustVault(t, e, testKEK(t)).Lookup(ctx, i.Token); errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("retired 0 s after the rotation (operator clock 15 s ahead); a card sealed in the replica's poll window never opens: %v", err)
	}
}

// TestReview14RewrapThenRotateStrandsReplicas is the same race with no
// fault at all, following the README's ceremony (step 8, then 4-6): after
// keys rewrap, a replica still running on the old master key cannot reread
// the ring (Refresh answers ErrWrongKEK; Watch only logs it), so it never
// learns of the next rotation and keeps sealing under the old active
// version, which keys retire then destroys.
func TestReview14RewrapThenRotateStrandsReplicas(t *testing.T) {
	e := engines(t)["bolt"](t)
	clk := &clock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	op := mustVault(t, e, testKEK(t))
	op.Now = clk.Now
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
