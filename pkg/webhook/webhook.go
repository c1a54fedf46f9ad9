// Package webhook delivers signed events to shops, reliably and fairly.
//
// Each event is written in the same commit as the change that causes it,
// filed in the store's due index (package event), so none is lost when the
// process stops right after. The reconciler hands each due event to Handle
// on one of the replicas: it takes a lease on the event with a
// compare-and-set (so two replicas never deliver the same try at once),
// POSTs it signed, records the try, and files the event again for the next
// try with exponential backoff and jitter, for up to three days. An event
// keeps its ID across tries.
//
// Fairness: a replica delivers at most PerMerchant events of one merchant at
// once, and only one until the merchant's endpoint has answered 2xx here
// (an endpoint that has not, or whose last try failed, is unproven); all
// unproven endpoints together hold at most half the workers. An endpoint
// that keeps failing is backed off as a whole (its due events are moved to
// when it is tried again), and an event that waits for its merchant's turn
// is moved on by a doubling delay. So however many shops' endpoints hang,
// the others' events find free workers.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/paypage/paypage/pkg/account"
	"github.com/paypage/paypage/pkg/api"
	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/due"
	"github.com/paypage/paypage/pkg/egress"
	"github.com/paypage/paypage/pkg/event"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/vault"
)

// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256>".
const SignatureHeader = api.SignatureHeader

// Sign returns the signature header value for body at time t.
func Sign(secret string, t time.Time, body []byte) string { return api.SignWebhook(secret, t, body) }

// Verify checks a signature header against body; it refuses a timestamp
// further than tolerance from now (a replay).
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	return api.VerifyWebhook(secret, header, body, now, tolerance)
}

// Accounts is what the worker needs of the merchants.
type Accounts interface {
	Merchant(ctx context.Context, id string) (account.Merchant, error)
	WebhookSecret(ctx context.Context, m account.Merchant) (string, error)
}

// Options are the worker's settings; zero values take the defaults.
type Options struct {
	// Schedule is the delay before each retry; the last repeats.
	Schedule []time.Duration
	// MaxAge is how long an event is retried (three days).
	MaxAge time.Duration
	// Timeout bounds one try.
	Timeout time.Duration
	// PerMerchant bounds one merchant's deliveries in flight on a replica.
	PerMerchant int
	// Workers is how many deliveries the reconciler runs at once on a
	// replica (16); unproven endpoints hold at most half of them.
	Workers int
	// Retention is how long an event is kept after it was made, once its
	// delivery ended (0: for ever).
	Retention time.Duration
	// AllowPrivate permits private addresses, any port and plain http (development, tests).
	AllowPrivate bool
	Client       *http.Client
	Now          func() time.Time
}

// DefaultSchedule retries within 5 seconds, then backs off to a day.
var DefaultSchedule = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 12 * time.Hour, 24 * time.Hour}

// Worker delivers events.
type Worker struct {
	store    store.Store
	accounts Accounts
	log      *slog.Logger
	opts     Options
	id       string

	mu        sync.Mutex
	busy      map[string]int       // a merchant's deliveries in flight here
	endpoints map[string]*endpoint // what this replica knows of each endpoint
	unproven  int                  // deliveries in flight to unproven endpoints
}

// endpoint is what a replica knows of a merchant's endpoint.
type endpoint struct {
	proven bool      // its last try here was answered 2xx
	fails  int       // failures in a row
	openAt time.Time // backed off: not tried again before
}

