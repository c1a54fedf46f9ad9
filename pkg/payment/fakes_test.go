package payment_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/apiview"
	"github.com/paypage/paypage/pkg/event"
	"github.com/paypage/paypage/pkg/limit"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/paystore"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/memory"
	"github.com/paypage/paypage/pkg/threeds"
	"github.com/paypage/paypage/pkg/vault"
)

// clock is a settable time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fakeProcessor stands for the acquirer, out of our reach: it decides by the
// card's last four digits (seen through the vault, as a processor would by
// detokenizing), and the test can lose its answers or hold them back.
type fakeProcessor struct {
	vault *vault.Vault

	mu      sync.Mutex
	auths   map[string]processor.Result // by attempt ID: what it decided
	voided  map[string]bool
	refunds map[string]processor.RefundResult
	calls   map[string]int // by method
	// lose makes Authorize decide, then lose the answer (an error).
	lose bool
	// unknown makes Authorize return an error without deciding, and
	// Inquire answer ErrUnknown.
	unknown bool
	// hold, when set, blocks Authorize after it decided until closed.
	hold chan struct{}
	// refundDown makes Refund fail without acting.
	refundDown bool
	// answer, when set, is every authorization's decision (a connector
	// with codes of its own).
	answer *processor.Result
}

func newFakeProcessor(v *vault.Vault) *fakeProcessor {
	return &fakeProcessor{vault: v, auths: map[string]processor.Result{}, voided: map[string]bool{}, refunds: map[string]processor.RefundResult{}, calls: map[string]int{}}
}

// declines maps last four digits to a decline code.
var declines = map[string]string{"0002": processor.DoNotHonor, "9995": processor.InsufficientFunds}

func (f *fakeProcessor) count(m string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[m]
}

func (f *fakeProcessor) Authorize(ctx context.Context, r processor.AuthorizeRequest) (processor.Result, error) {
	f.mu.Lock()
	f.calls["authorize"]++
	if f.unknown {
		f.mu.Unlock()
		return processor.Result{}, errors.New("no answer")
	}
	res, seen := f.auths[r.ID]
	if !seen {
		if r.CVV.IsZero() || r.ThreeDS == nil || r.ThreeDS.AuthValue == "" {
			f.mu.Unlock()
			return processor.Result{}, fmt.Errorf("authorization without a security code or authentication value")
		}
		_, info, err := f.vault.Lookup(ctx, r.Token)
		if err != nil {
			f.mu.Unlock()
			return processor.Result{}, err
		}
		res = processor.Result{Approved: true, NetworkCode: "00", AuthCode: "123456", Reference: "ref_" + r.ID}
		if code := declines[info.Last4]; code != "" {
			res = processor.Result{Code: code, NetworkCode: processor.NetworkCodes[code], Reference: "ref_" + r.ID}
		}
		if f.answer != nil {
			res = *f.answer
		}
		if f.voided[r.ID] {
			res = processor.Result{Code: "voided"}
		}
		f.auths[r.ID] = res
	}
	lose, hold := f.lose, f.hold
	f.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if lose {
		return processor.Result{}, errors.New("connection reset")
	}
	return res, nil
}

func (f *fakeProcessor) Inquire(ctx context.Context, id string) (processor.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["inquire"]++
	res, ok := f.auths[id]
	if !ok || f.unknown {
		return processor.Result{}, processor.ErrUnknown
	}
	return res, nil
}

func (f *fakeProcessor) Void(ctx context.Context, r processor.VoidRequest) (processor.VoidResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["void"]++
	res, ok := f.auths[r.ID]
	f.voided[r.ID] = true
	if ok && res.Approved {
		f.auths[r.ID] = processor.Result{Code: "voided"}
		return processor.VoidResult{Voided: true}, nil
	}
	return processor.VoidResult{}, nil
}

func (f *fakeProcessor) Refund(ctx context.Context, r processor.RefundRequest) (processor.RefundResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["refund"]++
	if f.refundDown {
		return processor.RefundResult{}, errors.New("connection refused")
	}
	if res, ok := f.refunds[r.ID]; ok {
		return res, nil
	}
	res := processor.RefundResult{Approved: true, Reference: "rf_" + r.ID}
	f.refunds[r.ID] = res
	return res, nil
}

