package payment

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/paypage/paypage/pkg/processor"
)

// finish writes an attempt's end: the payment succeeds, or the decline is
// recorded (and counted when it reached the issuer or the processor). The
// attempt's held secrets are deleted in the same step. An approval for an
// attempt that has ended already is voided, never dropped.
func (svc *Service) finish(ctx context.Context, st *State, attempt *Attempt, res processor.Result, counted bool) (Outcome, error) {
	return svc.finishWith(ctx, st, attempt, res, counted, nil)
}

// finishWith is finish with one more change to the state, made in the same
// save (again after each reload).
func (svc *Service) finishWith(ctx context.Context, st *State, attempt *Attempt, res processor.Result, counted bool, also func(*State)) (Outcome, error) {
	if !res.Approved && !processor.Known(res.Code) {
		// A connector's code of its own (or none): the shop API names only
		// ours, so it reads do_not_honor; the ISO 8583 code stays beside it.
		res.Code = processor.DoNotHonor
	}
	for {
		a := st.Session.Live
		if a == nil || a.ID != attempt.ID {
			if res.Approved {
				return svc.lateApproval(ctx, st, attempt, res)
			}
			return outcome(st), nil // ended elsewhere
		}
		if also != nil {
			also(st)
		}
		now := svc.now().UTC()
		events := st.end(res, counted, now)
		svc.keepUntil(st, now)
		err := svc.repo.Save(ctx, st, Change{Events: events, Drop: []Held{{Kind: HeldCVV, Ref: attempt.ID}, {Kind: HeldAuth, Ref: attempt.ID}}})
		if err == nil {
			if svc.metrics != nil {
				svc.metrics.AttemptEnded(a.Method, outcomeOf(res))
			}
			return outcome(st), nil
		}
		if !errors.Is(err, ErrConflict) {
			return Outcome{}, err
		}
		if err := svc.reload(ctx, st); err != nil {
			return Outcome{}, err
		}
	}
}

func outcomeOf(res processor.Result) string {
	if res.Approved {
		return OutcomeSucceeded
	}
	return res.Code
}

// end applies an attempt's result to the session and its payment, and
// returns the events it causes.
func (st *State) end(res processor.Result, counted bool, now time.Time) []Event {
	s, p, a := &st.Session, st.Payment, st.Session.Live
	s.Live = nil
	if p == nil {
		// Ended before its payment was made (its owner went away before the
		// card was sealed): nothing reached anyone, nothing to record but why.
		s.LastDecline = &Decline{Code: res.Code, NetworkCode: res.NetworkCode}
		return s.expireIfDue(now, nil)
	}
	r := Result{ID: a.ID, Method: a.Method, Time: now, Outcome: outcomeOf(res), ProcessorRef: res.Reference}
	if a.Card != nil {
		r.Last4, r.Brand = a.Card.Last4, string(a.Card.Brand)
	}
	var events []Event
	if res.Approved {
		s.Status, s.LastDecline = SessionComplete, nil
		s.Attempts++
		p.Status, p.AuthCode, p.ProcessorRef, p.Decline = StatusSucceeded, res.AuthCode, res.Reference, nil
		if a.Method == MethodKaspi {
			p.KaspiRef = res.Reference
		}
		p.Attempts = append(p.Attempts, r)
		return append(events, Event{Type: EventPaymentSucceeded})
	}
	d := &Decline{Code: res.Code, NetworkCode: res.NetworkCode}
	s.LastDecline = d
	p.Status, p.Decline = StatusFailed, d
	if counted {
		s.Attempts++
		p.Attempts = append(p.Attempts, r)
		events = append(events, Event{Type: EventPaymentFailed})
		if s.Attempts >= s.MaxAttempts {
			s.Status = SessionFailed
		}
	}
	return s.expireIfDue(now, events)
}

// expireIfDue expires an open session past its time, adding its event.
func (s *Session) expireIfDue(now time.Time, events []Event) []Event {
	if s.Status == SessionOpen && !now.Before(s.ExpiresAt) {
		s.Status = SessionExpired
		events = append(events, Event{Type: EventSessionExpired})
	}
	return events
}

