package limit

import (
	"sync"
	"time"
)

// Rate is a token bucket's: PerSecond tokens a second, up to Burst.
type Rate struct {
	PerSecond, Burst float64
}

// Local is a limit kept in one process's memory, for unauthenticated calls
// that must be refused before they cost a store round trip: a token bucket
// per source (an address or IPv6 /64), asked first so that one source
// cannot spend the others' share, then one over every source. It tracks at
// most maxSources sources at once; past that, sources whose buckets are
// full again are forgotten (looked for once a second at most), and a new
// source is refused until one is: it fails closed.
type Local struct {
	perSource, all Rate
	maxSources     int
	now            func() time.Time

	mu      sync.Mutex
	total   bucket
	sources map[string]*bucket
	swept   time.Time // when full buckets were last forgotten
}

// bucket is a token bucket's state.
type bucket struct {
	tokens float64
	last   time.Time
}

// take spends a token of a bucket filled at r, if it has one; a new bucket
// starts full. A zero rate never refuses.
func (b *bucket) take(now time.Time, r Rate) bool {
	if r.PerSecond <= 0 {
		return true
	}
	if b.last.IsZero() {
		b.tokens = r.Burst
	}
	b.tokens = min(r.Burst, b.tokens+max(0, now.Sub(b.last).Seconds())*r.PerSecond)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// full reports whether a bucket has filled up again by now (forgetting it
// loses nothing).
func (b *bucket) full(now time.Time, r Rate) bool {
	return b.tokens+now.Sub(b.last).Seconds()*r.PerSecond >= r.Burst
}

// NewLocal returns a limit of perSource for each source and all over every
// source, tracking at most maxSources sources, on the clock now (nil:
// time.Now).
func NewLocal(perSource, all Rate, maxSources int, now func() time.Time) *Local {
	if now == nil {
		now = time.Now
	}
	return &Local{perSource: perSource, all: all, maxSources: maxSources, now: now, sources: map[string]*bucket{}}
}

// Allow spends a token of source's bucket, then of the one over all, and
// reports whether both had one.
func (l *Local) Allow(source string) bool { return l.AllowAt(source, l.now()) }

// AllowAt is Allow at the time now (for a caller with a clock of its own).
func (l *Local) AllowAt(source string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.sources[source]
	if b == nil {
		if len(l.sources) >= l.maxSources {
			if now.Sub(l.swept) < time.Second {
				return false
			}
			l.swept = now
			for k, old := range l.sources {
				if old.full(now, l.perSource) {
					delete(l.sources, k)
				}
			}
			if len(l.sources) >= l.maxSources {
				return false
			}
		}
		b = &bucket{}
		l.sources[source] = b
	}
	return b.take(now, l.perSource) && l.total.take(now, l.all)
}

// RetryAfter is how long a refused source should wait: until its bucket,
// or the one over all, has a token again (a second at the least).
func (l *Local) RetryAfter(source string) time.Duration {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	wait := func(b *bucket, r Rate) time.Duration {
		if b == nil || r.PerSecond <= 0 {
			return 0
		}
		have := min(r.Burst, b.tokens+max(0, now.Sub(b.last).Seconds())*r.PerSecond)
		return time.Duration(max(0, 1-have) / r.PerSecond * float64(time.Second))
	}
	return max(time.Second, wait(l.sources[source], l.perSource), wait(&l.total, l.all))
}
