package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/store"
)

// Which master key each serving replica holds. After keys rewrap a replica
// still on the old key goes on with the keys it holds, but could not open a
// version added under the new one: keys rotate refuses until every serving
// replica holds the keyring's master key. Each replica writes its line in
// one record beside the keyring when what it holds changes, and at least
// every holderRefresh; a line older than holderExpiry is a replica gone
// without a word (killed), and counts no more. A replica that stops
// normally takes its line out.
var holdersKey = store.Key{Kind: "keyring", ID: "holders", Group: "main"}

const (
	holderRefresh = 10 * time.Minute
	holderExpiry  = 30 * time.Minute
)

// Holder is one serving replica and the master key it holds.
type Holder struct {
	Name string    `json:"name"` // host and process ID
	KEK  string    `json:"kek"`  // "" while sealed
	Seen time.Time `json:"seen"` // its last word, on its own clock
}

type holdersDoc struct {
	Holders map[string]Holder `json:"holders"`
}

// holderState is this replica's line.
type holderState struct {
	mu   sync.Mutex
	id   string // "" until it announces
	kek  string // what it last wrote
	at   time.Time
	name string
}

// announceDue writes this replica's line when what it holds changed or the
// line is due for a refresh; a failure is logged and tried again next time.
func (v *Vault) announceDue(ctx context.Context) {
	h := &v.holder
	h.mu.Lock()
	due := h.id == "" || h.kek != v.heldKEK() || v.Now().Sub(h.at) >= holderRefresh
	h.mu.Unlock()
	if !due {
		return
	}
	if err := v.Announce(ctx); err != nil && ctx.Err() == nil {
		v.log.Warn("recording which master key this replica holds", "err", err.Error())
	}
}

// Announce records in the store which master key this replica holds, so
// that keys rotate can tell whether every serving replica can open a new
// version. Watch calls it; it is exported for tests and tools.
func (v *Vault) Announce(ctx context.Context) error {
	h := &v.holder
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.id == "" {
		h.id = NewID("rep_")
		host, _ := os.Hostname()
		h.name = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	kek, now := v.heldKEK(), v.Now()
	err := v.changeHolders(ctx, func(d *holdersDoc) {
		d.Holders[h.id] = Holder{Name: h.name, KEK: kek, Seen: now.UTC()}
	})
	if err == nil {
		h.kek, h.at = kek, now
	}
	return err
}

// announce is Announce for a replica that announced before (it serves),
// at once after a change of what it holds; a failure is logged, and Watch
// tries again.
func (v *Vault) announce(ctx context.Context) {
	v.holder.mu.Lock()
	serving := v.holder.id != ""
	v.holder.mu.Unlock()
	if !serving {
		return
	}
	if err := v.Announce(ctx); err != nil && ctx.Err() == nil {
		v.log.Warn("recording which master key this replica holds", "err", err.Error())
	}
}

// withdraw takes this replica's line out, as it stops.
func (v *Vault) withdraw() {
	h := &v.holder
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = v.changeHolders(ctx, func(d *holdersDoc) { delete(d.Holders, h.id) })
	h.id, h.kek, h.at = "", "", time.Time{}
}

func (v *Vault) heldKEK() string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.kek == nil {
		return ""
	}
	return v.kek.ID()
}

// changeHolders changes the holders record by compare-and-set, dropping
// lines past holderExpiry.
func (v *Vault) changeHolders(ctx context.Context, change func(*holdersDoc)) error {
	for {
		d, at, err := v.readHolders(ctx)
		if err != nil {
			return err
		}
		change(&d)
		for id, h := range d.Holders {
			if v.Now().Sub(h.Seen) > holderExpiry {
				delete(d.Holders, id)
			}
		}
		b, _ := json.Marshal(d)
		err = v.store.Commit(ctx, store.Op{Key: holdersKey, Value: b, IfVersion: at})
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
}

func (v *Vault) readHolders(ctx context.Context) (holdersDoc, int64, error) {
	d := holdersDoc{Holders: map[string]Holder{}}
	rec, err := v.store.Get(ctx, holdersKey)
	if errors.Is(err, store.ErrNotFound) {
		return d, 0, nil
	}
	if err != nil {
		return d, 0, err
	}
	if err := json.Unmarshal(rec.Value, &d); err != nil {
		return d, 0, ErrCorrupt
	}
	if d.Holders == nil {
		d.Holders = map[string]Holder{}
	}
	return d, rec.Version, nil
}

// Holders lists the serving replicas heard from within holderExpiry.
func (v *Vault) Holders(ctx context.Context) ([]Holder, error) {
	d, _, err := v.readHolders(ctx)
	if err != nil {
		return nil, err
	}
	out := []Holder{}
	for _, id := range slices.Sorted(maps.Keys(d.Holders)) {
		if h := d.Holders[id]; v.Now().Sub(h.Seen) <= holderExpiry {
			out = append(out, h)
		}
	}
	return out, nil
}

// refuseStrayHolders refuses while a serving replica holds a master key
// other than kek (a sealed one holds none, and is no obstacle).
func (v *Vault) refuseStrayHolders(ctx context.Context, kek string) error {
	hs, err := v.Holders(ctx)
	if err != nil {
		return err
	}
	var stray []string
	for _, h := range hs {
		if h.KEK != "" && h.KEK != kek {
			stray = append(stray, fmt.Sprintf("%s holds %s (last heard %s)", h.Name, h.KEK, h.Seen.Format(time.RFC3339)))
		}
	}
	if len(stray) == 0 {
		return nil
	}
	return apperr.E(apperr.Conflict, "the keyring is wrapped under master key %s, and serving replicas hold another: %s. "+
		"Give each the new key (write it to its --master-key-file: it picks it up within seconds; or restart it with it; or unseal it with the new key's shares), then rotate. "+
		"A replica stopped without a word counts for %s after its last word",
		kek, strings.Join(stray, "; "), holderExpiry)
}
