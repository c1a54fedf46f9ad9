package payment

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/limit"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/threeds"
	"github.com/paypage/paypage/pkg/vault"
)

// Why a session refuses a step. The page shows each in the shopper's language.
var (
	ErrSessionExpired   = apperr.E(apperr.Conflict, "the session has expired")
	ErrSessionComplete  = apperr.E(apperr.Conflict, "the session is paid already")
	ErrSessionFailed    = apperr.E(apperr.Conflict, "the session has no attempts left")
	ErrInProgress       = apperr.E(apperr.Conflict, "a payment attempt is in progress")
	ErrMethodNotOffered = apperr.E(apperr.Invalid, "the session does not offer this payment method")
	ErrStaleResult      = apperr.E(apperr.Conflict, "this result is not for the attempt in progress")
	ErrChallengeOpen    = apperr.E(apperr.Conflict, "the bank has not finished the check")
	// ErrPending: the processor's answer did not arrive in time. The attempt
	// stays in flight and the server asks again by itself.
	ErrPending = apperr.E(apperr.Unavailable, "the payment could not be confirmed yet: it is being checked, refresh in a moment")
)

// CardInput is the card form as the shopper typed it.
type CardInput struct {
	Number   string
	Name     string
	ExpMonth string
	ExpYear  string
	CVC      string
}

// FieldErrors lists the card fields the page refused: not an attempt.
type FieldErrors []*card.Error

func (f FieldErrors) Error() string {
	parts := make([]string, len(f))
	for i, e := range f {
		parts[i] = e.Error()
	}
	return "card fields: " + strings.Join(parts, ", ")
}

// parseCard checks every field and returns all refusals at once.
func (svc *Service) parseCard(in CardInput) (vault.Card, card.CVV, error) {
	var errs FieldErrors
	add := func(err error) {
		var ce *card.Error
		if errors.As(err, &ce) {
			errs = append(errs, ce)
		}
	}
	pan, err := card.ParsePAN(in.Number)
	add(err)
	name, err := card.ParseName(in.Name)
	add(err)
	exp, err := card.ParseExpiry(in.ExpMonth, in.ExpYear, svc.now())
	add(err)
	var cvv card.CVV
	if pan.IsZero() {
		// No brand to check the length against: check what we can.
		if strings.TrimSpace(in.CVC) == "" {
			add(&card.Error{Field: "cvc", Code: card.ErrRequired})
		} else if _, err := card.ParseCVV(in.CVC, card.Visa); err != nil {
			if _, err4 := card.ParseCVV(in.CVC, card.Amex); err4 != nil {
				add(err)
			}
		}
	} else {
		cvv, err = card.ParseCVV(in.CVC, pan.Brand())
		add(err)
	}
	if len(errs) > 0 {
		return vault.Card{}, card.CVV{}, errs
	}
	return vault.Card{PAN: pan, Expiry: exp, Name: name}, cvv, nil
}

// checkOpen returns why a session cannot take a new attempt, if it cannot.
func (svc *Service) checkOpen(s *Session, method string) error {
	switch {
	case s.Status == SessionComplete:
		return ErrSessionComplete
	case s.Status == SessionFailed:
		return ErrSessionFailed
	case s.Live != nil:
		return ErrInProgress
	case s.StatusAt(svc.now()) == SessionExpired:
		return ErrSessionExpired
	case !s.Allows(method):
		return ErrMethodNotOffered
	case method == MethodKaspi && svc.kaspi == nil:
		return ErrMethodNotOffered
	}
	return nil
}

// begin claims the session for a new attempt, before anything is sealed or
// counted: of two submissions at once, one goes on and the other is refused
// with ErrInProgress, having sealed and counted nothing.
func (svc *Service) begin(ctx context.Context, st *State, method, stage string) (*Attempt, error) {
	now := svc.now().UTC()
	a := &Attempt{ID: vault.NewID("att_"), Method: method, Stage: stage, Started: now, Lease: svc.lease()}
	st.Session.Live = a
	if err := svc.repo.Save(ctx, st, Change{}); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, ErrInProgress
		}
		return nil, err
	}
	return a, nil
}

