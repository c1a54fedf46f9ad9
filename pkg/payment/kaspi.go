package payment

import (
	"context"
	"errors"
	"time"

	"github.com/paypage/paypage/pkg/limit"
	"github.com/paypage/paypage/pkg/processor"
)

// KaspiRequest asks Kaspi for a QR payment.
type KaspiRequest struct {
	ID           string // our attempt ID: the idempotency key
	ExternalID   string // our session ID, which Kaspi's notifications carry back
	Merchant     string
	MerchantName string
	Amount       int64 // minor units of KZT
	Reference    string
	ExpiresAt    time.Time
}

// KaspiQR is a QR payment waiting to be scanned.
type KaspiQR struct {
	ID        string
	Payload   string // what the QR code encodes: the address the Kaspi.kz app opens
	ExpiresAt time.Time
}

// Kaspi QR statuses.
const (
	KaspiPending   = "pending"
	KaspiPaid      = "paid"
	KaspiDeclined  = "declined"
	KaspiExpired   = "expired"
	KaspiCancelled = "cancelled"
)

// KaspiStatus is where a QR payment stands.
type KaspiStatus struct {
	Status    string
	Code      string // decline code when declined
	Reference string // Kaspi's payment reference when paid
}

// Kaspi is the way to Kaspi Pay: a real connector or the sandbox.
type Kaspi interface {
	CreateQR(ctx context.Context, r KaspiRequest) (KaspiQR, error)
	Status(ctx context.Context, qrID string) (KaspiStatus, error)
	// Cancel ends a pending QR; it returns the final status, which is paid
	// when the shopper paid first.
	Cancel(ctx context.Context, qrID string) (KaspiStatus, error)
	Refund(ctx context.Context, r processor.RefundRequest) (processor.RefundResult, error)
}

// StartKaspi shows a Kaspi QR for the session: the one in flight while Kaspi
// waits for it, else a new one. The page starts it with a POST.
func (svc *Service) StartKaspi(ctx context.Context, sessionID, clientIP string) (Outcome, error) {
	ctx = detach(ctx)
	st, err := svc.load(ctx, sessionID)
	if err != nil {
		return Outcome{}, err
	}
	if a := st.Session.Live; a != nil && a.Method == MethodKaspi {
		return outcome(st), nil
	}
	if err := svc.checkOpen(&st.Session, MethodKaspi); err != nil {
		return outcome(st), err
	}
	sub := limit.Submission{Merchant: st.Session.Merchant, ClientIP: clientIP}
	if err := svc.limiter.Check(ctx, sub); err != nil {
		return outcome(st), err // refused before anything is written
	}
	if _, err := svc.begin(ctx, st, MethodKaspi, StageKaspiStarting); err != nil {
		return outcome(st), err
	}
	if err := svc.limiter.Submission(ctx, sub); err != nil {
		return svc.abandon(ctx, st, err)
	}
	return svc.createQR(ctx, st)
}

// createQR asks Kaspi for the live attempt's QR (the attempt ID makes asking
// twice make one QR) and waits for the shopper's app; the caller holds the lease.
func (svc *Service) createQR(ctx context.Context, st *State) (Outcome, error) {
	s, a := &st.Session, st.Session.Live
	now := svc.now().UTC()
	expires := now.Add(svc.timing.KaspiQR)
	if expires.After(s.ExpiresAt) {
		expires = s.ExpiresAt
	}
	var qr KaspiQR
	err := svc.call(ctx, st, func(ctx context.Context) (err error) {
		qr, err = svc.kaspi.CreateQR(ctx, KaspiRequest{
			ID: a.ID, ExternalID: s.ID, Merchant: s.Merchant, MerchantName: svc.merchantName(ctx, s.Merchant),
			Amount: s.Amount, Reference: s.Reference, ExpiresAt: expires,
		})
		return err
	})
	if err != nil {
		if !now.Before(expires) || !now.Before(a.Started.Add(svc.timing.KaspiQR)) {
			// Kaspi never made it in the QR's lifetime. Whatever it made, we
			// never showed: nobody can have paid it. Not an attempt.
			return svc.finish(ctx, st, a, processor.Result{Code: processor.TryAgain}, false)
		}
		// Kaspi may have made it: the reconciler asks again under the same ID.
		if rerr := svc.release(ctx, st, now.Add(svc.timing.KaspiPoll)); rerr != nil {
			return Outcome{}, rerr
		}
		return outcome(st), ErrPending
	}
	a.Stage, a.QR = StageKaspi, &QR{ID: qr.ID, Payload: qr.Payload, ExpiresAt: qr.ExpiresAt.UTC()}
	a.Lease, a.Next = Lease{}, now.Add(svc.timing.KaspiPoll).Truncate(time.Millisecond)
	svc.startPayment(st)
	st.Payment.Status, st.Payment.KaspiQR = StatusRequiresAction, qr.ID
	if err := svc.repo.Save(ctx, st, Change{}); err != nil {
		return Outcome{}, err
	}
	return outcome(st), nil
}

