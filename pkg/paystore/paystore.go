// Package paystore is where sessions and payments live in the store: their
// keys, their stored forms, and the commits that change them. It implements
// payment.Repository: a save writes the session, its payment, the secrets
// they hold, the events they cause and their due-index filings in one
// atomic, version-checked commit over the session's group.
package paystore

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/paypage/paypage/pkg/api"
	"github.com/paypage/paypage/pkg/apiview"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/event"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/store"
)

// Store keeps sessions and payments in a store.Store.
type Store struct {
	db      store.Store
	pageURL func(sessionID string) string
	now     func() time.Time
	onDue   func(at time.Time)
}

var _ payment.Repository = (*Store)(nil)

// New returns the repository over db. pageURL makes a session's page URL
// for the events that carry the session; onDue, when set, hears the due
// time of every save (the reconciler sets a timer by it).
func New(db store.Store, pageURL func(string) string, now func() time.Time, onDue func(time.Time)) (*Store, error) {
	if db == nil || pageURL == nil {
		return nil, errors.New("paystore: a store and a page URL are required")
	}
	if now == nil {
		now = time.Now
	}
	return &Store{db: db, pageURL: pageURL, now: now, onDue: onDue}, nil
}

// Kinds of the records this package keeps.
const (
	KindSession = "session"
	KindPayment = "payment"
)

func sessionKey(id string) store.Key {
	return store.Key{Kind: KindSession, ID: id, Group: payment.Group(id)}
}
func paymentKey(id string) store.Key {
	return store.Key{Kind: KindPayment, ID: id, Group: payment.Group(id)}
}
func heldKey(sessionID, kind, ref string) store.Key {
	return store.Key{Kind: kind, ID: ref, Group: payment.Group(sessionID)}
}

// mapErr turns the store's conflict into the repository's.
func mapErr(err error) error {
	if errors.Is(err, store.ErrConflict) {
		return payment.ErrConflict
	}
	return err
}

// filed returns op filed at due, or taken out of the index when due is zero.
func filed(op store.Op, due time.Time) store.Op {
	if due.IsZero() {
		return op.Finished()
	}
	return op.At(due)
}

// Create stores a new session, filed under its expiry.
func (s *Store) Create(ctx context.Context, ses *payment.Session) error {
	b, err := json.Marshal(toSessionRecord(ses, false))
	if err != nil {
		return err
	}
	due := ses.DueAt()
	if err := mapErr(s.db.Commit(ctx, filed(store.Create(sessionKey(ses.ID), b, 0), due))); err != nil {
		return err
	}
	s.notify(due)
	return nil
}

// Load reads a session and its payment.
func (s *Store) Load(ctx context.Context, id string) (*payment.State, error) {
	r, err := s.db.Get(ctx, sessionKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, payment.ErrSessionNotFound
	}
	if err != nil {
		return nil, err
	}
	var sr sessionRecord
	if err := json.Unmarshal(r.Value, &sr); err != nil {
		return nil, fmt.Errorf("session record %s: %w", id, err)
	}
	st := &payment.State{Session: sr.domain(), Rev: payment.Rev{Session: r.Version}}
	if sr.HasPayment {
		pr, err := s.db.Get(ctx, paymentKey(payment.PaymentIDFor(id)))
		if errors.Is(err, store.ErrNotFound) {
			// Deleted between the two reads (the end of the record
			// retention takes both in one commit): the session is gone too.
			if _, serr := s.db.Get(ctx, sessionKey(id)); errors.Is(serr, store.ErrNotFound) {
				return nil, payment.ErrSessionNotFound
			}
		}
		if err != nil {
			return nil, fmt.Errorf("payment of session %s: %w", id, err)
		}
		if st.Payment, err = decodePayment(pr.Value); err != nil {
			return nil, err
		}
		st.Rev.Payment = pr.Version
		if pb, err := json.Marshal(toPaymentRecord(st.Payment)); err == nil {
			st.Rev.PaymentSum = sha256.Sum256(pb)
		}
	}
	return st, nil
}

