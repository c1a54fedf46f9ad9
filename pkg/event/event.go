// Package event is what a shop hears: webhook events, and how each is kept
// until it is delivered. An event is written in the same commit as the
// change that causes it, filed in the store's due index for its first
// delivery; the webhook worker delivers it, records each try, and files it
// again for the next try until it is delivered or given up.
package event

import (
	"encoding/json"
	"time"

	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/vault"
)

// Event is a webhook event.
type Event struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Created  time.Time       `json:"created"`
	Merchant string          `json:"merchant"`
	Data     json.RawMessage `json:"data"`
}

// Delivery states.
const (
	Pending   = "pending"   // not tried yet, or tried once and waiting for the next try
	Delivered = "delivered" // the shop answered 2xx
	Failing   = "failing"   // tried and refused more than once; tried again later
	GaveUp    = "gave_up"   // refused for the whole retry period
	Disabled  = "disabled"  // the shop has no webhook endpoint
)

// Delivery is where an event's delivery stands, as the shop and the
// operator see it.
type Delivery struct {
	State         string     `json:"state"`
	Attempts      int        `json:"attempts"`
	LastError     string     `json:"last_error,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
}

// Try is one delivery try.
type Try struct {
	Time     time.Time `json:"time"`
	Status   int       `json:"status,omitempty"` // HTTP status, 0 when no answer
	Error    string    `json:"error,omitempty"`
	Duration int64     `json:"duration_ms"`
}

// MaxHistory is how many tries a record keeps.
const MaxHistory = 20

// Record is an event as stored: the event, its delivery, the latest tries,
// and the worker's lease on it.
type Record struct {
	Event
	Delivery Delivery  `json:"delivery"`
	History  []Try     `json:"history,omitempty"`
	First    time.Time `json:"first"`           // when delivery began (retries end MaxAge after it)
	Listed   bool      `json:"listed"`          // in the merchant's list of events
	Pos      string    `json:"pos,omitempty"`   // its entry in that list
	Waits    int       `json:"waits,omitempty"` // times in a row it waited for its merchant's turn
	Owner    string    `json:"owner,omitempty"`
	Until    time.Time `json:"until,omitzero"` // the owner's lease
}

// Kind is the store kind of event records.
const Kind = "event"

// Key is where an event lives: in the group of the change that caused it.
func Key(group, id string) store.Key { return store.Key{Kind: Kind, ID: id, Group: group} }

// New makes an event of a type for a merchant with data as its payload.
func New(typ, merchant string, data any, now time.Time) Event {
	b, _ := json.Marshal(data)
	return Event{ID: vault.NewID("evt_"), Type: typ, Created: now.UTC(), Merchant: merchant, Data: b}
}

// CreateOp is the op that stores a new event, due for delivery at once.
func CreateOp(group string, e Event, now time.Time) store.Op {
	r := Record{Event: e, Delivery: Delivery{State: Pending}, First: now.UTC()}
	b, _ := json.Marshal(r)
	return store.Create(Key(group, e.ID), b, 0).At(now)
}

// Decode reads a stored record.
func Decode(b []byte) (Record, error) {
	var r Record
	err := json.Unmarshal(b, &r)
	return r, err
}

// Encode writes a record for the store.
func Encode(r Record) []byte {
	b, _ := json.Marshal(r)
	return b
}