// CancelKaspi gives up the QR in flight (the shopper chose to pay by card, or
// asked for a new QR). A QR paid first stays paid.
func (svc *Service) CancelKaspi(ctx context.Context, sessionID string) (Outcome, error) {
	return svc.kaspiStep(ctx, sessionID, "", true)
}

// KaspiNotified takes Kaspi's notification that a QR was paid or declined.
// The notification only names the QR: its status is read from Kaspi.
func (svc *Service) KaspiNotified(ctx context.Context, sessionID, qrID string) (Outcome, error) {
	return svc.kaspiStep(ctx, sessionID, qrID, false)
}

func (svc *Service) kaspiStep(ctx context.Context, sessionID, qrID string, cancel bool) (Outcome, error) {
	ctx = detach(ctx)
	st, err := svc.load(ctx, sessionID)
	if err != nil {
		return Outcome{}, err
	}
	a := st.Session.Live
	if a == nil || a.Stage != StageKaspi || (qrID != "" && a.QR.ID != qrID) {
		return outcome(st), ErrStaleResult
	}
	if a.Lease.HeldAt(svc.now()) {
		return outcome(st), ErrInProgress
	}
	if !cancel && svc.now().Sub(a.Checked) < time.Second {
		// Kaspi was asked about it less than a second ago: a notification
		// (anyone may send one) costs nothing durable then, and the poll
		// comes anyway.
		return outcome(st), nil
	}
	if err := svc.claim(ctx, st); err != nil {
		if errors.Is(err, ErrConflict) {
			return outcome(st), ErrInProgress
		}
		return Outcome{}, err
	}
	return svc.kaspiResult(ctx, st, cancel)
}

// kaspiResult reads the live QR's status (cancelling it first when asked to,
// or when its time is up) and ends the attempt when Kaspi has an answer; the
// caller holds the lease.
func (svc *Service) kaspiResult(ctx context.Context, st *State, cancel bool) (Outcome, error) {
	a := st.Session.Live
	now := svc.now().UTC()
	var ks KaspiStatus
	err := svc.call(ctx, st, func(ctx context.Context) (err error) {
		if cancel || !now.Before(a.QR.ExpiresAt) {
			ks, err = svc.kaspi.Cancel(ctx, a.QR.ID)
			return err
		}
		ks, err = svc.kaspi.Status(ctx, a.QR.ID)
		if err == nil && ks.Status == KaspiPending && !now.Before(a.QR.ExpiresAt) {
			ks, err = svc.kaspi.Cancel(ctx, a.QR.ID)
		}
		return err
	})
	if err != nil {
		if !now.Before(a.QR.ExpiresAt.Add(svc.timing.GiveUpAfter)) {
			// Kaspi has not answered since the QR's time ran out: end the
			// attempt, not counted, and have the QR refunded should it turn
			// out paid.
			return outcome(st), svc.giveUp(ctx, st, a, a.QR.ID)
		}
		if rerr := svc.release(ctx, st, now.Add(svc.timing.KaspiPoll)); rerr != nil {
			return Outcome{}, rerr
		}
		return outcome(st), ErrPending
	}
	a.Checked = now
	switch ks.Status {
	case KaspiPaid:
		return svc.finish(ctx, st, a, processor.Result{Approved: true, Reference: ks.Reference}, true)
	case KaspiDeclined:
		return svc.finish(ctx, st, a, processor.Result{Code: ks.Code, NetworkCode: processor.NetworkCodes[ks.Code]}, true)
	case KaspiExpired, KaspiCancelled:
		// Nobody paid: not an attempt. The shopper may show a new QR or use a card.
		return svc.finish(ctx, st, a, processor.Result{Code: processor.QRExpired}, false)
	}
	if err := svc.release(ctx, st, now.Add(svc.timing.KaspiPoll)); err != nil {
		return Outcome{}, err
	}
	return outcome(st), nil
}
