// Package due is the reconciler's engine: on every replica it reads the
// store's due index (what is due now, earliest first) and hands each due key
// to the handler of its kind, a few at a time per kind. It never scans
// records: the cost of a look follows the work that is due. Handlers take an
// item with a compare-and-set (a lease, or by moving its due time on), so two
// replicas that see the same key do its work once.
package due

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/paypage/paypage/pkg/store"
)

// Handler does the work a due key stands for. It returns nil when the work
// is done or filed for later; an error is logged and the key, still due, is
// looked at again on the next look.
type Handler func(ctx context.Context, k store.Key) error

type kind struct {
	handle Handler
	slots  chan struct{}
}

// Runner reads the due index and runs handlers.
type Runner struct {
	store store.Store
	log   *slog.Logger
	now   func() time.Time
	// Poll is the longest wait between looks (a wake can come sooner).
	Poll time.Duration
	// Batch is how many due keys one look reads.
	Batch int

	mu       sync.Mutex
	kinds    map[string]*kind
	inflight map[store.Key]bool
	idle     *sync.Cond // signalled when a handler returns
	next     time.Time  // the earliest wake asked for
	wake     chan struct{}
	wg       sync.WaitGroup
}

// New returns a runner over s. now may be nil (time.Now).
func New(s store.Store, log *slog.Logger, now func() time.Time) (*Runner, error) {
	if s == nil {
		return nil, errors.New("due: a store is required")
	}
	if log == nil {
		log = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	r := &Runner{
		store: s, log: log, now: now, Poll: time.Second, Batch: 200,
		kinds: map[string]*kind{}, inflight: map[store.Key]bool{}, wake: make(chan struct{}, 1),
	}
	r.idle = sync.NewCond(&r.mu)
	return r, nil
}

// Handle runs h for due keys of a kind, at most workers at once on this replica.
func (r *Runner) Handle(kindName string, workers int, h Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kinds[kindName] = &kind{handle: h, slots: make(chan struct{}, max(1, workers))}
}

// Wake asks for a look at time at (at once when it has come): a commit that
// filed something due calls it, so this replica does not wait for the poll.
func (r *Runner) Wake(at time.Time) {
	r.mu.Lock()
	if r.next.IsZero() || at.Before(r.next) {
		r.next = at
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run looks at the due index until ctx ends, then waits for the handlers
// it started.
func (r *Runner) Run(ctx context.Context) {
	defer r.wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if _, err := r.Look(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("due index", "err", err.Error())
		}
		timer.Reset(r.wait())
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-r.wake:
		}
	}
}

// wait is how long until the next look: the poll, or a wake asked for sooner.
func (r *Runner) wait() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.Poll
	if !r.next.IsZero() {
		if until := r.next.Sub(r.now()); until < d {
			d = max(until, 0)
		}
	}
	return d
}

// Look reads what is due now and starts a handler for each key that is not
// being handled here already and whose kind has a free worker; the others
// stay due for the next look. It returns how many it started.
func (r *Runner) Look(ctx context.Context) (int, error) {
	now := r.now()
	r.mu.Lock()
	if !r.next.IsZero() && !now.Before(r.next) {
		r.next = time.Time{}
	}
	r.mu.Unlock()
	keys, err := r.store.Due(ctx, now, r.Batch)
	if err != nil {
		return 0, err
	}
	started := 0
	for _, dk := range keys {
		k := dk.Key
		r.mu.Lock()
		kd := r.kinds[k.Kind]
		if kd == nil || r.inflight[k] {
			r.mu.Unlock()
			continue
		}
		select {
		case kd.slots <- struct{}{}:
		default:
			r.mu.Unlock()
			continue
		}
		r.inflight[k] = true
		r.wg.Add(1)
		r.mu.Unlock()
		started++
		go func() {
			defer r.wg.Done()
			err := kd.handle(ctx, k)
			r.mu.Lock()
			delete(r.inflight, k)
			<-kd.slots
			r.idle.Broadcast()
			r.mu.Unlock()
			if err != nil && ctx.Err() == nil {
				r.log.Warn("due work failed", "kind", k.Kind, "id", k.ID, "err", err.Error())
				return
			}
			if err == nil && len(keys) == r.Batch {
				r.Wake(r.now()) // more may be due behind this batch
			}
		}()
	}
	return started, nil
}

// Drain looks at what is due now and waits until no handler runs on this
// replica: what a test calls to have the reconciler catch up.
func (r *Runner) Drain(ctx context.Context) error {
	if _, err := r.Look(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.inflight) > 0 {
		r.idle.Wait()
	}
	return nil
}
