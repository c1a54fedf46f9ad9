package vault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/store"
)

// The keyring is one store record: key terms in sequential versions, each a
// data-encrypting key (DEK), a fingerprint key and a CSRF key, all wrapped by
// the KEK; the newest is active. It is changed copy-on-write with a
// compare-and-set, so replicas agree. Beside it, in the same group (so one
// commit changes both), a small head record that every change rewrites:
// replicas poll the head, not the ring, to notice a rotation.
var (
	keyringKey = store.K("keyring", "main")
	headKey    = store.Key{Kind: "keyring", ID: "head", Group: "main"}
)

type keyringDoc struct {
	KEKID string `json:"kek_id"`
	// FingerprintKey is the fingerprint key of keyrings made before keys
	// had terms: version 1's, when version 1 has none of its own.
	FingerprintKey []byte       `json:"fingerprint_key,omitempty"`
	Versions       []keyVersion `json:"versions"`
	Retired        []retired    `json:"retired,omitempty"`
}

type keyVersion struct {
	Version     uint32    `json:"version"`
	Wrapped     []byte    `json:"wrapped"`               // the data key
	Fingerprint []byte    `json:"fingerprint,omitempty"` // the fingerprint key (absent: version 1 of an old ring)
	CSRF        []byte    `json:"csrf,omitempty"`        // the CSRF key (absent: derived, version 1 of an old ring)
	Created     time.Time `json:"created"`
}

// retired records a version whose keys were destroyed. When the version was
// the one before the active one, its CSRF key alone is kept (wrapped) until
// CSRFUntil, so that forms opened before the rotation still post within
// CSRFGrace; it seals and recognises nothing.
type retired struct {
	Version   uint32    `json:"version"`
	At        time.Time `json:"at"`
	CSRF      []byte    `json:"csrf,omitempty"`
	CSRFUntil time.Time `json:"csrf_until,omitzero"`
}

// clone returns a deep enough copy to change Versions and Retired.
func (d keyringDoc) clone() keyringDoc {
	d.Versions = slices.Clone(d.Versions)
	d.Retired = slices.Clone(d.Retired)
	return d
}

// without returns a copy of the ring without version v, recorded as retired
// at now. Like OpenBao's Keyring.RemoveKey it never changes the receiver and
// refuses the active version. The fingerprint key of a ring made before keys
// had terms goes once no remaining version lacks its own, and CSRF keys
// kept past their grace go too.
func (d keyringDoc) without(v uint32, now time.Time) (keyringDoc, error) {
	i := slices.IndexFunc(d.Versions, func(kv keyVersion) bool { return kv.Version == v })
	if i < 0 {
		return d, apperr.E(apperr.NotFound, "key version %d is not in the keyring (retired already, or never made)", v)
	}
	if v == d.active() {
		return d, apperr.E(apperr.Conflict, "key version %d is the active one: rotate first", v)
	}
	out := d.clone()
	out.Versions = slices.Delete(out.Versions, i, i+1)
	out.Retired = append(out.Retired, retired{Version: v, At: now.UTC()})
	if !slices.ContainsFunc(out.Versions, func(kv keyVersion) bool { return kv.Fingerprint == nil }) {
		out.FingerprintKey = nil
	}
	out.dropExpiredCSRF(now)
	return out, nil
}

// dropExpiredCSRF forgets the CSRF keys of retired versions whose grace ended.
func (d *keyringDoc) dropExpiredCSRF(now time.Time) {
	for i, rt := range d.Retired {
		if rt.CSRF != nil && !now.Before(rt.CSRFUntil) {
			d.Retired[i].CSRF, d.Retired[i].CSRFUntil = nil, time.Time{}
		}
	}
}

// previous is the version made right before the active one, live or
// retired (0: none): the one whose CSRF key has a grace.
func (d keyringDoc) previous() uint32 {
	var p uint32
	a := d.active()
	for _, kv := range d.Versions {
		if kv.Version < a {
			p = max(p, kv.Version)
		}
	}
	for _, rt := range d.Retired {
		if rt.Version < a {
			p = max(p, rt.Version)
		}
	}
	return p
}

func (d keyringDoc) active() uint32 {
	var a uint32
	for _, kv := range d.Versions {
		a = max(a, kv.Version)
	}
	return a
}

// next is the version a rotation adds: never one used before, retired or not.
func (d keyringDoc) next() uint32 {
	n := d.active()
	for _, r := range d.Retired {
		n = max(n, r.Version)
	}
	return n + 1
}

// term is one key version opened under the KEK.
type term struct {
	version uint32
	aead    cipher.AEAD
	fp      []byte // fingerprint key
	csrf    []byte
	created time.Time
}

