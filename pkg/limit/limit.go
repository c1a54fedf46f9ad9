// Package limit bounds how often something may happen: card submissions per
// client address and per card (card-testing protection), and whatever else
// needs a count over a window. Counts live in the store, so every replica
// shares them.
package limit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/clientaddr"
	"github.com/paypage/paypage/pkg/store"
)

// Rule is one limit: at most Max hits per Window. A Max of 0 turns it off.
type Rule struct {
	Name   string // what is limited, for errors and logs: "client", "card", ...
	Max    int64
	Window time.Duration
	// Exempt, if set, names the subjects the rule does not count (the
	// sandbox cards, which shops' test suites run all day).
	Exempt func(subject string) bool
}

// Off reports whether the rule never refuses.
func (r Rule) Off() bool { return r.Max <= 0 || r.Window <= 0 }

// Exceeded is the error for a hit over a rule's limit.
type Exceeded struct {
	Rule       string
	RetryAfter time.Duration // what is left of the count's window (a second at the least)
}

func (e *Exceeded) Error() string {
	return fmt.Sprintf("the %s limit is reached: try again within %s", e.Rule, e.RetryAfter.Round(time.Second))
}

// Counter counts hits in the store.
type Counter struct {
	store store.Store
	// Now is the clock a window's end is read against (tests set it, with
	// the store's).
	Now func() time.Time
}

// NewCounter returns a counter over s.
func NewCounter(s store.Store) (*Counter, error) {
	if s == nil {
		return nil, fmt.Errorf("limit: a store is required")
	}
	return &Counter{store: s, Now: time.Now}, nil
}

func (c *Counter) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

// Hit counts one hit for subject under rule, and refuses it with an
// apperr.RateLimited error wrapping *Exceeded when the count is over the
// limit. The subject is hashed: a client address or card key never appears
// in a store key.
func (c *Counter) Hit(ctx context.Context, r Rule, subject string) error {
	if r.Off() || r.Exempt != nil && r.Exempt(subject) {
		return nil
	}
	n, end, err := c.store.Incr(ctx, c.key(r, subject), r.Window)
	if err != nil {
		return err
	}
	if n > r.Max {
		return c.exceeded(r, end)
	}
	return nil
}

// Check refuses, as Hit would, a subject already at its limit, without
// counting: one read, no write. A caller checks first, so a refusal costs
// nothing durable, and counts with Hit once it goes on.
func (c *Counter) Check(ctx context.Context, r Rule, subject string) error {
	if r.Off() || r.Exempt != nil && r.Exempt(subject) {
		return nil
	}
	n, end, err := c.store.Count(ctx, c.key(r, subject))
	if err != nil {
		return err
	}
	if n >= r.Max {
		return c.exceeded(r, end)
	}
	return nil
}

// exceeded is the error for a subject over a rule, whose count's window
// ends at end: try again once it has (within a second to the window).
func (c *Counter) exceeded(r Rule, end time.Time) error {
	e := &Exceeded{Rule: r.Name, RetryAfter: min(max(end.Sub(c.now()), time.Second), r.Window)}
	return &apperr.Error{Code: apperr.RateLimited, Message: e.Error(), Err: e}
}

// key is where a rule counts a subject: hashed, so a client address or card
// key never appears in a store key.
func (c *Counter) key(r Rule, subject string) store.Key {
	h := sha256.Sum256([]byte(r.Name + "|" + subject))
	return store.K("limit_"+r.Name, hex.EncodeToString(h[:12]))
}

// Submission is one card (or Kaspi QR) submission on a payment page.
type Submission struct {
	Merchant string
	ClientIP string
	CardKey  string // a keyed hash of the card number; "" for a Kaspi QR
}

// Submissions are the card-testing limits: per client address (an IPv6
// client counted by its /64, all of which it holds), per IPv6 network (a
// /48, which one subscriber or host may hold: 65,536 /64s) and per card,
// across merchants; and, for card submissions, two velocity limits that a
// distributed run (many addresses, many cards) cannot spread itself under:
// per merchant, and over the whole service.
type Submissions struct {
	Counter  *Counter
	Client   Rule
	Network  Rule // submissions from one IPv6 /48 (IPv4 clients: Client alone)
	Card     Rule
	Merchant Rule // card submissions to one merchant's pages
	Global   Rule // card submissions to every merchant's pages
}

// Submission counts s against each limit and refuses it when one is over.
func (l *Submissions) Submission(ctx context.Context, s Submission) error {
	return l.each(s, func(r Rule, subject string) error { return l.Counter.Hit(ctx, r, subject) })
}

// Check refuses s when a limit is reached already, without counting it.
func (l *Submissions) Check(ctx context.Context, s Submission) error {
	return l.each(s, func(r Rule, subject string) error { return l.Counter.Check(ctx, r, subject) })
}

// each applies f to every rule s falls under, in order, until one refuses.
func (l *Submissions) each(s Submission, f func(Rule, string) error) error {
	client := s.ClientIP
	if a, err := netip.ParseAddr(client); err == nil {
		client = clientaddr.Bucket(a)
	}
	if err := f(l.Client, client); err != nil {
		return err
	}
	if a, err := netip.ParseAddr(s.ClientIP); err == nil {
		if network := clientaddr.Network(a); network != "" {
			if err := f(l.Network, network); err != nil {
				return err
			}
		}
	}
	if s.CardKey == "" {
		return nil
	}
	if err := f(l.Card, s.CardKey); err != nil {
		return err
	}
	if err := f(l.Merchant, s.Merchant); err != nil {
		return err
	}
	return f(l.Global, "all")
}

// DefaultSubmissions are the production limits.
func DefaultSubmissions(c *Counter) *Submissions {
	return &Submissions{
		Counter:  c,
		Client:   Rule{Name: "client", Max: 20, Window: time.Hour},
		Network:  Rule{Name: "network", Max: 100, Window: time.Hour},
		Card:     Rule{Name: "card", Max: 10, Window: 24 * time.Hour},
		Merchant: Rule{Name: "merchant", Max: 600, Window: time.Minute},
		Global:   Rule{Name: "global", Max: 6000, Window: time.Minute},
	}
}
