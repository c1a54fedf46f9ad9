// Package kaspi is the sandbox of Kaspi Pay's QR payments: it implements
// payment.Kaspi the way a real Kaspi Pay connector would, and plays the
// Kaspi.kz app through a page on our server where the shopper pays or
// declines.
//
// A real connector plugs in behind the same interface: CreateQR registers an
// operation with Kaspi Pay for the merchant's Kaspi account (its merchant ID,
// device token and the QR's payload link come from Kaspi), Status reads the
// operation's state, Cancel ends it, and Refund returns money through Kaspi's
// refund call for the operation. Kaspi's callback on payment reaches
// POST /kaspi/notify, as the sandbox's does: it only says which QR changed,
// and the status is then read with Status.
package kaspi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/vault"
)

// Sandbox app actions.
const (
	ActionPay     = "pay"
	ActionDecline = "decline"
	ActionNoFunds = "nofunds" // pay, but the Kaspi Gold balance is too low
)

// QR is the sandbox's record of one QR payment.
type QR struct {
	ID           string    `json:"id"`
	Attempt      string    `json:"attempt"`
	ExternalID   string    `json:"external_id"`
	Merchant     string    `json:"merchant"`
	MerchantName string    `json:"merchant_name"`
	Amount       int64     `json:"amount"`
	Reference    string    `json:"reference"`
	Status       string    `json:"status"`
	Code         string    `json:"code,omitempty"`
	ExpiresAt    time.Time `json:"expires_at"`
	Refunded     int64     `json:"refunded"`
}

// Sandbox is the built-in Kaspi Pay.
type Sandbox struct {
	store store.Store
	// AppURL is the sandbox app's page for a QR: what the QR code encodes.
	AppURL func(qrID string) string
	// NotifyURL, when set, is where the sandbox posts a notification when a
	// QR is paid or declined, as Kaspi Pay's callback would.
	NotifyURL string
	Client    *http.Client
	Now       func() time.Time
	// Keep is how long its records live after their last change, as the
	// payments' own records (0: for ever): a refund renews them.
	Keep time.Duration
}

// Notification is what Kaspi's callback (and the sandbox's) posts: which QR
// changed. It is a hint: the receiver reads the status with Status.
type Notification struct {
	QRID       string `json:"qr_id"`
	ExternalID string `json:"external_id"`
	Status     string `json:"status"`
}

var _ payment.Kaspi = (*Sandbox)(nil)

// NewSandbox returns the sandbox.
func NewSandbox(s store.Store, appURL func(string) string) *Sandbox {
	return &Sandbox{store: s, AppURL: appURL, Now: time.Now, Client: &http.Client{Timeout: 5 * time.Second}}
}

func qrKey(id string) store.Key { return store.K("kaspi_qr", id) }

// ErrNoSuchQR is returned for an unknown QR.
var ErrNoSuchQR = apperr.E(apperr.NotFound, "no such Kaspi QR payment")

// CreateQR registers a QR payment; the same attempt ID gives the same QR.
func (k *Sandbox) CreateQR(ctx context.Context, r payment.KaspiRequest) (payment.KaspiQR, error) {
	if r.Amount <= 0 {
		return payment.KaspiQR{}, apperr.Field("amount", "must be positive")
	}
	q := QR{
		ID: "kqr_" + strings.TrimPrefix(r.ID, "att_"), Attempt: r.ID, ExternalID: r.ExternalID, Merchant: r.Merchant, MerchantName: r.MerchantName,
		Amount: r.Amount, Reference: r.Reference, Status: payment.KaspiPending, ExpiresAt: r.ExpiresAt.UTC(),
	}
	b, _ := json.Marshal(q)
	err := k.store.Commit(ctx, store.Create(qrKey(q.ID), b, k.Keep))
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return payment.KaspiQR{}, err
	}
	return payment.KaspiQR{ID: q.ID, Payload: k.AppURL(q.ID), ExpiresAt: q.ExpiresAt}, nil
}

// QR reads a QR payment, expiring it when its time is up.
func (k *Sandbox) QR(ctx context.Context, id string) (QR, error) {
	q, _, err := k.load(ctx, id)
	return q, err
}

