package payment

import (
	"context"
	"time"

	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/vault"
)

// KaspiRequest asks Kaspi for a QR payment.
type KaspiRequest struct {
	ID           string // our attempt ID: the idempotency key
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

// QR codes live this long; the page counts down to it.
const kaspiQRTTL = 5 * time.Minute

// StartKaspi shows a Kaspi QR for the session: the pending one while Kaspi
// waits for it, else a new one. When the pending one has just ended, it
// returns without a QR, so that the page shows how it ended.
func (svc *Service) StartKaspi(ctx context.Context, sessionID, clientIP string) (Outcome, error) {
	l, err := svc.load(ctx, sessionID)
	if err != nil {
		return Outcome{}, err
	}
	waiting := l.s.Pending != nil && l.s.Pending.Stage == StageKaspi
	if err := svc.pollKaspi(ctx, l); err != nil {
		return Outcome{}, err
	}
	if waiting {
		// Still waiting: the same QR. Just finished: the shopper sees the outcome first.
		return svc.outcome(l), nil
	}
	if svc.Kaspi == nil {
		return svc.outcome(l), ErrMethodNotOffered
	}
	if err := svc.checkOpen(&l.s, MethodKaspi); err != nil {
		return svc.outcome(l), err
	}
	if err := svc.limit(ctx, clientIP, ""); err != nil {
		return svc.outcome(l), err
	}
	attempt := vault.NewID("att_")
	now := svc.Now().UTC()
	expires := now.Add(kaspiQRTTL)
	if expires.After(l.s.ExpiresAt) {
		expires = l.s.ExpiresAt
	}
	qr, err := svc.Kaspi.CreateQR(ctx, KaspiRequest{
		ID: attempt, Merchant: l.s.Merchant, MerchantName: svc.merchantName(ctx, l.s.Merchant),
		Amount: l.s.Amount, Reference: l.s.Reference, ExpiresAt: expires,
	})
	if err != nil {
		return svc.outcome(l), err
	}
	l.s.Pending = &Pending{AttemptID: attempt, Method: MethodKaspi, Stage: StageKaspi, Since: now, QRID: qr.ID, QRPayload: qr.Payload, QRExpires: qr.ExpiresAt}
	svc.startPayment(l, MethodKaspi)
	l.p.Status = StatusRequiresAction
	l.p.Kaspi = &KaspiDetails{QRID: qr.ID}
	if err := svc.commit(ctx, l, nil); err != nil {
		_, _ = svc.Kaspi.Cancel(ctx, qr.ID)
		return Outcome{}, ErrInProgress
	}
	return svc.outcome(l), nil
}

// PollKaspi checks the pending QR payment and finishes the attempt when Kaspi
// has an answer. The page calls it as it polls.
func (svc *Service) PollKaspi(ctx context.Context, sessionID string) (Outcome, error) {
	l, err := svc.load(ctx, sessionID)
	if err != nil {
		return Outcome{}, err
	}
	if err := svc.pollKaspi(ctx, l); err != nil {
		return Outcome{}, err
	}
	return svc.outcome(l), nil
}

// CancelKaspi gives up the pending QR (the shopper chose to pay by card).
func (svc *Service) CancelKaspi(ctx context.Context, sessionID string) (Outcome, error) {
	l, err := svc.load(ctx, sessionID)
	if err != nil {
		return Outcome{}, err
	}
	p := l.s.Pending
	if p == nil || p.Stage != StageKaspi {
		return svc.outcome(l), nil
	}
	st, err := svc.Kaspi.Cancel(ctx, p.QRID)
	if err != nil {
		return svc.outcome(l), err
	}
	return svc.kaspiResult(ctx, l, st)
}

func (svc *Service) pollKaspi(ctx context.Context, l *loaded) error {
	p := l.s.Pending
	if p == nil || p.Stage != StageKaspi || svc.Kaspi == nil {
		return nil
	}
	st, err := svc.Kaspi.Status(ctx, p.QRID)
	if err != nil {
		return err
	}
	if st.Status == KaspiPending && !svc.Now().Before(p.QRExpires) {
		if st, err = svc.Kaspi.Cancel(ctx, p.QRID); err != nil {
			return err
		}
	}
	_, err = svc.kaspiResult(ctx, l, st)
	return err
}

// kaspiResult finishes a Kaspi attempt from its status.
func (svc *Service) kaspiResult(ctx context.Context, l *loaded, st KaspiStatus) (Outcome, error) {
	p := l.s.Pending
	switch st.Status {
	case KaspiPaid:
		l.p.Kaspi.Reference = st.Reference
		return svc.finish(ctx, l, p.AttemptID, processor.Result{Approved: true, Reference: st.Reference}, true)
	case KaspiDeclined:
		return svc.finish(ctx, l, p.AttemptID, processor.Result{Code: st.Code, NetworkCode: processor.NetworkCodes[st.Code]}, true)
	case KaspiExpired, KaspiCancelled:
		// Nobody paid: not an attempt. The shopper may show a new QR or use a card.
		return svc.finish(ctx, l, p.AttemptID, processor.Result{Code: "qr_expired"}, false)
	}
	return svc.outcome(l), nil
}