// LoadPayment reads a payment and its session.
func (s *Store) LoadPayment(ctx context.Context, id string) (*payment.State, error) {
	st, err := s.Load(ctx, payment.SessionIDFor(id))
	if errors.Is(err, payment.ErrSessionNotFound) || err == nil && st.Payment == nil {
		return nil, payment.ErrPaymentNotFound
	}
	return st, err
}

// Save writes the state and the change in one commit.
func (s *Store) Save(ctx context.Context, st *payment.State, c payment.Change) error {
	now := s.now().UTC()
	ses := &st.Session
	sb, err := json.Marshal(toSessionRecord(ses, st.Payment != nil))
	if err != nil {
		return err
	}
	ops := []store.Op{filed(store.Update(sessionKey(ses.ID), sb, st.Rev.Session), ses.DueAt())}
	due := ses.DueAt()
	var psum [32]byte
	if p := st.Payment; p != nil {
		// Updated moves only when the payment changes: what its retention
		// counts from.
		pb, err := json.Marshal(toPaymentRecord(p))
		if err != nil {
			return err
		}
		if st.Rev.Payment == 0 || sha256.Sum256(pb) != st.Rev.PaymentSum {
			p.Updated = now
			if pb, err = json.Marshal(toPaymentRecord(p)); err != nil {
				return err
			}
		}
		psum = sha256.Sum256(pb)
		pdue := p.DueAt()
		ops = append(ops, filed(store.Op{Key: paymentKey(p.ID), Value: pb, IfVersion: st.Rev.Payment}, pdue))
		if !pdue.IsZero() && (due.IsZero() || pdue.Before(due)) {
			due = pdue
		}
	}
	for _, h := range c.Hold {
		ops = append(ops, store.Op{Key: heldKey(ses.ID, h.Kind, h.Ref), Value: h.Sealed, IfVersion: store.Any, TTL: h.TTL})
	}
	for _, h := range c.Drop {
		ops = append(ops, store.Delete(heldKey(ses.ID, h.Kind, h.Ref)))
	}
	for _, e := range c.Events {
		ops = append(ops, event.CreateOp(payment.Group(ses.ID), s.event(st, e, now), now))
	}
	if err := mapErr(s.db.Commit(ctx, ops...)); err != nil {
		return err
	}
	st.Rev.Session++
	if st.Payment != nil {
		st.Rev.Payment++
		st.Rev.PaymentSum = psum
	}
	if len(c.Events) > 0 {
		due = now
	}
	s.notify(due)
	return nil
}

func (s *Store) notify(due time.Time) {
	if s.onDue != nil && !due.IsZero() {
		s.onDue(due)
	}
}

// event makes the webhook event for a domain event, with the session,
// payment or refund as they are after the change.
func (s *Store) event(st *payment.State, e payment.Event, now time.Time) event.Event {
	ses, p := st.Session, st.Payment
	var data any
	switch e.Type {
	case payment.EventSessionExpired:
		data = apiview.SessionOf(ses, p, s.pageURL(ses.ID), now)
	case payment.EventRefundSucceeded, payment.EventRefundFailed:
		re := api.RefundEvent{Payment: apiview.PaymentOf(*p)}
		for _, r := range p.Refunds {
			if r.ID == e.Refund {
				re.Refund = apiview.RefundOf(p.ID, r)
			}
		}
		data = re
	default:
		data = apiview.PaymentOf(*p)
	}
	return event.New(e.Type, ses.Merchant, data, now)
}

// Take reads a held secret and deletes it.
func (s *Store) Take(ctx context.Context, sessionID, kind, ref string) ([]byte, error) {
	b, err := s.db.Take(ctx, heldKey(sessionID, kind, ref))
	if errors.Is(err, store.ErrNotFound) {
		return nil, payment.ErrHeldGone
	}
	return b, err
}

