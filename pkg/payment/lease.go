package payment

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Outcome is where a session stands after a step, for the page.
type Outcome struct {
	Session   Session
	Payment   *Payment
	Challenge *Challenge // set while the shopper must pass the bank's check
}

func outcome(st *State) Outcome {
	o := Outcome{Session: st.Session, Payment: st.Payment}
	if a := st.Session.Live; a != nil && a.Stage == StageChallenge {
		o.Challenge = a.Challenge
	}
	return o
}

// lease returns a lease for this replica from now. Due times are kept to
// the millisecond, as the due index keeps them.
func (svc *Service) lease() Lease {
	return Lease{Owner: svc.owner, Until: svc.now().UTC().Add(svc.timing.Lease).Truncate(time.Millisecond)}
}

// claim takes the lease on the live attempt for this replica, so that nobody
// else drives it until the lease ends. ErrConflict: someone came first.
func (svc *Service) claim(ctx context.Context, st *State) error {
	st.Session.Live.Lease = svc.lease()
	return svc.repo.Save(ctx, st, Change{})
}

// release gives the lease up; the reconciler looks at the attempt again at next.
func (svc *Service) release(ctx context.Context, st *State, next time.Time) error {
	a := st.Session.Live
	a.Lease, a.Next = Lease{}, next.UTC().Truncate(time.Millisecond)
	err := svc.repo.Save(ctx, st, Change{})
	if errors.Is(err, ErrConflict) {
		return nil // someone else took the attempt over; it is theirs now
	}
	return err
}

// call runs fn with the call deadline while renewing the lease on st's live
// attempt every third of the lease, so that nobody resumes the attempt while
// its owner still waits for an answer. st stays current with what the
// renewals saved. A renewal that fails (the lease was lost) stops renewing;
// the save after the call then meets the conflict and reloads.
func (svc *Service) call(ctx context.Context, st *State, fn func(ctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, svc.timing.CallTimeout)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(svc.timing.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if err := svc.claim(ctx, st); err != nil {
					return
				}
			}
		}
	}()
	err := fn(cctx)
	close(stop)
	wg.Wait()
	return err
}

// abandon lets go of an attempt that never reached anyone (a limit, a vault
// outage): no trace but the session free again. It returns cause.
func (svc *Service) abandon(ctx context.Context, st *State, cause error) (Outcome, error) {
	id := st.Session.Live.ID
	for {
		st.Session.Live = nil
		err := svc.repo.Save(ctx, st, Change{Drop: []Held{{Kind: HeldCVV, Ref: id}, {Kind: HeldAuth, Ref: id}}})
		if !errors.Is(err, ErrConflict) {
			if err != nil {
				return Outcome{}, err
			}
			return outcome(st), cause
		}
		if err := svc.reload(ctx, st); err != nil {
			return Outcome{}, err
		}
		if a := st.Session.Live; a == nil || a.ID != id {
			return outcome(st), cause
		}
	}
}

// reload reads st again in place.
func (svc *Service) reload(ctx context.Context, st *State) error {
	fresh, err := svc.repo.Load(ctx, st.Session.ID)
	if err != nil {
		return err
	}
	*st = *fresh
	return nil
}
