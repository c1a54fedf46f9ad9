package payment

import (
	"context"
	"errors"
	"strings"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/threeds"
	"github.com/paypage/paypage/pkg/vault"
)

// Why a session refuses a payment. The page shows each in the shopper's language.
var (
	ErrSessionExpired   = apperr.E(apperr.Conflict, "the session has expired")
	ErrSessionComplete  = apperr.E(apperr.Conflict, "the session is paid already")
	ErrSessionFailed    = apperr.E(apperr.Conflict, "the session has no attempts left")
	ErrInProgress       = apperr.E(apperr.Conflict, "a payment attempt is in progress")
	ErrMethodNotOffered = apperr.E(apperr.Invalid, "the session does not offer this payment method")
	ErrTooManyAttempts  = apperr.E(apperr.RateLimited, "too many attempts: try again later")
	ErrStaleResult      = apperr.E(apperr.Conflict, "this result is not for the attempt in progress")
	ErrChallengeOpen    = apperr.E(apperr.Conflict, "the bank has not finished the check")
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

// Challenge tells the page to send the shopper to the issuer: post CReq to ACSURL.
type Challenge struct {
	ACSURL string
	CReq   string
}

// Outcome is where an attempt stands after a step.
type Outcome struct {
	Session   Session
	Payment   *Payment
	Challenge *Challenge // set while the shopper must pass the bank's check
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
	exp, err := card.ParseExpiry(in.ExpMonth, in.ExpYear, svc.Now())
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
	case s.Pending != nil:
		return ErrInProgress
	case s.StatusAt(svc.Now()) == SessionExpired:
		return ErrSessionExpired
	case !s.Allows(method):
		return ErrMethodNotOffered
	}
	return nil
}

// limit counts a submission against the client's and the card's limits.
func (svc *Service) limit(ctx context.Context, clientIP, cardKey string) error {
	if err := svc.Counter.Hit(ctx, svc.Limits.Client, clientIP); err != nil {
		return err
	}
	if cardKey == "" {
		return nil
	}
	return svc.Counter.Hit(ctx, svc.Limits.Card, cardKey)
}

func (svc *Service) merchantName(ctx context.Context, id string) string {
	if svc.Merchants == nil {
		return ""
	}
	n, err := svc.Merchants.MerchantName(ctx, id)
	if err != nil {
		return ""
	}
	return n
}

// startPayment makes or reopens the session's payment for a new attempt.
func (svc *Service) startPayment(l *loaded, method string) {
	now := svc.Now().UTC()
	if l.p == nil {
		l.s.PaymentID = PaymentIDFor(l.s.ID)
		l.p = &Payment{
			ID: l.s.PaymentID, SessionID: l.s.ID, Merchant: l.s.Merchant, Amount: l.s.Amount,
			Currency: l.s.Currency, Created: now, Refunds: []Refund{}, Attempts: []Attempt{},
		}
	}
	l.p.Status, l.p.Method, l.p.Decline, l.p.ThreeDS, l.p.Card, l.p.Kaspi = StatusProcessing, method, nil, nil, nil, nil
}

// SubmitCard takes the card form: checks it field by field (refusals are not
// attempts), applies the card-testing limits, puts the card in the vault, holds
// the CVV sealed, and runs 3-D Secure and authorization.
func (svc *Service) SubmitCard(ctx context.Context, sessionID string, in CardInput, b threeds.Browser) (Outcome, error) {
	l, err := svc.load(ctx, sessionID)
	if err != nil {
		return Outcome{}, err
	}
	if err := svc.resumeStuck(ctx, l); err != nil {
		return Outcome{}, err
	}
	if err := svc.checkOpen(&l.s, MethodCard); err != nil {
		return svc.outcome(l), err
	}
	c, cvv, err := svc.parseCard(in)
	if err != nil {
		return svc.outcome(l), err
	}
	if err := svc.limit(ctx, b.IP, svc.Vault.CardKey(c.PAN)); err != nil {
		return svc.outcome(l), err
	}
	info, err := svc.Vault.Tokenize(ctx, l.s.Merchant, c)
	if err != nil {
		return svc.outcome(l), err
	}
	attempt := vault.NewID("att_")
	now := svc.Now().UTC()
	l.s.Pending = &Pending{AttemptID: attempt, Method: MethodCard, Stage: StageAuthenticating, Token: info.Token, Since: now}
	svc.startPayment(l, MethodCard)
	l.p.Card = &CardDetails{Token: info.Token, Brand: info.Brand, Last4: info.Last4, ExpMonth: info.ExpMonth, ExpYear: info.ExpYear, Fingerprint: info.Fingerprint}
	cvvKey := vault.CVVKey(attempt, Group(l.s.ID))
	hold := svc.Vault.SealCVV(l.s.Merchant, cvvKey, cvv, svc.Limits.CVVHold)
	if err := svc.commit(ctx, l, []store.Op{hold}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return Outcome{}, ErrInProgress // a double click: the first submission goes on
		}
		return Outcome{}, err
	}

	res, err := svc.ThreeDS.Authenticate(ctx, threeds.Request{
		Merchant: l.s.Merchant, MerchantName: svc.merchantName(ctx, l.s.Merchant), Amount: l.s.Amount,
		Currency: l.s.Currency, Token: info.Token, Brand: info.Brand, MaskedPAN: c.PAN.Mask(), Browser: b,
		NotificationURL: strings.TrimRight(svc.PublicURL, "/") + "/pay/" + l.s.ID + "/3ds",
	})
	if err != nil {
		// The issuer was not reached: not an attempt; the shopper may try again.
		return svc.finish(ctx, l, attempt, processor.Result{Code: processor.Unavailable}, false)
	}
	return svc.afterAuthentication(ctx, l, attempt, res, false)
}

