// Package bolt is the embedded store engine: one bbolt file in the data
// directory, for a single paypage process. Each record kind is a bucket; a
// Commit is one bbolt write transaction; expired records are hidden on read
// and removed by a sweeper that finds them through an index by expiry time.
// The due index is two buckets: one keyed by due time, one by record.
//
// Writes are group commits: one writer takes every write waiting when it
// starts a transaction and commits them together, with one pair of fsyncs
// for all of them, and each caller hears back once the transaction that
// holds its write is on disk. A lone write waits for nothing; under load,
// the writes that arrive during one commit's fsync share the next.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/store"
	bbolt "go.etcd.io/bbolt"
	bolterr "go.etcd.io/bbolt/errors"
)

// DB is a store.Store on a bbolt file.
type DB struct {
	db   *bbolt.DB
	Now  func() time.Time // the clock; tests may replace it before use
	stop chan struct{}
	wg   sync.WaitGroup
	// writes go to the writer, which groups them into commits; closed
	// (under mu) when the store closes, after the last write is queued.
	writes chan *write
	mu     sync.RWMutex
	closed bool
	groups atomic.Int64
}

// write is one caller's change, waiting for the group commit that holds it.
type write struct {
	fn   func(tx *bbolt.Tx) error
	done chan error
}

// maxGroup bounds the writes of one transaction, and how many wait.
const maxGroup = 512

var _ store.Store = (*DB)(nil)

// Open opens (creating if needed) the bbolt file at path, mode 0600, and
// starts the sweeper of expired records.
func Open(path string) (*DB, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolterr.ErrTimeout) {
		return nil, apperr.Wrap(apperr.Unavailable, err, "the embedded store %s is in use by another paypage process (a running serve?): stop it first, or use Redis to run several", path)
	}
	if err != nil {
		return nil, apperr.Wrap(apperr.Unavailable, err, "open store %s", path)
	}
	d := &DB{db: db, Now: time.Now, stop: make(chan struct{}), writes: make(chan *write, maxGroup)}
	d.wg.Add(2)
	go d.sweep(time.Minute)
	go d.writer()
	return d, nil
}

// update runs fn in a write transaction that it may share with the writes
// of other callers (a group commit), and returns once that transaction is
// on disk. fn may run more than once, so it must set what it returns
// afresh each time. A store error it returns (not found, a conflict) is
// its caller's answer, and leaves what fn wrote before it in the
// transaction, so fn checks before it writes; any other error fails the
// group, whose writes then run again one transaction each.
func (d *DB) update(ctx context.Context, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return mapErr(err)
	}
	w := &write{fn: fn, done: make(chan error, 1)}
	d.mu.RLock()
	if d.closed {
		d.mu.RUnlock()
		return mapErr(bolterr.ErrDatabaseNotOpen)
	}
	d.writes <- w
	d.mu.RUnlock()
	return mapErr(<-w.done)
}

// writer commits the writes that wait, in groups, until the store closes
// and the last of them is done.
func (d *DB) writer() {
	defer d.wg.Done()
	group := make([]*write, 0, maxGroup)
	for w := range d.writes {
		group = append(group[:0], w)
	more:
		for len(group) < maxGroup {
			select {
			case w, ok := <-d.writes:
				if !ok {
					break more
				}
				group = append(group, w)
			default:
				break more
			}
		}
		d.commit(group)
	}
}

// answer reports whether an error is a write's answer to its caller rather
// than a failure of the transaction.
func answer(err error) bool {
	return errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound)
}

// commit runs a group of writes in one transaction and tells each caller;
// when the transaction fails, each write runs again alone.
func (d *DB) commit(group []*write) {
	d.groups.Add(1)
	answers := make([]error, len(group))
	err := d.db.Update(func(tx *bbolt.Tx) error {
		for i, w := range group {
			if answers[i] = call(w.fn, tx); answers[i] != nil && !answer(answers[i]) {
				return answers[i]
			}
		}
		return nil
	})
	if err != nil && len(group) > 1 {
		for _, w := range group {
			w.done <- d.db.Update(func(tx *bbolt.Tx) error { return call(w.fn, tx) })
		}
		return
	}
	for i, w := range group {
		if err != nil {
			answers[i] = err
		}
		w.done <- answers[i]
	}
}

