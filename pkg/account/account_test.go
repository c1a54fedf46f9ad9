package account_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/account"
	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/bolt"
	"github.com/paypage/paypage/pkg/vault"
)

// countingStore counts the reads and writes that go through it.
type countingStore struct {
	store.Store
	commits, gets atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, k store.Key) (store.Record, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, k)
}

func (c *countingStore) Commit(ctx context.Context, ops ...store.Op) error {
	c.commits.Add(1)
	return c.Store.Commit(ctx, ops...)
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func mustOpen(t *testing.T) (*account.Service, *countingStore, *clock) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "paypage.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kek, err := vault.NewLocalKEK(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(context.Background(), db, kek)
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: db}
	s := account.New(cs, v)
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	s.Now = c.Now
	return s, cs, c
}

func mustAuth(t *testing.T, s *account.Service, key string, want string) {
	t.Helper()
	p, err := s.Authenticate(context.Background(), key)
	if err != nil || p.ID != want {
		t.Fatalf("authenticate: %+v %v, want %s", p, err, want)
	}
}

func mustRefuse(t *testing.T, s *account.Service, key string) {
	t.Helper()
	if _, err := s.Authenticate(context.Background(), key); !apperr.Is(err, apperr.Unauthorized) {
		t.Fatalf("authenticate: %v, want unauthorized", err)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("TestModePrefixes", func(t *testing.T) {
		s, _, _ := mustOpen(t)
		m, _ := s.AddMerchant(ctx, "Shop", "")
		p, _ := s.AddProcessor(ctx, account.ProcessorSpec{Name: "Acq"})
		if !strings.HasPrefix(m.SecretKey, "sk_test_mer_") || !strings.HasPrefix(p.SecretKey, "psk_test_prc_") {
			t.Fatalf("%s %s", m.SecretKey, p.SecretKey)
		}
		mustAuth(t, s, m.SecretKey, m.ID)
		mustAuth(t, s, p.SecretKey, p.ID)
	})

	t.Run("ErrForgedKeys", func(t *testing.T) {
		s, _, _ := mustOpen(t)
		m, _ := s.AddMerchant(ctx, "Shop", "")
		other, _ := s.AddMerchant(ctx, "Other", "")
		secret := m.SecretKey[len(m.SecretKey)-43:]
		for _, k := range []string{
			m.SecretKey[:len(m.SecretKey)-1] + "x",                    // one character off
			"sk_test_" + other.ID + "_" + secret,                      // another merchant's ID on this secret
			"psk_test_" + strings.TrimPrefix(m.SecretKey, "sk_test_"), // another kind
			"sk_test_" + m.ID, // no secret
			"sk_" + strings.TrimPrefix(m.SecretKey, "sk_test_"),                   // no mode
			strings.Replace(m.SecretKey, m.ID, "mer_"+strings.Repeat("a", 26), 1), // no such merchant
			strings.Replace(m.SecretKey, m.ID, "mer_a:b{c}", 1),                   // not a key at all
		} {
			mustRefuse(t, s, k)
		}
	})

	t.Run("Roll", func(t *testing.T) {
		s, _, c := mustOpen(t)
		m, _ := s.AddMerchant(ctx, "Shop", "")
		k2, err := s.RollKey(ctx, account.KindMerchant, m.ID, 24*time.Hour)
		if err != nil || k2.SecretKey == m.SecretKey || !k2.OldExpiresAt.Equal(c.Now().Add(24*time.Hour)) {
			t.Fatalf("%+v %v", k2, err)
		}
		mustAuth(t, s, m.SecretKey, m.ID) // the old one, until its time
		mustAuth(t, s, k2.SecretKey, m.ID)
		c.Advance(24*time.Hour - time.Second)
		mustAuth(t, s, m.SecretKey, m.ID)
		c.Advance(time.Second)
		mustRefuse(t, s, m.SecretKey)
		mustAuth(t, s, k2.SecretKey, m.ID)
		// A second roll never lengthens an old key's life.
		k3, _ := s.RollKey(ctx, account.KindMerchant, m.ID, time.Hour)
		k4, _ := s.RollKey(ctx, account.KindMerchant, m.ID, 48*time.Hour)
		c.Advance(time.Hour)
		mustRefuse(t, s, k2.SecretKey)
		mustAuth(t, s, k3.SecretKey, m.ID)
		// 0s: every old key stops at once.
		k5, _ := s.RollKey(ctx, account.KindMerchant, m.ID, 0)
		mustRefuse(t, s, k3.SecretKey)
		mustRefuse(t, s, k4.SecretKey)
		mustAuth(t, s, k5.SecretKey, m.ID)
		list, _ := s.ListMerchants(ctx)
		if len(list) != 1 || len(list[0].Keys) != 1 || !strings.HasSuffix(list[0].Keys[0].Hint, k5.SecretKey[len(k5.SecretKey)-4:]) {
			t.Fatalf("%+v", list)
		}
		if _, err := s.RollKey(ctx, account.KindMerchant, m.ID, -time.Second); !apperr.Is(err, apperr.Invalid) {
			t.Fatalf("negative: %v", err)
		}
		if _, err := s.RollKey(ctx, account.KindProcessor, m.ID, 0); !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("wrong kind: %v", err)
		}
	})

	t.Run("DisableEnable", func(t *testing.T) {
		s, _, _ := mustOpen(t)
		m, _ := s.AddMerchant(ctx, "Shop", "")
		k2, _ := s.RollKey(ctx, account.KindMerchant, m.ID, time.Hour)
		before, _ := s.Merchant(ctx, m.ID)
		if err := s.SetDisabled(ctx, account.KindMerchant, m.ID, true); err != nil {
			t.Fatal(err)
		}
		mustRefuse(t, s, m.SecretKey)
		mustRefuse(t, s, k2.SecretKey)
		after, _ := s.Merchant(ctx, m.ID)
		if after.Rev <= before.Rev {
			t.Fatalf("disable left rev at %d", after.Rev)
		}
		if err := s.SetDisabled(ctx, account.KindMerchant, m.ID, false); err != nil {
			t.Fatal(err)
		}
		mustAuth(t, s, m.SecretKey, m.ID)
		mustAuth(t, s, k2.SecretKey, m.ID)
		if err := s.SetDisabled(ctx, account.KindProcessor, "prc_nope", true); !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("unknown: %v", err)
		}
	})

	// Authentication is a read: a key's last use is written at most once a
	// minute, and leaves the record's rev alone.
	t.Run("LastUseOnceAMinute", func(t *testing.T) {
		s, cs, c := mustOpen(t)
		p, _ := s.AddProcessor(ctx, account.ProcessorSpec{Name: "Acq"})
		rev := func() int64 { r, _ := s.Processor(ctx, p.ID); return r.Rev }
		rev0 := rev()
		start := cs.commits.Load()
		for i := 0; i < 100; i++ {
			mustAuth(t, s, p.SecretKey, p.ID)
			c.Advance(500 * time.Millisecond) // 50 s in all
		}
		if n := cs.commits.Load() - start; n != 1 {
			t.Fatalf("%d writes for 100 uses within a minute", n)
		}
		c.Advance(10 * time.Second)
		mustAuth(t, s, p.SecretKey, p.ID)
		if n := cs.commits.Load() - start; n != 2 {
			t.Fatalf("%d writes after a minute", n)
		}
		list, _ := s.ListProcessors(ctx)
		if lu := list[0].Keys[0].LastUsed; lu == nil || !lu.Equal(c.Now().Truncate(time.Second)) {
			t.Fatalf("last used %v, want %v", lu, c.Now())
		}
		if rev() != rev0 {
			t.Fatal("a last-use write changed rev")
		}
	})
}

