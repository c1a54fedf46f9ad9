package payment_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/threeds"
)

func TestCreateSession(t *testing.T) {
	t.Parallel()
	ok := payment.CreateRequest{Amount: 100, Currency: "kzt", SuccessURL: "https://s.example/ok", CancelURL: "https://s.example/no"}
	tests := []struct {
		name  string
		edit  func(*payment.CreateRequest)
		param string
	}{
		{"OK", func(*payment.CreateRequest) {}, ""},
		{"ErrAmountZero", func(r *payment.CreateRequest) { r.Amount = 0 }, "amount"},
		{"ErrAmountHuge", func(r *payment.CreateRequest) { r.Amount = 1 << 50 }, "amount"},
		{"ErrCurrency", func(r *payment.CreateRequest) { r.Currency = "XXX" }, "currency"},
		{"ErrNoMethods", func(r *payment.CreateRequest) { r.Methods = []string{} }, "methods"},
		{"ErrKaspiNotKZT", func(r *payment.CreateRequest) { r.Currency, r.Methods = "USD", []string{"kaspi_qr"} }, "methods"},
		{"ErrReturnURL", func(r *payment.CreateRequest) { r.SuccessURL = "javascript:alert(1)" }, "success_url"},
		{"ErrLongReference", func(r *payment.CreateRequest) { r.Reference = string(make([]byte, 201)) }, "reference"},
		{"ErrExpiresIn", func(r *payment.CreateRequest) { r.ExpiresIn = 10 }, "expires_in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			req := ok
			tt.edit(&req)
			id := payment.NewSessionID()
			s, err := r.svc.CreateSession(context.Background(), merchant, id, req)
			if tt.param != "" {
				if apperr.Param(err) != tt.param || r.count("session") != 0 {
					t.Fatalf("err = %v (param %q), %d sessions", err, apperr.Param(err), r.count("session"))
				}
				return
			}
			if err != nil || s.ID != id || s.Currency != "KZT" || s.Status != payment.SessionOpen || len(s.Methods) != 1 {
				t.Fatalf("%+v, %v", s, err)
			}
			// Filed under its expiry; the same ID again gives the same session.
			if due := r.due(id); !due.Equal(s.ExpiresAt) {
				t.Fatalf("due %v, want %v", due, s.ExpiresAt)
			}
			again, err := r.svc.CreateSession(context.Background(), merchant, id, req)
			if err != nil || again.Created != s.Created || r.count("session") != 1 {
				t.Fatalf("again: %+v %v", again, err)
			}
		})
	}
}

func TestCardOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, number string
		status       string // payment status
		code         string // decline code
		attempts     int    // counted attempts
		event        string
	}{
		{"Approved", "4242 4242 4242 4242", payment.StatusSucceeded, "", 1, payment.EventPaymentSucceeded},
		{"Amex", "3782 822463 10005", payment.StatusSucceeded, "", 1, payment.EventPaymentSucceeded},
		{"Declined", "4000 0000 0000 0002", payment.StatusFailed, processor.DoNotHonor, 1, payment.EventPaymentFailed},
		{"NoFunds", "4000 0000 0000 9995", payment.StatusFailed, processor.InsufficientFunds, 1, payment.EventPaymentFailed},
		{"AuthenticationFailed", "4000 0000 0000 0051", payment.StatusFailed, processor.AuthenticationFailed, 1, payment.EventPaymentFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			id := r.session()
			out, err := r.pay(id, tt.number)
			if err != nil || out.Challenge != nil {
				t.Fatalf("pay: %v %+v", err, out)
			}
			s, p := r.state(id)
			if p.Status != tt.status || s.Attempts != tt.attempts || s.Live != nil {
				t.Fatalf("session %+v payment %+v", s, p)
			}
			if tt.code != "" && (p.Decline == nil || p.Decline.Code != tt.code || s.LastDecline.Code != tt.code) {
				t.Fatalf("decline %+v", p.Decline)
			}
			if ev := r.events(); ev[tt.event] != 1 || len(ev) != 1 {
				t.Fatalf("events %v", ev)
			}
			// The security code and authentication value are gone whatever the outcome.
			if n := r.count(payment.HeldCVV) + r.count(payment.HeldAuth); n != 0 {
				t.Fatalf("%d held secrets left", n)
			}
			if tt.status == payment.StatusSucceeded && !r.due(id).IsZero() {
				t.Fatalf("a paid session is still filed at %v", r.due(id))
			}
		})
	}
}

