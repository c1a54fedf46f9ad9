// Package store is the storage contract that every paypage record goes
// through, and its engines live below it: bolt (embedded, one process) and
// redis (single node, Sentinel or Cluster). Both pass the same contract tests
// in storetest.
//
// Records are named by a Key. Keys that share a Group are kept together (one
// Redis Cluster hash slot), and one Commit changes records of one group only,
// atomically, each write guarded by a compare-and-set on the record's version.
//
// The due index is how work is found: a commit may file a key under the time
// it should be looked at again (Op.Due), or take it out (Op.Done, or a
// delete), in the same atomic step as the change that makes the work; Due
// lists what of one kind is due, earliest first, so a backlog of one kind
// never hides another's. Its cost follows the work that is due, never the
// number of records stored.
package store

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
)

// Errors every engine maps its driver's errors to.
var (
	ErrNotFound    = apperr.E(apperr.NotFound, "record not found")
	ErrConflict    = apperr.E(apperr.Conflict, "record changed concurrently")
	ErrUnavailable = apperr.E(apperr.Unavailable, "store unavailable")
)

// Key names a record: a Kind (what it is), an ID unique within the kind, and
// a Group that keeps related records together. An empty Group means the ID.
type Key struct {
	Kind  string
	ID    string
	Group string
}

// K returns a key whose group is its own ID.
func K(kind, id string) Key { return Key{Kind: kind, ID: id} }

// G returns the group the key belongs to.
func (k Key) G() string {
	if k.Group != "" {
		return k.Group
	}
	return k.ID
}

// Valid reports whether the key's parts are non-empty and free of the
// separator characters the engines use.
func (k Key) Valid() bool {
	ok := func(s string) bool { return s != "" && !strings.ContainsAny(s, "{}:\x00") }
	return ok(k.Kind) && ok(k.ID) && ok(k.G())
}

// Record is a stored value and its version. Version counts writes from 1; a
// record that does not exist has version 0.
type Record struct {
	Value     []byte
	Version   int64
	ExpiresAt time.Time // zero: never
}

// Any, as an Op's IfVersion, skips the version check.
const Any int64 = -1

// Op is one write of a Commit.
type Op struct {
	Key       Key
	Value     []byte        // the new value; ignored when Delete
	Delete    bool          // remove the record
	IfVersion int64         // Any, 0 (must not exist) or the version the record must have
	TTL       time.Duration // time to live of the written record; 0 keeps it forever
	// Due files the key in the due index at this time (replacing an earlier
	// filing of it); zero leaves the index as it is.
	Due time.Time
	// Done takes the key out of the due index. A delete always does.
	Done bool
}

// At returns the op with the key filed in the due index at t.
func (o Op) At(t time.Time) Op { o.Due, o.Done = t, false; return o }

// WithTTL returns the op with the written record living ttl (0: for ever).
func (o Op) WithTTL(ttl time.Duration) Op { o.TTL = ttl; return o }

// Finished returns the op with the key taken out of the due index.
func (o Op) Finished() Op { o.Due, o.Done = time.Time{}, true; return o }

// DueKey is a key the due index holds, and when it falls due.
type DueKey struct {
	Key Key
	At  time.Time
}

// Entry is one item of an append-only log, in the order it was appended.
type Entry struct {
	ID   string // engine-specific, increasing; pass it as after to read on
	Data []byte
}

// CounterOf turns what Get answered for a counter that Incr keeps as a
// record holding its decimal count (bolt, memory) into Count's answer: the
// count and when its window ends, 0 and a zero time when it is absent.
func CounterOf(r Record, err error) (int64, time.Time, error) {
	if errors.Is(err, ErrNotFound) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	n, _ := strconv.ParseInt(string(r.Value), 10, 64)
	return n, r.ExpiresAt, nil
}