// New returns a worker over s.
func New(s store.Store, accounts Accounts, log *slog.Logger, o Options) (*Worker, error) {
	if s == nil || accounts == nil {
		return nil, errors.New("webhook: a store and the accounts are required")
	}
	if o.Schedule == nil {
		o.Schedule = DefaultSchedule
	}
	if o.MaxAge == 0 {
		o.MaxAge = 72 * time.Hour
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.PerMerchant == 0 {
		o.PerMerchant = 4
	}
	if o.Workers == 0 {
		o.Workers = 16
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Client == nil {
		o.Client = egress.NewClient(o.Timeout, o.AllowPrivate)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Worker{
		store: s, accounts: accounts, log: log, opts: o, id: vault.NewID("wrk_"),
		busy: map[string]int{}, endpoints: map[string]*endpoint{},
	}, nil
}

// backoff is the schedule's delay for the n-th retry, with ±20% jitter.
func (w *Worker) backoff(n int) time.Duration {
	d := w.opts.Schedule[min(n, len(w.opts.Schedule))-1]
	j := time.Duration(float64(d) * 0.2 * (2*rand.Float64() - 1))
	return d + j
}

// take reserves a delivery slot for a merchant. It says whether the slot is
// an unproven endpoint's; when the merchant is at its cap, its endpoint is
// backed off, or unproven endpoints hold their share of the workers, it
// returns false and the earliest time worth coming back (zero: a slot may
// free any moment).
func (w *Worker) take(merchant string, now time.Time) (ok, unproven bool, later time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ep := w.endpoints[merchant]
	if ep != nil && now.Before(ep.openAt) {
		return false, false, ep.openAt
	}
	unproven = ep == nil || !ep.proven
	limit := w.opts.PerMerchant
	if unproven {
		limit = 1
	}
	if w.busy[merchant] >= limit || unproven && w.unproven >= max(1, w.opts.Workers/2) {
		return false, false, time.Time{}
	}
	w.busy[merchant]++
	if unproven {
		w.unproven++
	}
	return true, unproven, time.Time{}
}

// done frees a merchant's slot and keeps the endpoint's record: a 2xx proves
// it; after three failures in a row it is backed off, doubling from 5
// seconds to 5 minutes.
func (w *Worker) done(merchant string, unproven, ok bool, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.busy[merchant]--
	if w.busy[merchant] <= 0 {
		delete(w.busy, merchant)
	}
	if unproven {
		w.unproven--
	}
	ep := w.endpoints[merchant]
	if ep == nil {
		ep = &endpoint{}
		w.endpoints[merchant] = ep
	}
	if ok {
		*ep = endpoint{proven: true}
		return
	}
	ep.proven = false
	ep.fails++
	if ep.fails >= 3 {
		ep.openAt = now.Add(min(5*time.Second<<min(ep.fails-3, 10), 5*time.Minute))
	}
}

// wait is how long an event waits for its merchant's turn: doubling from a
// second to half a minute with each wait in a row.
func wait(waits int) time.Duration { return min(time.Second<<min(waits, 5), 30*time.Second) }

// Handle delivers one due event: the reconciler's handler for event keys.
func (w *Worker) Handle(ctx context.Context, k store.Key) error {
	r, err := w.store.Get(ctx, k)
	if errors.Is(err, store.ErrNotFound) {
		return w.store.Commit(ctx, store.Delete(k))
	}
	if err != nil {
		return err
	}
	rec, err := event.Decode(r.Value)
	if err != nil {
		return fmt.Errorf("event record %s: %w", k.ID, err)
	}
	now := w.opts.Now()
	if now.Before(rec.Until) {
		return nil // another replica is delivering it
	}
	if st := rec.Delivery.State; st != event.Pending && st != event.Failing {
		// Ended: kept for the record retention, then deleted.
		if keep := w.keepUntil(rec); !keep.IsZero() && !now.Before(keep) {
			return w.forget(ctx, k, r.Version, rec)
		}
		return w.save(ctx, k, r.Version, rec, w.keepUntil(rec))
	}
	m, err := w.accounts.Merchant(ctx, rec.Merchant)
	if err != nil {
		return err
	}
	if m.WebhookURL == "" {
		if err := w.list(ctx, k, &rec); err != nil {
			return err
		}
		rec.Delivery = event.Delivery{State: event.Disabled, Attempts: rec.Delivery.Attempts}
		return w.save(ctx, k, r.Version, rec, w.keepUntil(rec))
	}
	// The secret first: while the vault is sealed nothing can be signed,
	// which is no fault of the endpoint's nor of the event's: look again in
	// a second, writing nothing, counting no failure and taking no lease.
	secret, err := w.accounts.WebhookSecret(ctx, m)
	if errors.Is(err, vault.ErrSealed) {
		return due.Later(time.Second, err)
	}
	if err != nil {
		return err
	}
	if err := w.list(ctx, k, &rec); err != nil {
		return err
	}
	ok, unproven, later := w.take(m.ID, now)
	if !ok && !later.IsZero() && now.Sub(rec.First) >= w.opts.MaxAge {
		// Its retry period is over while its endpoint is backed off: it
		// ends here, without another try, as it would after one. (An
		// endpoint merely busy gives the event its last try.)
		rec.Delivery.State, rec.Delivery.NextAttemptAt, rec.Waits = event.GaveUp, nil, 0
		w.log.Warn("webhook delivery given up", "merchant", rec.Merchant, "event", rec.ID, "type", rec.Type, "attempts", rec.Delivery.Attempts, "reason", "the endpoint is backed off")
		if err := w.save(ctx, k, r.Version, rec, w.keepUntil(rec)); !errors.Is(err, store.ErrConflict) {
			return err
		}
		return nil
	}
	if !ok {
		// The merchant is at its cap here, or its endpoint is backed off:
		// move the event on rather than make others wait behind it.
		if later.IsZero() {
			later = now.Add(wait(rec.Waits))
		}
		rec.Waits++
		rec.Delivery.NextAttemptAt = &later
		if err := w.save(ctx, k, r.Version, rec, later); !errors.Is(err, store.ErrConflict) {
			return err
		}
		return nil
	}
	delivered := false
	defer func() { w.done(m.ID, unproven, delivered, w.opts.Now()) }()
	rec.Waits = 0
	// Take the lease: one replica tries the event at a time.
	rec.Owner, rec.Until = w.id, now.Add(w.opts.Timeout+5*time.Second)
	if err := w.save(ctx, k, r.Version, rec, rec.Until); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil // another replica took it
		}
		return err
	}
	version := r.Version + 1
	try := w.post(ctx, m.WebhookURL, secret, rec.Event)
	rec.History = append(rec.History, try)
	if len(rec.History) > event.MaxHistory {
		rec.History = rec.History[len(rec.History)-event.MaxHistory:]
	}
	rec.Owner, rec.Until = "", time.Time{}
	d := &rec.Delivery
	d.Attempts++
	d.LastError = tryError(try)
	now = w.opts.Now()
	var next time.Time
	switch {
	case try.Status >= 200 && try.Status < 300:
		delivered = true
		d.State, d.LastError, d.NextAttemptAt = event.Delivered, "", nil
	case now.Sub(rec.First) >= w.opts.MaxAge:
		d.State, d.NextAttemptAt = event.GaveUp, nil
		w.log.Warn("webhook delivery given up", "merchant", rec.Merchant, "event", rec.ID, "type", rec.Type, "attempts", d.Attempts, "reason", d.LastError)
	default:
		d.State = event.Pending
		if d.Attempts > 1 {
			d.State = event.Failing
		}
		next = now.Add(w.backoff(d.Attempts))
		d.NextAttemptAt = &next
		w.log.Warn("webhook delivery failed", "merchant", rec.Merchant, "event", rec.ID, "type", rec.Type, "attempts", d.Attempts, "reason", d.LastError, "next_attempt_at", next)
	}
	if next.IsZero() {
		next = w.keepUntil(rec)
	}
	return w.save(ctx, k, version, rec, next)
}

// keepUntil is when an ended event is deleted: its retention after it was
// made (zero: kept for ever).
func (w *Worker) keepUntil(rec event.Record) time.Time {
	if w.opts.Retention <= 0 {
		return time.Time{}
	}
	return rec.Created.Add(w.opts.Retention)
}

// tryError says why a try failed, for the shop and the operator.
func tryError(t event.Try) string {
	switch {
	case t.Error != "":
		return t.Error
	case t.Status >= 200 && t.Status < 300:
		return ""
	}
	return fmt.Sprintf("HTTP %d", t.Status)
}

// save writes the record over version, filed at next (zero: out of the index).
func (w *Worker) save(ctx context.Context, k store.Key, version int64, rec event.Record, next time.Time) error {
	op := store.Update(k, event.Encode(rec), version)
	if next.IsZero() {
		op = op.Finished()
	} else {
		op = op.At(next)
	}
	return w.store.Commit(ctx, op)
}

// post sends one signed delivery.
func (w *Worker) post(ctx context.Context, url, secret string, ev event.Event) event.Try {
	start := w.opts.Now()
	body, _ := json.Marshal(ev)
	try := event.Try{Time: start.UTC()}
	ctx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		try.Error = "bad endpoint URL"
		return try
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "paypage-webhooks/1")
	req.Header.Set(api.EventIDHeader, ev.ID)
	req.Header.Set(api.EventTypeHeader, ev.Type)
	req.Header.Set(SignatureHeader, Sign(secret, time.Now(), body)) // wall time: the shop compares it with its clock
	began := time.Now()
	resp, err := w.opts.Client.Do(req)
	try.Duration = time.Since(began).Milliseconds()
	if err != nil {
		try.Error = redactErr(err)
		return try
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	try.Status = resp.StatusCode
	return try
}

// redactErr keeps an error's kind, not its whole text (which may hold the URL).
func redactErr(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, egress.ErrRefused):
		return "destination refused: only https to public addresses on ports 443 and 80 (PAYPAGE_WEBHOOK_ALLOW_PRIVATE=true allows others)"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	}
	return "connection failed"
}