// ring is the keyring opened under the KEK. It never changes once opened:
// a rotation or a retirement opens a new one. Every use holds it (hold,
// release), and a ring replaced or sealed away is wiped when its last user
// lets go, so no request ever finds its keys cleared under it.
type ring struct {
	storeVersion int64
	doc          keyringDoc
	terms        map[uint32]*term
	active       uint32
	oldest       uint32 // the oldest live version: fingerprints are made under it
	// graceCSRF is the CSRF key of the version before the active one, when
	// that version is retired and its key kept for its grace (nil: none).
	graceCSRF []byte

	mu      sync.Mutex
	users   int
	dropped bool
	wiped   bool
}

// hold marks one more user of the ring. The vault calls it under its lock,
// while the ring is still the one in use.
func (r *ring) hold() {
	r.mu.Lock()
	r.users++
	r.mu.Unlock()
}

// release lets go of the ring; the last user of a dropped ring wipes it.
func (r *ring) release() {
	r.mu.Lock()
	r.users--
	last := r.dropped && r.users == 0
	r.mu.Unlock()
	if last {
		r.wipe()
	}
}

// drop marks the ring replaced (or the vault sealed): it is wiped at once
// when nobody holds it, or by its last user.
func (r *ring) drop() {
	r.mu.Lock()
	r.dropped = true
	last := r.users == 0
	r.mu.Unlock()
	if last {
		r.wipe()
	}
}

// wipe clears the key bytes the ring holds. (The AES key schedules inside
// the AEADs are out of reach; dropping the ring leaves them to the collector.)
func (r *ring) wipe() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.terms {
		clear(t.fp)
		clear(t.csrf)
		t.aead = nil
	}
	clear(r.graceCSRF)
	clear(r.terms)
	r.wiped = true
}

// ErrWrongKEK means the master key does not open the keyring in the store.
var ErrWrongKEK = apperr.E(apperr.Internal, "the master key does not open the keyring in this store: wrong --master-key-file?")

func dekAD(v uint32) []byte  { return fmt.Appendf(nil, "paypage/dek/v%d", v) }
func fpkAD(v uint32) []byte  { return fmt.Appendf(nil, "paypage/fingerprint-key/v%d", v) }
func csrfAD(v uint32) []byte { return fmt.Appendf(nil, "paypage/csrf-key/v%d", v) }

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

// newVersion makes a key term: three fresh keys wrapped under kek.
func newVersion(kek KEK, v uint32, now time.Time) (keyVersion, error) {
	kv := keyVersion{Version: v, Created: now.UTC()}
	for _, k := range []struct {
		into *[]byte
		ad   []byte
	}{{&kv.Wrapped, dekAD(v)}, {&kv.Fingerprint, fpkAD(v)}, {&kv.CSRF, csrfAD(v)}} {
		key := newKey()
		w, err := kek.Wrap(key, k.ad)
		clear(key)
		if err != nil {
			return kv, err
		}
		*k.into = w
	}
	return kv, nil
}