// afterAuthentication goes on from a 3-D Secure result.
func (svc *Service) afterAuthentication(ctx context.Context, l *loaded, attempt string, res threeds.Result, challenged bool) (Outcome, error) {
	l.p.ThreeDS = &ThreeDSDetails{Version: res.Version, TransStatus: res.TransStatus, ECI: res.ECI, Challenged: challenged || res.TransStatus == threeds.Challenge, DSTransID: res.DSTransID, Reason: res.Reason}
	switch {
	case res.TransStatus == threeds.Challenge:
		l.s.Pending.Stage, l.s.Pending.TransID, l.s.Pending.ACSURL, l.s.Pending.CReq = StageChallenge, res.TransID, res.ACSURL, res.CReq
		l.p.Status = StatusRequiresAction
		if err := svc.commit(ctx, l, nil); err != nil {
			return Outcome{}, err
		}
		return svc.outcome(l), nil
	case res.Success():
		l.s.Pending.Stage = StageAuthorizing
		l.s.Pending.Auth = &processor.Authentication{Version: res.Version, TransStatus: res.TransStatus, ECI: res.ECI, AuthValue: res.AuthValue, DSTransID: res.DSTransID}
		l.s.Pending.Since = svc.Now().UTC()
		if err := svc.commit(ctx, l, nil); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return Outcome{}, ErrStaleResult
			}
			return Outcome{}, err
		}
		return svc.authorize(ctx, l, true)
	}
	return svc.finish(ctx, l, attempt, processor.Result{Code: processor.AuthenticationFailed}, true)
}

// ChallengeReturn takes the shopper back from the issuer's page. The CRes
// only names the transaction: the result is read from the 3-D Secure server.
// A result for another attempt, or posted twice, changes nothing.
func (svc *Service) ChallengeReturn(ctx context.Context, sessionID, rawCRes string) (Outcome, error) {
	cres, err := threeds.DecodeCRes(rawCRes)
	if err != nil {
		return Outcome{}, apperr.Wrap(apperr.Invalid, err, "malformed challenge response")
	}
	l, err := svc.load(ctx, sessionID)
	if err != nil {
		return Outcome{}, err
	}
	p := l.s.Pending
	if p == nil || p.Stage != StageChallenge || p.TransID != cres.ThreeDSServerTransID {
		return svc.outcome(l), ErrStaleResult
	}
	res, err := svc.ThreeDS.Outcome(ctx, p.TransID)
	if err != nil {
		return svc.outcome(l), err
	}
	if res.TransStatus == threeds.Challenge {
		return svc.outcome(l), ErrChallengeOpen
	}
	return svc.afterAuthentication(ctx, l, p.AttemptID, res, true)
}

