// Package webhook delivers signed events to shops, reliably.
//
// The payment service writes each event, and an outbox entry for it, in the
// same commit as the state change that causes it, so no event is lost when
// the process stops right after. This worker finds due outbox entries, takes
// a lease on one with a compare-and-set (so two replicas never deliver the
// same attempt at once), POSTs it signed, and records the attempt: on a 2xx
// the entry is done; otherwise it is retried with exponential backoff and
// jitter for up to three days. An event keeps its ID across retries.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/paypage/paypage/pkg/account"
	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/egress"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/vault"
)

// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256>".
const SignatureHeader = "Paypage-Signature"

// Sign returns the signature header value for body at time t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header against body; it refuses a timestamp
// further than tolerance from now (a replay).
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return errors.New("malformed signature header")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("signature timestamp outside the tolerance: a replay?")
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	want := m.Sum(nil)
	for _, s := range sigs {
		got, err := hex.DecodeString(s)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("signature does not match")
}

// Attempt is one delivery try.
type Attempt struct {
	Time     time.Time `json:"time"`
	Status   int       `json:"status,omitempty"` // HTTP status, 0 when no answer
	Error    string    `json:"error,omitempty"`
	Duration int64     `json:"duration_ms"`
}

// Delivery is an event's delivery state, kept in its event record.
type Delivery struct {
	Status   string    `json:"status"` // pending, delivered, failed, disabled (no endpoint)
	Attempts []Attempt `json:"attempts"`
}

// Record is the stored event with its delivery state.
type Record struct {
	payment.Event
	Delivery *Delivery `json:"delivery,omitempty"`
}

// outboxEntry is a due delivery; it lives beside its event.
type outboxEntry struct {
	EventID    string    `json:"event_id"`
	Merchant   string    `json:"merchant"`
	First      time.Time `json:"first"`
	NextAt     time.Time `json:"next_at"`
	Attempts   int       `json:"attempts"`
	LeaseUntil time.Time `json:"lease_until"`
	Owner      string    `json:"owner,omitempty"`
	Indexed    bool      `json:"indexed"`
}

// Worker delivers events.
type Worker struct {
	Store    store.Store
	Accounts *account.Service
	Log      *slog.Logger
	// Schedule is the delay before each retry; the last repeats.
	Schedule []time.Duration
	// MaxAge is how long an event is retried (three days).
	MaxAge time.Duration
	// Timeout bounds one attempt.
	Timeout time.Duration
	// Poll is how often the outbox is scanned when nothing wakes the worker.
	Poll time.Duration
	// AllowPrivate permits private addresses, any port and plain http (development, tests).
	AllowPrivate bool
	Now          func() time.Time
	Client       *http.Client

	id   string
	wake chan struct{}
	once sync.Once
}

// DefaultSchedule retries within 5 seconds, then backs off to a day.
var DefaultSchedule = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 12 * time.Hour, 24 * time.Hour}

func (w *Worker) init() {
	w.once.Do(func() {
		if w.Schedule == nil {
			w.Schedule = DefaultSchedule
		}
		if w.MaxAge == 0 {
			w.MaxAge = 72 * time.Hour
		}
		if w.Timeout == 0 {
			w.Timeout = 10 * time.Second
		}
		if w.Poll == 0 {
			w.Poll = time.Second
		}
		if w.Now == nil {
			w.Now = time.Now
		}
		if w.Log == nil {
			w.Log = slog.Default()
		}
		if w.Client == nil {
			w.Client = egress.NewClient(w.Timeout, w.AllowPrivate)
		}
		w.id = vault.NewID("wrk_")
		w.wake = make(chan struct{}, 1)
	})
}

// Notify wakes the worker (after a commit that wrote events).
func (w *Worker) Notify() {
	w.init()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Start runs the worker until ctx ends; the channel closes when it stopped.
func (w *Worker) Start(ctx context.Context) <-chan struct{} {
	w.init()
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(w.Poll)
		defer t.Stop()
		for {
			if _, err := w.RunOnce(ctx); err != nil && ctx.Err() == nil {
				w.Log.Warn("webhook outbox", "err", err.Error())
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-w.wake:
			}
		}
	}()
	return done
}