func TestProcessorScope(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _, _ := mustOpen(t)
	a, _ := s.AddMerchant(ctx, "A", "")
	b, _ := s.AddMerchant(ctx, "B", "")
	if _, err := s.AddProcessor(ctx, account.ProcessorSpec{Name: "Acq", Merchants: []string{a.ID, "mer_nope"}}); !apperr.Is(err, apperr.Invalid) || apperr.Param(err) != "merchant" {
		t.Fatalf("unknown merchant granted: %v", err)
	}
	p, err := s.AddProcessor(ctx, account.ProcessorSpec{Name: "Acq", Merchants: []string{a.ID, a.ID}})
	if err != nil || len(p.Merchants) != 1 {
		t.Fatalf("%+v %v", p, err)
	}
	serves := func(m string) bool {
		pr, err := s.Authenticate(ctx, p.SecretKey)
		if err != nil {
			t.Fatal(err)
		}
		return pr.Serves(m)
	}
	if !serves(a.ID) || serves(b.ID) {
		t.Fatal("scope after add")
	}
	if err := s.Grant(ctx, p.ID, b.ID); err != nil || !serves(b.ID) {
		t.Fatalf("grant: %v", err)
	}
	if err := s.Revoke(ctx, p.ID, a.ID); err != nil || serves(a.ID) || !serves(b.ID) {
		t.Fatalf("revoke: %v", err)
	}
	if err := s.Revoke(ctx, p.ID, a.ID); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("revoke twice: %v", err)
	}
	if err := s.Grant(ctx, p.ID, "mer_nope"); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("grant unknown: %v", err)
	}
	if err := s.Grant(ctx, "prc_nope", a.ID); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("grant to unknown: %v", err)
	}
	rate := int64(5)
	if err := s.SetRate(ctx, p.ID, &rate); err != nil {
		t.Fatal(err)
	}
	if pr, _ := s.Authenticate(ctx, p.SecretKey); pr.Rate == nil || *pr.Rate != 5 {
		t.Fatalf("rate %v", pr.Rate)
	}
	if err := s.SetRate(ctx, p.ID, nil); err != nil {
		t.Fatal(err)
	}
	if pr, _ := s.Authenticate(ctx, p.SecretKey); pr.Rate != nil {
		t.Fatalf("rate back to the setting: %v", *pr.Rate)
	}
	neg := int64(-1)
	if err := s.SetRate(ctx, p.ID, &neg); !apperr.Is(err, apperr.Invalid) {
		t.Fatalf("negative rate: %v", err)
	}
}

