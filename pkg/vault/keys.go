package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/store"
)

// Kind is a kind of store record that holds values the vault sealed: keys
// status counts its records per key version, keys reencrypt moves them, and
// keys retire refuses a version one of them still uses. The package that
// owns the record describes it; the operator commands walk every Kind with
// Store.Scan (nothing on a timer does).
type Kind struct {
	Name      string   // as keys status shows it: "cards", "cvv_holds", "webhook_secrets", ...
	StoreKind string   // the store kind its records live under
	Seals     []string // the seal kinds (KindCard, ...) its values are sealed as
	// Versions returns the key versions a record's values use.
	Versions func(value []byte) ([]uint32, error)
	// Key names a record by its ID; nil: store.K(StoreKind, id).
	Key func(id string) store.Key
	// Reseal returns the record with every sealed value moved under the
	// active key through move (which leaves a value already there as it
	// is). Nil for a kind that expires instead of moving.
	Reseal func(ctx context.Context, id string, value []byte, move Mover) ([]byte, error)
	// Outdated reports a record that Reseal must rewrite even when its
	// versions are current (a card record of an older layout). Nil: none.
	Outdated func(value []byte) bool
}

// Mover re-seals one sealed value of a seal kind under the active key; a
// value already under it comes back unchanged.
type Mover func(kind, bind string, sealed []byte) ([]byte, error)

// CVVHolds is the Kind of held security codes (SealHeld with KindCVV, stored
// raw under the store kind "cvv"). They are not moved: a hold lives minutes
// (its TTL), so a retirement waits for the old ones to expire.
func CVVHolds() Kind { return held("cvv_holds", KindCVV) }

// AuthHolds is the Kind of held 3-D Secure authentication values (SealHeld
// with KindAuth, stored raw under "auth"), which live as long as a CVV hold
// and expire likewise.
func AuthHolds() Kind { return held("auth_holds", KindAuth) }

// held is the Kind of raw sealed values stored under the seal kind's name.
func held(name, kind string) Kind {
	return Kind{
		Name: name, StoreKind: kind, Seals: []string{kind},
		Versions: func(value []byte) ([]uint32, error) {
			if kv, ok := KeyVersionOf(value); ok {
				return []uint32{kv}, nil
			}
			return nil, ErrCorrupt
		},
	}
}

// Cards is the Kind of card records. A card uses its data key version (the
// sealed PAN) and its fingerprint key version (under which it is recognised
// again); moving it re-seals the PAN and writes an alias of its fingerprint
// under the active fingerprint key, so the same card at the same shop keeps
// its first fingerprint after the old key is retired. A record written
// before the BIN rule (no fp_version, a BIN kept) is rewritten even when
// current, its BIN made again from the opened number.
func (v *Vault) Cards() Kind {
	return Kind{
		Name: "cards", StoreKind: "card", Seals: []string{KindCard}, Key: cardKey,
		Versions: func(value []byte) ([]uint32, error) {
			var rec record
			if err := json.Unmarshal(value, &rec); err != nil {
				return nil, ErrCorrupt
			}
			return []uint32{rec.KeyVersion, rec.fpVersion()}, nil
		},
		Reseal: v.moveCard,
		Outdated: func(value []byte) bool {
			var rec record
			return json.Unmarshal(value, &rec) == nil && rec.FPVersion == 0 && rec.BIN != ""
		},
	}
}