// position is where an event stands in its merchant's list: its own small
// record, so a page after an event and a resend find it in one read.
type position struct {
	Merchant string `json:"merchant"`
	Group    string `json:"group"`
	Pos      string `json:"pos"`
}

type indexEntry struct {
	ID    string `json:"id"`
	Group string `json:"group"`
}

func listName(merchant string) string { return "events_" + merchant }

func positionKey(eventID string) store.Key { return store.K("event_pos", eventID) }

// list appends an event to its merchant's list, once, at its first look,
// and records where: in its position record (made once: a second replica,
// or a look after a failed write, takes the recorded place) and in rec
// (saved by the caller). An entry left by a write that failed, or by a
// replica that lost the race, is skipped by List: the event's record names
// its own entry. A position outlives its event by positionGrace, so a
// shop's after= cursor keeps working after the event is deleted.
func (w *Worker) list(ctx context.Context, k store.Key, rec *event.Record) error {
	if rec.Listed {
		return nil
	}
	p, err := w.readPosition(ctx, rec.ID)
	if errors.Is(err, store.ErrNotFound) {
		idx, _ := json.Marshal(indexEntry{ID: rec.ID, Group: k.G()})
		var pos string
		if pos, err = w.store.Append(ctx, listName(rec.Merchant), idx); err != nil {
			return err
		}
		var ttl time.Duration
		if w.opts.Retention > 0 {
			ttl = w.opts.Retention + positionGrace
		}
		p = position{Merchant: rec.Merchant, Group: k.G(), Pos: pos}
		b, _ := json.Marshal(p)
		err = w.store.Commit(ctx, store.Create(positionKey(rec.ID), b, ttl))
		if errors.Is(err, store.ErrConflict) {
			p, err = w.readPosition(ctx, rec.ID) // another look recorded it first
		}
	}
	if err != nil {
		return err
	}
	rec.Listed, rec.Pos = true, p.Pos
	return nil
}

