package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/audit"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/vault"
)

// Cards is what the sandbox needs of the vault: a real processor calls
// POST /v1/detokenize instead.
type Cards interface {
	Lookup(ctx context.Context, token string) (vault.Card, vault.Info, error)
}

// SandboxOutcomes is the sandbox card table: number -> our decline code
// ("" approves). Numbers not listed are approved.
var SandboxOutcomes = map[string]string{
	"4000000000000002": DoNotHonor,
	"4000000000009995": InsufficientFunds,
	"4000000000000069": ExpiredCard,
	"4000000000000127": IncorrectCVC,
	"4000000000000044": NotEnabledInternet,
	"4000000000000119": Unavailable,
}

// SandboxNumbers are the card numbers of the sandbox table (the README's
// "Sandbox cards"): the processor's and the issuer's tables and the
// approved cards they leave out. Shops' test suites run them all day, so
// the per-card limit does not count them.
var SandboxNumbers = []string{
	"4242424242424242", "4000000000003220", "5555555555554444", "2223003122003222",
	"378282246310005", "3530111333300000", "2200000000000004", "4000000000000002",
	"4000000000009995", "4000000000000069", "4000000000000127", "4000000000000044",
	"4000000000000119", "4000000000000051", "4000000000000259", "4000000000000267",
}

// Sandbox cards with faults of the way to the processor.
const (
	// SandboxLostAnswer approves, but the first answer is lost on the way:
	// the processor has the approval, the caller does not.
	SandboxLostAnswer = "4000000000000259"
	// SandboxSlow approves after SlowDelay, past any caller's deadline.
	SandboxSlow = "4000000000000267"
)

// SlowDelay is how long the sandbox takes to decide for SandboxSlow.
const SlowDelay = 40 * time.Second

// VoidedCode is the code an authorization carries once voided.
const VoidedCode = "voided"

// errAnswerLost is what the caller gets when the sandbox loses its answer.
var errAnswerLost = errors.New("sandbox processor: connection reset before the answer arrived")

// Sandbox is a processor that runs inside paypage and decides by card number.
// It keeps its authorizations in the store, so a repeated request ID gets the
// first answer, a void is remembered even before the authorization it names,
// and a refund can never exceed what was captured.
type Sandbox struct {
	store store.Store
	cards Cards
	audit *audit.Log
	// Now is the sandbox's clock (a slow decision waits for it).
	Now func() time.Time
	// Keep is how long its records live after their last change, as the
	// payments' own records (0: for ever): a refund renews them.
	Keep time.Duration
}

var _ Processor = (*Sandbox)(nil)

// NewSandbox returns the sandbox processor.
func NewSandbox(s store.Store, c Cards, a *audit.Log) *Sandbox {
	return &Sandbox{store: s, cards: c, audit: a, Now: time.Now}
}

type sandboxAuth struct {
	Result   Result    `json:"result"`
	Amount   int64     `json:"amount"`
	Refunded int64     `json:"refunded"`
	Token    string    `json:"token"`
	DecideAt time.Time `json:"decide_at,omitzero"` // a slow decision is final only then
	Voided   bool      `json:"voided,omitempty"`
	// VoidedApproval: the void reversed an approval.
	VoidedApproval bool `json:"voided_approval,omitempty"`
}

func authKey(ref string) store.Key { return store.K("sbx_auth", ref) }

func refOf(id string) string { return "sbx_" + strings.TrimPrefix(id, "att_") }

func (s *Sandbox) load(ctx context.Context, ref string) (sandboxAuth, int64, error) {
	rec, err := s.store.Get(ctx, authKey(ref))
	if err != nil {
		return sandboxAuth{}, 0, err
	}
	var a sandboxAuth
	if err := json.Unmarshal(rec.Value, &a); err != nil {
		return sandboxAuth{}, 0, err
	}
	return a, rec.Version, nil
}

// wait blocks until the sandbox's clock reaches t, or ctx ends.
func (s *Sandbox) wait(ctx context.Context, t time.Time) error {
	for s.Now().Before(t) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(100*time.Millisecond, t.Sub(s.Now()))):
		}
	}
	return nil
}