func (k *Sandbox) load(ctx context.Context, id string) (QR, int64, error) {
	if !vault.ValidID(id, "kqr_") {
		return QR{}, 0, ErrNoSuchQR
	}
	r, err := k.store.Get(ctx, qrKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return QR{}, 0, ErrNoSuchQR
	}
	if err != nil {
		return QR{}, 0, err
	}
	var q QR
	if err := json.Unmarshal(r.Value, &q); err != nil {
		return QR{}, 0, err
	}
	if q.Status == payment.KaspiPending && !k.Now().Before(q.ExpiresAt) {
		q.Status = payment.KaspiExpired
	}
	return q, r.Version, nil
}

// update changes a QR with a compare-and-set, retrying on a concurrent change.
func (k *Sandbox) update(ctx context.Context, id string, change func(q *QR) bool) (QR, error) {
	for {
		q, ver, err := k.load(ctx, id)
		if err != nil || !change(&q) {
			return q, err
		}
		b, _ := json.Marshal(q)
		err = k.store.Commit(ctx, store.Update(qrKey(id), b, ver).WithTTL(k.Keep))
		if !errors.Is(err, store.ErrConflict) {
			return q, err
		}
	}
}

func status(q QR) payment.KaspiStatus {
	st := payment.KaspiStatus{Status: q.Status, Code: q.Code}
	if q.Status == payment.KaspiPaid {
		st.Reference = q.ID
	}
	return st
}

// Status reads where a QR payment stands.
func (k *Sandbox) Status(ctx context.Context, id string) (payment.KaspiStatus, error) {
	q, err := k.QR(ctx, id)
	return status(q), err
}

// Cancel ends a pending QR; a paid one stays paid.
func (k *Sandbox) Cancel(ctx context.Context, id string) (payment.KaspiStatus, error) {
	q, err := k.update(ctx, id, func(q *QR) bool {
		if q.Status != payment.KaspiPending {
			return false
		}
		q.Status = payment.KaspiCancelled
		return true
	})
	return status(q), err
}

// Act is the sandbox app's button: pay, decline, or pay without enough funds.
// Only a pending, unexpired QR can be acted on. Kaspi is then told to notify
// the merchant's side (NotifyURL), in the background.
func (k *Sandbox) Act(ctx context.Context, id, action string) (QR, error) {
	acted := false
	q, err := k.update(ctx, id, func(q *QR) bool {
		if q.Status != payment.KaspiPending {
			return false
		}
		acted = true
		switch action {
		case ActionPay:
			q.Status = payment.KaspiPaid
		case ActionNoFunds:
			q.Status, q.Code = payment.KaspiDeclined, processor.InsufficientFunds
		default:
			q.Status, q.Code = payment.KaspiDeclined, processor.DoNotHonor
		}
		return true
	})
	if err == nil && acted && k.NotifyURL != "" {
		go k.notify(Notification{QRID: q.ID, ExternalID: q.ExternalID, Status: q.Status})
	}
	return q, err
}

// notify posts a notification; a lost one is made up for by polling.
func (k *Sandbox) notify(n Notification) {
	b, _ := json.Marshal(n)
	resp, err := k.Client.Post(k.NotifyURL, "application/json", bytes.NewReader(b))
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
	}
}

// Refund returns money for a paid QR to the Kaspi account that paid, never
// more than was paid; the refund ID makes it idempotent.
func (k *Sandbox) Refund(ctx context.Context, r processor.RefundRequest) (processor.RefundResult, error) {
	done := store.Key{Kind: "kaspi_refund", ID: r.ID, Group: r.Reference}
	if prev, err := k.store.Get(ctx, done); err == nil {
		var res processor.RefundResult
		if json.Unmarshal(prev.Value, &res) == nil {
			return res, nil
		}
	}
	q, ver, err := k.load(ctx, r.Reference)
	if errors.Is(err, ErrNoSuchQR) {
		return processor.RefundResult{Code: "no_such_payment"}, nil
	}
	if err != nil {
		return processor.RefundResult{}, err
	}
	if q.Status != payment.KaspiPaid || r.Amount <= 0 || q.Refunded+r.Amount > q.Amount {
		return processor.RefundResult{Code: "refund_refused"}, nil
	}
	q.Refunded += r.Amount
	res := processor.RefundResult{Approved: true, Reference: "kre_" + strings.TrimPrefix(r.ID, "re_")}
	qb, _ := json.Marshal(q)
	rb, _ := json.Marshal(res)
	err = k.store.Commit(ctx, store.Update(qrKey(q.ID), qb, ver).WithTTL(k.Keep), store.Create(done, rb, k.Keep))
	if errors.Is(err, store.ErrConflict) {
		return k.Refund(ctx, r)
	}
	return res, err
}