// positionGrace is how long an event's position outlives the event.
const positionGrace = 30 * 24 * time.Hour

// forget deletes an ended event at the end of its retention, then trims
// the head of its merchant's list: the entries, oldest first, whose event
// is gone (or that are not their event's own entry), up to the first that
// still stands for a living event. So a first page never fills with
// events that are gone, and an event that lives on (resent, retrying) is
// never trimmed away.
func (w *Worker) forget(ctx context.Context, k store.Key, version int64, rec event.Record) error {
	if err := w.store.Commit(ctx, store.Op{Key: k, Delete: true, IfVersion: version}); err != nil {
		return err
	}
	list := listName(rec.Merchant)
	entries, err := w.store.Read(ctx, list, "", 100)
	if err != nil {
		return err
	}
	through := ""
	for _, en := range entries {
		live, err := w.entryLive(ctx, en)
		if err != nil {
			return err
		}
		if live != nil {
			break
		}
		through = en.ID
	}
	if through == "" {
		return nil
	}
	_, err = w.store.TrimLog(ctx, list, through, 0)
	return err
}

// entryLive returns the event an entry of a merchant's list stands for, or
// nil when the event is gone or the entry is not its own (a duplicate).
func (w *Worker) entryLive(ctx context.Context, en store.Entry) (*event.Record, error) {
	var ix indexEntry
	if json.Unmarshal(en.Data, &ix) != nil {
		return nil, nil
	}
	r, err := w.store.Get(ctx, event.Key(ix.Group, ix.ID))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rec, err := event.Decode(r.Value)
	if err != nil || rec.Pos != "" && rec.Pos != en.ID {
		return nil, nil
	}
	return &rec, nil
}