// RunOnce delivers every due entry once, and returns how many it attempted.
func (w *Worker) RunOnce(ctx context.Context) (int, error) {
	w.init()
	type due struct {
		key store.Key
		ver int64
		e   outboxEntry
	}
	var list []due
	now := w.Now()
	err := w.Store.Scan(ctx, "outbox", func(id string, r store.Record) error {
		var e outboxEntry
		if json.Unmarshal(r.Value, &e) != nil {
			return nil
		}
		if !now.Before(e.NextAt) && !now.Before(e.LeaseUntil) {
			list = append(list, due{store.Key{Kind: "outbox", ID: id, Group: groupOf(r.Value, id)}, r.Version, e})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	sort.Slice(list, func(i, j int) bool { return list[i].e.NextAt.Before(list[j].e.NextAt) })
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	n := 0
	for _, d := range list {
		if ctx.Err() != nil {
			break
		}
		n++
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := w.deliver(ctx, d.key, d.ver, d.e); err != nil && ctx.Err() == nil {
				w.Log.Warn("webhook delivery", "event", d.e.EventID, "err", err.Error())
			}
		}()
	}
	wg.Wait()
	return n, nil
}

// An outbox record's value carries its group (the event's group) so a scan
// can address it; see Enqueue.
type groupedEntry struct {
	outboxEntry
	Group string `json:"group"`
}

func groupOf(v []byte, id string) string {
	var g groupedEntry
	if json.Unmarshal(v, &g) == nil && g.Group != "" {
		return g.Group
	}
	return id
}

func eventKey(group, id string) store.Key { return store.Key{Kind: "event", ID: id, Group: group} }

// OutboxOp is the op that queues an event for delivery, to commit with it.
func OutboxOp(group string, e payment.Event, now time.Time) store.Op {
	return createEntry(group, outboxEntry{EventID: e.ID, Merchant: e.Merchant, First: now, NextAt: now})
}

// createEntry is the op that adds an outbox entry, failing if one is there.
func createEntry(group string, e outboxEntry) store.Op {
	return store.Create(store.Key{Kind: "outbox", ID: e.EventID, Group: group}, encodeEntry(group, e), 0)
}

func (w *Worker) deliver(ctx context.Context, key store.Key, ver int64, e outboxEntry) error {
	now := w.Now()
	// Take the lease: one replica delivers one attempt at a time.
	e.LeaseUntil, e.Owner = now.Add(w.Timeout+5*time.Second), w.id
	if err := w.Store.Commit(ctx, store.Update(key, encodeEntry(key.Group, e), ver)); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil // another replica has it
		}
		return err
	}
	ver++
	evRec, err := w.Store.Get(ctx, eventKey(key.Group, e.EventID))
	if errors.Is(err, store.ErrNotFound) {
		return w.Store.Commit(ctx, store.Op{Key: key, Delete: true, IfVersion: ver})
	}
	if err != nil {
		return err
	}
	var rec Record
	if err := json.Unmarshal(evRec.Value, &rec); err != nil {
		return err
	}
	if !e.Indexed {
		// The merchant's event list is an index written once, after the fact.
		idx, _ := json.Marshal(indexEntry{ID: rec.ID, Group: key.Group})
		if _, err := w.Store.Append(ctx, listName(rec.Merchant), idx); err != nil {
			return err
		}
		e.Indexed = true
	}
	if rec.Delivery == nil {
		rec.Delivery = &Delivery{Status: "pending", Attempts: []Attempt{}}
	}
	m, err := w.Accounts.Merchant(ctx, rec.Merchant)
	if err != nil {
		return err
	}
	if m.WebhookURL == "" {
		rec.Delivery.Status = "disabled"
		return w.finish(ctx, key, ver, evRec.Version, rec, nil)
	}
	secret, err := w.Accounts.WebhookSecret(ctx, m)
	if err != nil {
		return err
	}
	att := w.post(ctx, m.WebhookURL, secret, rec.Event)
	rec.Delivery.Attempts = append(rec.Delivery.Attempts, att)
	e.Attempts++
	switch {
	case att.Status >= 200 && att.Status < 300:
		rec.Delivery.Status = "delivered"
		return w.finish(ctx, key, ver, evRec.Version, rec, nil)
	case w.Now().Sub(e.First) >= w.MaxAge:
		rec.Delivery.Status = "failed"
		return w.finish(ctx, key, ver, evRec.Version, rec, nil)
	}
	e.NextAt = w.Now().Add(w.backoff(e.Attempts))
	e.LeaseUntil, e.Owner = time.Time{}, ""
	return w.finish(ctx, key, ver, evRec.Version, rec, &e)
}

// backoff is the schedule's delay for the n-th retry, with ±20% jitter.
func (w *Worker) backoff(n int) time.Duration {
	d := w.Schedule[min(n, len(w.Schedule))-1]
	j := time.Duration(float64(d) * 0.2 * (2*rand.Float64() - 1))
	return d + j
}