// errPanicked is the answer of a write whose function panicked.
var errPanicked = errors.New("bolt: a write panicked")

// call runs a write's function, turning a panic into its error: the group's
// transaction is rolled back, the other writes run again alone, and the
// writer (every caller's only way to the file) goes on. The panic's value
// is left out of the error, as a record's bytes may be in it.
func call(fn func(*bbolt.Tx) error, tx *bbolt.Tx) (err error) {
	defer func() {
		if recover() != nil {
			err = errPanicked
		}
	}()
	return fn(tx)
}

// Groups counts the write transactions committed so far, each holding one
// or more writes.
func (d *DB) Groups() int64 { return d.groups.Load() }

// Close stops the sweeper, lets the writer finish the writes queued, and
// closes the file.
func (d *DB) Close() error {
	close(d.stop)
	d.mu.Lock()
	d.closed = true
	close(d.writes)
	d.mu.Unlock()
	d.wg.Wait()
	return mapErr(d.db.Close())
}

// Path returns the file's path.
func (d *DB) Path() string { return d.db.Path() }

// mapErr turns bbolt's errors into store codes, in this one place.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case apperr.Code(err) != apperr.Internal:
		return err
	case errors.Is(err, bolterr.ErrDatabaseNotOpen), errors.Is(err, bolterr.ErrTimeout),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return apperr.Wrap(apperr.Unavailable, err, "store unavailable")
	}
	return err
}

func bucketName(kind string) []byte { return []byte("r:" + kind) }
func logName(name string) []byte    { return []byte("l:" + name) }

// Index buckets: kind NUL due time + key -> nil, key -> due time, expiry
// time + key -> nil.
var (
	dueBucket   = []byte("x:due")
	dueOfBucket = []byte("x:dueof")
	expBucket   = []byte("x:exp")
)

// encodeKey writes a key as kind NUL group NUL id (keys never hold NUL).
func encodeKey(k store.Key) []byte { return []byte(k.Kind + "\x00" + k.G() + "\x00" + k.ID) }

func decodeKey(b []byte) (store.Key, bool) {
	parts := strings.SplitN(string(b), "\x00", 3)
	if len(parts) != 3 {
		return store.Key{}, false
	}
	k := store.Key{Kind: parts[0], Group: parts[1], ID: parts[2]}
	if k.Group == k.ID {
		k.Group = ""
	}
	return k, true
}

// timeKey is a time in unix milliseconds (8 bytes, big endian) followed by a key.
func timeKey(t time.Time, enc []byte) []byte {
	b := make([]byte, 8, 8+len(enc))
	binary.BigEndian.PutUint64(b, uint64(t.UnixMilli()))
	return append(b, enc...)
}

// dueEntry is a due-index entry: the key's kind and a NUL, then its time key,
// so each kind is a range of the bucket.
func dueEntry(kind string, tk []byte) []byte {
	return append(append([]byte(kind), 0), tk...)
}

func kindOf(enc []byte) string {
	k, _, _ := strings.Cut(string(enc), "\x00")
	return k
}

// setDue files enc at t (zero: takes it out), replacing an earlier filing.
func setDue(tx *bbolt.Tx, enc []byte, t time.Time) error {
	due, err := tx.CreateBucketIfNotExists(dueBucket)
	if err != nil {
		return err
	}
	of, err := tx.CreateBucketIfNotExists(dueOfBucket)
	if err != nil {
		return err
	}
	if old := of.Get(enc); len(old) == 8 {
		if err := due.Delete(dueEntry(kindOf(enc), append(append([]byte(nil), old...), enc...))); err != nil {
			return err
		}
		if err := of.Delete(enc); err != nil {
			return err
		}
	}
	if t.IsZero() {
		return nil
	}
	tk := timeKey(t, enc)
	if err := due.Put(dueEntry(kindOf(enc), tk), nil); err != nil {
		return err
	}
	return of.Put(enc, tk[:8])
}