// Delete removes a session and its payment, checked against the versions
// they were loaded at; their due filings go with them.
func (s *Store) Delete(ctx context.Context, st *payment.State) error {
	ops := []store.Op{{Key: sessionKey(st.Session.ID), Delete: true, IfVersion: st.Rev.Session}}
	if st.Payment != nil {
		ops = append(ops, store.Op{Key: paymentKey(st.Payment.ID), Delete: true, IfVersion: st.Rev.Payment})
	}
	return mapErr(s.db.Commit(ctx, ops...))
}

// Forget deletes the record of kind and id, and with it its due filing.
func (s *Store) Forget(ctx context.Context, kind, id string) error {
	return s.db.Commit(ctx, store.Delete(store.Key{Kind: kind, ID: id, Group: payment.Group(id)}))
}

// sessionRecord is a session as stored.
type sessionRecord struct {
	ID          string         `json:"id"`
	Merchant    string         `json:"merchant"`
	Amount      int64          `json:"amount"`
	Currency    string         `json:"currency"`
	Reference   string         `json:"reference,omitempty"`
	Description string         `json:"description,omitempty"`
	SuccessURL  string         `json:"success_url"`
	CancelURL   string         `json:"cancel_url"`
	Locale      string         `json:"locale,omitempty"`
	Methods     []string       `json:"methods"`
	Status      string         `json:"status"`
	Created     time.Time      `json:"created"`
	ExpiresAt   time.Time      `json:"expires_at"`
	Attempts    int            `json:"attempts"`
	MaxAttempts int            `json:"max_attempts"`
	LastDecline *declineRecord `json:"last_decline,omitempty"`
	Live        *attemptRecord `json:"live,omitempty"`
	HasPayment  bool           `json:"has_payment,omitempty"`
	PurgeAt     time.Time      `json:"purge_at,omitzero"`
}

type attemptRecord struct {
	ID      string    `json:"id"`
	Method  string    `json:"method"`
	Stage   string    `json:"stage"`
	Started time.Time `json:"started"`
	Owner   string    `json:"owner,omitempty"`
	Until   time.Time `json:"until,omitzero"`
	Next    time.Time `json:"next,omitzero"`
	Asks    int       `json:"asks,omitempty"`
	// Authorizing is when the processor was first asked.
	Authorizing time.Time        `json:"authorizing,omitzero"`
	Checked     time.Time        `json:"checked,omitzero"`
	Card        *cardRecord      `json:"card,omitempty"`
	Challenge   *challengeRecord `json:"challenge,omitempty"`
	ThreeDS     *threeDSRecord   `json:"three_ds,omitempty"`
	QR          *qrRecord        `json:"qr,omitempty"`
}

type declineRecord struct {
	Code        string `json:"code"`
	NetworkCode string `json:"network_code,omitempty"`
}

type challengeRecord struct {
	TransID string `json:"trans_id"`
	ACSURL  string `json:"acs_url"`
	CReq    string `json:"creq"`
}