// List returns a merchant's events with their delivery, oldest first, after
// the event ID after. Its cost follows the page: the position of after is
// one read, then the list is read from there.
func (w *Worker) List(ctx context.Context, merchant, after string, limit int) ([]event.Record, error) {
	cursor := ""
	if after != "" {
		p, err := w.position(ctx, merchant, after)
		if errors.Is(err, store.ErrNotFound) {
			return nil, apperr.Field("after", "no such event")
		}
		if err != nil {
			return nil, err
		}
		cursor = p.Pos
	}
	out := make([]event.Record, 0, limit)
	// Entries whose event is gone (deleted between a read and the trim) or
	// that are not their event's own are skipped, and the page filled from
	// further on: a few reads, more only while the page is still empty.
	for reads := 1; ; reads++ {
		want := limit - len(out)
		entries, err := w.store.Read(ctx, listName(merchant), cursor, want)
		if err != nil {
			return nil, err
		}
		for _, en := range entries {
			cursor = en.ID
			rec, err := w.entryLive(ctx, en)
			if err != nil {
				return nil, err
			}
			if rec != nil {
				out = append(out, *rec)
			}
		}
		if len(out) >= limit || len(entries) < want || reads >= 8 && len(out) > 0 {
			return out, nil
		}
	}
}

// position reads where a merchant's event stands in its list; ErrNotFound
// when it is not the merchant's.
func (w *Worker) position(ctx context.Context, merchant, eventID string) (position, error) {
	p, err := w.readPosition(ctx, eventID)
	if err == nil && p.Merchant != merchant {
		return position{}, store.ErrNotFound
	}
	return p, err
}

// readPosition reads an event's position record.
func (w *Worker) readPosition(ctx context.Context, eventID string) (position, error) {
	r, err := w.store.Get(ctx, positionKey(eventID))
	if err != nil {
		return position{}, err
	}
	var p position
	if err := json.Unmarshal(r.Value, &p); err != nil {
		return position{}, fmt.Errorf("event position %s: %w", eventID, err)
	}
	return p, nil
}

// Resend files an event for delivery again, now, keeping its ID.
func (w *Worker) Resend(ctx context.Context, merchant, eventID string) error {
	found, err := w.position(ctx, merchant, eventID)
	if errors.Is(err, store.ErrNotFound) {
		return apperr.E(apperr.NotFound, "no such event")
	}
	if err != nil {
		return err
	}
	k := event.Key(found.Group, eventID)
	for {
		r, err := w.store.Get(ctx, k)
		if err != nil {
			return err
		}
		rec, err := event.Decode(r.Value)
		if err != nil {
			return err
		}
		if rec.Delivery.State == event.Pending || rec.Delivery.State == event.Failing {
			return apperr.E(apperr.Conflict, "the event is queued for delivery already")
		}
		now := w.opts.Now()
		rec.Delivery = event.Delivery{State: event.Pending, Attempts: rec.Delivery.Attempts}
		rec.First = now
		err = w.save(ctx, k, r.Version, rec, now)
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
}