// noteExpiry files enc in the expiry index, for the sweeper.
func noteExpiry(tx *bbolt.Tx, enc []byte, t time.Time) error {
	b, err := tx.CreateBucketIfNotExists(expBucket)
	if err != nil {
		return err
	}
	return b.Put(timeKey(t, enc), nil)
}

// record layout: version (8 bytes) | expires unix nanoseconds (8, 0 = never) | value
func encode(version int64, expires time.Time, value []byte) []byte {
	b := make([]byte, 16+len(value))
	binary.BigEndian.PutUint64(b, uint64(version))
	if !expires.IsZero() {
		binary.BigEndian.PutUint64(b[8:], uint64(expires.UnixNano()))
	}
	copy(b[16:], value)
	return b
}

func (d *DB) decode(b []byte) (store.Record, bool) {
	if len(b) < 16 {
		return store.Record{}, false
	}
	r := store.Record{Version: int64(binary.BigEndian.Uint64(b))}
	if ns := binary.BigEndian.Uint64(b[8:]); ns != 0 {
		r.ExpiresAt = time.Unix(0, int64(ns))
		if !d.Now().Before(r.ExpiresAt) {
			return store.Record{}, false
		}
	}
	r.Value = append([]byte(nil), b[16:]...)
	return r, true
}

// Get reads a live record.
func (d *DB) Get(ctx context.Context, k store.Key) (store.Record, error) {
	if err := ctx.Err(); err != nil {
		return store.Record{}, mapErr(err)
	}
	var rec store.Record
	err := d.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketName(k.Kind))
		if b == nil {
			return store.ErrNotFound
		}
		r, ok := d.decode(b.Get([]byte(k.ID)))
		if !ok {
			return store.ErrNotFound
		}
		rec = r
		return nil
	})
	return rec, mapErr(err)
}

