// Package storetest is the one contract test suite that every store engine
// must pass.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/store"
)

// Run runs the contract against stores made by open, a fresh one per test.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	k := func(kind, id, group string) store.Key { return store.Key{Kind: kind, ID: id, Group: group} }

	t.Run("GetMissing", func(t *testing.T) {
		s := open(t)
		_, err := s.Get(ctx, store.K("thing", "nope"))
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("err = %v, want not found", err)
		}
	})

	t.Run("CreateGetUpdate", func(t *testing.T) {
		s := open(t)
		key := store.K("thing", "a")
		must(t, s.Commit(ctx, store.Create(key, []byte("one"), 0)))
		r := mustGet(t, s, key)
		if string(r.Value) != "one" || r.Version != 1 || !r.ExpiresAt.IsZero() {
			t.Fatalf("got %q v%d exp %v", r.Value, r.Version, r.ExpiresAt)
		}
		if err := s.Commit(ctx, store.Create(key, []byte("two"), 0)); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second create: %v, want conflict", err)
		}
		must(t, s.Commit(ctx, store.Update(key, []byte("two"), 1)))
		if err := s.Commit(ctx, store.Update(key, []byte("stale"), 1)); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("stale update: %v, want conflict", err)
		}
		r = mustGet(t, s, key)
		if string(r.Value) != "two" || r.Version != 2 {
			t.Fatalf("got %q v%d", r.Value, r.Version)
		}
		must(t, s.Commit(ctx, store.Put(key, []byte("three"))))
		must(t, s.Commit(ctx, store.Op{Key: key, Delete: true, IfVersion: 3}))
		if _, err := s.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}
	})

	t.Run("BinaryValues", func(t *testing.T) {
		s := open(t)
		v := []byte{0, 1, 2, ':', 255, '\n', 0}
		must(t, s.Commit(ctx, store.Put(store.K("bin", "x"), v)))
		if r := mustGet(t, s, store.K("bin", "x")); string(r.Value) != string(v) {
			t.Fatalf("got %v", r.Value)
		}
	})

	t.Run("CommitIsAllOrNothing", func(t *testing.T) {
		s := open(t)
		a, b := k("ses", "a1", "g1"), k("pay", "b1", "g1")
		must(t, s.Commit(ctx, store.Create(b, []byte("old"), 0)))
		err := s.Commit(ctx, store.Create(a, []byte("new"), 0), store.Update(b, []byte("new"), 7))
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("err = %v, want conflict", err)
		}
		if _, err := s.Get(ctx, a); !errors.Is(err, store.ErrNotFound) {
			t.Fatal("first op applied although the second failed")
		}
		if r := mustGet(t, s, b); string(r.Value) != "old" {
			t.Fatalf("b = %q", r.Value)
		}
		must(t, s.Commit(ctx, store.Create(a, []byte("new"), 0), store.Update(b, []byte("new"), 1)))
	})

	t.Run("CommitRefusesBadOps", func(t *testing.T) {
		s := open(t)
		for name, ops := range map[string][]store.Op{
			"two groups": {store.Put(k("a", "1", "g1"), nil), store.Put(k("a", "2", "g2"), nil)},
			"same key":   {store.Put(k("a", "1", ""), nil), store.Put(k("a", "1", ""), nil)},
			"bad key":    {store.Put(k("a", "x:{y}", ""), nil)},
			"empty":      nil,
		} {
			if err := s.Commit(ctx, ops...); apperr.Code(err) != apperr.Invalid {
				t.Errorf("%s: err = %v, want invalid", name, err)
			}
		}
	})

	t.Run("Expiry", func(t *testing.T) {
		s := open(t)
		key := store.K("cvv", "e")
		must(t, s.Commit(ctx, store.Create(key, []byte("x"), 300*time.Millisecond)))
		r := mustGet(t, s, key)
		if r.ExpiresAt.IsZero() || time.Until(r.ExpiresAt) > time.Second {
			t.Fatalf("ExpiresAt = %v", r.ExpiresAt)
		}
		eventually(t, func() bool { _, err := s.Get(ctx, key); return errors.Is(err, store.ErrNotFound) })
		if _, err := s.Take(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("take after expiry: %v", err)
		}
		// An expired record counts as absent for Create.
		must(t, s.Commit(ctx, store.Create(key, []byte("y"), 0)))
	})

	t.Run("TakeOnce", func(t *testing.T) {
		s := open(t)
		key := store.K("cvv", "t")
		must(t, s.Commit(ctx, store.Create(key, []byte("secret"), time.Minute)))
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := 0
		for i := 0; i < 10; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := s.Take(ctx, key)
				if err == nil {
					mu.Lock()
					got++
					mu.Unlock()
					if string(v) != "secret" {
						t.Errorf("took %q", v)
					}
				} else if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("take: %v", err)
				}
			}()
		}
		wg.Wait()
		if got != 1 {
			t.Fatalf("taken %d times", got)
		}
	})

	t.Run("ConcurrentCompareAndSet", func(t *testing.T) {
		s := open(t)
		key := store.K("counter", "c")
		must(t, s.Commit(ctx, store.Create(key, []byte("0"), 0)))
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for done := 0; done < 5; {
					r, err := s.Get(ctx, key)
					if err != nil {
						t.Error(err)
						return
					}
					var n int
					fmt.Sscan(string(r.Value), &n)
					err = s.Commit(ctx, store.Update(key, []byte(fmt.Sprint(n+1)), r.Version))
					if err == nil {
						done++
					} else if !errors.Is(err, store.ErrConflict) {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if r := mustGet(t, s, key); string(r.Value) != "40" || r.Version != 41 {
			t.Fatalf("got %s v%d, want 40 v41", r.Value, r.Version)
		}
	})

	t.Run("Incr", func(t *testing.T) {
		s := open(t)
		key := store.K("limit", "ip")
		for want := int64(1); want <= 3; want++ {
			n, _, err := s.Incr(ctx, key, 300*time.Millisecond)
			must(t, err)
			if n != want {
				t.Fatalf("n = %d, want %d", n, want)
			}
		}
		if n, _, err := s.Count(ctx, key); err != nil || n != 3 {
			t.Fatalf("count = %d, %v; want 3 (and no increment)", n, err)
		}
		if n, _, err := s.Count(ctx, key); err != nil || n != 3 {
			t.Fatalf("count again = %d, %v", n, err)
		}
		if n, end, err := s.Count(ctx, store.K("limit", "none")); err != nil || n != 0 || !end.IsZero() {
			t.Fatalf("an absent counter counts %d, %v", n, err)
		}
		eventually(t, func() bool { n, _, err := s.Count(ctx, key); return err == nil && n == 0 })
		eventually(t, func() bool { n, _, err := s.Incr(ctx, key, time.Hour); return err == nil && n == 1 })
	})

	// Incr and Count say when a counter ends: window after the first
	// increment, the same on every later one (which does not move it).
	t.Run("IncrWindowEnd", func(t *testing.T) {
		s := open(t)
		key := store.K("limit", "card")
		before := time.Now()
		_, end, err := s.Incr(ctx, key, time.Hour)
		must(t, err)
		after := time.Now()
		if end.Before(before.Add(time.Hour-time.Second)) || end.After(after.Add(time.Hour+time.Second)) {
			t.Fatalf("first increment at %v..%v: ends %v, want an hour later", before, after, end)
		}
		for i := 0; i < 3; i++ {
			n, again, err := s.Incr(ctx, key, 24*time.Hour) // a later window does not extend it
			must(t, err)
			if n != int64(i+2) || again.Sub(end).Abs() > time.Second {
				t.Fatalf("increment %d: n %d, ends %v, want %v", i+2, n, again, end)
			}
		}
		// Count reads the same end, and does not move it either.
		if n, counted, err := s.Count(ctx, key); err != nil || n != 4 || counted.Sub(end).Abs() > time.Second {
			t.Fatalf("count: n %d, ends %v, %v; want 4, %v", n, counted, err, end)
		}
	})

	t.Run("Allow", func(t *testing.T) {
		s := open(t)
		key := store.K("bucket", "prc_a")
		b := store.Bucket{PerSecond: 10, Burst: 3}
		t0 := time.Now()
		allow := func(k store.Key, at time.Duration) time.Duration {
			t.Helper()
			w, err := s.Allow(ctx, k, b, t0.Add(at))
			must(t, err)
			return w
		}
		for i := 0; i < 3; i++ {
			if w := allow(key, 0); w != 0 {
				t.Fatalf("token %d refused, wait %v", i+1, w)
			}
		}
		if w := allow(key, 0); w != 100*time.Millisecond {
			t.Fatalf("over the burst: wait %v, want 100ms", w)
		}
		if w := allow(key, 40*time.Millisecond); w != 60*time.Millisecond {
			t.Fatalf("40ms later: wait %v, want 60ms", w)
		}
		// A refusal spends nothing: a token is there 100ms after the burst.
		if w := allow(key, 100*time.Millisecond); w != 0 {
			t.Fatalf("a token after 100ms: wait %v", w)
		}
		if w := allow(key, 100*time.Millisecond); w == 0 {
			t.Fatal("two tokens after 100ms")
		}
		// A clock behind the bucket's adds nothing.
		if w := allow(key, -time.Second); w == 0 {
			t.Fatal("a token from a clock that went back")
		}
		// Others' buckets are their own; an idle bucket fills to its burst and no more.
		if w := allow(store.K("bucket", "prc_b"), 100*time.Millisecond); w != 0 {
			t.Fatalf("another bucket: %v", w)
		}
		for i := 0; i < 3; i++ {
			if w := allow(key, time.Hour); w != 0 {
				t.Fatalf("after an hour, token %d: %v", i+1, w)
			}
		}
		if w := allow(key, time.Hour); w == 0 {
			t.Fatal("an idle bucket held more than its burst")
		}
		if _, err := s.Allow(ctx, key, store.Bucket{PerSecond: 0, Burst: 1}, t0); !apperr.Is(err, apperr.Invalid) {
			t.Fatalf("a rate of 0: %v", err)
		}
	})

	t.Run("AllowConcurrent", func(t *testing.T) {
		s := open(t)
		key := store.K("bucket", "prc_c")
		now := time.Now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		granted := 0
		for i := 0; i < 40; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w, err := s.Allow(ctx, key, store.Bucket{PerSecond: 1, Burst: 25}, now)
				if err == nil && w == 0 {
					mu.Lock()
					granted++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if granted != 25 {
			t.Fatalf("%d tokens granted from a bucket of 25", granted)
		}
	})

	t.Run("Scan", func(t *testing.T) {
		s := open(t)
		for i := 0; i < 25; i++ {
			must(t, s.Commit(ctx, store.Put(store.K("card", fmt.Sprintf("tok%d", i)), []byte{byte(i)})))
		}
		must(t, s.Commit(ctx, store.Put(store.K("cards", "other"), nil)))
		seen := map[string]bool{}
		must(t, s.Scan(ctx, "card", func(id string, r store.Record) error {
			if r.Version != 1 {
				t.Errorf("%s v%d", id, r.Version)
			}
			seen[id] = true
			return nil
		}))
		if len(seen) != 25 || !seen["tok7"] {
			t.Fatalf("scan saw %d: %v", len(seen), seen)
		}
		stop := errors.New("stop")
		if err := s.Scan(ctx, "card", func(string, store.Record) error { return stop }); err != stop {
			t.Fatalf("scan did not stop: %v", err)
		}
	})

	t.Run("Log", func(t *testing.T) {
		s := open(t)
		var ids []string
		for i := 0; i < 5; i++ {
			id, err := s.Append(ctx, "audit", []byte(fmt.Sprint(i)))
			must(t, err)
			ids = append(ids, id)
		}
		all, err := s.Read(ctx, "audit", "", 100)
		must(t, err)
		if len(all) != 5 || string(all[0].Data) != "0" || string(all[4].Data) != "4" || all[2].ID != ids[2] {
			t.Fatalf("read %v", all)
		}
		page, err := s.Read(ctx, "audit", ids[1], 2)
		must(t, err)
		if len(page) != 2 || string(page[0].Data) != "2" || string(page[1].Data) != "3" {
			t.Fatalf("page %v", page)
		}
		none, err := s.Read(ctx, "other", "", 10)
		if err != nil || len(none) != 0 {
			t.Fatalf("empty log: %v %v", none, err)
		}
	})

	t.Run("TrimLog", func(t *testing.T) {
		s := open(t)
		var ids []string
		for i := 0; i < 10; i++ {
			id, err := s.Append(ctx, "audit", []byte(fmt.Sprint(i)))
			must(t, err)
			ids = append(ids, id)
		}
		left := func(want ...string) {
			t.Helper()
			all, err := s.Read(ctx, "audit", "", 100)
			must(t, err)
			var got []string
			for _, e := range all {
				got = append(got, string(e.Data))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("left %v, want %v", got, want)
			}
		}
		trim := func(through string, keep, want int) {
			t.Helper()
			if n, err := s.TrimLog(ctx, "audit", through, keep); err != nil || n != want {
				t.Fatalf("TrimLog(%q, %d) = %d, %v; want %d", through, keep, n, err, want)
			}
		}
		trim("", 0, 0) // nothing read out: nothing goes
		trim(ids[4], 3, 5)
		left("5", "6", "7", "8", "9") // over the cap, but the rest was not read out
		trim(ids[9], 3, 2)
		left("7", "8", "9")
		trim(ids[9], 3, 0)
		id, err := s.Append(ctx, "audit", []byte("10"))
		must(t, err)
		if id <= ids[9] && len(id) == len(ids[9]) {
			t.Fatalf("an entry appended after a trim has ID %s, not after %s", id, ids[9])
		}
		page, err := s.Read(ctx, "audit", ids[9], 10)
		if err != nil || len(page) != 1 || string(page[0].Data) != "10" {
			t.Fatalf("read after the trim: %v %v", page, err)
		}
		trim(id, 0, 4)
		left()
		if n, err := s.TrimLog(ctx, "none", ids[0], 0); err != nil || n != 0 {
			t.Fatalf("trim of an empty log: %d %v", n, err)
		}
	})

	t.Run("DueIndex", func(t *testing.T) {
		s := open(t)
		base := time.Now().Add(time.Hour).Truncate(time.Millisecond)
		at := func(m int) time.Time { return base.Add(time.Duration(m) * time.Minute) }
		a, b, c, d := k("session", "a", "ga"), k("session", "b", "gb"), k("outbox", "c", "gb"), k("session", "d", "gd")
		must(t, s.Commit(ctx, store.Create(a, []byte("a"), 0).At(at(3))))
		must(t, s.Commit(ctx, store.Create(b, []byte("b"), 0).At(at(1)), store.Create(c, []byte("c"), 0).At(at(2))))
		must(t, s.Commit(ctx, store.Create(d, []byte("d"), 0))) // not filed
		due := func(kind string, now time.Time, limit int) []store.DueKey {
			t.Helper()
			got, err := s.Due(ctx, kind, now, limit)
			must(t, err)
			return got
		}
		same := func(got []store.DueKey, want ...store.Key) {
			t.Helper()
			if len(got) != len(want) {
				t.Fatalf("due %v, want %v", got, want)
			}
			for i := range want {
				if got[i].Key != want[i] {
					t.Fatalf("due[%d] = %v, want %v (all: %v)", i, got[i].Key, want[i], got)
				}
			}
		}
		same(due("session", at(0), 10))
		same(due("session", at(2), 10), b)
		if got := due("session", at(2), 10); !got[0].At.Equal(at(1)) {
			t.Fatalf("b due at %v, want %v", got[0].At, at(1))
		}
		// Each kind is its own index.
		same(due("session", at(9), 10), b, a)
		same(due("outbox", at(9), 10), c)
		same(due("nothing", at(9), 10))
		same(due("session", at(9), 1), b)
		// A write without Due leaves the filing; with Due it moves it.
		must(t, s.Commit(ctx, store.Update(b, []byte("b2"), 1)))
		same(due("session", at(9), 10), b, a)
		must(t, s.Commit(ctx, store.Update(b, []byte("b3"), 2).At(at(5))))
		same(due("session", at(9), 10), a, b)
		same(due("session", at(4), 10), a)
		// A failed commit changes nothing in the index.
		if err := s.Commit(ctx, store.Update(c, []byte("x"), 9).At(at(0))); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("stale update: %v", err)
		}
		same(due("outbox", at(1), 10))
		// Done and delete take keys out.
		must(t, s.Commit(ctx, store.Update(c, []byte("c2"), 1).Finished()))
		must(t, s.Commit(ctx, store.Delete(a)))
		same(due("session", at(9), 10), b)
		same(due("outbox", at(9), 10))
		if r := mustGet(t, s, c); string(r.Value) != "c2" {
			t.Fatalf("c = %q", r.Value)
		}
		// Many keys in many groups: every one is found, in order.
		for i := 0; i < 40; i++ {
			key := k("outbox", fmt.Sprintf("e%02d", i), fmt.Sprintf("g%02d", i))
			must(t, s.Commit(ctx, store.Create(key, nil, 0).At(at(10+i))))
		}
		all := due("outbox", at(100), 100)
		if len(all) != 40 {
			t.Fatalf("due %d keys, want 40", len(all))
		}
		for i := 1; i < len(all); i++ {
			if all[i].At.Before(all[i-1].At) {
				t.Fatalf("out of order at %d: %v", i, all)
			}
		}
		if first := due("outbox", at(100), 2); len(first) != 2 || first[0].Key.ID != "e00" || first[1].Key.ID != "e01" {
			t.Fatalf("first two: %v", first)
		}
		// Times are kept to the millisecond: a filing a fraction of one past
		// a millisecond is due at that millisecond, and says so.
		sub := base.Add(200*time.Minute + 300*time.Microsecond)
		key := k("fine", "f", "gf")
		must(t, s.Commit(ctx, store.Create(key, nil, 0).At(sub)))
		got := due("fine", sub.Truncate(time.Millisecond), 10)
		if len(got) != 1 || !got[0].At.Equal(sub.Truncate(time.Millisecond)) {
			t.Fatalf("sub-millisecond filing: %v", got)
		}
	})

	t.Run("Ping", func(t *testing.T) { must(t, open(t).Ping(ctx)) })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustGet(t *testing.T, s store.Store, k store.Key) store.Record {
	t.Helper()
	r, err := s.Get(context.Background(), k)
	if err != nil {
		t.Fatalf("get %v: %v", k, err)
	}
	return r
}

func eventually(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatal("condition not met within 5s")
}

// BenchAllow measures Allow on a bucket that never runs dry: the cost a
// detokenize call pays for its rate limit.
func BenchAllow(b *testing.B, s store.Store) {
	ctx := context.Background()
	k := store.K("bucket", "bench")
	bucket := store.Bucket{PerSecond: 1e9, Burst: 1 << 40}
	for b.Loop() {
		if w, err := s.Allow(ctx, k, bucket, time.Now()); err != nil || w != 0 {
			b.Fatal(w, err)
		}
	}
}

// Bench measures each round trip a card payment makes to a store, one at
// a time and, for the writes, from 32 goroutines at once (where an engine
// that groups commits shows it): a read, a new record, a compare-and-set
// with a due filing (a session's state change), a held secret written and
// taken, a counter, an audit entry, a look at the due index, a token spent.
func Bench(b *testing.B, s store.Store) {
	ctx := context.Background()
	value := make([]byte, 600) // about a session record
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	var seq sync.Mutex
	n := 0
	next := func() string {
		seq.Lock()
		defer seq.Unlock()
		n++
		return fmt.Sprintf("b%d", n)
	}
	par := func(b *testing.B, f func() error) {
		b.SetParallelism(16) // 32 goroutines on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := f(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	create := func() error { return s.Commit(ctx, store.Create(store.K("bench", next()), value, 0)) }
	update := func(k store.Key) func() error {
		return func() error {
			r, err := s.Get(ctx, k)
			if err != nil {
				return err
			}
			return s.Commit(ctx, store.Update(k, value, r.Version).At(time.Now().Add(time.Hour)))
		}
	}
	holdTake := func() error {
		k := store.Key{Kind: "held", ID: next(), Group: "g"}
		if err := s.Commit(ctx, store.Op{Key: k, Value: value[:64], IfVersion: store.Any, TTL: time.Minute}); err != nil {
			return err
		}
		_, err := s.Take(ctx, k)
		return err
	}
	incr := func() error { _, _, err := s.Incr(ctx, store.K("count", next()), time.Hour); return err }
	appendLog := func() error { _, err := s.Append(ctx, "bench", value[:300]); return err }

	if err := s.Commit(ctx, store.Put(store.K("bench", "read"), value)); err != nil {
		b.Fatal(err)
	}
	for i := range 1000 { // work filed for later: Due reads none of it
		if err := s.Commit(ctx, store.Put(store.K("later", fmt.Sprint(i)), nil).At(time.Now().Add(time.Hour))); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		f    func() error
		par  bool
	}{
		{"Get", func() error { _, err := s.Get(ctx, store.K("bench", "read")); return err }, false},
		{"Create", create, false},
		{"CreateParallel", create, true},
		{"Update", update(store.K("bench", "update")), false},
		{"UpdateParallel", nil, true}, // each goroutine its own record
		{"HoldTake", holdTake, false},
		{"HoldTakeParallel", holdTake, true},
		{"Incr", incr, false},
		{"Append", appendLog, false},
		{"AppendParallel", appendLog, true},
		{"Due", func() error { _, err := s.Due(ctx, "later", time.Now(), 100); return err }, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			if c.name == "Update" {
				if err := s.Commit(ctx, store.Put(store.K("bench", "update"), value)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			switch {
			case c.f == nil:
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					k := store.K("bench", next())
					if err := s.Commit(ctx, store.Put(k, value)); err != nil {
						b.Error(err)
						return
					}
					f := update(k)
					for pb.Next() {
						if err := f(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			case c.par:
				par(b, c.f)
			default:
				for b.Loop() {
					if err := c.f(); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
	b.Run("Allow", func(b *testing.B) { BenchAllow(b, s) })
}