// startPayment makes or reopens the session's payment for the live attempt.
func (svc *Service) startPayment(st *State) {
	now := svc.now().UTC()
	s, a := &st.Session, st.Session.Live
	if st.Payment == nil {
		st.Payment = &Payment{
			ID: PaymentIDFor(s.ID), SessionID: s.ID, Merchant: s.Merchant, Amount: s.Amount,
			Currency: s.Currency, Created: now,
		}
	}
	p := st.Payment
	p.Status, p.Method, p.Decline, p.ThreeDS, p.Card, p.KaspiQR = StatusProcessing, a.Method, nil, nil, a.Card, ""
}

// SubmitCard takes the card form: checks it field by field (refusals are not
// attempts), claims the session, applies the card-testing limits, seals the
// card in the vault and holds the security code sealed, then runs 3-D Secure
// and authorization.
func (svc *Service) SubmitCard(ctx context.Context, sessionID string, in CardInput, b threeds.Browser) (Outcome, error) {
	ctx = detach(ctx)
	st, err := svc.load(ctx, sessionID)
	if err != nil {
		return Outcome{}, err
	}
	if err := svc.checkOpen(&st.Session, MethodCard); err != nil {
		return outcome(st), err
	}
	c, cvv, err := svc.parseCard(in)
	if err != nil {
		return outcome(st), err
	}
	s := &st.Session
	sub := limit.Submission{Merchant: s.Merchant, ClientIP: b.IP, CardKey: svc.vault.CardKey(c.PAN)}
	if err := svc.limiter.Check(ctx, sub); err != nil {
		return outcome(st), err // refused before anything is written
	}
	a, err := svc.begin(ctx, st, MethodCard, StageClaimed)
	if err != nil {
		return outcome(st), err
	}
	if err := svc.limiter.Submission(ctx, sub); err != nil {
		return svc.abandon(ctx, st, err) // reached by others meanwhile
	}
	info, err := svc.vault.TokenizeFor(ctx, s.Merchant, c, s.ID)
	if err != nil {
		return svc.abandon(ctx, st, err)
	}
	sealed, err := svc.vault.SealHeld(HeldCVV, s.Merchant, a.ID, []byte(cvv.Digits()))
	if err != nil {
		return svc.abandon(ctx, st, err)
	}
	a.Card = &Card{Token: info.Token, Brand: info.Brand, Last4: info.Last4, ExpMonth: info.ExpMonth, ExpYear: info.ExpYear, Fingerprint: info.Fingerprint}
	a.Stage = StageAuthenticating
	a.Lease = svc.lease()
	svc.startPayment(st)
	hold := Held{Kind: HeldCVV, Ref: a.ID, Sealed: sealed, TTL: svc.timing.CVVHold}
	if err := svc.repo.Save(ctx, st, Change{Hold: []Held{hold}}); err != nil {
		return Outcome{}, err
	}
	req := threeds.Request{
		Merchant: s.Merchant, MerchantName: svc.merchantName(ctx, s.Merchant), Amount: s.Amount,
		Currency: s.Currency, Token: info.Token, Brand: info.Brand, MaskedPAN: c.PAN.Mask(), Browser: b,
		NotificationURL: svc.notifyURL(s.ID),
	}
	var res threeds.Result
	err = svc.call(ctx, st, func(ctx context.Context) (err error) {
		res, err = svc.threeDS.Authenticate(ctx, req)
		return err
	})
	if err != nil {
		// The issuer was not reached: not an attempt; the shopper may try again.
		return svc.finish(ctx, st, a, processor.Result{Code: processor.Unavailable, NetworkCode: processor.NetworkCodes[processor.Unavailable]}, false)
	}
	return svc.afterAuthentication(ctx, st, res, false)
}

