package vault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/store"
)

// The keyring is one store record: the data-encrypting keys (DEKs), each
// wrapped by the KEK, in sequential versions; the newest is active. It is
// changed copy-on-write with a compare-and-set, so replicas agree.
var keyringKey = store.K("keyring", "main")

type keyringDoc struct {
	KEKID          string       `json:"kek_id"`
	FingerprintKey []byte       `json:"fingerprint_key"` // wrapped; never rotates, so fingerprints stay stable
	Versions       []keyVersion `json:"versions"`
}

type keyVersion struct {
	Version uint32    `json:"version"`
	Wrapped []byte    `json:"wrapped"`
	Created time.Time `json:"created"`
}

// ring is the keyring opened under the KEK.
type ring struct {
	storeVersion int64
	doc          keyringDoc
	aeads        map[uint32]cipher.AEAD
	active       uint32
	fpKey        []byte
}

// ErrWrongKEK means the master key does not open the keyring in the store.
var ErrWrongKEK = apperr.E(apperr.Internal, "the master key does not open the keyring in this store: wrong --master-key-file?")

func dekAD(v uint32) []byte { return fmt.Appendf(nil, "paypage/dek/v%d", v) }

var fpAD = []byte("paypage/fingerprint-key")

func newKey() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic("crypto/rand failed: " + err.Error()) // cannot happen on a working system
	}
	return k
}

func gcm(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("aes key length") // keys are always 32 bytes here
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return a
}

// loadRing reads the keyring, creating it with version 1 on a new store.
func loadRing(ctx context.Context, s store.Store, kek KEK, now time.Time) (*ring, error) {
	rec, err := s.Get(ctx, keyringKey)
	if errors.Is(err, store.ErrNotFound) {
		doc := keyringDoc{KEKID: kek.ID()}
		if doc.FingerprintKey, err = kek.Wrap(newKey(), fpAD); err != nil {
			return nil, err
		}
		w, err := kek.Wrap(newKey(), dekAD(1))
		if err != nil {
			return nil, err
		}
		doc.Versions = []keyVersion{{Version: 1, Wrapped: w, Created: now.UTC()}}
		b, _ := json.Marshal(doc)
		err = s.Commit(ctx, store.Create(keyringKey, b, 0))
		if err != nil && !errors.Is(err, store.ErrConflict) { // conflict: another replica made it first
			return nil, err
		}
		rec, err = s.Get(ctx, keyringKey)
		if err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return openRing(rec, kek)
}

func openRing(rec store.Record, kek KEK) (*ring, error) {
	var doc keyringDoc
	if err := json.Unmarshal(rec.Value, &doc); err != nil || len(doc.Versions) == 0 {
		return nil, apperr.E(apperr.Internal, "the keyring record in the store is corrupt")
	}
	r := &ring{storeVersion: rec.Version, doc: doc, aeads: map[uint32]cipher.AEAD{}}
	fp, err := kek.Unwrap(doc.FingerprintKey, fpAD)
	if err != nil {
		return nil, ErrWrongKEK
	}
	r.fpKey = fp
	for _, kv := range doc.Versions {
		k, err := kek.Unwrap(kv.Wrapped, dekAD(kv.Version))
		if err != nil {
			return nil, ErrWrongKEK
		}
		r.aeads[kv.Version] = gcm(k)
		clear(k)
		r.active = max(r.active, kv.Version)
	}
	return r, nil
}

// Sealed data layout: format (1 byte) | key version (4 bytes, big endian) | nonce | AEAD output.
const formatV1 = 1

// ErrCorrupt means a ciphertext does not open: damaged, moved to another
// record, or sealed under a key this keyring lacks.
var ErrCorrupt = apperr.E(apperr.Internal, "sealed data does not open: corrupt, moved, or under an unknown key")

func (r *ring) seal(plain, ad []byte) []byte {
	a := r.aeads[r.active]
	out := make([]byte, 5, 5+a.NonceSize()+len(plain)+a.Overhead())
	out[0] = formatV1
	binary.BigEndian.PutUint32(out[1:], r.active)
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	out = append(out, nonce...)
	return a.Seal(out, nonce, plain, ad)
}

// keyVersionOf returns the key version a ciphertext names.
func keyVersionOf(sealed []byte) (uint32, bool) {
	if len(sealed) < 5 || sealed[0] != formatV1 {
		return 0, false
	}
	return binary.BigEndian.Uint32(sealed[1:]), true
}

func (r *ring) open(sealed, ad []byte) ([]byte, error) {
	v, ok := keyVersionOf(sealed)
	a := r.aeads[v]
	if !ok || a == nil || len(sealed) < 5+a.NonceSize()+a.Overhead() {
		return nil, ErrCorrupt
	}
	n := a.NonceSize()
	p, err := a.Open(nil, sealed[5:5+n], sealed[5+n:], ad)
	if err != nil {
		return nil, ErrCorrupt
	}
	return p, nil
}
