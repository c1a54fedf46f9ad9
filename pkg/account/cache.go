package account

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/paypage/paypage/pkg/store"
)

// CacheFor is how long a replica trusts the merchant and processor records
// it has read: a key check or a page costs no round trip to the store within
// it, and a change made on another replica (a disable, a roll, a grant, a
// rate) reaches this one within it. A change made through this Service
// reaches it at once.
const CacheFor = time.Second

// maxCached bounds the records cached; past it the cache starts afresh.
// Only records that exist are cached, so unknown keys cannot fill it.
const maxCached = 10_000

// cache holds account records as last read, each with when it was read.
type cache struct {
	mu      sync.Mutex
	entries map[store.Key]*cached
	reads   singleflight.Group // concurrent misses of one record share one read
}

// cached is one record as read: its raw form, the credentials decoded from
// it (checked by every key check), and when it was read.
type cached struct {
	rec   store.Record
	creds Processor // a merchant's record decodes into the fields they share
	read  time.Time
	// touched is when this replica last wrote (or tried to write) a key's
	// last use, by key hash: a failed try waits for TouchEvery like a
	// success, so a stale record never turns each call into a write.
	touched map[string]time.Time
	// merchant is the record decoded as a merchant, once (pages read it).
	decode   sync.Once
	merchant Merchant
	merr     error
}

// asMerchant returns the record as a merchant, decoded once per entry; the
// copy it returns shares nothing with the cache.
func (e *cached) asMerchant() (Merchant, error) {
	e.decode.Do(func() { e.merr = json.Unmarshal(e.rec.Value, &e.merchant) })
	m := e.merchant
	m.WebhookSecret, m.FrameOrigins = slices.Clone(m.WebhookSecret), slices.Clone(m.FrameOrigins)
	m.Keys = slices.Clone(m.Keys)
	for i := range m.Keys {
		m.Keys[i].Hash = slices.Clone(m.Keys[i].Hash)
	}
	return m, e.merr
}

// record returns the record at k and its decoded credentials, from the
// cache when it was read less than CacheFor ago (hit), else read now. A
// refresh whose record has the same rev keeps what this replica knows of
// its keys' last use.
func (s *Service) record(ctx context.Context, k store.Key) (e *cached, hit bool, err error) {
	now := s.Now()
	c := &s.cache
	c.mu.Lock()
	e = c.entries[k]
	c.mu.Unlock()
	if e != nil && now.Sub(e.read) < CacheFor && !now.Before(e.read) {
		return e, true, nil
	}
	v, err, _ := c.reads.Do(k.Kind+"/"+k.ID, func() (any, error) {
		r, err := s.store.Get(ctx, k)
		if err != nil {
			return nil, err
		}
		fresh := &cached{rec: r, read: now, touched: map[string]time.Time{}}
		if err := json.Unmarshal(r.Value, &fresh.creds); err != nil {
			return nil, err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if old := c.entries[k]; old != nil && old.creds.Rev == fresh.creds.Rev {
			for h, t := range old.touched {
				fresh.touched[h] = t
			}
		}
		if c.entries == nil || len(c.entries) >= maxCached {
			c.entries = map[store.Key]*cached{}
		}
		c.entries[k] = fresh
		return fresh, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.(*cached), false, nil
}

// forget drops a record this Service changed, so its next read is fresh.
func (s *Service) forget(k store.Key) {
	s.cache.mu.Lock()
	delete(s.cache.entries, k)
	s.cache.mu.Unlock()
}

// noteTouch records that this replica wrote, or tried to write, a key's
// last use at now.
func (s *Service) noteTouch(e *cached, hash []byte, now time.Time) {
	s.cache.mu.Lock()
	e.touched[string(hash)] = now
	s.cache.mu.Unlock()
}

// lastTouch is when a key was last used as far as this replica knows: the
// later of the record's word and its own tries.
func (s *Service) lastTouch(e *cached, hash []byte, stored time.Time) time.Time {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	if t, ok := e.touched[string(hash)]; ok && t.After(stored) {
		return t
	}
	return stored
}
