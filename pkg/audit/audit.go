// Package audit keeps the append-only audit trail that PCI DSS 10.2 asks for:
// who did what, when, from where, to which object, and whether it worked.
// Entries never hold card numbers or security codes: only tokens and IDs.
package audit

import (
	"context"
	"encoding/json"
	"time"

	"github.com/paypage/paypage/pkg/store"
)

// Outcomes.
const (
	Success = "success"
	Failure = "failure"
)

// Event is one audit record.
type Event struct {
	ID      string    `json:"id,omitempty"`
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor"`            // "processor:prc_...", "merchant:mer_...", "operator:alice", "system"
	Action  string    `json:"action"`           // "detokenize", "keys.rotate", ...
	Outcome string    `json:"outcome"`          // success or failure
	Source  string    `json:"source,omitempty"` // client address
	Object  string    `json:"object,omitempty"` // a token, payment or key version
	Reason  string    `json:"reason,omitempty"` // why it failed: an error code, never card data
	// Merchant is the merchant the action concerns, when it concerns one.
	Merchant string `json:"merchant,omitempty"`
	// Operator names the person behind an operator's action.
	Operator *Operator `json:"operator,omitempty"`
	// Count, First and Last sum up repeated refusals from one source in one
	// window (Refusals): how many, and when the first and the last came.
	Count int64     `json:"count,omitempty"`
	First time.Time `json:"first,omitzero"`
	Last  time.Time `json:"last,omitzero"`
}

// Operator is who ran an operator command: the user the kernel names for
// the process that sent it through the service's socket ("socket"), or
// the user of the process that opened the store itself ("direct"), and
// the user its login session began as, which sudo and su keep: under
// "sudo -u paypage" the user is paypage and the login the person.
type Operator struct {
	UID  int    `json:"uid"`
	User string `json:"user"`
	// LoginUID and Login are the process's login uid (/proc/PID/loginuid)
	// and its user name; absent for a process outside any login session.
	LoginUID *int   `json:"login_uid,omitempty"`
	Login    string `json:"login,omitempty"`
	PID      int    `json:"pid,omitempty"`
	Via      string `json:"via"`
}

// Actor is the operator's actor name: "operator:alice", the login's user
// when there is one, else the process's.
func (o Operator) Actor() string {
	if o.Login != "" {
		return "operator:" + o.Login
	}
	return "operator:" + o.User
}

// Log writes and reads the trail.
type Log struct {
	store store.Store
	Now   func() time.Time
	// Keep caps the trail: Trim removes the oldest exported records past
	// this many (0: no cap). Records not exported are never removed.
	Keep int
}

// New returns the audit log kept in s.
func New(s store.Store) *Log { return &Log{store: s, Now: time.Now} }

const logName = "audit"

// Record appends an event, stamping its time.
func (l *Log) Record(ctx context.Context, e Event) error {
	e.Time = l.Now().UTC()
	e.ID = ""
	b, _ := json.Marshal(e)
	_, err := l.store.Append(ctx, logName, b)
	return err
}

// List returns up to limit events after the event ID after, oldest first.
func (l *Log) List(ctx context.Context, after string, limit int) ([]Event, error) {
	return l.Filter(ctx, "", after, limit)
}

// Filter is List of the events that concern one merchant ("" for all).
// It reads the trail from after on, a page at a time, until it has limit
// events or the trail ends: an operator's query, not a hot path.
func (l *Log) Filter(ctx context.Context, merchant, after string, limit int) ([]Event, error) {
	out := []Event{}
	for len(out) < limit {
		page := limit - len(out)
		if merchant != "" {
			page = 500
		}
		entries, err := l.store.Read(ctx, logName, after, page)
		if err != nil {
			return nil, err
		}
		for _, en := range entries {
			var e Event
			if json.Unmarshal(en.Data, &e) == nil && (merchant == "" || e.Merchant == merchant) && len(out) < limit {
				e.ID = en.ID
				out = append(out, e)
			}
			after = en.ID
		}
		if len(entries) < page {
			break
		}
	}
	return out, nil
}