// afterAuthentication goes on from a 3-D Secure result; the caller holds the lease.
func (svc *Service) afterAuthentication(ctx context.Context, st *State, res threeds.Result, challenged bool) (Outcome, error) {
	a := st.Session.Live
	a.ThreeDS = &ThreeDS{Version: res.Version, TransStatus: res.TransStatus, ECI: res.ECI, Challenged: challenged || res.TransStatus == threeds.Challenge, DSTransID: res.DSTransID, Reason: res.Reason}
	st.Payment.ThreeDS = a.ThreeDS
	switch {
	case res.TransStatus == threeds.Challenge:
		a.Stage = StageChallenge
		a.Challenge = &Challenge{TransID: res.TransID, ACSURL: res.ACSURL, CReq: res.CReq}
		a.Lease, a.Next = Lease{}, svc.now().UTC().Add(svc.timing.Challenge).Truncate(time.Millisecond)
		st.Payment.Status = StatusRequiresAction
		if err := svc.repo.Save(ctx, st, Change{}); err != nil {
			return Outcome{}, err
		}
		return outcome(st), nil
	case res.Success():
		a.Stage, a.Challenge, a.Lease = StageAuthorizing, nil, svc.lease()
		st.Payment.Status = StatusProcessing
		var hold []Held
		if res.AuthValue != "" {
			sealed, err := svc.vault.SealHeld(HeldAuth, st.Session.Merchant, a.ID, []byte(res.AuthValue))
			if err != nil {
				return outcome(st), err // the vault sealed meanwhile: the attempt stays, and the reconciler asks again
			}
			hold = append(hold, Held{Kind: HeldAuth, Ref: a.ID, Sealed: sealed, TTL: svc.timing.CVVHold})
		}
		if err := svc.repo.Save(ctx, st, Change{Hold: hold}); err != nil {
			if errors.Is(err, ErrConflict) {
				return outcome(st), ErrStaleResult
			}
			return Outcome{}, err
		}
		return svc.authorize(ctx, st)
	case res.Abandoned:
		// The shopper never answered the bank: not an attempt.
		return svc.finish(ctx, st, a, processor.Result{Code: processor.TryAgain}, false)
	}
	return svc.finish(ctx, st, a, processor.Result{Code: processor.AuthenticationFailed}, true)
}

// ChallengeReturn takes the shopper back from the issuer's page. The CRes
// only names the transaction: the result is read from the 3-D Secure
// server. A result for another attempt, or posted twice, changes nothing.
func (svc *Service) ChallengeReturn(ctx context.Context, sessionID, rawCRes string) (Outcome, error) {
	ctx = detach(ctx)
	cres, err := threeds.DecodeCRes(rawCRes)
	if err != nil {
		return Outcome{}, apperr.Wrap(apperr.Invalid, err, "malformed challenge response")
	}
	st, err := svc.load(ctx, sessionID)
	if err != nil {
		return Outcome{}, err
	}
	a := st.Session.Live
	if a == nil || a.Stage != StageChallenge || a.Challenge == nil || a.Challenge.TransID != cres.ThreeDSServerTransID {
		return outcome(st), ErrStaleResult
	}
	if a.Lease.HeldAt(svc.now()) {
		return outcome(st), ErrInProgress // the reconciler is on it right now
	}
	if err := svc.claim(ctx, st); err != nil {
		if errors.Is(err, ErrConflict) {
			return outcome(st), ErrStaleResult
		}
		return Outcome{}, err
	}
	return svc.challengeResult(ctx, st, false)
}