// lateApproval handles an approval for an attempt that has ended already
// (its owner lost the lease, and another replica closed it): it is recorded
// on the payment as being voided, then voided at the processor, so that a
// session is captured at most once and every authorization is accounted for.
func (svc *Service) lateApproval(ctx context.Context, st *State, attempt *Attempt, res processor.Result) (Outcome, error) {
	for {
		p := st.Payment
		if p == nil {
			return outcome(st), nil
		}
		if i := slices.IndexFunc(p.Attempts, func(r Result) bool { return r.ID == attempt.ID }); i >= 0 {
			if p.Attempts[i].Outcome == OutcomeVoiding {
				return svc.void(ctx, st, attempt.ID)
			}
			return outcome(st), nil // this approval is the one recorded, or it was voided already
		}
		p.Attempts = append(p.Attempts, svc.voiding(attempt, res.Reference))
		err := svc.repo.Save(ctx, st, Change{})
		if err == nil {
			return svc.void(ctx, st, attempt.ID)
		}
		if !errors.Is(err, ErrConflict) {
			return Outcome{}, err
		}
		if err := svc.reload(ctx, st); err != nil {
			return Outcome{}, err
		}
	}
}

// voiding is the record of an attempt's authorization to void, through the
// attempt's own way (the processor for a card, Kaspi for a QR), by the
// reference the approval came with (a QR's ID when none came).
func (svc *Service) voiding(a *Attempt, ref string) Result {
	now := svc.now().UTC()
	r := Result{ID: a.ID, Method: a.Method, Time: now, Outcome: OutcomeVoiding, ProcessorRef: ref, NextTry: now.Add(svc.timing.RefundRetry).Truncate(time.Millisecond)}
	if ref == "" && a.QR != nil {
		r.ProcessorRef = a.QR.ID
	}
	if a.Card != nil {
		r.Last4, r.Brand = a.Card.Last4, string(a.Card.Brand)
	}
	return r
}

// void asks the processor (or Kaspi, with a full refund) to void an
// authorization recorded as voiding, and records the answer. Unanswered, it
// stays voiding and Settle asks again.
func (svc *Service) void(ctx context.Context, st *State, attempt string) (Outcome, error) {
	i := slices.IndexFunc(st.Payment.Attempts, func(r Result) bool { return r.ID == attempt })
	if i < 0 || st.Payment.Attempts[i].Outcome != OutcomeVoiding {
		return outcome(st), nil
	}
	r := st.Payment.Attempts[i]
	cctx, cancel := context.WithTimeout(ctx, svc.timing.CallTimeout)
	defer cancel()
	var (
		voided bool
		err    error
	)
	if r.Method == MethodKaspi {
		if svc.kaspi == nil {
			return outcome(st), nil
		}
		var rr processor.RefundResult
		rr, err = svc.kaspi.Refund(cctx, processor.RefundRequest{ID: "void_" + Group(attempt), Reference: r.ProcessorRef, Amount: st.Payment.Amount, Currency: st.Payment.Currency})
		voided = rr.Approved
	} else {
		var vr processor.VoidResult
		vr, err = svc.processor.Void(cctx, processor.VoidRequest{ID: attempt, Reference: r.ProcessorRef, Amount: st.Payment.Amount, Currency: st.Payment.Currency})
		voided = vr.Voided
	}
	if err != nil {
		return outcome(st), nil
	}
	for {
		i := slices.IndexFunc(st.Payment.Attempts, func(r Result) bool { return r.ID == attempt })
		if i < 0 || st.Payment.Attempts[i].Outcome != OutcomeVoiding {
			return outcome(st), nil
		}
		var events []Event
		st.Payment.Attempts[i].NextTry = time.Time{}
		if voided {
			st.Payment.Attempts[i].Outcome = OutcomeVoided
			events = append(events, Event{Type: EventPaymentVoided})
		} else {
			st.Payment.Attempts[i].Outcome = OutcomeNotCharged
		}
		err := svc.repo.Save(ctx, st, Change{Events: events})
		if !errors.Is(err, ErrConflict) {
			return outcome(st), err
		}
		if err := svc.reload(ctx, st); err != nil {
			return Outcome{}, err
		}
	}
}