// moveCard opens a card record's number, keeps in clear only the leading
// digits card.Mask shows for its length, writes the alias of its
// fingerprint under the active fingerprint key when it lacks one, and
// re-seals it under the active data key.
func (v *Vault) moveCard(ctx context.Context, _ string, value []byte, move Mover) ([]byte, error) {
	var rec record
	if err := json.Unmarshal(value, &rec); err != nil {
		return nil, ErrCorrupt
	}
	r, err := v.acquire()
	if err != nil {
		return nil, err
	}
	defer r.release()
	bind := cardBind(rec.Merchant, rec.Token)
	plain, err := v.OpenValue(ctx, KindCard, bind, rec.Sealed)
	if err != nil {
		return nil, err
	}
	var s secret
	err = json.Unmarshal(plain, &s)
	clear(plain)
	if err != nil {
		return nil, ErrCorrupt
	}
	pan, err := card.ParsePAN(s.PAN)
	if err != nil {
		return nil, ErrCorrupt
	}
	rec.BIN = pan.BIN()
	if rec.fpVersion() != r.active {
		alias := fingerprintKey(r.fingerprint(r.active, "merchant|"+rec.Merchant+"|"+pan.Digits()))
		err = v.store.Commit(ctx, store.Create(alias, []byte(rec.Fingerprint), 0))
		if err != nil && !errors.Is(err, store.ErrConflict) { // conflict: another token of the card made it
			return nil, err
		}
	}
	rec.FPVersion = r.active
	s.PAN = ""
	if rec.Sealed, err = move(KindCard, bind, rec.Sealed); err != nil {
		return nil, err
	}
	if kv, _ := KeyVersionOf(rec.Sealed); kv != 0 {
		rec.KeyVersion = kv
	}
	b, _ := json.Marshal(rec)
	return b, nil
}

// KeyStatus describes one data key version.
type KeyStatus struct {
	Version uint32    `json:"version"`
	Created time.Time `json:"created"`
	Active  bool      `json:"active"`
	// Seals is how many values the key has sealed, as counted in blocks
	// (so up to a block per replica above the truth); SealKinds what kinds.
	Seals     uint64   `json:"seals"`
	SealKinds []string `json:"seal_kinds"`
	// Records counts, per Kind, the records that still use this version.
	Records map[string]int `json:"records"`
	// InUse is the sum of Records: a version can be retired at 0.
	InUse int `json:"in_use"`
}

// RetiredStatus is a version whose keys were destroyed.
type RetiredStatus struct {
	Version uint32    `json:"version"`
	At      time.Time `json:"retired_at"`
	// CSRFUntil is when its CSRF key, kept for forms opened before the
	// rotation, goes too (zero: gone).
	CSRFUntil time.Time `json:"csrf_kept_until,omitzero"`
}

// Status is the keyring's state, for `paypage keys status`.
type Status struct {
	KEK        string          `json:"kek"`
	Active     uint32          `json:"active_version"`
	SealBudget uint64          `json:"seal_budget"`
	Versions   []KeyStatus     `json:"versions"`
	Retired    []RetiredStatus `json:"retired,omitempty"`
	// Records counts every record of each Kind.
	Records map[string]int `json:"records"`
	// Replicas are the serving replicas and the master key each holds.
	Replicas []Holder `json:"replicas"`
}

// Status counts, for each key version, the records of every kind that use it.
func (v *Vault) Status(ctx context.Context, kinds ...Kind) (Status, error) {
	r, err := v.reload(ctx)
	if err != nil {
		return Status{}, err
	}
	defer r.release()
	use, totals, err := v.usage(ctx, kinds)
	if err != nil {
		return Status{}, err
	}
	seals, _, err := v.readSeals(ctx)
	if err != nil {
		return Status{}, err
	}
	s := Status{KEK: r.doc.KEKID, Active: r.active, SealBudget: v.opts.SealBudget, Records: totals}
	for _, kv := range r.doc.Versions {
		ks := KeyStatus{Version: kv.Version, Created: kv.Created, Active: kv.Version == r.active, Records: map[string]int{}}
		for _, k := range kinds {
			ks.Records[k.Name] = use[kv.Version][k.Name]
			ks.InUse += ks.Records[k.Name]
		}
		ks.SealKinds = legacyKinds
		if u := seals.Versions[kv.Version]; u != nil {
			ks.Seals, ks.SealKinds = u.Count, u.Kinds
		}
		s.Versions = append(s.Versions, ks)
	}
	sort.Slice(s.Versions, func(i, j int) bool { return s.Versions[i].Version < s.Versions[j].Version })
	for _, rt := range r.doc.Retired {
		rs := RetiredStatus{Version: rt.Version, At: rt.At}
		if rt.CSRF != nil && v.Now().Before(rt.CSRFUntil) {
			rs.CSRFUntil = rt.CSRFUntil
		}
		s.Retired = append(s.Retired, rs)
	}
	if s.Replicas, err = v.Holders(ctx); err != nil {
		return Status{}, err
	}
	return s, nil
}