func encodeEntry(group string, e outboxEntry) []byte {
	b, _ := json.Marshal(groupedEntry{outboxEntry: e, Group: group})
	return b
}

// finish records the attempt in the event and reschedules or removes the
// outbox entry, in one commit.
func (w *Worker) finish(ctx context.Context, key store.Key, ver, evVer int64, rec Record, next *outboxEntry) error {
	rb, _ := json.Marshal(rec)
	ops := []store.Op{store.Update(eventKey(key.Group, rec.ID), rb, evVer)}
	if next == nil {
		ops = append(ops, store.Op{Key: key, Delete: true, IfVersion: ver})
	} else {
		ops = append(ops, store.Update(key, encodeEntry(key.Group, *next), ver))
	}
	return w.Store.Commit(ctx, ops...)
}

// post sends one signed delivery.
func (w *Worker) post(ctx context.Context, url, secret string, ev payment.Event) Attempt {
	start := w.Now()
	body, _ := json.Marshal(ev)
	att := Attempt{Time: start.UTC()}
	ctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		att.Error = "bad endpoint URL"
		return att
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "paypage-webhooks/1")
	req.Header.Set("Paypage-Event-Id", ev.ID)
	req.Header.Set("Paypage-Event-Type", ev.Type)
	req.Header.Set(SignatureHeader, Sign(secret, time.Now(), body)) // wall time: the shop compares it with its clock
	resp, err := w.Client.Do(req)
	att.Duration = time.Since(start).Milliseconds()
	if err != nil {
		att.Error = redactErr(err)
		return att
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	att.Status = resp.StatusCode
	return att
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

type indexEntry struct {
	ID    string `json:"id"`
	Group string `json:"group"`
}

func listName(merchant string) string { return "events_" + merchant }

// List returns a merchant's events, oldest first, after the event ID after.
func (w *Worker) List(ctx context.Context, merchant, after string, limit int) ([]payment.Event, error) {
	recs, err := w.ListRecords(ctx, merchant, after, limit)
	out := make([]payment.Event, len(recs))
	for i, r := range recs {
		out[i] = r.Event
	}
	return out, err
}

// ListRecords is List with each event's delivery state.
func (w *Worker) ListRecords(ctx context.Context, merchant, after string, limit int) ([]Record, error) {
	cursor := ""
	if after != "" {
		// Find the log position of the event named by after.
		_, pos, err := w.find(ctx, merchant, after)
		if err != nil {
			return nil, apperr.Field("after", "no such event")
		}
		cursor = pos
	}
	entries, err := w.Store.Read(ctx, listName(merchant), cursor, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(entries))
	for _, en := range entries {
		var ix indexEntry
		if json.Unmarshal(en.Data, &ix) != nil {
			continue
		}
		r, err := w.Store.Get(ctx, eventKey(ix.Group, ix.ID))
		if err != nil {
			continue
		}
		var rec Record
		if json.Unmarshal(r.Value, &rec) == nil {
			out = append(out, rec)
		}
	}
	return out, nil
}

// find returns an event's index entry and its position in the merchant's list.
func (w *Worker) find(ctx context.Context, merchant, eventID string) (indexEntry, string, error) {
	cursor := ""
	for {
		entries, err := w.Store.Read(ctx, listName(merchant), cursor, 500)
		if err != nil {
			return indexEntry{}, "", err
		}
		for _, en := range entries {
			var ix indexEntry
			if json.Unmarshal(en.Data, &ix) == nil && ix.ID == eventID {
				return ix, en.ID, nil
			}
		}
		if len(entries) < 500 {
			return indexEntry{}, "", apperr.E(apperr.NotFound, "no such event")
		}
		cursor = entries[len(entries)-1].ID
	}
}

// Resend queues an event for delivery again, keeping its ID.
func (w *Worker) Resend(ctx context.Context, merchant, eventID string) error {
	w.init()
	found, _, err := w.find(ctx, merchant, eventID)
	if err != nil {
		return err
	}
	now := w.Now()
	err = w.Store.Commit(ctx, createEntry(found.Group, outboxEntry{EventID: eventID, Merchant: merchant, First: now, NextAt: now, Indexed: true}))
	if errors.Is(err, store.ErrConflict) {
		return apperr.E(apperr.Conflict, "the event is queued for delivery already")
	}
	if err == nil {
		w.Notify()
	}
	return err
}
