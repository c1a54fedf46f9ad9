// Package due is the reconciler's engine: on every replica it reads the
// store's due index, kind by kind (what is due now, earliest first), and
// hands each due key to the handler of its kind, a few at a time per kind: a
// kind whose workers are all busy is not read, and delays no other. It never
// scans records: the cost of a look follows the work that is due. Handlers
// take an item with a compare-and-set (a lease, or by moving its due time
// on), so two replicas that see the same key do its work once. A handler that
// fails (or panics) is logged and its key rests, doubling from a second to a
// few minutes, before it is handed out again on this replica.
package due

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/paypage/paypage/pkg/store"
)

// Handler does the work a due key stands for. It returns nil when the work
// is done or filed for later; an error is logged and the key, still due, is
// looked at again on the next look.
type Handler func(ctx context.Context, k store.Key) error

// Later is what a handler returns when its key's work cannot be done yet
// for a reason that is not the key's own (the vault is sealed): the key
// rests d on this replica, without a failure's doubling back-off, and the
// log says so at debug level only.
func Later(d time.Duration, reason error) error { return &later{d: d, err: reason} }

type later struct {
	d   time.Duration
	err error
}

func (l *later) Error() string { return "not yet: " + l.err.Error() }
func (l *later) Unwrap() error { return l.err }

type kind struct {
	name   string
	handle Handler
	slots  chan struct{}
}

// rest is a failing key's back-off on this replica.
type rest struct {
	until time.Time
	fails int
	at    time.Time // when the key was due as it was handed out
}

// Runner reads the due index and runs handlers.
type Runner struct {
	store store.Store
	log   *slog.Logger
	now   func() time.Time
	// Poll is the longest wait between looks (a wake can come sooner).
	Poll time.Duration
	// MaxRest bounds how long a failing key rests before it is handed out again.
	MaxRest time.Duration

	mu       sync.Mutex
	kinds    []*kind
	inflight map[store.Key]bool
	resting  map[store.Key]rest
	idle     *sync.Cond // signalled when a handler returns
	next     time.Time  // the earliest wake asked for
	lookNow  bool       // a wake for now came
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
		store: s, log: log, now: now, Poll: time.Second, MaxRest: 5 * time.Minute,
		inflight: map[store.Key]bool{}, resting: map[store.Key]rest{}, wake: make(chan struct{}, 1),
	}
	r.idle = sync.NewCond(&r.mu)
	return r, nil
}

// Handle runs h for due keys of a kind, at most workers at once on this replica.
func (r *Runner) Handle(kindName string, workers int, h Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kinds = append(r.kinds, &kind{name: kindName, handle: h, slots: make(chan struct{}, max(1, workers))})
}

// Wake asks for a look at time at: a commit that filed something due calls
// it, so this replica does not wait for the poll. A time still to come only
// moves the next look earlier (when it is before the poll); it does not
// read the index now.
func (r *Runner) Wake(at time.Time) {
	r.mu.Lock()
	now := !at.After(r.now())
	if now {
		r.lookNow = true
	} else if !r.next.IsZero() && !at.Before(r.next) || at.Sub(r.now()) >= r.Poll {
		r.mu.Unlock()
		return // the poll, or an earlier wake, comes first anyway
	} else {
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
	look := true
	for {
		if look {
			if _, err := r.Look(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("due index", "err", err.Error())
			}
		}
		timer.Reset(r.wait())
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			look = true
		case <-r.wake:
			r.mu.Lock()
			look, r.lookNow = r.lookNow, false
			r.mu.Unlock()
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

// Look reads, for each kind with a free worker, what of it is due now, and
// starts a handler for each key that is not being handled here already nor
// resting after a failure, as long as the kind has free workers; the others
// stay due for the next look. It returns how many it started.
func (r *Runner) Look(ctx context.Context) (int, error) {
	now := r.now()
	r.mu.Lock()
	if !r.next.IsZero() && !now.Before(r.next) {
		r.next = time.Time{}
	}
	kinds := append([]*kind(nil), r.kinds...)
	r.mu.Unlock()
	started := 0
	var errs []error
	for _, kd := range kinds {
		free := cap(kd.slots) - len(kd.slots)
		if free == 0 {
			continue // all its workers busy: reading its backlog would only skip it
		}
		r.mu.Lock()
		want := free + r.held(kd.name)
		r.mu.Unlock()
		keys, err := r.store.Due(ctx, kd.name, now, want)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		more := len(keys) >= want // the read was full: more may be due behind it
		r.forget(kd.name, keys, more)
		for _, dk := range keys {
			if r.start(ctx, kd, dk, now, more) {
				started++
			}
		}
	}
	return started, errors.Join(errs...)
}

// forget drops the rests of a kind's keys that a look found no longer due:
// their work was done elsewhere (another replica) or moved on. A read that
// was not full holds every key due now; a full one, every key due before
// its last. So a key that failed here once costs no read once it is done.
func (r *Runner) forget(kindName string, keys []store.DueKey, full bool) {
	due := make(map[store.Key]bool, len(keys))
	for _, dk := range keys {
		due[dk.Key] = true
	}
	var last time.Time
	if full && len(keys) > 0 {
		last = keys[len(keys)-1].At
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, rs := range r.resting {
		if k.Kind != kindName || due[k] {
			continue
		}
		if !full || !rs.at.IsZero() && rs.at.Before(last) {
			delete(r.resting, k)
		}
	}
}

// held counts the keys of a kind that are in flight or resting here: a look
// reads that many more, to see past them. The caller holds mu.
func (r *Runner) held(kindName string) int {
	n := 0
	for k := range r.inflight {
		if k.Kind == kindName {
			n++
		}
	}
	for k := range r.resting {
		if k.Kind == kindName {
			n++
		}
	}
	return n
}

// start hands k to its kind's handler, unless it is in flight here, resting,
// or the kind has no free worker.
func (r *Runner) start(ctx context.Context, kd *kind, dk store.DueKey, now time.Time, more bool) bool {
	k := dk.Key
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight[k] {
		return false
	}
	if rs, ok := r.resting[k]; ok && now.Before(rs.until) {
		return false
	}
	select {
	case kd.slots <- struct{}{}:
	default:
		return false
	}
	r.inflight[k] = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := r.run(ctx, kd, k)
		r.mu.Lock()
		delete(r.inflight, k)
		<-kd.slots
		var wait *later
		switch {
		case err != nil && ctx.Err() == nil && errors.As(err, &wait):
			r.resting[k] = rest{until: r.now().Add(wait.d), at: dk.At}
		case err != nil && ctx.Err() == nil:
			rs := r.resting[k]
			rs.fails++
			rs.at = dk.At
			rs.until = r.now().Add(min(time.Second<<min(rs.fails-1, 20), r.MaxRest))
			r.resting[k] = rs
		default:
			delete(r.resting, k)
		}
		r.idle.Broadcast()
		r.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			if wait != nil {
				r.log.Debug("due work waits", "kind", k.Kind, "id", k.ID, "err", err.Error())
			} else {
				r.log.Warn("due work failed", "kind", k.Kind, "id", k.ID, "err", err.Error())
			}
		} else if more {
			r.Wake(r.now()) // a worker is free and more is due: look again now
		}
	}()
	return true
}

// run calls a handler, turning a panic into an error (with its stack in the
// log), so one bad record cannot take the replica down.
func (r *Runner) run(ctx context.Context, kd *kind, k store.Key) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("due handler panicked", "kind", k.Kind, "id", k.ID, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked")
		}
	}()
	return kd.handle(ctx, k)
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
