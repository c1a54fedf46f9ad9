package payment

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/vault"
)

// RefundRequest is what a shop sends to refund; no amount refunds what is left.
type RefundRequest struct {
	Amount *int64 `json:"amount"`
}

// ErrRefundPending: the processor's answer did not arrive. The refund stays
// pending and the server asks again by itself.
var ErrRefundPending = apperr.E(apperr.Unavailable, "the refund could not be confirmed; it stays pending and is asked for again: retry with the same Idempotency-Key, or wait for refund.succeeded or refund.failed")

// NewRefundID returns a new refund ID.
func NewRefundID() string { return vault.NewID("re_") }

// Refund returns money to the card (or Kaspi account) that paid, never more
// than was captured, under the refund ID the caller chose (so a retry under
// an idempotency key finds the refund the first try made, and drives it on
// when it is still pending).
func (svc *Service) Refund(ctx context.Context, merchant, paymentID, refundID string, req RefundRequest) (Refund, error) {
	ctx = detach(ctx)
	if !ValidPaymentID(paymentID) {
		return Refund{}, ErrPaymentNotFound
	}
	if !vault.ValidID(refundID, "re_") {
		return Refund{}, fmt.Errorf("payment: refund ID %q is not one NewRefundID makes", refundID)
	}
	for {
		st, err := svc.repo.LoadPayment(ctx, paymentID)
		if err != nil {
			return Refund{}, err
		}
		p := st.Payment
		if p.Merchant != merchant {
			return Refund{}, ErrPaymentNotFound
		}
		if i := slices.IndexFunc(p.Refunds, func(r Refund) bool { return r.ID == refundID }); i >= 0 {
			if p.Refunds[i].Status == RefundPending {
				return svc.driveRefund(ctx, st, refundID)
			}
			return p.Refunds[i], nil
		}
		if p.Status != StatusSucceeded && p.Status != StatusPartiallyRefunded {
			return Refund{}, apperr.E(apperr.Conflict, "only a succeeded payment can be refunded (this one is %s)", p.Status)
		}
		left := p.Amount - p.Held()
		amount := left
		if req.Amount != nil {
			amount = *req.Amount
		}
		switch {
		case amount <= 0:
			if req.Amount == nil {
				return Refund{}, apperr.E(apperr.Conflict, "the payment is refunded in full already")
			}
			return Refund{}, apperr.Field("amount", "must be a positive whole number of minor units")
		case amount > left:
			return Refund{}, apperr.Field("amount", "exceeds what is left to refund (%d)", left)
		}
		now := svc.now().UTC()
		p.Refunds = append(p.Refunds, Refund{ID: refundID, Amount: amount, Currency: p.Currency, Status: RefundPending, Created: now, NextTry: now.Add(svc.timing.RefundRetry).Truncate(time.Millisecond)})
		err = svc.repo.Save(ctx, st, Change{})
		if errors.Is(err, ErrConflict) {
			continue // another refund or change came first: check again
		}
		if err != nil {
			return Refund{}, err
		}
		return svc.driveRefund(ctx, st, refundID)
	}
}

// driveRefund asks the processor (or Kaspi) for a pending refund, under the
// refund's ID so that asking twice refunds once, and records the answer.
func (svc *Service) driveRefund(ctx context.Context, st *State, refundID string) (Refund, error) {
	p := st.Payment
	i := slices.IndexFunc(p.Refunds, func(r Refund) bool { return r.ID == refundID })
	r := p.Refunds[i]
	req := processor.RefundRequest{ID: r.ID, Reference: p.ProcessorRef, Amount: r.Amount, Currency: p.Currency}
	cctx, cancel := context.WithTimeout(ctx, svc.timing.CallTimeout)
	defer cancel()
	var (
		res processor.RefundResult
		err error
	)
	switch p.Method {
	case MethodKaspi:
		if svc.kaspi == nil {
			return r, apperr.E(apperr.Unavailable, "Kaspi is not configured")
		}
		req.Reference = p.KaspiRef
		res, err = svc.kaspi.Refund(cctx, req)
	default:
		req.Token = p.Card.Token // always to the card that paid
		res, err = svc.processor.Refund(cctx, req)
	}
	if err != nil {
		return r, apperr.Wrap(apperr.Unavailable, err, "%s", ErrRefundPending.Message)
	}
	for {
		p := st.Payment
		i := slices.IndexFunc(p.Refunds, func(r Refund) bool { return r.ID == refundID })
		if i < 0 {
			return r, fmt.Errorf("refund %s vanished from its payment", refundID)
		}
		r = p.Refunds[i]
		if r.Status != RefundPending {
			return r, nil
		}
		ev := Event{Type: EventRefundSucceeded, Refund: r.ID}
		r.NextTry = time.Time{}
		if res.Approved {
			r.Status, r.ProcessorRef = RefundSucceeded, res.Reference
			p.AmountRefunded += r.Amount
			p.Status = StatusPartiallyRefunded
			if p.AmountRefunded == p.Amount {
				p.Status = StatusRefunded
			}
		} else {
			r.Status, r.FailureCode = RefundFailed, res.Code
			ev.Type = EventRefundFailed
		}
		p.Refunds[i] = r
		err := svc.repo.Save(ctx, st, Change{Events: []Event{ev}})
		if !errors.Is(err, ErrConflict) {
			return r, err
		}
		if err := svc.reloadPayment(ctx, st); err != nil {
			return r, err
		}
	}
}

// reloadPayment reads st again in place, by its payment.
func (svc *Service) reloadPayment(ctx context.Context, st *State) error {
	fresh, err := svc.repo.LoadPayment(ctx, st.Payment.ID)
	if err != nil {
		return err
	}
	*st = *fresh
	return nil
}