// A connector may decline with a code of its own (or none): the shop API
// names only ours (openapi.yaml's DeclineCode is a closed list), so the
// payment reads do_not_honor, with the connector's ISO 8583 code kept.
func TestConnectorDeclineCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, code, network string
		want                string
	}{
		{"OurCode", processor.InsufficientFunds, "51", processor.InsufficientFunds},
		{"ConnectorsOwnCode", "lost_card", "41", processor.DoNotHonor},
		{"NoCode", "", "N7", processor.DoNotHonor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			r.proc.answer = &processor.Result{Code: tt.code, NetworkCode: tt.network, Reference: "acq_1"}
			id := r.session()
			if _, err := r.pay(id, "4242 4242 4242 4242"); err != nil {
				t.Fatal(err)
			}
			s, p := r.state(id)
			if p.Decline == nil || p.Decline.Code != tt.want || p.Decline.NetworkCode != tt.network || s.LastDecline.Code != tt.want {
				t.Fatalf("decline %+v, session's %+v: want %s (%s)", p.Decline, s.LastDecline, tt.want, tt.network)
			}
			if len(p.Attempts) != 1 || p.Attempts[0].Outcome != tt.want {
				t.Fatalf("attempts %+v", p.Attempts)
			}
		})
	}
}

func TestFieldErrorsChangeNothing(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.session()
	in := card("4242 4242 4242 4241") // Luhn
	in.CVC = "1"
	_, err := r.svc.SubmitCard(context.Background(), id, in, browser)
	var fe payment.FieldErrors
	if !errors.As(err, &fe) || len(fe) != 2 {
		t.Fatalf("err = %v", err)
	}
	s, p := r.state(id)
	if s.Live != nil || p != nil || s.Attempts != 0 || r.count("card") != 0 || r.count("limit_client") != 0 {
		t.Fatalf("a field error changed something: %+v %+v", s, p)
	}
}

// Concurrent submissions of one form: one goes on, the others are refused
// before anything is sealed or counted.
func TestDoubleSubmitSealsOnce(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.session()
	var wg sync.WaitGroup
	var mu sync.Mutex
	results := map[string]int{}
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.pay(id, "4242 4242 4242 4242")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				results["ok"]++
			case errors.Is(err, payment.ErrInProgress), errors.Is(err, payment.ErrSessionComplete):
				results["refused"]++
			default:
				t.Errorf("pay: %v", err)
			}
		}()
	}
	wg.Wait()
	if results["ok"] != 1 || results["refused"] != 9 {
		t.Fatalf("results %v", results)
	}
	if n := r.count("card"); n != 1 {
		t.Fatalf("%d cards sealed", n)
	}
	if n := r.proc.count("authorize"); n != 1 {
		t.Fatalf("%d authorizations", n)
	}
	// Counted once against each limit.
	r.limits.Client.Max, r.limits.Card.Max = 2, 2
	id2 := r.session()
	if _, err := r.pay(id2, "4242 4242 4242 4242"); err != nil {
		t.Fatalf("second payment (the limits' second hit): %v", err)
	}
	id3 := r.session()
	if _, err := r.pay(id3, "4242 4242 4242 4242"); !apperr.Is(err, apperr.RateLimited) {
		t.Fatalf("third payment: %v, want rate limited", err)
	}
	if s, p := r.state(id3); s.Live != nil || p != nil {
		t.Fatalf("a limited submission left %+v %+v", s.Live, p)
	}
}