// Store is the contract every engine implements.
type Store interface {
	// Get reads a record; ErrNotFound when it is absent or expired.
	Get(ctx context.Context, k Key) (Record, error)
	// Commit applies every op or none: ErrConflict when a version check fails.
	// All keys must share one group.
	Commit(ctx context.Context, ops ...Op) error
	// Take reads a record and deletes it in the same step; ErrNotFound when absent.
	Take(ctx context.Context, k Key) ([]byte, error)
	// Incr adds one to a counter and returns the new count and when the
	// counter expires: window after its first increment (so a caller can
	// say when a limit over it lifts).
	Incr(ctx context.Context, k Key, window time.Duration) (n int64, end time.Time, err error)
	// Count reads a counter that Incr keeps, without counting, and when it
	// expires: 0 (and a zero time) when it is absent or its window has ended.
	Count(ctx context.Context, k Key) (n int64, end time.Time, err error)
	// Allow spends one token of the token bucket at k, which holds at most
	// b.Burst tokens and gains b.PerSecond a second, at time now. It returns
	// 0 when a token was there, and otherwise how long until one is, spending
	// nothing. Every replica shares the bucket; now is the caller's clock (so
	// tests can set it), and a clock behind the bucket's last spend adds no
	// tokens. A bucket left alone until full is removed.
	Allow(ctx context.Context, k Key, b Bucket, now time.Time) (time.Duration, error)
	// Due returns up to limit keys of a kind filed in the due index at or
	// before now, earliest first. A key stays filed until a commit moves or
	// removes it. Times are kept to the millisecond.
	Due(ctx context.Context, kind string, now time.Time, limit int) ([]DueKey, error)
	// Scan calls fn for every live record of a kind, in no particular order,
	// until fn returns an error. It reads the whole kind: operator commands
	// use it, never anything on a timer.
	Scan(ctx context.Context, kind string, fn func(id string, r Record) error) error
	// Append adds data to the end of a named log and returns its entry ID.
	Append(ctx context.Context, log string, data []byte) (string, error)
	// Read returns up to limit entries of a log after the entry ID after ("" from the start).
	Read(ctx context.Context, log string, after string, limit int) ([]Entry, error)
	// TrimLog removes a log's oldest entries while more than keep remain,
	// but none after the entry ID through ("": none at all), and returns
	// how many it removed: a log is capped only by what has been read out.
	TrimLog(ctx context.Context, log string, through string, keep int) (int, error)
	// Ping checks that the store answers.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// Bucket is the shape of a token bucket.
type Bucket struct {
	PerSecond float64 // tokens gained a second; more than 0
	Burst     int64   // tokens held at most; at least 1
}

// Check refuses a bucket that can never give a token.
func (b Bucket) Check() error {
	if !(b.PerSecond > 0) || b.Burst < 1 {
		return apperr.E(apperr.Invalid, "a bucket needs a rate above 0 and a burst of at least 1")
	}
	return nil
}

// Take is Allow's arithmetic for the engines that run it in Go (Redis runs
// the same in Lua). state is what the engine stored ("tokens:unix
// microseconds"; nil: a full bucket). When a token is there it returns the
// state to store, which may be dropped after ttl (the bucket is full again
// by then), and a zero wait; otherwise the wait, and nothing to store.
func (b Bucket) Take(state []byte, now time.Time) (next []byte, ttl, wait time.Duration) {
	tokens, at := float64(b.Burst), now.UnixMicro()
	if t, a, ok := strings.Cut(string(state), ":"); ok {
		tf, err1 := strconv.ParseFloat(t, 64)
		ai, err2 := strconv.ParseInt(a, 10, 64)
		if err1 == nil && err2 == nil {
			tokens, at = tf, ai
		}
	}
	if n := now.UnixMicro(); n > at {
		tokens = min(float64(b.Burst), tokens+float64(n-at)*b.PerSecond/1e6)
		at = n
	}
	if tokens < 1 {
		return nil, 0, time.Duration(math.Ceil((1-tokens)/b.PerSecond*1e6)) * time.Microsecond
	}
	tokens--
	ttl = time.Duration(math.Ceil((float64(b.Burst)-tokens)/b.PerSecond*1e3)+1) * time.Millisecond
	return []byte(strconv.FormatFloat(tokens, 'g', -1, 64) + ":" + strconv.FormatInt(at, 10)), ttl, 0
}

// SameGroup checks that a commit's ops are valid and share one group.
func SameGroup(ops []Op) error {
	if len(ops) == 0 {
		return apperr.E(apperr.Invalid, "empty commit")
	}
	g := ops[0].Key.G()
	seen := make(map[Key]bool, len(ops))
	for _, op := range ops {
		if seen[op.Key] {
			return apperr.E(apperr.Invalid, "commit writes %q/%q twice", op.Key.Kind, op.Key.ID)
		}
		seen[op.Key] = true
		if !op.Key.Valid() {
			return apperr.E(apperr.Invalid, "invalid key %q/%q", op.Key.Kind, op.Key.ID)
		}
		if op.Key.G() != g {
			return apperr.E(apperr.Invalid, "commit spans groups %q and %q", g, op.Key.G())
		}
	}
	return nil
}

// Put is an Op that writes v whatever the current version.
func Put(k Key, v []byte) Op { return Op{Key: k, Value: v, IfVersion: Any} }

// Create is an Op that writes v only when the record does not exist.
func Create(k Key, v []byte, ttl time.Duration) Op {
	return Op{Key: k, Value: v, IfVersion: 0, TTL: ttl}
}

// Update is an Op that writes v only when the record is still at version.
func Update(k Key, v []byte, version int64) Op { return Op{Key: k, Value: v, IfVersion: version} }

// Delete is an Op that removes the record whatever its version.
func Delete(k Key) Op { return Op{Key: k, Delete: true, IfVersion: Any} }
