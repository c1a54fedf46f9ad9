package vault_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/bolt"
	"github.com/paypage/paypage/pkg/store/redis"
	"github.com/paypage/paypage/pkg/store/redis/redistest"
	"github.com/paypage/paypage/pkg/vault"
)

var ctx = context.Background()

// engine is a store to run vault tests on, and a way to read all its raw bytes.
type engine struct {
	store.Store
	raw func(t *testing.T) []byte
}

// engines are the stores to run on: bolt always, Redis except with -short.
func engines(t *testing.T) map[string]func(t *testing.T) engine {
	all := map[string]func(t *testing.T) engine{
		"bolt": func(t *testing.T) engine {
			path := filepath.Join(t.TempDir(), "paypage.db")
			db, err := bolt.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return engine{db, func(t *testing.T) []byte {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}}
		},
		"redis": func(t *testing.T) engine {
			srv := redistest.Start(t)
			db, err := redis.Open(ctx, srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return engine{db, func(t *testing.T) []byte {
				var all bytes.Buffer
				keys, err := db.Client().Keys(ctx, "*").Result()
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range keys {
					all.WriteString(k)
					if v, err := db.Client().Get(ctx, k).Result(); err == nil {
						all.WriteString(v)
					}
				}
				if err := db.Client().Save(ctx).Err(); err != nil {
					t.Fatal(err)
				}
				dump, err := os.ReadFile(filepath.Join(srv.Dir, "dump.rdb"))
				if err != nil {
					t.Fatal(err)
				}
				all.Write(dump)
				return all.Bytes()
			}}
		},
	}
	if testing.Short() {
		delete(all, "redis")
	}
	return all
}

func testKEK(t testing.TB) vault.KEK {
	k, err := vault.ParseKEK(strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustVault(t testing.TB, s store.Store, kek vault.KEK) *vault.Vault {
	t.Helper()
	v, err := vault.Open(ctx, s, kek)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func testCard(t testing.TB, number string) vault.Card {
	p, err := card.ParsePAN(number)
	if err != nil {
		t.Fatal(err)
	}
	return vault.Card{PAN: p, Expiry: card.Expiry{Month: 12, Year: 2030}, Name: "IVAN PETROV"}
}

func TestVault(t *testing.T) {
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("RoundTrip", func(t *testing.T) {
				e := open(t)
				v := mustVault(t, e, testKEK(t))
				info, err := v.Tokenize(ctx, "mer_a", testCard(t, "4242 4242 4242 4242"))
				if err != nil {
					t.Fatal(err)
				}
				if !vault.ValidToken(info.Token) || info.Last4 != "4242" || info.Brand != card.Visa || info.BIN != "424242" {
					t.Fatalf("info %+v", info)
				}
				c, got, err := v.Detokenize(ctx, "mer_a", info.Token)
				if err != nil {
					t.Fatal(err)
				}
				if c.PAN.Digits() != "4242424242424242" || c.Name != "IVAN PETROV" || c.Expiry != (card.Expiry{Month: 12, Year: 2030}) || got.Fingerprint != info.Fingerprint {
					t.Fatalf("detokenized %v %+v", c, got)
				}
				// Invariant 3: another merchant cannot use the token.
				if _, _, err := v.Detokenize(ctx, "mer_b", info.Token); !errors.Is(err, vault.ErrNotFound) {
					t.Fatalf("other merchant: %v", err)
				}
				if _, err := v.Info(ctx, "mer_b", info.Token); !errors.Is(err, vault.ErrNotFound) {
					t.Fatalf("other merchant info: %v", err)
				}
				for _, bad := range []string{"", "tok_", "4242424242424242", info.Token + "a", strings.ToUpper(info.Token)} {
					if _, _, err := v.Lookup(ctx, bad); !errors.Is(err, vault.ErrNotFound) {
						t.Errorf("Lookup(%q) = %v", bad, err)
					}
				}
			})

			t.Run("NoPlainCardDataInStore", func(t *testing.T) {
				e := open(t)
				v := mustVault(t, e, testKEK(t))
				c := testCard(t, "3782 822463 10005")
				info, err := v.Tokenize(ctx, "mer_a", c)
				if err != nil {
					t.Fatal(err)
				}
				cvv, _ := card.ParseCVV("7319", card.Amex)
				if err := v.HoldCVV(ctx, "mer_a", vault.CVVKey("att_1", "g1"), cvv, time.Minute); err != nil {
					t.Fatal(err)
				}
				// A 3-D Secure authentication value, held for the attempt (PCI DSS 3.3.2).
				auth, err := v.SealHeld(vault.KindAuth, "mer_a", "att_1", []byte("AAABBBCCCDDDEEEFFF0="))
				if err != nil {
					t.Fatal(err)
				}
				if err := e.Commit(ctx, store.Op{Key: store.Key{Kind: "auth", ID: "att_1", Group: "g1"}, Value: auth, IfVersion: store.Any, TTL: time.Minute}); err != nil {
					t.Fatal(err)
				}
				raw := e.raw(t)
				for _, secret := range []string{"378282246310005", "3782 822463 10005", "82246310", "7319", "IVAN PETROV", "AAABBBCCCDDDEEEFFF0"} {
					if bytes.Contains(raw, []byte(secret)) {
						t.Errorf("store holds %q in plain text", secret)
					}
				}
				if !bytes.Contains(raw, []byte(info.Token)) {
					t.Fatal("raw dump is missing the token: the scan reads nothing")
				}
			})

			t.Run("CiphertextBoundToTokenAndMerchant", func(t *testing.T) {
				e := open(t)
				v := mustVault(t, e, testKEK(t))
				a, _ := v.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
				b, _ := v.Tokenize(ctx, "mer_a", testCard(t, "5555555555554444"))
				ra := rawRecord(t, e, a.Token)
				rb := rawRecord(t, e, b.Token)
				rb["sealed"] = ra["sealed"] // move A's ciphertext into B's record
				putRaw(t, e, b.Token, rb)
				if _, _, err := v.Detokenize(ctx, "mer_a", b.Token); !errors.Is(err, vault.ErrCorrupt) {
					t.Fatalf("moved ciphertext: %v", err)
				}
				ra["merchant"] = json.RawMessage(`"mer_evil"`) // rebind A to another merchant
				putRaw(t, e, a.Token, ra)
				if _, _, err := v.Detokenize(ctx, "mer_evil", a.Token); !errors.Is(err, vault.ErrCorrupt) {
					t.Fatalf("rebound merchant: %v", err)
				}
			})

			t.Run("CorruptCiphertext", func(t *testing.T) {
				e := open(t)
				v := mustVault(t, e, testKEK(t))
				a, _ := v.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
				r := rawRecord(t, e, a.Token)
				var sealed []byte
				_ = json.Unmarshal(r["sealed"], &sealed)
				for _, mutate := range []func([]byte) []byte{
					func(b []byte) []byte { b[len(b)-1] ^= 1; return b },
					func(b []byte) []byte { return b[:3] },
					func(b []byte) []byte { b[4] = 9; return b }, // unknown key version
					func(b []byte) []byte { b[0] = 7; return b }, // unknown format
					func([]byte) []byte { return nil },
				} {
					bad, _ := json.Marshal(mutate(append([]byte(nil), sealed...)))
					r["sealed"] = bad
					putRaw(t, e, a.Token, r)
					if _, _, err := v.Lookup(ctx, a.Token); !errors.Is(err, vault.ErrCorrupt) {
						t.Errorf("corrupt ciphertext: %v", err)
					}
				}
			})

			t.Run("RotateAndReencrypt", func(t *testing.T) {
				e := open(t)
				v := mustVault(t, e, testKEK(t))
				var old []string
				for _, n := range []string{"4242424242424242", "5555555555554444", "2200000000000004"} {
					i, err := v.Tokenize(ctx, "mer_a", testCard(t, n))
					if err != nil {
						t.Fatal(err)
					}
					old = append(old, i.Token)
				}
				ver, err := v.Rotate(ctx)
				if err != nil || ver != 2 {
					t.Fatalf("rotate: %d %v", ver, err)
				}
				newer, _ := v.Tokenize(ctx, "mer_a", testCard(t, "3530111333300000"))
				if got := rawRecord(t, e, newer.Token)["key_version"]; string(got) != "2" {
					t.Fatalf("new record under key %s", got)
				}
				// A second replica that loaded the ring before the rotation still opens new records.
				for _, tok := range append(old, newer.Token) {
					if _, _, err := v.Lookup(ctx, tok); err != nil {
						t.Fatalf("after rotation: %v", err)
					}
				}
				// Version 1 seals three cards and fingerprints all four (the
				// oldest live fingerprint key makes fingerprints); version 2 seals one.
				st, _ := v.Status(ctx, v.Cards())
				if st.Active != 2 || st.Versions[0].Records["cards"] != 4 || st.Versions[1].Records["cards"] != 1 {
					t.Fatalf("status %+v", st)
				}
				// Interrupted re-encryption: cancel after the first record; a second run finishes.
				cctx, cancel := context.WithCancel(ctx)
				moved := 0
				_, _ = reencryptCancelAfterOne(cctx, cancel, v, &moved)
				res, err := v.Reencrypt(ctx, v.Cards())
				if err != nil {
					t.Fatal(err)
				}
				if res.Moved+moved != 4 {
					t.Fatalf("moved %d + %d, want 4", moved, res.Moved)
				}
				if res, _ := v.Reencrypt(ctx, v.Cards()); res.Moved != 0 || res.Current != 4 {
					t.Fatalf("third run %+v", res)
				}
				for i, tok := range old {
					c, _, err := v.Lookup(ctx, tok)
					if err != nil || string(rawRecord(t, e, tok)["key_version"]) != "2" {
						t.Fatalf("record %d after reencrypt: %v", i, err)
					}
					_ = c
				}
				// A vault opened fresh (new process) reads everything too.
				v2 := mustVault(t, e, testKEK(t))
				if _, _, err := v2.Lookup(ctx, old[0]); err != nil {
					t.Fatal(err)
				}
			})

			t.Run("StaleReplicaSeesRotation", func(t *testing.T) {
				e := open(t)
				a := mustVault(t, e, testKEK(t))
				b := mustVault(t, e, testKEK(t))
				if _, err := a.Rotate(ctx); err != nil {
					t.Fatal(err)
				}
				i, _ := a.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
				if _, _, err := b.Lookup(ctx, i.Token); err != nil {
					t.Fatalf("replica with the old ring: %v", err)
				}
			})

			t.Run("WrongOrCorruptKeyring", func(t *testing.T) {
				e := open(t)
				mustVault(t, e, testKEK(t))
				other, _ := vault.ParseKEK(strings.Repeat("cd", 32))
				if _, err := vault.Open(ctx, e, other); !errors.Is(err, vault.ErrWrongKEK) {
					t.Fatalf("wrong KEK: %v", err)
				}
				if err := e.Commit(ctx, store.Put(store.K("keyring", "main"), []byte("{garbage"))); err != nil {
					t.Fatal(err)
				}
				if _, err := vault.Open(ctx, e, testKEK(t)); err == nil || !strings.Contains(err.Error(), "corrupt") {
					t.Fatalf("corrupt keyring: %v", err)
				}
			})

			t.Run("RewrapUnderNewMasterKey", func(t *testing.T) {
				e := open(t)
				v := mustVault(t, e, testKEK(t))
				if _, err := v.Rotate(ctx); err != nil {
					t.Fatal(err)
				}
				i, _ := v.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
				next, _ := vault.ParseKEK(strings.Repeat("ef", 32))
				if err := v.Rewrap(ctx, next); err != nil {
					t.Fatal(err)
				}
				if _, err := vault.Open(ctx, e, testKEK(t)); !errors.Is(err, vault.ErrWrongKEK) {
					t.Fatalf("old master key still opens the keyring: %v", err)
				}
				v2 := mustVault(t, e, next)
				c, got, err := v2.Lookup(ctx, i.Token)
				if err != nil || c.PAN.Digits() != "4242424242424242" || got.Fingerprint != i.Fingerprint {
					t.Fatalf("after rewrap: %v %v", got, err)
				}
				if st, _ := v2.Status(ctx, v2.Cards()); st.KEK != next.ID() || len(st.Versions) != 2 {
					t.Fatalf("status %+v", st)
				}
			})

			t.Run("CVVTakenOnce", func(t *testing.T) {
				e := open(t)
				v := mustVault(t, e, testKEK(t))
				k := vault.CVVKey("att_1", "g1")
				cvv, _ := card.ParseCVV("123", card.Visa)
				if err := v.HoldCVV(ctx, "mer_a", k, cvv, time.Minute); err != nil {
					t.Fatal(err)
				}
				if _, err := v.TakeCVV(ctx, "mer_b", k); err == nil {
					t.Fatal("other merchant took the CVV")
				}
				if err := v.HoldCVV(ctx, "mer_a", k, cvv, time.Minute); err != nil {
					t.Fatal(err)
				}
				got, err := v.TakeCVV(ctx, "mer_a", k)
				if err != nil || got.Digits() != "123" {
					t.Fatalf("take: %v", err)
				}
				if _, err := v.TakeCVV(ctx, "mer_a", k); !errors.Is(err, vault.ErrCVVGone) {
					t.Fatalf("second take: %v", err)
				}
				if err := v.HoldCVV(ctx, "mer_a", k, cvv, 200*time.Millisecond); err != nil {
					t.Fatal(err)
				}
				time.Sleep(400 * time.Millisecond)
				if _, err := v.TakeCVV(ctx, "mer_a", k); !errors.Is(err, vault.ErrCVVGone) {
					t.Fatalf("expired take: %v", err)
				}
			})
		})
	}
}

// reencryptCancelAfterOne simulates an interrupted run: it rotates nothing,
// but cancels the context once one record has moved.
func reencryptCancelAfterOne(ctx context.Context, cancel context.CancelFunc, v *vault.Vault, moved *int) (vault.ReencryptResult, error) {
	v.OnReencrypt = func() {
		*moved++
		cancel()
	}
	defer func() { v.OnReencrypt = nil }()
	return v.Reencrypt(ctx, v.Cards())
}

func rawRecord(t *testing.T, s store.Store, token string) map[string]json.RawMessage {
	t.Helper()
	r, err := s.Get(ctx, store.K("card", token))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(r.Value, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func putRaw(t *testing.T, s store.Store, token string, m map[string]json.RawMessage) {
	t.Helper()
	b, _ := json.Marshal(m)
	if err := s.Commit(ctx, store.Put(store.K("card", token), b)); err != nil {
		t.Fatal(err)
	}
}

func TestKEKFiles(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"ok", strings.Repeat("0f", 32) + "\n", 0o600, ""},
		{"short", "abcd", 0o600, "64 hex"},
		{"not hex", strings.Repeat("zz", 32), 0o600, "64 hex"},
		{"world readable", strings.Repeat("0f", 32), 0o644, "readable by others"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			if err := os.WriteFile(p, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := vault.LoadKEKFile(p)
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := vault.LoadKEKFile(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing file loaded")
	}
	p := filepath.Join(dir, "gen")
	if _, err := vault.GenerateKEKFile(p); err != nil {
		t.Fatal(err)
	}
	if _, err := vault.LoadKEKFile(p); err != nil {
		t.Fatalf("generated key does not load: %v", err)
	}
	if _, err := vault.GenerateKEKFile(p); err == nil {
		t.Fatal("overwrote a key file")
	}
}

// tokenBody is what follows "tok_": 26 characters of lower-case base32.
var tokenBody = regexp.MustCompile(`^[a-z2-7]{26}$`)

func TestTokensRevealNothing(t *testing.T) {
	s, err := bolt.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v := mustVault(t, s, testKEK(t))
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		info, err := v.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
		if err != nil {
			t.Fatal(err)
		}
		// No run of the card's first six digits (four, in 26 random base32
		// characters, come by chance once in about 250 runs of this test).
		// The property that matters is that no token can be taken for a card
		// number: a token is never numeric (so the design's "a numeric token
		// never passes Luhn" holds because there is none), which its alphabet
		// guarantees: base32 letters in every position a digit could take.
		tok := info.Token
		body, ok := strings.CutPrefix(tok, "tok_")
		if seen[tok] || !ok || !tokenBody.MatchString(body) || strings.Contains(tok, "424242") {
			t.Fatalf("token %s", tok)
		}
		if _, err := card.ParsePAN(body); err == nil || !strings.ContainsAny(body, "abcdefghijklmnopqrstuvwxyz") {
			t.Fatalf("token %s reads as a card number", tok)
		}
		seen[tok] = true
	}
	a, _ := v.Tokenize(ctx, "mer_a", testCard(t, "4242424242424242"))
	b, _ := v.Tokenize(ctx, "mer_b", testCard(t, "4242424242424242"))
	if a.Fingerprint == b.Fingerprint {
		t.Fatal("fingerprints link merchants")
	}
}