// authorize takes the held CVV (gone afterwards whatever happens) and asks
// the processor. The session must be at stage authorizing, committed.
func (svc *Service) authorize(ctx context.Context, l *loaded, withCVV bool) (Outcome, error) {
	p := l.s.Pending
	req := processor.AuthorizeRequest{
		ID: p.AttemptID, Merchant: l.s.Merchant, Token: p.Token, Amount: l.s.Amount,
		Currency: l.s.Currency, Reference: l.s.Reference, ThreeDS: p.Auth,
	}
	if withCVV {
		cvv, err := svc.Vault.TakeCVV(ctx, l.s.Merchant, vault.CVVKey(p.AttemptID, Group(l.s.ID)))
		if errors.Is(err, vault.ErrCVVGone) {
			return svc.finish(ctx, l, p.AttemptID, processor.Result{Code: processor.TryAgain}, false)
		}
		if err != nil {
			return Outcome{}, err
		}
		req.CVV = cvv
	}
	res, err := svc.Processor.Authorize(ctx, req)
	if err != nil {
		// The answer is unknown: the attempt stays authorizing, and is resumed
		// with the same ID (the processor's idempotency key) on the next look.
		return svc.outcome(l), apperr.Wrap(apperr.Unavailable, err, "the payment could not be confirmed yet: refresh in a moment")
	}
	return svc.finish(ctx, l, p.AttemptID, res, res.Code != processor.TryAgain)
}

// finish writes an attempt's end: the payment succeeds, or the decline is
// recorded (and counted when it reached the issuer or processor); a CVV
// still held for the attempt is deleted in the same commit.
func (svc *Service) finish(ctx context.Context, l *loaded, attempt string, res processor.Result, counted bool) (Outcome, error) {
	for {
		if l.s.Pending == nil || l.s.Pending.AttemptID != attempt {
			return svc.outcome(l), nil // finished elsewhere
		}
		method := l.s.Pending.Method
		now := svc.Now().UTC()
		a := Attempt{ID: attempt, Method: method, Time: now, Outcome: "succeeded"}
		if l.p.Card != nil {
			a.Last4, a.Brand = l.p.Card.Last4, string(l.p.Card.Brand)
		}
		var events []Event
		l.s.Pending = nil
		if res.Approved {
			l.s.Status, l.s.LastDecline = SessionComplete, nil
			l.p.Status, l.p.AuthCode, l.p.ProcessorRef, l.p.Decline = StatusSucceeded, res.AuthCode, res.Reference, nil
		} else {
			a.Outcome = res.Code
			d := &Decline{Code: res.Code, NetworkCode: res.NetworkCode, Message: DeclineMessage(res.Code)}
			l.s.LastDecline = d
			l.p.Status, l.p.Decline = StatusFailed, d
			if counted {
				l.s.Attempts++
				if l.s.Attempts >= l.s.MaxAttempts {
					l.s.Status = SessionFailed
				}
			}
		}
		if counted || res.Approved {
			l.p.Attempts = append(l.p.Attempts, a)
			typ := EventPaymentSucceeded
			if !res.Approved {
				typ = EventPaymentFailed
			}
			events = append(events, svc.event(typ, l.s.Merchant, l.p))
		}
		// The attempt's CVV goes in the same step, whatever the outcome (it
		// is gone already when authorization took it).
		extra := []store.Op{store.Delete(vault.CVVKey(attempt, Group(l.s.ID)))}
		if l.s.Status != SessionOpen {
			extra = append(extra, store.Delete(openKey(l.s.ID)))
		}
		err := svc.commit(ctx, l, extra, events...)
		if err == nil {
			if svc.OnAttempt != nil {
				svc.OnAttempt(method, a.Outcome)
			}
			return svc.outcome(l), nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return Outcome{}, err
		}
		fresh, lerr := svc.load(ctx, l.s.ID)
		if lerr != nil {
			return Outcome{}, lerr
		}
		*l = *fresh
	}
}

func (svc *Service) outcome(l *loaded) Outcome {
	o := Outcome{Session: l.s, Payment: l.p}
	if p := l.s.Pending; p != nil && p.Stage == StageChallenge {
		o.Challenge = &Challenge{ACSURL: p.ACSURL, CReq: p.CReq}
	}
	return o
}

// resumeStuck finishes an attempt that a crash or an outage left in flight:
// authorization is asked again under the same ID (the processor answers as
// it did, or says it never saw it); an authentication or challenge that
// outlived the CVV hold ends without counting.
func (svc *Service) resumeStuck(ctx context.Context, l *loaded) error {
	p := l.s.Pending
	if p == nil || svc.Now().Sub(p.Since) < svc.Limits.StuckAfter {
		return nil
	}
	var err error
	switch p.Stage {
	case StageAuthorizing:
		_, err = svc.authorize(ctx, l, false)
	case StageAuthenticating:
		_, err = svc.finish(ctx, l, p.AttemptID, processor.Result{Code: processor.TryAgain}, false)
	case StageChallenge:
		if svc.Now().Sub(p.Since) > svc.Limits.CVVHold {
			_, err = svc.finish(ctx, l, p.AttemptID, processor.Result{Code: processor.TryAgain}, false)
		}
	case StageKaspi:
		err = svc.pollKaspi(ctx, l)
	}
	return err
}
