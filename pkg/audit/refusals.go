package audit

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/paypage/paypage/pkg/periodic"
)

// OtherSources is the source of the one record that sums up a window's
// refusals from sources past Refusals' bound.
const OtherSources = "(other sources)"

// Refusals counts refused calls (a missing or wrong key, a forbidden or
// malformed request) in memory, and writes one audit record per source,
// actor, action and reason for each window, with the count and the first
// and last time: a flood of refusals costs one durable write a window, not
// one a call. Successes are never counted here: they are recorded one by
// one. It bounds its memory: past MaxSources distinct sources in a window,
// the rest are summed up under OtherSources in the trail, and counted
// toward the limit in a fixed table of shared counters (foldedSlots), each
// source's slot picked by a keyed hash: a source past the bound is counted
// with the few it shares a slot with, never less than its own refusals, so
// the limit holds it back (it fails closed) and an outsider cannot choose
// whom it collides with.
type Refusals struct {
	log        *Log
	window     time.Duration
	maxSources int
	logger     *slog.Logger
	seed       maphash.Seed // keys the folded sources' slots

	mu        sync.Mutex
	end       time.Time // when the current window ends
	groups    map[refusalKey]*refusal
	perSource map[string]int64
	folded    [foldedSlots]int64 // the counts of sources past the bound, by slot
	pending   []Event            // ended windows' records, not yet written
}

// foldedSlots is how many shared counters the sources past the bound are
// counted in (32 KiB).
const foldedSlots = 4096

type refusalKey struct{ source, actor, action, reason, merchant string }

type refusal struct {
	count       int64
	first, last time.Time
	object      string
}

// NewRefusals returns a counter whose records go to l, a window at a time.
func NewRefusals(l *Log, window time.Duration, maxSources int, logger *slog.Logger) *Refusals {
	if logger == nil {
		logger = slog.Default()
	}
	return &Refusals{log: l, window: window, maxSources: maxSources, logger: logger, seed: maphash.MakeSeed(),
		groups: map[refusalKey]*refusal{}, perSource: map[string]int64{}}
}

// roll closes the current window if it has ended; the caller holds mu.
func (r *Refusals) roll(now time.Time) {
	if now.Before(r.end) {
		return
	}
	r.closeGroups()
	clear(r.perSource)
	clear(r.folded[:])
	r.end = now.Truncate(r.window).Add(r.window)
}

// closeGroups turns the counts so far into pending records; the caller
// holds mu. The per-source counts, which the limit reads, stay.
func (r *Refusals) closeGroups() {
	for k, g := range r.groups {
		r.pending = append(r.pending, Event{
			Actor: k.actor, Action: k.action, Outcome: Failure, Source: k.source, Reason: k.reason, Merchant: k.merchant,
			Object: g.object, Count: g.count, First: g.first, Last: g.last,
		})
	}
	if max := 8 * r.maxSources; len(r.pending) > max { // the store has been down a long while
		r.logger.Error("audit: refusal records dropped while the store did not answer", "dropped", len(r.pending)-max)
		r.pending = r.pending[len(r.pending)-max:]
	}
	clear(r.groups)
}

// Add counts one refused call (e.Source names where it came from) and
// returns how many refusals its source has had in this window, this one
// included; for a source past the bound, which is not tracked alone, the
// count of the slot it shares (at least its own).
func (r *Refusals) Add(e Event) int64 {
	now := r.log.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.roll(now)
	k := refusalKey{source: e.Source, actor: e.Actor, action: e.Action, reason: e.Reason, merchant: e.Merchant}
	_, known := r.perSource[e.Source]
	if !known && len(r.perSource) >= r.maxSources {
		k.source = OtherSources
	}
	g := r.groups[k]
	if g == nil {
		g = &refusal{first: now, object: e.Object}
		r.groups[k] = g
	} else if g.object != e.Object {
		g.object = "(various)"
	}
	g.count++
	g.last = now
	if k.source == OtherSources {
		slot := r.slot(e.Source)
		r.folded[slot]++
		return r.folded[slot]
	}
	r.perSource[e.Source]++
	return r.perSource[e.Source]
}

// slot is the shared counter of a source past the bound.
func (r *Refusals) slot(source string) uint64 {
	return maphash.String(r.seed, source) % foldedSlots
}

// Count returns how many refusals source has had in this window: for a
// source past the bound, its slot's count (at least its own).
func (r *Refusals) Count(source string) int64 {
	now := r.log.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.roll(now)
	if n, ok := r.perSource[source]; ok {
		return n
	}
	if len(r.perSource) < r.maxSources {
		return 0 // never refused: not folded
	}
	return r.folded[r.slot(source)]
}

// Remaining is how long the current window has left (when its counts
// start again), by the trail's clock.
func (r *Refusals) Remaining() time.Duration {
	now := r.log.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.roll(now)
	return r.end.Sub(now)
}

// Flush writes the records of the windows that have ended, and with all
// the counts of the current one so far too (at shutdown, or for an operator
// reading the trail; the source's count towards the limit stays). A record
// the store refuses stays for the next flush.
func (r *Refusals) Flush(ctx context.Context, all bool) error {
	r.mu.Lock()
	r.roll(r.log.Now())
	if all {
		r.closeGroups()
	}
	pending := r.pending
	r.pending = nil
	r.mu.Unlock()
	rest, err := periodic.Write(ctx, pending, r.log.Record)
	if err != nil {
		r.mu.Lock()
		r.pending = append(rest, r.pending...)
		r.mu.Unlock()
	}
	return err
}

// Run flushes ended windows and caps the trail (Log.Trim) every tick until
// ctx ends, then flushes what is left.
func (r *Refusals) Run(ctx context.Context, tick time.Duration) {
	periodic.Flush(ctx, tick, r.logger, "audit: refusal records", func(ctx context.Context, all bool) error {
		err := r.Flush(ctx, all)
		if !all {
			if _, terr := r.log.Trim(ctx); terr != nil {
				err = errors.Join(err, fmt.Errorf("trail not trimmed: %w", terr))
			}
		}
		return err
	})
}