type threeDSRecord struct {
	Version     string `json:"version"`
	TransStatus string `json:"trans_status"`
	ECI         string `json:"eci,omitempty"`
	Challenged  bool   `json:"challenged,omitempty"`
	DSTransID   string `json:"ds_trans_id,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

type qrRecord struct {
	ID        string    `json:"id"`
	Payload   string    `json:"payload"`
	ExpiresAt time.Time `json:"expires_at"`
}

type resultRecord struct {
	ID           string    `json:"id"`
	Method       string    `json:"method"`
	Time         time.Time `json:"time"`
	Outcome      string    `json:"outcome"`
	Last4        string    `json:"last4,omitempty"`
	Brand        string    `json:"brand,omitempty"`
	ProcessorRef string    `json:"processor_ref,omitempty"`
	NextTry      time.Time `json:"next_try,omitzero"`
}

type refundRecord struct {
	ID           string    `json:"id"`
	Amount       int64     `json:"amount"`
	Currency     string    `json:"currency"`
	Status       string    `json:"status"`
	FailureCode  string    `json:"failure_code,omitempty"`
	ProcessorRef string    `json:"processor_ref,omitempty"`
	Created      time.Time `json:"created"`
	NextTry      time.Time `json:"next_try,omitzero"`
}

// conv converts a pointer to a struct of the same fields (a domain value and
// its stored twin), nil to nil.
func conv[From, To any](f *From, c func(From) To) *To {
	if f == nil {
		return nil
	}
	t := c(*f)
	return &t
}

func convAll[From, To any](fs []From, c func(From) To) []To {
	if fs == nil {
		return nil
	}
	ts := make([]To, len(fs))
	for i, f := range fs {
		ts[i] = c(f)
	}
	return ts
}

type cardRecord struct {
	Token       string     `json:"token"`
	Brand       card.Brand `json:"brand"`
	Last4       string     `json:"last4"`
	ExpMonth    int        `json:"exp_month"`
	ExpYear     int        `json:"exp_year"`
	Fingerprint string     `json:"fingerprint"`
}

func toSessionRecord(s *payment.Session, hasPayment bool) sessionRecord {
	r := sessionRecord{
		ID: s.ID, Merchant: s.Merchant, Amount: s.Amount, Currency: s.Currency, Reference: s.Reference,
		Description: s.Description, SuccessURL: s.SuccessURL, CancelURL: s.CancelURL, Locale: s.Locale,
		Methods: s.Methods, Status: s.Status, Created: s.Created, ExpiresAt: s.ExpiresAt, Attempts: s.Attempts,
		MaxAttempts: s.MaxAttempts, LastDecline: conv(s.LastDecline, func(d payment.Decline) declineRecord { return declineRecord(d) }),
		HasPayment: hasPayment, PurgeAt: s.PurgeAt,
	}
	if a := s.Live; a != nil {
		r.Live = &attemptRecord{
			ID: a.ID, Method: a.Method, Stage: a.Stage, Started: a.Started, Owner: a.Lease.Owner, Until: a.Lease.Until,
			Next: a.Next, Asks: a.Asks, Authorizing: a.Authorizing, Checked: a.Checked, Card: conv(a.Card, func(c payment.Card) cardRecord { return cardRecord(c) }),
			Challenge: conv(a.Challenge, func(c payment.Challenge) challengeRecord { return challengeRecord(c) }),
			ThreeDS:   conv(a.ThreeDS, func(t payment.ThreeDS) threeDSRecord { return threeDSRecord(t) }),
			QR:        conv(a.QR, func(q payment.QR) qrRecord { return qrRecord(q) }),
		}
	}
	return r
}

func (r sessionRecord) domain() payment.Session {
	s := payment.Session{
		ID: r.ID, Merchant: r.Merchant, Amount: r.Amount, Currency: r.Currency, Reference: r.Reference,
		Description: r.Description, SuccessURL: r.SuccessURL, CancelURL: r.CancelURL, Locale: r.Locale,
		Methods: r.Methods, Status: r.Status, Created: r.Created, ExpiresAt: r.ExpiresAt, Attempts: r.Attempts,
		MaxAttempts: r.MaxAttempts, LastDecline: conv(r.LastDecline, func(d declineRecord) payment.Decline { return payment.Decline(d) }),
		PurgeAt: r.PurgeAt,
	}
	if a := r.Live; a != nil {
		s.Live = &payment.Attempt{
			ID: a.ID, Method: a.Method, Stage: a.Stage, Started: a.Started, Lease: payment.Lease{Owner: a.Owner, Until: a.Until},
			Next: a.Next, Asks: a.Asks, Authorizing: a.Authorizing, Checked: a.Checked, Card: conv(a.Card, func(c cardRecord) payment.Card { return payment.Card(c) }),
			Challenge: conv(a.Challenge, func(c challengeRecord) payment.Challenge { return payment.Challenge(c) }),
			ThreeDS:   conv(a.ThreeDS, func(t threeDSRecord) payment.ThreeDS { return payment.ThreeDS(t) }),
			QR:        conv(a.QR, func(q qrRecord) payment.QR { return payment.QR(q) }),
		}
	}
	return s
}

// paymentRecord is a payment as stored.
type paymentRecord struct {
	ID             string         `json:"id"`
	SessionID      string         `json:"session_id"`
	Merchant       string         `json:"merchant"`
	Amount         int64          `json:"amount"`
	Currency       string         `json:"currency"`
	Status         string         `json:"status"`
	Method         string         `json:"method"`
	Card           *cardRecord    `json:"card,omitempty"`
	KaspiQR        string         `json:"kaspi_qr,omitempty"`
	KaspiRef       string         `json:"kaspi_ref,omitempty"`
	Decline        *declineRecord `json:"decline,omitempty"`
	ThreeDS        *threeDSRecord `json:"three_ds,omitempty"`
	AuthCode       string         `json:"auth_code,omitempty"`
	ProcessorRef   string         `json:"processor_ref,omitempty"`
	AmountRefunded int64          `json:"amount_refunded"`
	Refunds        []refundRecord `json:"refunds,omitempty"`
	Attempts       []resultRecord `json:"attempts,omitempty"`
	Created        time.Time      `json:"created"`
	Updated        time.Time      `json:"updated"`
}

func toPaymentRecord(p *payment.Payment) paymentRecord {
	return paymentRecord{
		ID: p.ID, SessionID: p.SessionID, Merchant: p.Merchant, Amount: p.Amount, Currency: p.Currency,
		Status: p.Status, Method: p.Method, Card: conv(p.Card, func(c payment.Card) cardRecord { return cardRecord(c) }),
		KaspiQR: p.KaspiQR, KaspiRef: p.KaspiRef,
		Decline:  conv(p.Decline, func(d payment.Decline) declineRecord { return declineRecord(d) }),
		ThreeDS:  conv(p.ThreeDS, func(t payment.ThreeDS) threeDSRecord { return threeDSRecord(t) }),
		AuthCode: p.AuthCode, ProcessorRef: p.ProcessorRef, AmountRefunded: p.AmountRefunded,
		Refunds:  convAll(p.Refunds, func(r payment.Refund) refundRecord { return refundRecord(r) }),
		Attempts: convAll(p.Attempts, func(r payment.Result) resultRecord { return resultRecord(r) }),
		Created:  p.Created, Updated: p.Updated,
	}
}

func decodePayment(b []byte) (*payment.Payment, error) {
	var r paymentRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("payment record: %w", err)
	}
	return &payment.Payment{
		ID: r.ID, SessionID: r.SessionID, Merchant: r.Merchant, Amount: r.Amount, Currency: r.Currency,
		Status: r.Status, Method: r.Method, Card: conv(r.Card, func(c cardRecord) payment.Card { return payment.Card(c) }),
		KaspiQR: r.KaspiQR, KaspiRef: r.KaspiRef,
		Decline:  conv(r.Decline, func(d declineRecord) payment.Decline { return payment.Decline(d) }),
		ThreeDS:  conv(r.ThreeDS, func(t threeDSRecord) payment.ThreeDS { return payment.ThreeDS(t) }),
		AuthCode: r.AuthCode, ProcessorRef: r.ProcessorRef, AmountRefunded: r.AmountRefunded,
		Refunds:  convAll(r.Refunds, func(x refundRecord) payment.Refund { return payment.Refund(x) }),
		Attempts: convAll(r.Attempts, func(x resultRecord) payment.Result { return payment.Result(x) }),
		Created:  r.Created, Updated: r.Updated,
	}, nil
}