// loadRing reads the keyring, creating it with version 1 on a new store.
func loadRing(ctx context.Context, s store.Store, kek KEK, now time.Time) (*ring, error) {
	rec, err := s.Get(ctx, keyringKey)
	if errors.Is(err, store.ErrNotFound) {
		kv, err := newVersion(kek, 1, now)
		if err != nil {
			return nil, err
		}
		doc := keyringDoc{KEKID: kek.ID(), Versions: []keyVersion{kv}}
		err = s.Commit(ctx, doc.ops(0)...)
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
	return openRing(rec, kek, now)
}

// ops writes the keyring over the version it was read at (0: new), and
// rewrites the head so that polling replicas notice.
func (d keyringDoc) ops(at int64) []store.Op {
	b, _ := json.Marshal(d)
	head, _ := json.Marshal(map[string]uint32{"active": d.active()})
	return []store.Op{
		{Key: keyringKey, Value: b, IfVersion: at},
		store.Put(headKey, head),
	}
}

// openRing opens every key of the keyring record under kek (at now: a
// retired version's CSRF key only within its grace).
func openRing(rec store.Record, kek KEK, now time.Time) (*ring, error) {
	var doc keyringDoc
	if err := json.Unmarshal(rec.Value, &doc); err != nil || len(doc.Versions) == 0 {
		return nil, apperr.E(apperr.Internal, "the keyring record in the store is corrupt")
	}
	r := &ring{storeVersion: rec.Version, doc: doc, terms: map[uint32]*term{}}
	unwrap := func(w, ad []byte) ([]byte, error) {
		k, err := kek.Unwrap(w, ad)
		if err != nil {
			r.wipe()
			return nil, ErrWrongKEK
		}
		return k, nil
	}
	for _, kv := range doc.Versions {
		t := &term{version: kv.Version, created: kv.Created}
		k, err := unwrap(kv.Wrapped, dekAD(kv.Version))
		if err != nil {
			return nil, err
		}
		t.aead = gcm(k)
		clear(k)
		if kv.Fingerprint != nil {
			t.fp, err = unwrap(kv.Fingerprint, fpkAD(kv.Version))
		} else {
			t.fp, err = unwrap(doc.FingerprintKey, fpAD)
		}
		if err != nil {
			return nil, err
		}
		if kv.CSRF != nil {
			if t.csrf, err = unwrap(kv.CSRF, csrfAD(kv.Version)); err != nil {
				return nil, err
			}
		} else { // what the first keyrings derived, so forms open at the upgrade keep working
			m := hmac.New(sha256.New, t.fp)
			m.Write([]byte("derive|csrf"))
			t.csrf = m.Sum(nil)
		}
		r.terms[kv.Version] = t
		r.active = max(r.active, kv.Version)
		if r.oldest == 0 || kv.Version < r.oldest {
			r.oldest = kv.Version
		}
	}
	for _, rt := range doc.Retired {
		if rt.Version == doc.previous() && rt.CSRF != nil && now.Before(rt.CSRFUntil) {
			k, err := unwrap(rt.CSRF, csrfAD(rt.Version))
			if err != nil {
				return nil, err
			}
			r.graceCSRF = k
		}
	}
	return r, nil
}

// carry returns a ring of doc made of the keys r holds already, for a
// keyring that keys rewrap wrapped under another master key: its versions
// are the same keys, so a replica that holds them goes on with them. False
// when doc has a version r lacks (a rotation since): that key needs the new
// master key.
func (r *ring) carry(doc keyringDoc, storeVersion int64, now time.Time) (*ring, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wiped {
		return nil, false
	}
	out := &ring{storeVersion: storeVersion, doc: doc, terms: map[uint32]*term{}}
	for _, kv := range doc.Versions {
		t := r.terms[kv.Version]
		if t == nil {
			return nil, false
		}
		out.terms[kv.Version] = &term{version: t.version, aead: t.aead, fp: slices.Clone(t.fp), csrf: slices.Clone(t.csrf), created: kv.Created}
		out.active = max(out.active, kv.Version)
		if out.oldest == 0 || kv.Version < out.oldest {
			out.oldest = kv.Version
		}
	}
	for _, rt := range doc.Retired {
		if rt.Version == doc.previous() && rt.CSRF != nil && now.Before(rt.CSRFUntil) {
			if t := r.terms[rt.Version]; t != nil {
				out.graceCSRF = slices.Clone(t.csrf)
			} else if r.graceCSRF != nil {
				out.graceCSRF = slices.Clone(r.graceCSRF)
			}
		}
	}
	return out, true
}

// Sealed data layout: format (1 byte) | key version (4 bytes, big endian) | nonce | AEAD output.
const formatV1 = 1

// ErrCorrupt means a ciphertext does not open: damaged, moved to another
// record, or sealed under a key this keyring lacks (a retired one, say).
var ErrCorrupt = apperr.E(apperr.Internal, "sealed data does not open: corrupt, moved, or under an unknown or retired key")

func (r *ring) seal(plain, ad []byte) []byte {
	a := r.terms[r.active].aead // the ring is held: never wiped under its user
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

// KeyVersionOf returns the key version a ciphertext names, for counting
// sealed values by version; false when it is not a ciphertext of ours.
func KeyVersionOf(sealed []byte) (uint32, bool) {
	if len(sealed) < 5 || sealed[0] != formatV1 {
		return 0, false
	}
	return binary.BigEndian.Uint32(sealed[1:]), true
}

func (r *ring) open(sealed, ad []byte) ([]byte, error) {
	v, ok := KeyVersionOf(sealed)
	t := r.terms[v]
	if !ok || t == nil || len(sealed) < 5+t.aead.NonceSize()+t.aead.Overhead() {
		return nil, ErrCorrupt
	}
	n := t.aead.NonceSize()
	p, err := t.aead.Open(nil, sealed[5:5+n], sealed[5+n:], ad)
	if err != nil {
		return nil, ErrCorrupt
	}
	return p, nil
}

// fingerprint is the keyed hash of s under version v's fingerprint key,
// named with its version: "fp_" + hex for version 1 (as the first keyrings
// made them), "fp_v<N>_" + hex after.
func (r *ring) fingerprint(v uint32, s string) string {
	m := hmac.New(sha256.New, r.terms[v].fp)
	m.Write([]byte(s))
	sum := fmt.Sprintf("%x", m.Sum(nil)[:12])
	if v == 1 {
		return "fp_" + sum
	}
	return fmt.Sprintf("fp_v%d_%s", v, sum)
}