// Authorize decides by the card's number; the request ID makes it idempotent.
func (s *Sandbox) Authorize(ctx context.Context, r AuthorizeRequest) (Result, error) {
	ref := refOf(r.ID)
	a, _, err := s.load(ctx, ref)
	switch {
	case err == nil:
		if err := s.wait(ctx, a.DecideAt); err != nil {
			return Result{}, err
		}
		return s.Inquire(ctx, r.ID)
	case !errors.Is(err, store.ErrNotFound):
		return Result{}, err
	}
	c, info, err := s.cards.Lookup(ctx, r.Token)
	outcome := audit.Success
	if err != nil {
		outcome = audit.Failure
	}
	_ = s.audit.Record(ctx, audit.Event{Actor: "processor:sandbox", Action: "detokenize", Outcome: outcome, Object: r.Token, Reason: apperr.Code(err)})
	if err != nil {
		return Result{}, err
	}
	res := Result{Reference: ref}
	switch {
	case info.Merchant != r.Merchant:
		res.Code = InvalidCard
	case r.CVV.Digits() == "" || len(r.CVV.Digits()) != info.Brand.CVVLength():
		res.Code = IncorrectCVC
	default:
		res.Code = SandboxOutcomes[c.PAN.Digits()]
	}
	if res.Code == "" {
		res.Approved, res.NetworkCode, res.AuthCode = true, "00", fmt.Sprintf("%06d", rand.IntN(1000000))
	} else {
		res.NetworkCode = NetworkCodes[res.Code]
	}
	if res.Code == Unavailable {
		res.Reference = "" // a processor that is down keeps nothing
		return res, nil
	}
	rec := sandboxAuth{Result: res, Amount: r.Amount, Token: r.Token}
	if c.PAN.Digits() == SandboxSlow {
		rec.DecideAt = s.Now().Add(SlowDelay).UTC()
	}
	b, _ := json.Marshal(rec)
	if err := s.store.Commit(ctx, store.Create(authKey(ref), b, s.Keep)); errors.Is(err, store.ErrConflict) {
		return s.Authorize(ctx, r) // a concurrent twin (or a void) came first: answer as it did
	} else if err != nil {
		return Result{}, err
	}
	if c.PAN.Digits() == SandboxLostAnswer {
		return Result{}, errAnswerLost
	}
	if err := s.wait(ctx, rec.DecideAt); err != nil {
		return Result{}, err
	}
	return s.Inquire(ctx, r.ID)
}

// Inquire answers as Authorize did (or does now); ErrUnknown when it never
// saw the ID, or is still deciding.
func (s *Sandbox) Inquire(ctx context.Context, id string) (Result, error) {
	a, _, err := s.load(ctx, refOf(id))
	if errors.Is(err, store.ErrNotFound) {
		return Result{}, ErrUnknown
	}
	if err != nil {
		return Result{}, err
	}
	if s.Now().Before(a.DecideAt) {
		return Result{}, ErrUnknown
	}
	return a.Result, nil
}

// Void reverses an authorization. A void for an ID the sandbox never saw, or
// is still deciding, is remembered: that authorization will not be approved.
func (s *Sandbox) Void(ctx context.Context, r VoidRequest) (VoidResult, error) {
	ref := refOf(r.ID)
	for {
		a, ver, err := s.load(ctx, ref)
		if errors.Is(err, store.ErrNotFound) {
			b, _ := json.Marshal(sandboxAuth{Result: Result{Code: VoidedCode}, Voided: true})
			err = s.store.Commit(ctx, store.Create(authKey(ref), b, s.Keep))
			if errors.Is(err, store.ErrConflict) {
				continue
			}
			return VoidResult{}, err
		}
		if err != nil {
			return VoidResult{}, err
		}
		if a.Voided {
			return VoidResult{Voided: a.VoidedApproval}, nil
		}
		decided := !s.Now().Before(a.DecideAt)
		a.VoidedApproval = decided && a.Result.Approved
		a.Voided, a.Result = true, Result{Code: VoidedCode, Reference: a.Result.Reference}
		b, _ := json.Marshal(a)
		err = s.store.Commit(ctx, store.Update(authKey(ref), b, ver).WithTTL(s.Keep))
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return VoidResult{}, err
		}
		return VoidResult{Voided: a.VoidedApproval}, nil
	}
}

// Refund returns money to the authorization's card; never more than captured.
func (s *Sandbox) Refund(ctx context.Context, r RefundRequest) (RefundResult, error) {
	doneKey := store.Key{Kind: "sbx_refund", ID: r.ID, Group: r.Reference}
	if prev, err := s.store.Get(ctx, doneKey); err == nil {
		var res RefundResult
		if json.Unmarshal(prev.Value, &res) == nil {
			return res, nil
		}
	}
	rec, err := s.store.Get(ctx, authKey(r.Reference))
	if errors.Is(err, store.ErrNotFound) {
		return RefundResult{Code: "no_such_authorization"}, nil
	}
	if err != nil {
		return RefundResult{}, err
	}
	var a sandboxAuth
	if err := json.Unmarshal(rec.Value, &a); err != nil {
		return RefundResult{}, err
	}
	if !a.Result.Approved || a.Token != r.Token || r.Amount <= 0 || a.Refunded+r.Amount > a.Amount {
		return RefundResult{Code: "refund_refused"}, nil
	}
	a.Refunded += r.Amount
	res := RefundResult{Approved: true, Reference: "sbx_re_" + strings.TrimPrefix(r.ID, "re_")}
	b, _ := json.Marshal(a)
	rb, _ := json.Marshal(res)
	// The refund's record lives in the authorization's group, so both change together.
	err = s.store.Commit(ctx, store.Update(authKey(r.Reference), b, rec.Version).WithTTL(s.Keep), store.Create(doneKey, rb, s.Keep))
	if errors.Is(err, store.ErrConflict) {
		return s.Refund(ctx, r)
	}
	if err != nil {
		return RefundResult{}, err
	}
	return res, nil
}
