package payment

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/processor"
)

// Drive moves a session that the due index says needs a look, with no page
// view: it expires an open session past its time, and takes over an attempt
// in flight whose lease has ended: an abandoned start ends, an open challenge
// is asked about (and ends when the security code's hold does), a lost
// authorization answer is asked for again under the same attempt ID (and
// voided when it stays unknown too long), a QR is polled. The reconciler
// calls it on every replica; the lease makes one of them do the work.
func (svc *Service) Drive(ctx context.Context, sessionID string) error {
	st, err := svc.load(ctx, sessionID)
	if errors.Is(err, ErrSessionNotFound) {
		return svc.repo.Forget(ctx, "session", sessionID)
	}
	if err != nil {
		return err
	}
	now := svc.now()
	if due := st.Session.DueAt(); due.IsZero() || now.Before(due.Truncate(time.Millisecond)) {
		return nil // done, or moved on since the index was read
	}
	a := st.Session.Live
	if a == nil {
		if st.Session.Status == SessionOpen {
			return svc.expire(ctx, st)
		}
		return svc.purge(ctx, st)
	}
	if a.Lease.HeldAt(now) {
		return nil
	}
	if err := svc.claim(ctx, st); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil // another replica took it
		}
		return err
	}
	switch a.Stage {
	case StageChallenge:
		_, err = svc.challengeResult(ctx, st, true)
	case StageAuthorizing:
		if a.Authorizing.IsZero() {
			_, err = svc.authorize(ctx, st) // never sent (the vault was sealed, or its owner went away first)
		} else {
			err = svc.askAgain(ctx, st)
		}
	case StageKaspiStarting:
		_, err = svc.createQR(ctx, st)
	case StageKaspi:
		_, err = svc.kaspiResult(ctx, st, false)
	default: // claimed or authenticating: its owner went away before 3-D Secure answered
		_, err = svc.finish(ctx, st, a, processor.Result{Code: processor.TryAgain}, false)
	}
	switch {
	case errors.Is(err, ErrPending), apperr.Is(err, apperr.Unavailable) && st.Session.Live != nil:
		return nil // asked for again later: it is filed for that
	case errors.Is(err, ErrStaleResult), errors.Is(err, ErrInProgress):
		return nil // someone else moved it meanwhile
	}
	return err
}

// expire ends an open session past its time, with its session.expired event.
func (svc *Service) expire(ctx context.Context, st *State) error {
	if st.Session.StatusAt(svc.now()) != SessionExpired || st.Session.Status != SessionOpen {
		return nil
	}
	st.Session.Status = SessionExpired
	svc.keepUntil(st, st.Session.ExpiresAt)
	err := svc.repo.Save(ctx, st, Change{Events: []Event{{Type: EventSessionExpired}}})
	if errors.Is(err, ErrConflict) {
		return nil // changed meanwhile: the next look decides again
	}
	return err
}

// askAgain asks the processor for the answer to an authorization whose
// answer was lost, under the attempt's own ID; the caller holds the lease.
// "No record of it" is an unknown, not a decline: the attempt stays in
// flight and is asked about again, until GiveUpAfter, when it is voided
// (so that a late approval is cancelled) and ends without counting.
func (svc *Service) askAgain(ctx context.Context, st *State) error {
	a := st.Session.Live
	var res processor.Result
	err := svc.call(ctx, st, func(ctx context.Context) (err error) {
		res, err = svc.processor.Inquire(ctx, a.ID)
		return err
	})
	if err == nil {
		_, err = svc.finish(ctx, st, a, res, res.Code != processor.TryAgain)
		return err
	}
	now := svc.now().UTC()
	began := a.Authorizing
	if began.IsZero() {
		began = a.Started
	}
	if now.Sub(began) < svc.timing.GiveUpAfter {
		a.Asks++ // the first ask came AskAgain[0] after the lost answer; then the schedule on
		return svc.release(ctx, st, now.Add(svc.timing.AskAgain[min(a.Asks, len(svc.timing.AskAgain)-1)]))
	}
	return svc.giveUp(ctx, st, a, "")
}

// giveUp ends an attempt whose answer stayed unknown (not counted), records
// its authorization as to be voided in the same save, then voids it: a late
// approval is cancelled, never captured.
func (svc *Service) giveUp(ctx context.Context, st *State, a *Attempt, ref string) error {
	voiding := svc.voiding(a, ref)
	record := func(st *State) {
		if st.Payment != nil {
			st.Payment.Attempts = append(st.Payment.Attempts, voiding)
		}
	}
	if _, err := svc.finishWith(ctx, st, a, processor.Result{Code: processor.TryAgain}, false, record); err != nil {
		return err
	}
	_, err := svc.void(ctx, st, a.ID)
	return err
}