// Commit applies ops in one transaction.
func (d *DB) Commit(ctx context.Context, ops ...store.Op) error {
	if err := store.SameGroup(ops); err != nil {
		return err
	}
	now := d.Now()
	return d.update(ctx, func(tx *bbolt.Tx) error {
		buckets := make([]*bbolt.Bucket, len(ops))
		versions := make([]int64, len(ops))
		for i, op := range ops {
			b, err := tx.CreateBucketIfNotExists(bucketName(op.Key.Kind))
			if err != nil {
				return err
			}
			cur, _ := d.decode(b.Get([]byte(op.Key.ID)))
			if op.IfVersion != store.Any && op.IfVersion != cur.Version {
				return store.ErrConflict
			}
			buckets[i], versions[i] = b, cur.Version
		}
		for i, op := range ops {
			enc := encodeKey(op.Key)
			if op.Delete || op.Done || !op.Due.IsZero() {
				if err := setDue(tx, enc, op.Due); err != nil {
					return err
				}
			}
			if op.Delete {
				if err := buckets[i].Delete([]byte(op.Key.ID)); err != nil {
					return err
				}
				continue
			}
			var exp time.Time
			if op.TTL > 0 {
				exp = now.Add(op.TTL)
				if err := noteExpiry(tx, enc, exp); err != nil {
					return err
				}
			}
			if err := buckets[i].Put([]byte(op.Key.ID), encode(versions[i]+1, exp, op.Value)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Take reads a live record and deletes it in the same transaction.
func (d *DB) Take(ctx context.Context, k store.Key) ([]byte, error) {
	var v []byte
	err := d.update(ctx, func(tx *bbolt.Tx) error {
		v = nil
		b := tx.Bucket(bucketName(k.Kind))
		if b == nil {
			return store.ErrNotFound
		}
		raw := b.Get([]byte(k.ID))
		r, ok := d.decode(raw)
		if raw != nil {
			if err := b.Delete([]byte(k.ID)); err != nil {
				return err
			}
		}
		if !ok {
			return store.ErrNotFound
		}
		v = r.Value
		return nil
	})
	return v, err
}

// Count reads a counter without counting, and when its window ends.
func (d *DB) Count(ctx context.Context, k store.Key) (int64, time.Time, error) {
	return store.CounterOf(d.Get(ctx, k))
}

// Incr adds one to a counter that lives for window after its first increment.
func (d *DB) Incr(ctx context.Context, k store.Key, window time.Duration) (int64, time.Time, error) {
	var (
		n   int64
		exp time.Time
	)
	err := d.update(ctx, func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketName(k.Kind))
		if err != nil {
			return err
		}
		n = 0
		exp = d.Now().Add(window)
		if r, ok := d.decode(b.Get([]byte(k.ID))); ok {
			n, _ = strconv.ParseInt(string(r.Value), 10, 64)
			exp = r.ExpiresAt
		} else if err := noteExpiry(tx, encodeKey(k), exp); err != nil {
			return err
		}
		n++
		return b.Put([]byte(k.ID), encode(1, exp, strconv.AppendInt(nil, n, 10)))
	})
	if err != nil {
		return 0, time.Time{}, err
	}
	return n, exp, nil
}

// Due lists filed keys of a kind due at or before now, earliest first: a
// cursor walk from the start of the kind's range of the time-ordered
// bucket, which stops at the first key not yet due.
func (d *DB) Due(ctx context.Context, kind string, now time.Time, limit int) ([]store.DueKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, mapErr(err)
	}
	var out []store.DueKey
	end := uint64(now.UnixMilli())
	err := d.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(dueBucket)
		if b == nil {
			return nil
		}
		prefix := append([]byte(kind), 0)
		c := b.Cursor()
		for e, _ := c.Seek(prefix); e != nil && len(out) < limit && bytes.HasPrefix(e, prefix); e, _ = c.Next() {
			tk := e[len(prefix):]
			if len(tk) < 8 || binary.BigEndian.Uint64(tk) > end {
				break
			}
			if k, ok := decodeKey(tk[8:]); ok {
				out = append(out, store.DueKey{Key: k, At: time.UnixMilli(int64(binary.BigEndian.Uint64(tk)))})
			}
		}
		return nil
	})
	return out, mapErr(err)
}

// Allow spends a token of a bucket in one transaction.
func (d *DB) Allow(ctx context.Context, k store.Key, b store.Bucket, now time.Time) (time.Duration, error) {
	if err := b.Check(); err != nil {
		return 0, err
	}
	var wait time.Duration
	err := d.update(ctx, func(tx *bbolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bucketName(k.Kind))
		if err != nil {
			return err
		}
		r, live := d.decode(bk.Get([]byte(k.ID)))
		next, ttl, w := b.Take(r.Value, now)
		if wait = w; next == nil {
			return nil
		}
		exp := d.Now().Add(ttl)
		// Filed for the sweeper once, when the bucket is made: a bucket
		// kept in use outlives that entry, and stays one record per key.
		if !live {
			if err := noteExpiry(tx, encodeKey(k), exp); err != nil {
				return err
			}
		}
		return bk.Put([]byte(k.ID), encode(1, exp, next))
	})
	return wait, err
}

// Scan calls fn for every live record of a kind. It reads them all first,
// so fn may write to the store.
func (d *DB) Scan(ctx context.Context, kind string, fn func(id string, r store.Record) error) error {
	type item struct {
		id string
		r  store.Record
	}
	var items []item
	err := d.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketName(kind))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if r, ok := d.decode(v); ok {
				items = append(items, item{string(k), r})
			}
			return nil
		})
	})
	if err != nil {
		return mapErr(err)
	}
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return mapErr(err)
		}
		if err := fn(it.id, it.r); err != nil {
			return err
		}
	}
	return nil
}