// usage scans every kind and counts its records per key version.
func (v *Vault) usage(ctx context.Context, kinds []Kind) (map[uint32]map[string]int, map[string]int, error) {
	use := map[uint32]map[string]int{}
	totals := map[string]int{}
	for _, k := range kinds {
		totals[k.Name] = 0
		err := v.store.Scan(ctx, k.StoreKind, func(id string, rec store.Record) error {
			vs, err := k.Versions(rec.Value)
			if err != nil {
				return fmt.Errorf("%s %s: %w", k.Name, id, err)
			}
			totals[k.Name]++
			slices.Sort(vs)
			for _, kv := range slices.Compact(vs) {
				if use[kv] == nil {
					use[kv] = map[string]int{}
				}
				use[kv][k.Name]++
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	return use, totals, nil
}

// Rotate adds a new key version (data, fingerprint and CSRF keys) and makes
// it active. Records sealed under older versions still open; Reencrypt moves
// them forward, and every replica seals under the new key once it rereads
// the keyring's head (Watch).
func (v *Vault) Rotate(ctx context.Context) (uint32, error) {
	next, _, err := v.rotateFrom(ctx, 0)
	return next, err
}

// rotateFrom rotates when the active version is from (0: whatever it is);
// it reports false when another process rotated away from it first. It
// refuses while a serving replica holds another master key than the
// keyring's (keys rewrap, not yet given to it): that replica could not open
// the new version and would stop sealing.
func (v *Vault) rotateFrom(ctx context.Context, from uint32) (uint32, bool, error) {
	for {
		next, rotated, err := v.rotateOnce(ctx, from)
		if errors.Is(err, store.ErrConflict) {
			continue // the ring changed meanwhile: take the new one and go again
		}
		return next, rotated, err
	}
}

func (v *Vault) rotateOnce(ctx context.Context, from uint32) (uint32, bool, error) {
	r, err := v.reload(ctx)
	if err != nil {
		return 0, false, err
	}
	defer r.release()
	if from != 0 && r.active != from {
		return r.active, false, nil
	}
	kek, err := v.wrapping(r)
	if err != nil {
		return 0, false, err
	}
	if err := v.refuseStrayHolders(ctx, r.doc.KEKID); err != nil {
		return 0, false, err
	}
	next := r.doc.next()
	kv, err := newVersion(kek, next, v.Now())
	if err != nil {
		return 0, false, err
	}
	doc := r.doc.clone()
	doc.Versions = append(doc.Versions, kv)
	doc.dropExpiredCSRF(v.Now())
	if err := v.store.Commit(ctx, doc.ops(r.storeVersion)...); err != nil {
		return 0, false, err
	}
	nr, err := v.reload(ctx)
	if err != nil {
		return 0, false, err
	}
	nr.release()
	return next, true, nil
}

// ReencryptResult counts what Reencrypt did.
type ReencryptResult struct {
	Moved   int `json:"moved"`   // re-sealed under the active key
	Current int `json:"current"` // already under it
	// Expiring counts records of kinds that are not moved (CVV holds) still
	// under an older key: they end with their time to live.
	Expiring int `json:"expiring"`
}

// Reencrypt moves every record of every kind that uses an older key version
// to the active one. Each record moves in its own compare-and-set, so the
// work can be interrupted and run again: it resumes where records are still old.
func (v *Vault) Reencrypt(ctx context.Context, kinds ...Kind) (ReencryptResult, error) {
	var res ReencryptResult
	r, err := v.reload(ctx)
	if err != nil {
		return res, err
	}
	defer r.release()
	move := func(kind, bind string, sealed []byte) ([]byte, error) {
		if kv, _ := KeyVersionOf(sealed); kv == r.active {
			return sealed, nil
		}
		plain, err := v.OpenValue(ctx, kind, bind, sealed)
		if err != nil {
			return nil, err
		}
		defer clear(plain)
		return v.SealValue(kind, bind, plain)
	}
	for _, k := range kinds {
		err := v.store.Scan(ctx, k.StoreKind, func(id string, st store.Record) error {
			vs, err := k.Versions(st.Value)
			if err != nil {
				return fmt.Errorf("%s %s: %w", k.Name, id, err)
			}
			outdated := k.Outdated != nil && k.Outdated(st.Value)
			if !outdated && !slices.ContainsFunc(vs, func(kv uint32) bool { return kv != r.active }) {
				res.Current++
				return nil
			}
			if k.Reseal == nil {
				res.Expiring++
				return nil
			}
			var ttl time.Duration // what is left of the record's time to live; 0: none
			if !st.ExpiresAt.IsZero() {
				if ttl = st.ExpiresAt.Sub(v.Now()); ttl < time.Millisecond {
					res.Expiring++ // past its time: it goes, not moves
					return nil
				}
			}
			b, err := k.Reseal(ctx, id, st.Value, move)
			if err != nil {
				return fmt.Errorf("%s %s: %w", k.Name, id, err)
			}
			if bytes.Equal(b, st.Value) {
				res.Current++
				return nil
			}
			key := store.K(k.StoreKind, id)
			if k.Key != nil {
				key = k.Key(id)
			}
			err = v.store.Commit(ctx, store.Op{Key: key, Value: b, IfVersion: st.Version, TTL: ttl})
			if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
				return nil // changed or gone meanwhile; a later run takes it
			}
			if err != nil {
				return err
			}
			res.Moved++
			if v.OnReencrypt != nil {
				v.OnReencrypt()
			}
			return nil
		})
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// RetireSettle is how long keys retire waits, on its own clock, after it
// first saw the keyring's latest change before it checks that nothing uses
// the version, and again before it destroys it. A replica seals only under
// a ring it confirmed within SealFresh (5 s, shorter), so by the first check
// none still seals under the version before; the second lets seals made
// before then reach the store, where the second check counts them.
const RetireSettle = 10 * time.Second

// errAgain makes Retire look again at a keyring that changed.
var errAgain = errors.New("again")

// Retire destroys key version n: its wrapped data and fingerprint keys
// leave the keyring, so nothing sealed under it opens again (its CSRF key,
// which seals nothing, stays until CSRFGrace after the rotation when n was
// the version before the active one, so forms opened before it still post).
// It refuses the active version, a version that sealed a kind none of kinds
// counts, and a version any record of kinds still uses (run Reencrypt; CVV
// holds expire). It waits RetireSettle after this process saw the latest
// change of the ring, checks, waits RetireSettle again and checks again
// before the change.
func (v *Vault) Retire(ctx context.Context, n uint32, kinds ...Kind) error {
	for {
		err := v.retireOnce(ctx, n, kinds)
		if !errors.Is(err, errAgain) && !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
}

func (v *Vault) retireOnce(ctx context.Context, n uint32, kinds []Kind) error {
	r, err := v.reload(ctx)
	if err != nil {
		return err
	}
	defer r.release()
	if _, err := r.doc.without(n, v.Now()); err != nil {
		return err
	}
	if err := v.covered(ctx, n, kinds); err != nil {
		return err
	}
	v.mu.RLock()
	wait := RetireSettle - max(0, v.Now().Sub(v.seen))
	v.mu.RUnlock()
	if wait > 0 {
		if err := v.settle(ctx, r, wait); err != nil {
			return err
		}
	}
	if err := v.unused(ctx, n, kinds); err != nil {
		return err
	}
	if err := v.settle(ctx, r, RetireSettle); err != nil {
		return err
	}
	if err := v.unused(ctx, n, kinds); err != nil {
		return err
	}
	now := v.Now()
	doc, err := r.doc.without(n, now)
	if err != nil {
		return err
	}
	if a := r.terms[r.active]; n == r.doc.previous() && now.Sub(a.created) < CSRFGrace {
		if err := v.keepCSRF(&doc, r, n, a.created.Add(CSRFGrace)); err != nil {
			return err
		}
	}
	if err := v.store.Commit(ctx, doc.ops(r.storeVersion)...); err != nil {
		return err
	}
	nr, err := v.reload(ctx)
	if err != nil {
		return err
	}
	nr.release()
	return nil
}

// settle waits d, then answers errAgain when the keyring changed from r
// meanwhile (a rotation: the wait starts over).
func (v *Vault) settle(ctx context.Context, r *ring, d time.Duration) error {
	if err := v.Sleep(ctx, d); err != nil {
		return err
	}
	again, err := v.reload(ctx)
	if err != nil {
		return err
	}
	defer again.release()
	if again.storeVersion != r.storeVersion {
		return errAgain
	}
	return nil
}

// keepCSRF keeps a retired version's CSRF key in its retired entry, wrapped
// anew (a ring of old may only derive it), until until.
func (v *Vault) keepCSRF(doc *keyringDoc, r *ring, n uint32, until time.Time) error {
	kek, err := v.wrapping(r)
	if err != nil {
		return err
	}
	t := r.terms[n]
	w, err := kek.Wrap(t.csrf, csrfAD(t.version))
	if err != nil {
		return err
	}
	rt := &doc.Retired[len(doc.Retired)-1]
	rt.CSRF, rt.CSRFUntil = w, until.UTC()
	return nil
}

// unused refuses while any record of kinds uses version n.
func (v *Vault) unused(ctx context.Context, n uint32, kinds []Kind) error {
	use, _, err := v.usage(ctx, kinds)
	if err != nil {
		return err
	}
	u := use[n]
	if len(u) == 0 {
		return nil
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(u)) {
		parts = append(parts, fmt.Sprintf("%d %s", u[name], name))
	}
	return apperr.E(apperr.Conflict, "key version %d is still used by %s: run keys reencrypt (CVV holds expire within minutes) and retry",
		n, strings.Join(parts, ", "))
}

// covered checks that kinds count every kind of value version n sealed.
func (v *Vault) covered(ctx context.Context, n uint32, kinds []Kind) error {
	seals, _, err := v.readSeals(ctx)
	if err != nil {
		return err
	}
	sealed := legacyKinds
	if u := seals.Versions[n]; u != nil {
		sealed = u.Kinds
	}
	for _, s := range sealed {
		if !slices.ContainsFunc(kinds, func(k Kind) bool { return slices.Contains(k.Seals, s) }) {
			return apperr.E(apperr.Conflict, "key version %d sealed values of kind %q that nothing counts: cannot prove it unused", n, s)
		}
	}
	return nil
}

// Rewrap re-wraps every key under a new KEK (the master key's own
// rotation). Records are not touched: their keys stay the same. Afterwards
// only the new KEK opens the keyring. A serving replica still on the old
// one goes on with the keys it holds, picks up the new one by itself when
// its key file now holds it (Options.ReloadKEK), and keys rotate refuses
// until every serving replica holds the new key (Announce).
func (v *Vault) Rewrap(ctx context.Context, next KEK) error {
	for {
		err := v.rewrapOnce(ctx, next)
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
}

func (v *Vault) rewrapOnce(ctx context.Context, next KEK) error {
	r, err := v.reload(ctx)
	if err != nil {
		return err
	}
	defer r.release()
	kek, err := v.wrapping(r)
	if err != nil {
		return err
	}
	doc := r.doc.clone()
	doc.KEKID = next.ID()
	doc.dropExpiredCSRF(v.Now())
	rewrap := func(w, oldAD, newAD []byte) ([]byte, error) {
		if w == nil {
			return nil, nil
		}
		plain, err := kek.Unwrap(w, oldAD)
		if err != nil {
			return nil, ErrWrongKEK
		}
		defer clear(plain)
		return next.Wrap(plain, newAD)
	}
	if doc.FingerprintKey, err = rewrap(doc.FingerprintKey, fpAD, fpAD); err != nil {
		return err
	}
	for i, kv := range doc.Versions {
		for _, k := range []struct {
			w  *[]byte
			ad []byte
		}{{&kv.Wrapped, dekAD(kv.Version)}, {&kv.Fingerprint, fpkAD(kv.Version)}, {&kv.CSRF, csrfAD(kv.Version)}} {
			if *k.w, err = rewrap(*k.w, k.ad, k.ad); err != nil {
				return err
			}
		}
		doc.Versions[i] = kv
	}
	for i, rt := range doc.Retired {
		if doc.Retired[i].CSRF, err = rewrap(rt.CSRF, csrfAD(rt.Version), csrfAD(rt.Version)); err != nil {
			return err
		}
	}
	if err := v.store.Commit(ctx, doc.ops(r.storeVersion)...); err != nil {
		return err
	}
	v.mu.Lock()
	v.kek = next
	v.mu.Unlock()
	nr, err := v.reload(ctx)
	if err != nil {
		return err
	}
	nr.release()
	v.announce(ctx)
	return nil
}