func TestAttemptsRunOut(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.session()
	for i := 0; i < 3; i++ {
		if _, err := r.pay(id, "4000 0000 0000 0002"); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := r.state(id)
	if s.Status != payment.SessionFailed || s.Attempts != 3 {
		t.Fatalf("%+v", s)
	}
	if _, err := r.pay(id, "4242 4242 4242 4242"); !errors.Is(err, payment.ErrSessionFailed) {
		t.Fatalf("after the last attempt: %v", err)
	}
	if ev := r.events(); ev[payment.EventPaymentFailed] != 3 || !r.due(id).IsZero() {
		t.Fatalf("events %v, due %v", ev, r.due(id))
	}
}

func TestChallenge(t *testing.T) {
	t.Parallel()
	start := func(t *testing.T) (*rig, string, payment.Outcome) {
		r := newRig(t)
		id := r.session()
		out, err := r.pay(id, "4000 0000 0000 3220")
		if err != nil || out.Challenge == nil || out.Session.Live.Stage != payment.StageChallenge {
			t.Fatalf("challenge: %v %+v", err, out)
		}
		if out.Payment.Status != payment.StatusRequiresAction || r.count(payment.HeldCVV) != 1 {
			t.Fatalf("payment %+v", out.Payment)
		}
		// Nobody holds it while the shopper is at the bank: it is filed for a look.
		if due := r.due(id); !due.Equal(r.clock.Now().Add(r.timing.Challenge)) {
			t.Fatalf("due %v", due)
		}
		return r, id, out
	}
	cres := func(transID string) string {
		return threeds.Encode(threeds.CRes{ThreeDSServerTransID: transID, MessageType: "CRes"})
	}

	t.Run("ReturnFromTheBank", func(t *testing.T) {
		t.Parallel()
		r, id, out := start(t)
		if _, err := r.svc.ChallengeReturn(context.Background(), id, cres(out.Challenge.TransID)); !errors.Is(err, payment.ErrChallengeOpen) {
			t.Fatalf("open challenge: %v", err)
		}
		r.threeDS.finish(out.Challenge.TransID, threeds.Authenticated, false)
		if _, err := r.svc.ChallengeReturn(context.Background(), id, cres("3ds_other")); !errors.Is(err, payment.ErrStaleResult) {
			t.Fatalf("another transaction's result: %v", err)
		}
		if _, err := r.svc.ChallengeReturn(context.Background(), id, cres(out.Challenge.TransID)); err != nil {
			t.Fatal(err)
		}
		s, p := r.state(id)
		if s.Status != payment.SessionComplete || !p.ThreeDS.Challenged || p.ThreeDS.TransStatus != threeds.Authenticated {
			t.Fatalf("%+v %+v", s, p)
		}
		// A replayed result changes nothing.
		if _, err := r.svc.ChallengeReturn(context.Background(), id, cres(out.Challenge.TransID)); !errors.Is(err, payment.ErrStaleResult) {
			t.Fatalf("replay: %v", err)
		}
		if n := r.proc.count("authorize"); n != 1 {
			t.Fatalf("%d authorizations", n)
		}
	})

	// The shopper passed the bank's check and closed the browser: the server
	// learns it and pays, with no page view.
	t.Run("PassedThenGone", func(t *testing.T) {
		t.Parallel()
		r, id, out := start(t)
		r.drive() // not due yet
		if s, _ := r.state(id); s.Live == nil || s.Live.Stage != payment.StageChallenge {
			t.Fatalf("%+v", s.Live)
		}
		r.clock.Advance(r.timing.Challenge)
		r.drive() // still at the bank
		if s, _ := r.state(id); s.Live == nil || s.Live.Lease.Owner != "" || !r.due(id).Equal(r.clock.Now().Add(r.timing.Challenge)) {
			t.Fatalf("open challenge after a look: %+v, due %v", s.Live, r.due(id))
		}
		r.threeDS.finish(out.Challenge.TransID, threeds.Authenticated, false)
		r.clock.Advance(r.timing.Challenge)
		r.drive()
		if s, p := r.state(id); s.Status != payment.SessionComplete || p.Status != payment.StatusSucceeded {
			t.Fatalf("%+v %+v", s, p)
		}
		if ev := r.events(); ev[payment.EventPaymentSucceeded] != 1 || len(ev) != 1 {
			t.Fatalf("events %v", ev)
		}
	})

	t.Run("Abandoned", func(t *testing.T) {
		t.Parallel()
		r, id, _ := start(t)
		for i := 0; i < 3; i++ {
			r.clock.Advance(r.timing.CVVHold / 3)
			r.drive()
		}
		s, p := r.state(id)
		if s.Live != nil || s.Attempts != 0 || s.Status != payment.SessionOpen || p.Decline.Code != processor.TryAgain {
			t.Fatalf("abandoned challenge: %+v %+v", s, p)
		}
		if r.count(payment.HeldCVV) != 0 || len(r.events()) != 0 {
			t.Fatalf("cvv %d, events %v", r.count(payment.HeldCVV), r.events())
		}
		if _, err := r.pay(id, "4242 4242 4242 4242"); err != nil {
			t.Fatalf("another try: %v", err)
		}
	})

	t.Run("TimedOutAtTheBank", func(t *testing.T) {
		t.Parallel()
		r, id, out := start(t)
		r.threeDS.finish(out.Challenge.TransID, threeds.NotAuth, true)
		r.clock.Advance(r.timing.Challenge)
		r.drive()
		if s, _ := r.state(id); s.Live != nil || s.Attempts != 0 {
			t.Fatalf("%+v", s)
		}
	})
}

// The processor approved, but the answer was lost: the attempt stays in
// flight, nobody resumes it while its lease is alive, and the reconciler
// asks again under the same ID, once the lease has ended.
func TestLostAnswer(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.session()
	r.proc.lose = true
	_, err := r.pay(id, "4242 4242 4242 4242")
	if !errors.Is(err, payment.ErrPending) {
		t.Fatalf("lost answer: %v", err)
	}
	r.proc.lose = false
	s, p := r.state(id)
	if s.Live == nil || s.Live.Stage != payment.StageAuthorizing || p.Status != payment.StatusProcessing {
		t.Fatalf("%+v %+v", s.Live, p)
	}
	if r.count(payment.HeldCVV) != 0 {
		t.Fatal("the security code outlived its authorization")
	}
	r.drive() // not due yet
	if n := r.proc.count("inquire"); n != 0 {
		t.Fatalf("asked again %d times before it was due", n)
	}
	r.clock.Advance(r.timing.AskAgain[0])
	r.drive()
	s, p = r.state(id)
	if s.Status != payment.SessionComplete || p.Status != payment.StatusSucceeded || r.proc.count("authorize") != 1 || r.proc.count("inquire") != 1 {
		t.Fatalf("%+v %+v, calls %v", s, p, r.proc.calls)
	}
	if ev := r.events(); ev[payment.EventPaymentSucceeded] != 1 || len(ev) != 1 {
		t.Fatalf("events %v", ev)
	}
}

// An answer that stays unknown is asked about with growing delays, then the
// authorization is voided and the attempt ends without counting.
func TestUnknownAnswerIsVoided(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.session()
	r.proc.unknown = true
	if _, err := r.pay(id, "4242 4242 4242 4242"); !errors.Is(err, payment.ErrPending) {
		t.Fatalf("%v", err)
	}
	last := r.timing.AskAgain[len(r.timing.AskAgain)-1]
	for elapsed := time.Duration(0); elapsed <= r.timing.GiveUpAfter+last; elapsed += 5 * time.Second {
		r.clock.Advance(5 * time.Second)
		r.drive()
	}
	s, p := r.state(id)
	if s.Live != nil || s.Attempts != 0 || p.Decline.Code != processor.TryAgain {
		t.Fatalf("%+v %+v", s, p)
	}
	if n := r.proc.count("inquire"); n < 5 || n > 12 {
		t.Fatalf("asked %d times in %v", n, r.timing.GiveUpAfter)
	}
	if n := r.proc.count("void"); n != 1 || len(p.Attempts) != 1 || p.Attempts[0].Outcome != payment.OutcomeNotCharged {
		t.Fatalf("voids %d, attempts %+v", n, p.Attempts)
	}
	if _, err := r.pay(id, "4242 4242 4242 4242"); !errors.Is(err, payment.ErrPending) {
		t.Fatalf("another try: %v", err)
	}
}

// An approval that arrives after its attempt was closed is voided at the
// processor and recorded, never dropped, and the session is not captured.
func TestLateApprovalIsVoided(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.session()
	hold := make(chan struct{})
	r.proc.hold = hold
	done := make(chan error, 1)
	go func() { _, err := r.pay(id, "4242 4242 4242 4242"); done <- err }()
	// Wait until the processor has decided and holds its answer back.
	for r.proc.count("authorize") == 0 {
		time.Sleep(time.Millisecond)
	}
	// Its owner's lease runs out (a partition, say): the reconciler finds no
	// answer it can trust and, past the give-up time, closes the attempt.
	r.proc.mu.Lock()
	r.proc.unknown = true
	r.proc.mu.Unlock()
	r.clock.Advance(r.timing.GiveUpAfter + r.timing.Lease)
	r.drive()
	if s, _ := r.state(id); s.Live != nil {
		t.Fatalf("still in flight: %+v", s.Live)
	}
	r.proc.mu.Lock()
	r.proc.unknown = false
	r.proc.mu.Unlock()
	close(hold)
	if err := <-done; err != nil {
		t.Fatalf("late answer: %v", err)
	}
	s, p := r.state(id)
	if s.Status != payment.SessionOpen || p.Status == payment.StatusSucceeded {
		t.Fatalf("a closed attempt captured the session: %+v %+v", s, p)
	}
	if len(p.Attempts) != 1 || p.Attempts[0].Outcome != payment.OutcomeVoided {
		t.Fatalf("attempts %+v", p.Attempts)
	}
	if ev := r.events(); ev[payment.EventPaymentVoided] != 1 || ev[payment.EventPaymentSucceeded] != 0 {
		t.Fatalf("events %v", ev)
	}
}

func TestLeaseKeepsOthersOut(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.session()
	hold := make(chan struct{})
	r.proc.hold = hold
	done := make(chan error, 1)
	go func() { _, err := r.pay(id, "4242 4242 4242 4242"); done <- err }()
	for r.proc.count("authorize") == 0 {
		time.Sleep(time.Millisecond)
	}
	// Within the lease, a look changes nothing and asks nothing.
	r.clock.Advance(r.timing.Lease / 2)
	r.drive()
	if n := r.proc.count("inquire"); n != 0 {
		t.Fatalf("resumed an attempt whose lease is alive: %d asks", n)
	}
	close(hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s, _ := r.state(id); s.Status != payment.SessionComplete {
		t.Fatalf("%+v", s)
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.session()
	s, _ := r.state(id)
	if s.StatusAt(s.ExpiresAt) != payment.SessionExpired {
		t.Fatal("an open session past its time reads as open")
	}
	r.clock.Advance(24*time.Hour + time.Second)
	r.drive()
	r.drive()
	if s, _ := r.state(id); s.Status != payment.SessionExpired {
		t.Fatalf("%+v", s)
	}
	if ev := r.events(); ev[payment.EventSessionExpired] != 1 || !r.due(id).IsZero() {
		t.Fatalf("events %v, due %v", ev, r.due(id))
	}
	if _, err := r.pay(id, "4242 4242 4242 4242"); !errors.Is(err, payment.ErrSessionExpired) {
		t.Fatalf("%v", err)
	}
}

// An attempt in flight at the expiry ends first; if it fails, the session
// expires in the same step.
func TestExpiryWaitsForTheAttempt(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.session()
	r.proc.lose = true
	if _, err := r.pay(id, "4000 0000 0000 0002"); !errors.Is(err, payment.ErrPending) {
		t.Fatal(err)
	}
	r.proc.lose = false
	r.clock.Advance(24 * time.Hour)
	r.drive()
	s, _ := r.state(id)
	if s.Status != payment.SessionExpired || s.Live != nil {
		t.Fatalf("%+v", s)
	}
	if ev := r.events(); ev[payment.EventPaymentFailed] != 1 || ev[payment.EventSessionExpired] != 1 {
		t.Fatalf("events %v", ev)
	}
}

func TestKaspi(t *testing.T) {
	t.Parallel()
	start := func(t *testing.T) (*rig, string, string) {
		r := newRig(t)
		id := r.session()
		out, err := r.svc.StartKaspi(context.Background(), id, "203.0.113.7")
		if err != nil || out.Session.Live == nil || out.Session.Live.QR == nil || out.Payment.Status != payment.StatusRequiresAction {
			t.Fatalf("%v %+v", err, out)
		}
		// Starting again shows the same QR.
		again, err := r.svc.StartKaspi(context.Background(), id, "203.0.113.7")
		if err != nil || again.Session.Live.QR.ID != out.Session.Live.QR.ID {
			t.Fatalf("again: %v", err)
		}
		return r, id, out.Session.Live.QR.ID
	}
	t.Run("PaidAndNotified", func(t *testing.T) {
		t.Parallel()
		r, id, qr := start(t)
		r.kaspi.pay(qr, payment.KaspiPaid, "")
		if _, err := r.svc.KaspiNotified(context.Background(), id, "kqr_other"); !errors.Is(err, payment.ErrStaleResult) {
			t.Fatalf("another QR's notification: %v", err)
		}
		if _, err := r.svc.KaspiNotified(context.Background(), id, qr); err != nil {
			t.Fatal(err)
		}
		if s, p := r.state(id); s.Status != payment.SessionComplete || p.KaspiRef != "kaspi_"+qr || p.Method != payment.MethodKaspi {
			t.Fatalf("%+v %+v", s, p)
		}
	})
	t.Run("PaidAndPolled", func(t *testing.T) {
		t.Parallel()
		r, id, qr := start(t)
		r.drive()
		r.kaspi.pay(qr, payment.KaspiPaid, "")
		r.clock.Advance(r.timing.KaspiPoll)
		r.drive()
		if s, _ := r.state(id); s.Status != payment.SessionComplete {
			t.Fatalf("the poll did not end it: %+v", s)
		}
		if ev := r.events(); ev[payment.EventPaymentSucceeded] != 1 {
			t.Fatalf("events %v", ev)
		}
	})
	t.Run("Declined", func(t *testing.T) {
		t.Parallel()
		r, id, qr := start(t)
		r.kaspi.pay(qr, payment.KaspiDeclined, processor.InsufficientFunds)
		r.clock.Advance(r.timing.KaspiPoll)
		r.drive()
		if s, _ := r.state(id); s.Attempts != 1 || s.LastDecline.Code != processor.InsufficientFunds || s.Live != nil {
			t.Fatalf("%+v", s)
		}
	})
	t.Run("ExpiredQR", func(t *testing.T) {
		t.Parallel()
		r, id, _ := start(t)
		r.clock.Advance(r.timing.KaspiQR)
		r.drive()
		if s, _ := r.state(id); s.Attempts != 0 || s.Live != nil || s.LastDecline.Code != processor.QRExpired {
			t.Fatalf("%+v", s)
		}
	})
	t.Run("SwitchToCard", func(t *testing.T) {
		t.Parallel()
		r, id, qr := start(t)
		if _, err := r.svc.CancelKaspi(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		if st, _ := r.kaspi.Status(context.Background(), qr); st.Status != payment.KaspiCancelled {
			t.Fatalf("QR %s", st.Status)
		}
		if _, err := r.pay(id, "4242 4242 4242 4242"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRefunds(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.session()
	if _, err := r.pay(id, "4242 4242 4242 4242"); err != nil {
		t.Fatal(err)
	}
	pid := payment.PaymentIDFor(id)
	ctx := context.Background()
	amount := func(n int64) payment.RefundRequest { return payment.RefundRequest{Amount: &n} }
	if _, err := r.svc.Refund(ctx, "mer_other", pid, payment.NewRefundID(), amount(1)); !errors.Is(err, payment.ErrPaymentNotFound) {
		t.Fatalf("another merchant's refund: %v", err)
	}
	if _, err := r.svc.Refund(ctx, merchant, pid, payment.NewRefundID(), amount(150001)); apperr.Param(err) != "amount" {
		t.Fatalf("over-refund: %v", err)
	}
	// Concurrent refunds never exceed what was captured.
	var wg sync.WaitGroup
	var mu sync.Mutex
	okCount := 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.svc.Refund(ctx, merchant, pid, payment.NewRefundID(), amount(40000)); err == nil {
				mu.Lock()
				okCount++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	p, _ := r.svc.Payment(ctx, merchant, pid)
	if okCount != 3 || p.AmountRefunded != 120000 || p.Status != payment.StatusPartiallyRefunded {
		t.Fatalf("%d refunds, %d refunded", okCount, p.AmountRefunded)
	}
	// The same refund ID again is the same refund.
	rid := payment.NewRefundID()
	first, err := r.svc.Refund(ctx, merchant, pid, rid, payment.RefundRequest{})
	if err != nil || first.Amount != 30000 {
		t.Fatalf("%+v %v", first, err)
	}
	again, err := r.svc.Refund(ctx, merchant, pid, rid, payment.RefundRequest{})
	if err != nil || again.ID != rid || r.proc.count("refund") != 4 {
		t.Fatalf("%+v %v, %d processor refunds", again, err, r.proc.count("refund"))
	}
	if p, _ := r.svc.Payment(ctx, merchant, pid); p.Status != payment.StatusRefunded {
		t.Fatalf("%+v", p)
	}
}

// A refund whose answer is lost stays pending, holds its amount, and is
// settled by the reconciler under its own ID.
func TestRefundSettlesByItself(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.session()
	if _, err := r.pay(id, "4242 4242 4242 4242"); err != nil {
		t.Fatal(err)
	}
	pid := payment.PaymentIDFor(id)
	ctx := context.Background()
	r.proc.refundDown = true
	rf, err := r.svc.Refund(ctx, merchant, pid, payment.NewRefundID(), payment.RefundRequest{})
	if !errors.Is(err, payment.ErrRefundPending) || rf.Status != payment.RefundPending {
		t.Fatalf("%+v %v", rf, err)
	}
	if _, err := r.svc.Refund(ctx, merchant, pid, payment.NewRefundID(), payment.RefundRequest{}); err == nil {
		t.Fatal("a pending refund did not hold its amount")
	}
	r.proc.refundDown = false
	r.drive()
	if p, _ := r.svc.Payment(ctx, merchant, pid); p.Refunds[0].Status != payment.RefundPending {
		t.Fatal("settled before it was due")
	}
	r.clock.Advance(r.timing.RefundRetry)
	r.drive()
	p, _ := r.svc.Payment(ctx, merchant, pid)
	if p.Refunds[0].Status != payment.RefundSucceeded || p.Status != payment.StatusRefunded {
		t.Fatalf("%+v", p)
	}
	if ev := r.events(); ev[payment.EventRefundSucceeded] != 1 {
		t.Fatalf("events %v", ev)
	}
}

// An ended session and its payment are deleted at the end of the record
// retention, counted from the payment's last change: a refund moves it on,
// a look that changes nothing does not.
func TestPurgeAfterRetention(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	id := r.session()
	if _, err := r.pay(id, "4242 4242 4242 4242"); err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	r.clock.Advance(300 * day)
	if _, err := r.svc.Refund(context.Background(), merchant, payment.PaymentIDFor(id), payment.NewRefundID(), payment.RefundRequest{}); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(101 * day) // past the session's own retention, inside the refund's
	r.drive()
	r.drive()
	if _, _, err := r.svc.SessionForPage(context.Background(), id); err != nil {
		t.Fatalf("purged 101 days after a refund: %v", err)
	}
	r.clock.Advance(300 * day)
	r.drive()
	if _, _, err := r.svc.SessionForPage(context.Background(), id); !errors.Is(err, payment.ErrSessionNotFound) {
		t.Fatalf("after the retention: %v", err)
	}
	if n := r.count("payment"); n != 0 {
		t.Fatalf("%d payments left", n)
	}
	if !r.due(id).IsZero() {
		t.Fatal("a purged session is still filed")
	}
}
