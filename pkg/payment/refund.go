package payment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/vault"
)

// RefundRequest is what a shop sends to refund; no amount refunds what is left.
type RefundRequest struct {
	Amount *int64 `json:"amount"`
}

func (svc *Service) loadPayment(ctx context.Context, merchant, id string) (*Payment, int64, error) {
	if !ValidPaymentID(id) {
		return nil, 0, ErrPaymentNotFound
	}
	r, err := svc.Store.Get(ctx, paymentKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, ErrPaymentNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	p, err := decodePayment(r.Value)
	if err != nil {
		return nil, 0, err
	}
	if p.Merchant != merchant {
		return nil, 0, ErrPaymentNotFound
	}
	return p, r.Version, nil
}

// savePayment writes p over version, with extra ops in its group and the
// events' outbox entries, in one commit.
func (svc *Service) savePayment(ctx context.Context, p *Payment, version int64, extra []store.Op, events ...Event) error {
	p.Updated = svc.Now().UTC()
	b := encodePayment(p)
	ops := append([]store.Op{store.Update(paymentKey(p.ID), b, version)}, extra...)
	ops = append(ops, svc.eventOps(Group(p.ID), events)...)
	if err := svc.Store.Commit(ctx, ops...); err != nil {
		return err
	}
	if len(events) > 0 && svc.OnEvent != nil {
		svc.OnEvent()
	}
	return nil
}

// held is what refunds already hold of a payment: succeeded and pending ones.
func (p *Payment) held() int64 {
	var n int64
	for _, r := range p.Refunds {
		if r.Status != RefundFailed {
			n += r.Amount
		}
	}
	return n
}

// Refund returns money to the card (or Kaspi account) that paid, never more
// than was captured. Under an Idempotency-Key a retry returns the same refund
// (and drives it on when it was left pending); a different request under the
// key is refused. It reports whether the answer is a replay.
func (svc *Service) Refund(ctx context.Context, merchant, paymentID, idemKey string, req RefundRequest) (Refund, bool, error) {
	body, _ := json.Marshal(req)
	rh := sha256.Sum256(body)
	var keyHash string
	if idemKey != "" {
		if len(idemKey) > 255 {
			return Refund{}, false, apperr.Field("Idempotency-Key", "must be 1 to 255 characters")
		}
		kh := sha256.Sum256([]byte(idemKey))
		keyHash = hex.EncodeToString(kh[:]) + ":" + hex.EncodeToString(rh[:8])
	}
	for {
		p, ver, err := svc.loadPayment(ctx, merchant, paymentID)
		if err != nil {
			return Refund{}, false, err
		}
		if keyHash != "" {
			for i, r := range p.Refunds {
				if !sameKey(r.IdemKeyHash, keyHash) {
					continue
				}
				if r.IdemKeyHash != keyHash {
					return Refund{}, false, apperr.E(apperr.IdemMismatch, "this Idempotency-Key was used with a different request")
				}
				if r.Status == RefundPending {
					out, err := svc.driveRefund(ctx, p, ver, i)
					return out, true, err
				}
				return r, true, nil
			}
		}
		if p.Status != StatusSucceeded && p.Status != StatusPartiallyRefunded {
			return Refund{}, false, apperr.E(apperr.Conflict, "only a succeeded payment can be refunded (this one is %s)", p.Status)
		}
		left := p.Amount - p.held()
		amount := left
		if req.Amount != nil {
			amount = *req.Amount
		}
		switch {
		case amount <= 0:
			if req.Amount == nil {
				return Refund{}, false, apperr.E(apperr.Conflict, "the payment is refunded in full already")
			}
			return Refund{}, false, apperr.Field("amount", "must be a positive whole number of minor units")
		case amount > left:
			return Refund{}, false, apperr.Field("amount", "exceeds what is left to refund (%d)", left)
		}
		r := Refund{ID: vault.NewID("re_"), Amount: amount, Currency: p.Currency, Status: RefundPending, Created: svc.Now().UTC(), IdemKeyHash: keyHash}
		p.Refunds = append(p.Refunds, r)
		mark, _ := json.Marshal(pendingMark{Payment: p.ID, Merchant: p.Merchant, Since: r.Created})
		err = svc.savePayment(ctx, p, ver, []store.Op{store.Create(pendingRefundKey(p.ID, r.ID), mark, 0)})
		if errors.Is(err, store.ErrConflict) {
			continue // another refund or change came first: check again
		}
		if err != nil {
			return Refund{}, false, err
		}
		out, err := svc.driveRefund(ctx, p, ver+1, len(p.Refunds)-1)
		return out, false, err
	}
}

// driveRefund asks the processor (or Kaspi) for a pending refund, under the
// refund's ID so that asking twice refunds once, and records the answer.
func (svc *Service) driveRefund(ctx context.Context, p *Payment, ver int64, i int) (Refund, error) {
	r := p.Refunds[i]
	req := processor.RefundRequest{ID: r.ID, Reference: p.ProcessorRef, Amount: r.Amount, Currency: p.Currency}
	var (
		res processor.RefundResult
		err error
	)
	switch p.Method {
	case MethodKaspi:
		if svc.Kaspi == nil {
			return r, apperr.E(apperr.Unavailable, "Kaspi is not configured")
		}
		res, err = svc.Kaspi.Refund(ctx, req)
	default:
		req.Token = p.Card.Token // always to the card that paid
		res, err = svc.Processor.Refund(ctx, req)
	}
	if err != nil {
		return r, apperr.Wrap(apperr.Unavailable, err, "the refund could not be confirmed; it stays pending and is asked for again: retry with the same Idempotency-Key, or wait for refund.succeeded or refund.failed")
	}
	for {
		r = p.Refunds[i]
		if r.Status != RefundPending {
			return r, nil
		}
		if res.Approved {
			r.Status, r.Reference = RefundSucceeded, res.Reference
			p.AmountRefunded += r.Amount
			p.Status = StatusPartiallyRefunded
			if p.AmountRefunded == p.Amount {
				p.Status = StatusRefunded
			}
		} else {
			r.Status, r.Reason = RefundFailed, res.Code
		}
		p.Refunds[i] = r
		typ := EventRefundSucceeded
		if !res.Approved {
			typ = EventRefundFailed
		}
		ev := svc.event(typ, p.Merchant, struct {
			Refund  Refund   `json:"refund"`
			Payment *Payment `json:"payment"`
		}{r, p})
		done := []store.Op{store.Delete(pendingRefundKey(p.ID, r.ID))}
		err := svc.savePayment(ctx, p, ver, done, ev)
		if !errors.Is(err, store.ErrConflict) {
			return r, err
		}
		fresh, fver, lerr := svc.loadPayment(ctx, p.Merchant, p.ID)
		if lerr != nil {
			return r, lerr
		}
		if i >= len(fresh.Refunds) || fresh.Refunds[i].ID != r.ID {
			return r, fmt.Errorf("refund %s vanished from its payment", r.ID)
		}
		p, ver = fresh, fver
	}
}

// pendingRefundKey marks a refund not yet settled with the processor, so the
// refund sweep reads only those. It lives in its payment's group and changes
// in the same commits as the refund.
func pendingRefundKey(paymentID, refundID string) store.Key {
	return store.Key{Kind: "pending_refund", ID: refundID, Group: Group(paymentID)}
}

// pendingMark is what a pending-refund mark holds; the refund's ID is the
// mark's own.
type pendingMark struct {
	Refund   string    `json:"-"`
	Payment  string    `json:"payment"`
	Merchant string    `json:"merchant"`
	Since    time.Time `json:"since"`
}

// SettlePendingRefunds asks the processor (or Kaspi) again for every refund
// left pending for longer than after, since its answer was lost on the way.
// The refund's ID makes asking twice refund once. It returns how many it
// settled, succeeded or failed; refunds still unanswered stay pending for the
// next sweep.
func (svc *Service) SettlePendingRefunds(ctx context.Context, after time.Duration) (int, error) {
	now := svc.Now()
	var due []pendingMark
	err := svc.Store.Scan(ctx, "pending_refund", func(id string, r store.Record) error {
		m := pendingMark{Refund: id}
		if json.Unmarshal(r.Value, &m) == nil && now.Sub(m.Since) >= after {
			due = append(due, m)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, m := range due {
		p, ver, err := svc.loadPayment(ctx, m.Merchant, m.Payment)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		i := slices.IndexFunc(p.Refunds, func(r Refund) bool { return r.ID == m.Refund })
		if i < 0 || p.Refunds[i].Status != RefundPending {
			// Settled in the meantime, or a mark without its refund: drop it.
			if err := svc.Store.Commit(ctx, store.Delete(pendingRefundKey(m.Payment, m.Refund))); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if _, err := svc.driveRefund(ctx, p, ver, i); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// sameKey reports whether two idempotency hashes ("key:request") share the key part.
func sameKey(a, b string) bool { return len(a) >= 64 && len(b) >= 64 && a[:64] == b[:64] }

// storedPayment is a payment as the store keeps it: the API view plus the
// refunds' idempotency hashes, which the API never shows.
type storedPayment struct {
	*Payment
	RefundKeys map[string]string `json:"refund_keys,omitempty"`
}

func encodePayment(p *Payment) []byte {
	sp := storedPayment{Payment: p, RefundKeys: map[string]string{}}
	for _, r := range p.Refunds {
		if r.IdemKeyHash != "" {
			sp.RefundKeys[r.ID] = r.IdemKeyHash
		}
	}
	b, _ := json.Marshal(sp)
	return b
}

func decodePayment(b []byte) (*Payment, error) {
	sp := storedPayment{Payment: new(Payment)}
	if err := json.Unmarshal(b, &sp); err != nil {
		return nil, fmt.Errorf("payment record: %w", err)
	}
	for i, r := range sp.Refunds {
		sp.Refunds[i].IdemKeyHash = sp.RefundKeys[r.ID]
	}
	return sp.Payment, nil
}