// challengeResult asks the 3-D Secure server how the live challenge ended
// and goes on from there; the caller holds the lease. While the challenge is
// open it lets the lease go, and past the security code's hold it ends the
// attempt as abandoned (not counted).
func (svc *Service) challengeResult(ctx context.Context, st *State, patient bool) (Outcome, error) {
	a := st.Session.Live
	var res threeds.Result
	err := svc.call(ctx, st, func(ctx context.Context) (err error) {
		res, err = svc.threeDS.Outcome(ctx, a.Challenge.TransID)
		return err
	})
	if err == nil && res.TransStatus != threeds.Challenge {
		return svc.afterAuthentication(ctx, st, res, true)
	}
	now := svc.now().UTC()
	if now.Sub(a.Started) >= svc.timing.CVVHold {
		return svc.finish(ctx, st, a, processor.Result{Code: processor.TryAgain}, false)
	}
	if rerr := svc.release(ctx, st, now.Add(svc.timing.Challenge)); rerr != nil {
		return Outcome{}, rerr
	}
	if err != nil {
		return outcome(st), apperr.Wrap(apperr.Unavailable, err, "the bank's answer could not be read")
	}
	if patient {
		return outcome(st), nil
	}
	return outcome(st), ErrChallengeOpen
}

// authorize takes the held security code and authentication value (gone
// afterwards whatever happens) and asks the processor; the caller holds the
// lease and the attempt is at stage authorizing.
func (svc *Service) authorize(ctx context.Context, st *State) (Outcome, error) {
	s, a := &st.Session, st.Session.Live
	if svc.vault.Sealed() {
		// Taking the code now would lose it: it could not be opened. The
		// attempt waits (its hold lasts ten minutes) for the unseal.
		if err := svc.release(ctx, st, svc.now().Add(svc.timing.AskAgain[0])); err != nil {
			return Outcome{}, err
		}
		return outcome(st), vault.ErrSealed
	}
	// Written down before the code is taken: from here on the processor may
	// have been asked, so a resume asks again instead of sending.
	a.Authorizing, a.Lease = svc.now().UTC(), svc.lease()
	if err := svc.repo.Save(ctx, st, Change{}); err != nil {
		if errors.Is(err, ErrConflict) {
			return outcome(st), ErrStaleResult
		}
		return Outcome{}, err
	}
	sealed, err := svc.repo.Take(ctx, s.ID, HeldCVV, a.ID)
	if errors.Is(err, ErrHeldGone) {
		return svc.finish(ctx, st, a, processor.Result{Code: processor.TryAgain}, false)
	}
	if err != nil {
		return Outcome{}, err
	}
	plain, err := svc.vault.OpenHeld(ctx, HeldCVV, s.Merchant, a.ID, sealed)
	if err != nil {
		return Outcome{}, err
	}
	cvv := card.NewCVV(string(plain))
	clear(plain)
	auth := &processor.Authentication{}
	if t := a.ThreeDS; t != nil {
		auth = &processor.Authentication{Version: t.Version, TransStatus: t.TransStatus, ECI: t.ECI, DSTransID: t.DSTransID}
	}
	if sealed, err := svc.repo.Take(ctx, s.ID, HeldAuth, a.ID); err == nil {
		if v, err := svc.vault.OpenHeld(ctx, HeldAuth, s.Merchant, a.ID, sealed); err == nil {
			auth.AuthValue = string(v)
		}
	}
	req := processor.AuthorizeRequest{
		ID: a.ID, SessionID: s.ID, Merchant: s.Merchant, Token: a.Card.Token, CVV: cvv, Amount: s.Amount,
		Currency: s.Currency, Reference: s.Reference, ThreeDS: auth,
	}
	var res processor.Result
	err = svc.call(ctx, st, func(ctx context.Context) (err error) {
		res, err = svc.processor.Authorize(ctx, req)
		return err
	})
	if err != nil {
		// The answer is unknown: the attempt stays authorizing, and the
		// reconciler asks again under the same ID.
		if rerr := svc.release(ctx, st, svc.now().Add(svc.timing.AskAgain[0])); rerr != nil {
			return Outcome{}, rerr
		}
		return outcome(st), apperr.Wrap(apperr.Unavailable, err, "%s", ErrPending.Message)
	}
	return svc.finish(ctx, st, a, res, res.Code != processor.TryAgain)
}