// Append adds an entry to a log bucket under the next sequence number.
func (d *DB) Append(ctx context.Context, log string, data []byte) (string, error) {
	var id string
	err := d.update(ctx, func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(logName(log))
		if err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		id = fmt.Sprintf("%020d", seq)
		return b.Put([]byte(id), data)
	})
	return id, err
}

// Read returns entries after the given ID, in order.
func (d *DB) Read(ctx context.Context, log, after string, limit int) ([]store.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, mapErr(err)
	}
	var out []store.Entry
	err := d.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(logName(log))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.First()
		if after != "" {
			k, v = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, v = c.Next()
			}
		}
		for ; k != nil && len(out) < limit; k, v = c.Next() {
			out = append(out, store.Entry{ID: string(k), Data: append([]byte(nil), v...)})
		}
		return nil
	})
	return out, mapErr(err)
}

// TrimLog removes the oldest entries while more than keep remain, none
// after through. Entries are numbered in sequence and only ever removed
// from the front, so the count is the last number less the first, plus one.
func (d *DB) TrimLog(ctx context.Context, log, through string, keep int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, mapErr(err)
	}
	var doomed [][]byte
	err := d.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(logName(log))
		if b == nil || through == "" {
			return nil
		}
		c := b.Cursor()
		first, _ := c.First()
		last, _ := c.Last()
		if first == nil {
			return nil
		}
		lo, err1 := strconv.ParseUint(string(first), 10, 64)
		hi, err2 := strconv.ParseUint(string(last), 10, 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("log %s: entry IDs %q..%q are not sequence numbers", log, first, last)
		}
		count := int(hi - lo + 1)
		// Collected first: deleting under a moving cursor can skip keys.
		for k, _ := c.First(); k != nil && count-len(doomed) > keep && string(k) <= through; k, _ = c.Next() {
			doomed = append(doomed, k)
		}
		for _, k := range doomed {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, mapErr(err)
	}
	return len(doomed), nil
}

// Ping checks that the file is open.
func (d *DB) Ping(ctx context.Context) error {
	return mapErr(d.db.View(func(*bbolt.Tx) error { return ctx.Err() }))
}

func (d *DB) sweep(every time.Duration) {
	defer d.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			_ = d.Sweep()
		}
	}
}

// Sweep deletes the records whose time is up, found through the expiry
// index (so its cost follows what expired, not what is stored); the sweeper
// calls it each minute.
func (d *DB) Sweep() error {
	now := d.Now()
	end := uint64(now.UnixMilli())
	return mapErr(d.db.Update(func(tx *bbolt.Tx) error {
		idx := tx.Bucket(expBucket)
		if idx == nil {
			return nil
		}
		var done [][]byte
		c := idx.Cursor()
		for tk, _ := c.First(); len(tk) >= 8 && binary.BigEndian.Uint64(tk) <= end; tk, _ = c.Next() {
			done = append(done, append([]byte(nil), tk...))
		}
		for _, tk := range done {
			if err := idx.Delete(tk); err != nil {
				return err
			}
			k, ok := decodeKey(tk[8:])
			if !ok {
				continue
			}
			b := tx.Bucket(bucketName(k.Kind))
			if b == nil {
				continue
			}
			v := b.Get([]byte(k.ID))
			if len(v) < 16 {
				continue
			}
			// The record may have been written again since with a later
			// expiry (or none): only a record whose own time is up goes.
			if ns := binary.BigEndian.Uint64(v[8:]); ns == 0 || now.Before(time.Unix(0, int64(ns))) {
				continue
			}
			if err := b.Delete([]byte(k.ID)); err != nil {
				return err
			}
			if err := setDue(tx, tk[8:], time.Time{}); err != nil {
				return err
			}
		}
		return nil
	}))
}