// Settle moves a payment that the due index says needs a look: refunds and
// voids whose answers were lost are asked for again under their own IDs, so
// asking twice acts once.
func (svc *Service) Settle(ctx context.Context, paymentID string) error {
	st, err := svc.repo.LoadPayment(ctx, paymentID)
	if errors.Is(err, ErrPaymentNotFound) {
		return svc.repo.Forget(ctx, "payment", paymentID)
	}
	if err != nil {
		return err
	}
	now := svc.now().UTC()
	p := st.Payment
	if due := p.DueAt(); due.IsZero() || now.Before(due.Truncate(time.Millisecond)) {
		return nil
	}
	// Claim the due work by moving it on: another replica reading the index
	// now finds it not due.
	var refunds, voids []string
	for i, r := range p.Refunds {
		if r.Status == RefundPending && !now.Before(r.NextTry.Truncate(time.Millisecond)) {
			p.Refunds[i].NextTry = now.Add(svc.timing.RefundRetry).Truncate(time.Millisecond)
			refunds = append(refunds, r.ID)
		}
	}
	for i, r := range p.Attempts {
		if r.Outcome == OutcomeVoiding && !now.Before(r.NextTry.Truncate(time.Millisecond)) {
			p.Attempts[i].NextTry = now.Add(svc.timing.RefundRetry).Truncate(time.Millisecond)
			voids = append(voids, r.ID)
		}
	}
	if err := svc.repo.Save(ctx, st, Change{}); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil
		}
		return err
	}
	var errs []error
	for _, id := range refunds {
		if i := slices.IndexFunc(st.Payment.Refunds, func(r Refund) bool { return r.ID == id }); i >= 0 {
			if _, err := svc.driveRefund(ctx, st, id); err != nil && !apperr.Is(err, apperr.Unavailable) {
				errs = append(errs, err)
			}
		}
	}
	for _, id := range voids {
		if _, err := svc.void(ctx, st, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// keepUntil sets when an ended session is purged: its retention from when
// it ended.
func (svc *Service) keepUntil(st *State, ended time.Time) {
	if st.Session.Status != SessionOpen && st.Session.PurgeAt.IsZero() && svc.timing.Retention > 0 {
		st.Session.PurgeAt = ended.UTC().Add(svc.timing.Retention).Truncate(time.Millisecond)
	}
}

// purge deletes an ended session and its payment at the end of their
// retention, counted from the payment's last change (a refund moves it on);
// one with a refund or void still in flight waits for it.
func (svc *Service) purge(ctx context.Context, st *State) error {
	now := svc.now().UTC()
	if p := st.Payment; p != nil {
		next := time.Time{}
		switch {
		case !p.DueAt().IsZero():
			next = now.Add(time.Hour)
		case now.Before(p.Updated.Add(svc.timing.Retention)):
			next = p.Updated.Add(svc.timing.Retention)
		}
		if !next.IsZero() {
			st.Session.PurgeAt = next.Truncate(time.Millisecond)
			if err := svc.repo.Save(ctx, st, Change{}); !errors.Is(err, ErrConflict) {
				return err
			}
			return nil
		}
	}
	if err := svc.repo.Delete(ctx, st); !errors.Is(err, ErrConflict) {
		return err
	}
	return nil
}

// CardUse is what the retention review needs to know of a card sealed on a
// session.
type CardUse struct {
	InFlight bool      // an attempt in flight uses it
	Used     bool      // it paid the session
	Settled  bool      // no refund or void of its payment is in flight
	Last     time.Time // its payment's last change
}

// CardUse says how the card behind token, sealed on session sessionID, is
// used: a card that paid stays for the card retention after its payment's
// last change; one that did not (declined, abandoned, a double submit's) is
// not used, and goes.
func (svc *Service) CardUse(ctx context.Context, sessionID, token string) (CardUse, error) {
	st, err := svc.load(ctx, sessionID)
	if errors.Is(err, ErrSessionNotFound) {
		return CardUse{}, nil
	}
	if err != nil {
		return CardUse{}, err
	}
	var u CardUse
	if a := st.Session.Live; a != nil && a.Card != nil && a.Card.Token == token {
		u.InFlight = true
	}
	if p := st.Payment; p != nil && p.Card != nil && p.Card.Token == token {
		switch p.Status {
		case StatusSucceeded, StatusPartiallyRefunded, StatusRefunded:
			u.Used, u.Settled, u.Last = true, p.DueAt().IsZero(), p.Updated
		}
	}
	return u, nil
}
