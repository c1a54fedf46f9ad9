// Package memory is a store engine held in the process's memory, for unit
// tests of the domain packages: it passes the same contract suite as bolt and
// Redis, so a rule tested over it behaves the same over them. Nothing
// survives the process.
package memory

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/paypage/paypage/pkg/store"
)

// DB is a store.Store in memory.
type DB struct {
	// Now is the clock that expiry reads; tests may replace it before use.
	Now func() time.Time

	mu      sync.Mutex
	records map[store.Key]store.Record
	due     map[store.Key]time.Time
	logs    map[string][]store.Entry
	seqs    map[string]int // the last entry number of each log
	closed  bool
}

var _ store.Store = (*DB)(nil)

// New returns an empty store.
func New() *DB {
	return &DB{Now: time.Now, records: map[store.Key]store.Record{}, due: map[store.Key]time.Time{}, logs: map[string][]store.Entry{}, seqs: map[string]int{}}
}

func (d *DB) check(ctx context.Context) error {
	if d.closed {
		return store.ErrUnavailable
	}
	if ctx.Err() != nil {
		return store.ErrUnavailable
	}
	return nil
}

// live returns the record at k if it exists and has not expired; the caller holds mu.
func (d *DB) live(k store.Key) (store.Record, bool) {
	r, ok := d.records[k]
	if !ok {
		return store.Record{}, false
	}
	if !r.ExpiresAt.IsZero() && !d.Now().Before(r.ExpiresAt) {
		delete(d.records, k)
		return store.Record{}, false
	}
	return r, true
}

// Get reads a live record.
func (d *DB) Get(ctx context.Context, k store.Key) (store.Record, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(ctx); err != nil {
		return store.Record{}, err
	}
	r, ok := d.live(k)
	if !ok {
		return store.Record{}, store.ErrNotFound
	}
	r.Value = slices.Clone(r.Value)
	return r, nil
}

// Commit applies every op or none.
func (d *DB) Commit(ctx context.Context, ops ...store.Op) error {
	if err := store.SameGroup(ops); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(ctx); err != nil {
		return err
	}
	cur := make([]store.Record, len(ops))
	for i, op := range ops {
		r, _ := d.live(op.Key)
		if op.IfVersion != store.Any && op.IfVersion != r.Version {
			return store.ErrConflict
		}
		cur[i] = r
	}
	now := d.Now()
	for i, op := range ops {
		switch {
		case op.Delete:
			delete(d.records, op.Key)
			delete(d.due, op.Key)
			continue
		case op.Done:
			delete(d.due, op.Key)
		case !op.Due.IsZero():
			d.due[op.Key] = op.Due.Truncate(time.Millisecond)
		}
		r := store.Record{Value: slices.Clone(op.Value), Version: cur[i].Version + 1}
		if op.TTL > 0 {
			r.ExpiresAt = now.Add(op.TTL)
		}
		d.records[op.Key] = r
	}
	return nil
}

// Take reads a live record and deletes it.
func (d *DB) Take(ctx context.Context, k store.Key) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(ctx); err != nil {
		return nil, err
	}
	r, ok := d.live(k)
	if !ok {
		return nil, store.ErrNotFound
	}
	delete(d.records, k)
	return r.Value, nil
}

// Count reads a counter without counting, and when its window ends.
func (d *DB) Count(ctx context.Context, k store.Key) (int64, time.Time, error) {
	return store.CounterOf(d.Get(ctx, k))
}

// Incr adds one to a counter that lives for window after its first increment.
func (d *DB) Incr(ctx context.Context, k store.Key, window time.Duration) (int64, time.Time, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(ctx); err != nil {
		return 0, time.Time{}, err
	}
	r, ok := d.live(k)
	var n int64
	if ok {
		n, _ = strconv.ParseInt(string(r.Value), 10, 64)
	} else {
		r = store.Record{ExpiresAt: d.Now().Add(window)}
	}
	n++
	r.Value, r.Version = strconv.AppendInt(nil, n, 10), 1
	d.records[k] = r
	return n, r.ExpiresAt, nil
}

// Allow spends a token of a bucket.
func (d *DB) Allow(ctx context.Context, k store.Key, b store.Bucket, now time.Time) (time.Duration, error) {
	if err := b.Check(); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(ctx); err != nil {
		return 0, err
	}
	r, _ := d.live(k)
	next, ttl, wait := b.Take(r.Value, now)
	if next != nil {
		d.records[k] = store.Record{Value: next, Version: 1, ExpiresAt: d.Now().Add(ttl)}
	}
	return wait, nil
}

// Due lists filed keys of a kind due at or before now, earliest first.
func (d *DB) Due(ctx context.Context, kind string, now time.Time, limit int) ([]store.DueKey, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(ctx); err != nil {
		return nil, err
	}
	var out []store.DueKey
	for k, at := range d.due {
		if k.Kind == kind && !at.After(now) {
			out = append(out, store.DueKey{Key: k, At: at})
		}
	}
	slices.SortFunc(out, func(a, b store.DueKey) int { return a.At.Compare(b.At) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Scan calls fn for every live record of a kind, from a copy, so fn may write.
func (d *DB) Scan(ctx context.Context, kind string, fn func(id string, r store.Record) error) error {
	d.mu.Lock()
	if err := d.check(ctx); err != nil {
		d.mu.Unlock()
		return err
	}
	type item struct {
		id string
		r  store.Record
	}
	var items []item
	for k := range d.records {
		if k.Kind != kind {
			continue
		}
		if r, ok := d.live(k); ok {
			items = append(items, item{k.ID, store.Record{Value: slices.Clone(r.Value), Version: r.Version, ExpiresAt: r.ExpiresAt}})
		}
	}
	d.mu.Unlock()
	for _, it := range items {
		if err := fn(it.id, it.r); err != nil {
			return err
		}
	}
	return nil
}

// Append adds an entry to a log.
func (d *DB) Append(ctx context.Context, log string, data []byte) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(ctx); err != nil {
		return "", err
	}
	d.seqs[log]++
	id := fmt.Sprintf("%020d", d.seqs[log])
	d.logs[log] = append(d.logs[log], store.Entry{ID: id, Data: slices.Clone(data)})
	return id, nil
}

// Read returns up to limit entries after the entry ID after.
func (d *DB) Read(ctx context.Context, log, after string, limit int) ([]store.Entry, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(ctx); err != nil {
		return nil, err
	}
	var out []store.Entry
	for _, e := range d.logs[log] {
		if e.ID > after && len(out) < limit {
			out = append(out, store.Entry{ID: e.ID, Data: slices.Clone(e.Data)})
		}
	}
	return out, nil
}

// TrimLog removes the oldest entries while more than keep remain, none
// after through.
func (d *DB) TrimLog(ctx context.Context, log, through string, keep int) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(ctx); err != nil {
		return 0, err
	}
	l := d.logs[log]
	n := 0
	for n < len(l)-keep && through != "" && l[n].ID <= through {
		n++
	}
	d.logs[log] = slices.Clone(l[n:])
	return n, nil
}

// Ping reports whether the store is open.
func (d *DB) Ping(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.check(ctx)
}

// Close makes every later call fail as unavailable.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return nil
}