// BenchmarkAuthenticate is the cost of checking a key on bolt: one read
// (and a last-use write once a minute, not within a run this short).
func BenchmarkAuthenticate(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "paypage.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	kek, _ := vault.NewLocalKEK(make([]byte, 32))
	v, err := vault.Open(context.Background(), db, kek)
	if err != nil {
		b.Fatal(err)
	}
	cs := &countingStore{Store: db}
	s := account.New(cs, v)
	p, _ := s.AddProcessor(context.Background(), account.ProcessorSpec{Name: "Acq"})
	if _, err := s.Authenticate(context.Background(), p.SecretKey); err != nil {
		b.Fatal(err)
	}
	start := cs.commits.Load()
	for b.Loop() {
		if _, err := s.Authenticate(context.Background(), p.SecretKey); err != nil {
			b.Fatal(err)
		}
	}
	if n := cs.commits.Load() - start; n != 0 {
		b.Fatalf("%d writes", n)
	}
}

// The credentials cache: a replica reads an owner's record once a CacheFor
// for all its key checks; a disable made on another replica reaches it
// within CacheFor, one made through it at once; a rolled key is good at
// once on every replica, and the old one stops within CacheFor.
func TestCredentialsCache(t *testing.T) {
	ctx := context.Background()
	a, cs, c := mustOpen(t)
	other := account.New(cs, nil) // another replica on the same store
	other.Now = c.Now
	p, err := a.AddProcessor(ctx, account.ProcessorSpec{Name: "Acquirer"})
	if err != nil {
		t.Fatal(err)
	}
	mustAuth(t, a, p.SecretKey, p.ID)
	gets := cs.gets.Load()
	for range 100 {
		mustAuth(t, a, p.SecretKey, p.ID)
	}
	if n := cs.gets.Load() - gets; n != 0 {
		t.Errorf("100 key checks within %v read the store %d times, want 0", account.CacheFor, n)
	}

	if err := other.SetDisabled(ctx, account.KindProcessor, p.ID, true); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)        // the bound: within a second
	mustRefuse(t, a, p.SecretKey) // a disable elsewhere reaches here within CacheFor
	if err := a.SetDisabled(ctx, account.KindProcessor, p.ID, false); err != nil {
		t.Fatal(err)
	}
	mustAuth(t, a, p.SecretKey, p.ID) // a change made here, at once

	rolled, err := other.RollKey(ctx, account.KindProcessor, p.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	mustAuth(t, a, rolled.SecretKey, p.ID) // the new key at once
	c.Advance(time.Second)                 // the bound: within a second
	mustRefuse(t, a, p.SecretKey)          // the old one within CacheFor
	mustAuth(t, a, rolled.SecretKey, p.ID)

	// Wrong keys of a known owner read the record again (a key rolled
	// elsewhere may be new), and are refused.
	gets = cs.gets.Load()
	mustRefuse(t, a, p.SecretKey)
	if n := cs.gets.Load() - gets; n != 1 {
		t.Errorf("a wrong key read the record %d times, want 1", n)
	}
}

// A key's last use is written once a minute however stale the cache: a
// write that loses to another replica's is not tried again on every call.
func TestTouchWithStaleCache(t *testing.T) {
	ctx := context.Background()
	a, cs, c := mustOpen(t)
	other := account.New(cs, nil)
	other.Now = c.Now
	m, err := a.AddMerchant(ctx, "Shop", "")
	if err != nil {
		t.Fatal(err)
	}
	mustAuth(t, other, m.SecretKey, m.ID) // the other replica writes the last use
	commits := cs.commits.Load()
	for range 50 {
		mustAuth(t, a, m.SecretKey, m.ID)
		c.Advance(10 * time.Millisecond)
	}
	if n := cs.commits.Load() - commits; n > 1 {
		t.Errorf("50 key checks in half a second wrote %d times, want at most 1", n)
	}
}
