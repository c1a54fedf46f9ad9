package vault

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/cryptotest"

	"github.com/paypage/paypage/pkg/store/bolt"
	"github.com/paypage/paypage/pkg/store/memory"
)

func masterKey(t *testing.T) KEK {
	t.Helper()
	k, err := ParseKEK(strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testVault(t *testing.T) *Vault {
	t.Helper()
	v, err := Open(context.Background(), memory.New(), masterKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// keyBytes are the slices of key material a ring holds (what Go lets us clear).
func keyBytes(r *ring) [][]byte {
	var out [][]byte
	for _, t := range r.terms {
		out = append(out, t.fp, t.csrf)
	}
	return out
}

func allZero(keys [][]byte) bool {
	for _, k := range keys {
		if len(k) == 0 || !bytes.Equal(k, make([]byte, len(k))) {
			return false
		}
	}
	return true
}

// TestSealWipesKeyBytes (PCI DSS 3.6.1): paypage seal clears the bytes of
// every key the vault holds, at once when no request holds the ring, else
// when the last one lets go; a ring replaced by a reread (a rotation seen)
// is cleared the same way, so no copy outlives its use.
func TestSealWipesKeyBytes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v := testVault(t)
	r, err := v.acquire()
	if err != nil {
		t.Fatal(err)
	}
	keys := keyBytes(r)
	if len(keys) != 2 || allZero(keys) {
		t.Fatal("the ring holds no key bytes to clear")
	}
	v.Seal()
	if allZero(keys) {
		t.Fatal("a ring still held by a request was cleared under it")
	}
	if _, err := v.SealSecret("p", []byte("x")); err != ErrSealed {
		t.Fatalf("seal after paypage seal: %v", err)
	}
	r.release()
	if !allZero(keys) || len(r.terms) != 0 {
		t.Fatal("after seal and the last user, the key bytes are still there")
	}

	// A ring replaced by a reread is cleared too.
	if err := v.Unseal(ctx, masterKey(t)); err != nil {
		t.Fatal(err)
	}
	r, _ = v.acquire()
	old := keyBytes(r)
	r.release()
	other, err := Open(ctx, v.store, masterKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if changed, err := v.Refresh(ctx); err != nil || !changed {
		t.Fatalf("refresh: %v %v", changed, err)
	}
	if !allZero(old) {
		t.Fatal("the ring a reread replaced still holds its key bytes")
	}
}

// TestKeysComeFromCryptoRand (PCI DSS 3.7.1): data, fingerprint and CSRF
// keys, the master key's shares and tokens are drawn from crypto/rand, the
// operating system's generator: with its source fixed (cryptotest) they
// repeat exactly, and with another seed they differ. A key made any other
// way (math/rand, a clock, a constant) fails one or the other.
func TestKeysComeFromCryptoRand(t *testing.T) {
	draw := func(seed uint64) (keys [][]byte, dek, share, token string) {
		cryptotest.SetGlobalRandom(t, seed)
		v := testVault(t)
		r, _ := v.acquire()
		defer r.release()
		tm := r.terms[r.active]
		keys = [][]byte{bytes.Clone(tm.fp), bytes.Clone(tm.csrf)}
		dek = string(tm.aead.Seal(nil, make([]byte, tm.aead.NonceSize()), []byte("probe"), nil)) // same key, same output
		shares, err := SplitMasterKey(bytes.Repeat([]byte{7}, 32), 3, 2)
		if err != nil {
			t.Fatal(err)
		}
		return keys, dek, shares[0].Text, NewID("tok_")
	}
	k1, d1, s1, t1 := draw(1)
	k2, d2, s2, t2 := draw(1)
	k3, d3, s3, t3 := draw(2)
	for i := range k1 {
		if !bytes.Equal(k1[i], k2[i]) || bytes.Equal(k1[i], k3[i]) {
			t.Fatalf("key %d does not follow crypto/rand's source", i)
		}
	}
	if d1 != d2 || d1 == d3 {
		t.Fatal("the data key does not follow crypto/rand's source")
	}
	if s1 != s2 || s1 == s3 || t1 != t2 || t1 == t3 {
		t.Fatal("shares or tokens do not follow crypto/rand's source")
	}
}

// TestKeysStoredOnlyWrapped (PCI DSS 3.7.3): the store holds every data,
// fingerprint and CSRF key only wrapped under the master key: none of
// their bytes is in the bolt file.
func TestKeysStoredOnlyWrapped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "paypage.db")
	db, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	kek := masterKey(t)
	v, err := Open(ctx, db, kek)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	r, _ := v.acquire()
	defer r.release()
	var keys [][]byte
	for _, kv := range r.doc.Versions {
		dek, err := kek.Unwrap(kv.Wrapped, dekAD(kv.Version))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, dek, r.terms[kv.Version].fp, r.terms[kv.Version].csrf)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"versions"`)) {
		t.Fatal("the keyring is not in the file: the scan reads nothing")
	}
	for i, k := range keys {
		if len(k) != 32 || bytes.Contains(raw, k) || bytes.Contains(raw, []byte(base64.StdEncoding.EncodeToString(k))) {
			t.Fatalf("key %d of the ring is in the store in clear", i)
		}
	}
}

// TestSubstitutedKeysDoNotOpen (PCI DSS 3.7.7): each wrapped key is bound
// to its version and purpose, so a data key moved to another version, or
// a fingerprint key put in a data key's place, does not unwrap: the
// keyring refuses to open instead of using it.
func TestSubstitutedKeysDoNotOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for name, swap := range map[string]func(d *keyringDoc){
		"DataKeysOfTwoVersions": func(d *keyringDoc) {
			d.Versions[0].Wrapped, d.Versions[1].Wrapped = d.Versions[1].Wrapped, d.Versions[0].Wrapped
		},
		"FingerprintKeyAsDataKey": func(d *keyringDoc) { d.Versions[1].Wrapped = d.Versions[1].Fingerprint },
		"CSRFKeyOfAnotherVersion": func(d *keyringDoc) { d.Versions[1].CSRF = d.Versions[0].CSRF },
	} {
		t.Run(name, func(t *testing.T) {
			s := memory.New()
			v, err := Open(ctx, s, masterKey(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
			rec, _ := s.Get(ctx, keyringKey)
			var doc keyringDoc
			if err := json.Unmarshal(rec.Value, &doc); err != nil {
				t.Fatal(err)
			}
			swap(&doc)
			if err := s.Commit(ctx, doc.ops(rec.Version)...); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(ctx, s, masterKey(t)); !errors.Is(err, ErrWrongKEK) {
				t.Fatalf("a keyring with a substituted key opened: %v", err)
			}
		})
	}
}