// fakeThreeDS stands for the card schemes' 3-D Secure: frictionless for
// every card but those ending 3220 (a challenge) and 0051 (refused).
type fakeThreeDS struct {
	vault *vault.Vault
	mu    sync.Mutex
	txs   map[string]threeds.Result
	down  bool
}

func (f *fakeThreeDS) Authenticate(ctx context.Context, r threeds.Request) (threeds.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return threeds.Result{}, errors.New("directory server down")
	}
	id := vault.NewID("3ds_")
	res := threeds.Result{TransID: id, Version: "2.2.0", TransStatus: threeds.Authenticated, ECI: "05", AuthValue: "AAV=" + id}
	switch {
	case strings.HasSuffix(r.MaskedPAN, "3220"):
		res = threeds.Result{TransID: id, Version: "2.2.0", TransStatus: threeds.Challenge, ACSURL: "https://acs.example/" + id, CReq: "creq"}
	case strings.HasSuffix(r.MaskedPAN, "0051"):
		res = threeds.Result{TransID: id, Version: "2.2.0", TransStatus: threeds.NotAuth, ECI: "07"}
	}
	f.txs[id] = res
	return res, nil
}

func (f *fakeThreeDS) Outcome(ctx context.Context, id string) (threeds.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res, ok := f.txs[id]
	if !ok {
		return threeds.Result{}, threeds.ErrUnknownTransaction
	}
	return res, nil
}

// finish ends a challenge at the bank as status (and abandoned).
func (f *fakeThreeDS) finish(id, status string, abandoned bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := f.txs[id]
	res.TransStatus, res.Abandoned = status, abandoned
	if status == threeds.Authenticated {
		res.ECI, res.AuthValue = "05", "AAV="+id
	}
	f.txs[id] = res
}

// fakeKaspi stands for Kaspi Pay.
type fakeKaspi struct {
	mu    sync.Mutex
	qrs   map[string]*payment.KaspiStatus
	until map[string]time.Time
	clock *clock
}

func (f *fakeKaspi) CreateQR(ctx context.Context, r payment.KaspiRequest) (payment.KaspiQR, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := "kqr_" + strings.TrimPrefix(r.ID, "att_")
	if f.qrs[id] == nil {
		f.qrs[id] = &payment.KaspiStatus{Status: payment.KaspiPending}
		f.until[id] = r.ExpiresAt
	}
	return payment.KaspiQR{ID: id, Payload: "https://kaspi.example/" + id, ExpiresAt: f.until[id]}, nil
}

func (f *fakeKaspi) Status(ctx context.Context, id string) (payment.KaspiStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := *f.qrs[id]
	if st.Status == payment.KaspiPending && !f.clock.Now().Before(f.until[id]) {
		st.Status = payment.KaspiExpired
	}
	return st, nil
}

func (f *fakeKaspi) Cancel(ctx context.Context, id string) (payment.KaspiStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.qrs[id].Status == payment.KaspiPending {
		f.qrs[id].Status = payment.KaspiCancelled
	}
	return *f.qrs[id], nil
}

func (f *fakeKaspi) Refund(ctx context.Context, r processor.RefundRequest) (processor.RefundResult, error) {
	return processor.RefundResult{Approved: true, Reference: "kre_" + r.ID}, nil
}

// pay is the shopper's app: it pays (or declines) a QR.
func (f *fakeKaspi) pay(id, status, code string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.qrs[id].Status, f.qrs[id].Code, f.qrs[id].Reference = status, code, "kaspi_"+id
}

type merchants map[string]string

func (m merchants) MerchantName(_ context.Context, id string) (string, error) { return m[id], nil }

// rig is a payment service over an in-memory store (which passes the store
// contract), the real vault, repository and limits, fakes for the issuer,
// the processor and Kaspi, and a settable clock.
type rig struct {
	t       *testing.T
	svc     *payment.Service
	db      *memory.DB
	vault   *vault.Vault
	clock   *clock
	proc    *fakeProcessor
	threeDS *fakeThreeDS
	kaspi   *fakeKaspi
	limits  *limit.Submissions
	timing  payment.Timing
}

