package vault

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"time"

	"github.com/paypage/paypage/pkg/store"
)

// KeyStatus describes one data key version.
type KeyStatus struct {
	Version uint32    `json:"version"`
	Created time.Time `json:"created"`
	Active  bool      `json:"active"`
	Records int       `json:"records"` // card records sealed under it
}

// Status is the keyring's state, for `paypage keys status`.
type Status struct {
	KEK      string      `json:"kek"`
	Active   uint32      `json:"active_version"`
	Versions []KeyStatus `json:"versions"`
	Records  int         `json:"records"`
}

// Status counts card records by key version.
func (v *Vault) Status(ctx context.Context) (Status, error) {
	r, err := v.reload(ctx)
	if err != nil {
		return Status{}, err
	}
	counts := map[uint32]int{}
	total := 0
	err = v.store.Scan(ctx, "card", func(_ string, rec store.Record) error {
		var c record
		if json.Unmarshal(rec.Value, &c) == nil {
			counts[c.KeyVersion]++
			total++
		}
		return nil
	})
	if err != nil {
		return Status{}, err
	}
	s := Status{KEK: r.doc.KEKID, Active: r.active, Records: total}
	for _, kv := range r.doc.Versions {
		s.Versions = append(s.Versions, KeyStatus{Version: kv.Version, Created: kv.Created, Active: kv.Version == r.active, Records: counts[kv.Version]})
	}
	sort.Slice(s.Versions, func(i, j int) bool { return s.Versions[i].Version < s.Versions[j].Version })
	return s, nil
}

// Rotate adds a new data key version and makes it active. Records sealed
// under older versions still open; Reencrypt moves them forward.
func (v *Vault) Rotate(ctx context.Context) (uint32, error) {
	for {
		r, err := v.reload(ctx)
		if err != nil {
			return 0, err
		}
		next := r.active + 1
		v.mu.RLock()
		kek := v.kek
		v.mu.RUnlock()
		w, err := kek.Wrap(newKey(), dekAD(next))
		if err != nil {
			return 0, err
		}
		doc := r.doc
		doc.Versions = append(append([]keyVersion(nil), doc.Versions...), keyVersion{Version: next, Wrapped: w, Created: v.Now().UTC()})
		b, _ := json.Marshal(doc)
		err = v.store.Commit(ctx, store.Update(keyringKey, b, r.storeVersion))
		if errors.Is(err, store.ErrConflict) {
			continue // another replica rotated at the same time: take its ring and go again
		}
		if err != nil {
			return 0, err
		}
		if _, err := v.reload(ctx); err != nil {
			return 0, err
		}
		return next, nil
	}
}

// ReencryptResult counts what Reencrypt did.
type ReencryptResult struct {
	Moved   int `json:"moved"`   // re-sealed under the active key
	Current int `json:"current"` // already under it
}

// Reencrypt re-seals every card record that is under an older key version
// with the active one. Each record moves in its own compare-and-set, so the
// work can be interrupted and run again: it resumes where records are still old.
func (v *Vault) Reencrypt(ctx context.Context) (ReencryptResult, error) {
	var res ReencryptResult
	r, err := v.reload(ctx)
	if err != nil {
		return res, err
	}
	err = v.store.Scan(ctx, "card", func(token string, st store.Record) error {
		var rec record
		if err := json.Unmarshal(st.Value, &rec); err != nil {
			return ErrCorrupt
		}
		if rec.KeyVersion == r.active {
			res.Current++
			return nil
		}
		ad := cardAD(rec.Merchant, rec.Token)
		plain, err := r.open(rec.Sealed, ad)
		if err != nil {
			return err
		}
		rec.Sealed, rec.KeyVersion = r.seal(plain, ad), r.active
		clear(plain)
		b, _ := json.Marshal(rec)
		err = v.store.Commit(ctx, store.Update(cardKey(token), b, st.Version))
		if errors.Is(err, store.ErrConflict) {
			return nil // changed meanwhile; a later run takes it
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
	return res, err
}

// Rewrap re-wraps every data key and the fingerprint key under a new KEK
// (the master key's own rotation). Records are not touched: their data keys
// stay the same. Afterwards only the new KEK opens the keyring, so every
// replica must be restarted with it; until then they keep working on the
// keys they hold in memory.
func (v *Vault) Rewrap(ctx context.Context, next KEK) error {
	for {
		r, err := v.reload(ctx)
		if err != nil {
			return err
		}
		doc := keyringDoc{KEKID: next.ID()}
		if doc.FingerprintKey, err = next.Wrap(r.fpKey, fpAD); err != nil {
			return err
		}
		v.mu.RLock()
		kek := v.kek
		v.mu.RUnlock()
		for _, kv := range r.doc.Versions {
			plain, err := kek.Unwrap(kv.Wrapped, dekAD(kv.Version))
			if err != nil {
				return ErrWrongKEK
			}
			w, err := next.Wrap(plain, dekAD(kv.Version))
			clear(plain)
			if err != nil {
				return err
			}
			doc.Versions = append(doc.Versions, keyVersion{Version: kv.Version, Wrapped: w, Created: kv.Created})
		}
		b, _ := json.Marshal(doc)
		err = v.store.Commit(ctx, store.Update(keyringKey, b, r.storeVersion))
		if errors.Is(err, store.ErrConflict) {
			continue // rotated meanwhile: wrap the new ring
		}
		if err != nil {
			return err
		}
		v.mu.Lock()
		v.kek = next
		v.mu.Unlock()
		_, err = v.reload(ctx)
		return err
	}
}
