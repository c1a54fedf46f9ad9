package vault

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/store"
)

// Each data key counts what it seals, for the AES-GCM random-nonce limit. The
// count is shared by every replica in one record beside the keyring; a
// replica reserves it in blocks (one compare-and-set per block, not a write
// per seal), so the stored count is never below the seals made, and at most
// a block per replica above. A key whose count reaches seven eighths of the
// budget is rotated, so no replica's blocks take it past the budget.
var sealsKey = store.Key{Kind: "keyring", ID: "seals", Group: "main"}

type sealsDoc struct {
	Versions map[uint32]*sealUse `json:"versions"`
}

// sealUse is what one key version has sealed.
type sealUse struct {
	Count uint64   `json:"count"`
	Kinds []string `json:"kinds"` // the kinds of value it sealed
}

// legacyKinds are what keys made before seals were counted may have sealed.
var legacyKinds = []string{KindCard, KindCVV, KindSecret}

// counter is this process's share of the active key's count.
type counter struct {
	mu       sync.Mutex
	version  uint32
	used     uint64          // seals this process made under version
	reserved uint64          // of which the store counts this many
	kinds    map[string]bool // kinds the store knows this process sealed under version
	total    uint64          // the store's count for version at the last reservation
}

// block is how many seals one reservation counts.
func (v *Vault) block() uint64 { return min(4096, max(1, v.opts.SealBudget/1024)) }

// rotateAt is the count at which a key is rotated.
func (v *Vault) rotateAt() uint64 { return v.opts.SealBudget - v.opts.SealBudget/8 }

// count adds one seal of kind under r's active key, before it is made,
// reserving a block in the store when this process's block is used up or
// the kind is new to it. When the reservation fails the seal is not made
// (the error says so): the stored count is never below the seals made, even
// across a restart.
func (v *Vault) count(ctx context.Context, r *ring, kind string) error {
	c := &v.seals
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version != r.active {
		c.version, c.used, c.reserved, c.total, c.kinds = r.active, 0, 0, 0, map[string]bool{}
	}
	if c.used < c.reserved && c.kinds[kind] {
		c.used++
		return nil
	}
	var n uint64
	if c.used >= c.reserved {
		n = max(v.block(), c.used+1-c.reserved)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	total, err := v.reserve(ctx, c.version, n, kind)
	if err != nil {
		v.log.Warn("counting seals of a data key: nothing sealed", "version", c.version, "err", err.Error())
		return apperr.Wrap(apperr.Unavailable, err, "the data key's seal count could not be reserved: nothing was sealed; retry")
	}
	c.used++
	c.reserved += n
	c.kinds[kind] = true
	c.total = total
	if total >= v.rotateAt() {
		v.rotateForBudget(ctx, c.version, total)
	}
	return nil
}

// reserve adds n to version's count and records kind, returning the new count.
func (v *Vault) reserve(ctx context.Context, version uint32, n uint64, kind string) (uint64, error) {
	for {
		doc, at, err := v.readSeals(ctx)
		if err != nil {
			return 0, err
		}
		u := doc.Versions[version]
		if u == nil {
			u = &sealUse{}
			doc.Versions[version] = u
		}
		u.Count += n
		if !slices.Contains(u.Kinds, kind) {
			u.Kinds = append(u.Kinds, kind)
			slices.Sort(u.Kinds)
		}
		b, _ := json.Marshal(doc)
		err = v.store.Commit(ctx, store.Op{Key: sealsKey, Value: b, IfVersion: at})
		if errors.Is(err, store.ErrConflict) {
			continue // another replica reserved at the same time
		}
		return u.Count, err
	}
}

func (v *Vault) readSeals(ctx context.Context) (sealsDoc, int64, error) {
	doc := sealsDoc{Versions: map[uint32]*sealUse{}}
	rec, err := v.store.Get(ctx, sealsKey)
	if errors.Is(err, store.ErrNotFound) {
		return doc, 0, nil
	}
	if err != nil {
		return doc, 0, err
	}
	if err := json.Unmarshal(rec.Value, &doc); err != nil {
		return doc, 0, ErrCorrupt
	}
	if doc.Versions == nil {
		doc.Versions = map[uint32]*sealUse{}
	}
	return doc, rec.Version, nil
}

// rotateForBudget rotates away from version, unless another process did already.
func (v *Vault) rotateForBudget(ctx context.Context, version uint32, total uint64) {
	next, rotated, err := v.rotateFrom(ctx, version)
	if err != nil {
		v.log.Error("data key reached its seal budget and could not be rotated", "version", version,
			"seals", total, "budget", v.opts.SealBudget, "err", err.Error())
		return
	}
	if rotated {
		v.budgetRotations.Add(1)
		v.log.Warn("data key near its seal budget: rotated", "version", version, "seals", total,
			"budget", v.opts.SealBudget, "active_version", next)
		if v.opts.OnBudgetRotation != nil {
			v.opts.OnBudgetRotation(ctx, version, next, total)
		}
	}
}

// SealStats is the active key's count as this process last reserved it.
type SealStats struct {
	Version         uint32 // the active key version
	Seals           uint64 // its count in the store at the last reservation
	Budget          uint64
	BudgetRotations int64 // rotations this process made for the budget
}

// SealStats returns the active key's seal count, for metrics.
func (v *Vault) SealStats() SealStats {
	c := &v.seals
	c.mu.Lock()
	defer c.mu.Unlock()
	return SealStats{Version: c.version, Seals: c.total, Budget: v.opts.SealBudget, BudgetRotations: v.budgetRotations.Load()}
}