const merchant = "mer_test"

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx := context.Background()
	c := &clock{now: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	db := memory.New()
	db.Now = c.Now
	kek, err := vault.NewLocalKEK(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, db, kek)
	if err != nil {
		t.Fatal(err)
	}
	v.Now = c.Now
	repo, err := paystore.New(db, func(id string) string { return apiview.PageURL("https://pay.example", id) }, c.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	counter, _ := limit.NewCounter(db)
	r := &rig{
		t: t, db: db, vault: v, clock: c, proc: newFakeProcessor(v),
		threeDS: &fakeThreeDS{vault: v, txs: map[string]threeds.Result{}},
		kaspi:   &fakeKaspi{qrs: map[string]*payment.KaspiStatus{}, until: map[string]time.Time{}, clock: c},
		limits:  limit.DefaultSubmissions(counter),
		timing:  payment.DefaultTiming,
	}
	r.svc, err = payment.New(payment.Deps{
		Repo: repo, Vault: v, Processor: r.proc, ThreeDS: r.threeDS, Kaspi: r.kaspi,
		Merchants: merchants{merchant: "Air Astana"}, Limiter: r.limits, Now: c.Now,
	}, payment.DefaultLimits, r.timing, func(id string) string { return "https://pay.example/pay/" + id + "/3ds" })
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// session opens a session; methods default to card and Kaspi.
func (r *rig) session(methods ...string) string {
	r.t.Helper()
	if methods == nil {
		methods = []string{payment.MethodCard, payment.MethodKaspi}
	}
	s, err := r.svc.CreateSession(context.Background(), merchant, payment.NewSessionID(), payment.CreateRequest{
		Amount: 150000, Currency: "KZT", SuccessURL: "https://shop.example/ok", CancelURL: "https://shop.example/no", Methods: methods,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return s.ID
}

func card(number string) payment.CardInput {
	cvc := "981"
	if strings.HasPrefix(number, "37") {
		cvc = "9810"
	}
	return payment.CardInput{Number: number, Name: "IVAN PETROV", ExpMonth: "12", ExpYear: "2031", CVC: cvc}
}

var browser = threeds.Browser{IP: "203.0.113.7", Language: "en"}

// pay submits a card.
func (r *rig) pay(id, number string) (payment.Outcome, error) {
	return r.svc.SubmitCard(context.Background(), id, card(number), browser)
}

// state reads a session and its payment.
func (r *rig) state(id string) (payment.Session, *payment.Payment) {
	r.t.Helper()
	s, p, err := r.svc.SessionForPage(context.Background(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return s, p
}

// events counts the events stored, by type.
func (r *rig) events() map[string]int {
	r.t.Helper()
	n := map[string]int{}
	err := r.db.Scan(context.Background(), event.Kind, func(_ string, rec store.Record) error {
		e, err := event.Decode(rec.Value)
		n[e.Type]++
		return err
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// count counts the live records of a kind.
func (r *rig) count(kind string) int {
	r.t.Helper()
	n := 0
	if err := r.db.Scan(context.Background(), kind, func(string, store.Record) error { n++; return nil }); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// due returns when the session is filed in the due index (zero: not filed).
func (r *rig) due(id string) time.Time {
	r.t.Helper()
	keys, err := r.db.Due(context.Background(), paystore.KindSession, r.clock.Now().Add(1000*time.Hour), 1000)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, k := range keys {
		if k.Key.ID == id {
			return k.At
		}
	}
	return time.Time{}
}

// drive runs the reconciler's work for every session and payment due now.
func (r *rig) drive() {
	r.t.Helper()
	ctx := context.Background()
	var keys []store.DueKey
	for _, kind := range []string{paystore.KindSession, paystore.KindPayment} {
		ks, err := r.db.Due(ctx, kind, r.clock.Now(), 1000)
		if err != nil {
			r.t.Fatal(err)
		}
		keys = append(keys, ks...)
	}
	var err error
	for _, k := range keys {
		switch k.Key.Kind {
		case paystore.KindSession:
			err = r.svc.Drive(ctx, k.Key.ID)
		case paystore.KindPayment:
			err = r.svc.Settle(ctx, k.Key.ID)
		default:
			continue
		}
		if err != nil {
			r.t.Fatalf("drive %v: %v", k.Key, err)
		}
	}
}
