package load

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// scenario is what a run does: a set-up through the API (not measured),
// then operations, each of one kind.
type scenario interface {
	setup(ctx context.Context, w *worker) error
	op(ctx context.Context, w *worker) (kind string, err error)
}

// Sandbox cards (README, "Sandbox cards"): approved without a challenge, and
// approved after an SMS-code challenge. Neither counts toward the per-card
// limit.
const (
	frictionlessCard = "4242424242424242"
	challengeCard    = "4000000000003220"
	sandboxSMSCode   = "123456"
)

func (r *run) scenario(name string) (scenario, error) {
	switch name {
	case "sessions":
		return &sessions{r}, r.need("merchant")
	case "page":
		return &pages{r: r}, r.need("merchant")
	case "pay":
		return &payments{r: r, number: frictionlessCard, kind: "pay"}, r.need("merchant")
	case "challenge":
		return &payments{r: r, number: challengeCard, kind: "challenge", challenge: true}, r.need("merchant")
	case "detokenize":
		return &detokenize{r: r}, r.need("processor")
	case "refund":
		return &refunds{r: r}, r.need("merchant")
	case "floor":
		return &floor{r: r}, nil
	case "sale":
		m := &mix{}
		for _, kind := range sortedKeys(r.cfg.Mix) {
			wgt := r.cfg.Mix[kind]
			if wgt <= 0 {
				continue
			}
			if kind == "sale" || kind == "floor" {
				return nil, fmt.Errorf("mix: %s cannot be part of a sale", kind)
			}
			s, err := r.scenario(kind)
			if err != nil {
				return nil, fmt.Errorf("mix: %w", err)
			}
			m.parts = append(m.parts, s)
			m.weights = append(m.weights, wgt)
			m.total += wgt
		}
		if m.total == 0 {
			return nil, errors.New("mix: give at least one scenario a weight above 0")
		}
		return m, nil
	}
	var names []string
	for _, s := range Scenarios {
		names = append(names, s.Name)
	}
	return nil, fmt.Errorf("no scenario %q: use one of %s", name, strings.Join(names, ", "))
}

// need checks that the keys a scenario uses were given.
func (r *run) need(who string) error {
	switch {
	case r.cfg.MerchantKey == "":
		return errors.New("a merchant's secret key is needed: --merchant FILE with what \"paypage merchant add\" printed")
	case who == "processor" && r.cfg.ProcessorKey == "":
		return errors.New("detokenize needs a processor's secret key: --processor FILE with what \"paypage processor add --merchants MERCHANT --rate 0\" printed")
	}
	return nil
}

// parallel runs f for i in [0, n) on up to the run's concurrency of set-up
// workers, and returns the first error.
func (r *run) parallel(ctx context.Context, n int, f func(w *worker, i int) error) error {
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range min(r.cfg.Concurrency, n, 32) {
		w := r.newWorker(-1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				mu.Lock()
				stop := first != nil
				mu.Unlock()
				if i >= n || stop || ctx.Err() != nil {
					return
				}
				if err := f(w, i); err != nil {
					mu.Lock()
					first = cmp(first, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// sessionBody is what a shop sends to open a session for an amount.
func (w *worker) sessionBody(amount int64) map[string]any {
	n := w.r.seq.Add(1)
	return map[string]any{
		"amount": amount, "currency": "KZT", "reference": "PNR LD" + strconv.FormatUint(n, 36), "description": "Almaty - Astana",
		"success_url": "https://shop.example/paid?session={SESSION_ID}", "cancel_url": "https://shop.example/cart", "locale": "en",
	}
}

// idemHeader is an Idempotency-Key header when the run sends them.
func (w *worker) idemHeader() map[string]string {
	if !w.r.cfg.Idempotency {
		return nil
	}
	return map[string]string{"Idempotency-Key": fmt.Sprintf("load-%d-%d-%d", time.Now().UnixNano(), w.id, w.r.seq.Add(1))}
}

// createSession opens a session and returns its ID.
func (w *worker) createSession(ctx context.Context, amount int64) (string, error) {
	a, err := w.api(ctx, "session", http.MethodPost, "/v1/sessions", w.r.cfg.MerchantKey, w.sessionBody(amount), w.idemHeader())
	if err != nil {
		return "", err
	}
	if err := expect("session", a, http.StatusCreated); err != nil {
		return "", err
	}
	var s struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(a.body, &s) != nil || s.ID == "" {
		return "", &failure{step: "session", status: a.status, code: "no session id"}
	}
	return s.ID, nil
}

// pay takes a session through the card page with a card: the page and its
// CSRF token, the form post, and the result page, which must show the
// payment complete. With challenge the form post must lead to the bank
// (the page whose form carries the 3-D Secure CReq) and the payment goes
// through the bank's page, the SMS code and the way back; without it a
// challenge is a failure. So neither scenario counts the other's flow, and
// a card page shown again (a field error, a notice) is a failure of the
// submit, never posted on.
func (w *worker) pay(ctx context.Context, id, number string, challenge bool) error {
	j := jar{}
	a, err := w.send(ctx, request{step: "page", method: http.MethodGet, path: "/pay/" + id, jar: j})
	if err != nil {
		return err
	}
	if err := expect("page", a, http.StatusOK); err != nil {
		return err
	}
	action, f, ok := form(a.body, `id="card-form"`)
	if !ok || f.Get("csrf") == "" {
		return &failure{step: "page", status: a.status, code: "no card form"}
	}
	f.Set("number", number)
	f.Set("name", "IVAN PETROV")
	f.Set("exp_month", "12")
	f.Set("exp_year", strconv.Itoa(time.Now().Year()%100+3))
	f.Set("cvc", "123")
	if a, err = w.postForm(ctx, "submit", action, f, j); err != nil {
		return err
	}
	_, _, toBank := form(a.body, bankMark)
	switch {
	case toBank && challenge:
		if a, err = w.challenge(ctx, a, j); err != nil {
			return err
		}
	case toBank:
		return &failure{step: "submit", status: a.status, code: "challenge"}
	case challenge && a.status == http.StatusSeeOther:
		return &failure{step: "submit", status: a.status, code: "no challenge"}
	}
	if err := expect("submit", a, http.StatusSeeOther); err != nil {
		return err
	}
	if a, err = w.send(ctx, request{step: "result", method: http.MethodGet, path: a.header.Get("Location"), jar: j}); err != nil {
		return err
	}
	if err := expect("result", a, http.StatusOK); err != nil {
		return err
	}
	if c := codeOf(a); c != "state complete" {
		return &failure{step: "result", status: a.status, code: c}
	}
	return nil
}

// bankMark is in the form of the page that sends the shopper to the bank:
// the 3-D Secure CReq it posts to the issuer's page (templates/redirect.html
// from renderChallenge).
const bankMark = `name="creq"`

// challenge follows the page that sends the shopper to the bank: the
// sandbox bank's page, the SMS code, and the form that carries the result
// back. Each page is recognised by its form (the CReq, the code field, the
// CRes), not by its status. It returns the answer to that last post.
func (w *worker) challenge(ctx context.Context, a answer, j jar) (answer, error) {
	steps := []struct{ step, mark, missing string }{
		{"bank", bankMark, "no challenge"},
		{"code", `name="code"`, "no code form"},
		{"return", `name="cres"`, "no return form"},
	}
	prev := "submit"
	for _, s := range steps {
		action, f, ok := form(a.body, s.mark)
		if !ok {
			return a, &failure{step: prev, status: a.status, code: s.missing}
		}
		if s.step == "code" {
			f.Set("code", sandboxSMSCode)
		}
		var err error
		if a, err = w.postForm(ctx, s.step, action, f, j); err != nil {
			return a, err
		}
		if s.step != "return" {
			if err := expect(s.step, a, http.StatusOK); err != nil {
				return a, err
			}
		}
		prev = s.step
	}
	return a, nil
}

// sessionOf reads a session as the shop sees it.
func (w *worker) sessionOf(ctx context.Context, id string) (token, paymentID string, err error) {
	a, err := w.api(ctx, "read", http.MethodGet, "/v1/sessions/"+id, w.r.cfg.MerchantKey, nil, nil)
	if err != nil {
		return "", "", err
	}
	if err := expect("read", a, http.StatusOK); err != nil {
		return "", "", err
	}
	var s struct {
		Payment struct {
			ID   string `json:"id"`
			Card struct {
				Token string `json:"token"`
			} `json:"card"`
		} `json:"payment"`
	}
	if json.Unmarshal(a.body, &s) != nil || s.Payment.ID == "" {
		return "", "", &failure{step: "read", status: a.status, code: "no payment"}
	}
	return s.Payment.Card.Token, s.Payment.ID, nil
}

// paidSessions makes n paid sessions of an amount for a set-up, and
// returns their tokens and payment IDs.
func (r *run) paidSessions(ctx context.Context, n int, amount int64) (tokens, payments []string, err error) {
	r.progress("set-up: %d card payments", n)
	tokens, payments = make([]string, n), make([]string, n)
	err = r.parallel(ctx, n, func(w *worker, i int) error {
		id, err := w.createSession(ctx, amount)
		if err != nil {
			return err
		}
		if err := w.pay(ctx, id, frictionlessCard, false); err != nil {
			return err
		}
		tokens[i], payments[i], err = w.sessionOf(ctx, id)
		return err
	})
	return tokens, payments, err
}

type sessions struct{ r *run }

func (*sessions) setup(context.Context, *worker) error { return nil }

func (*sessions) op(ctx context.Context, w *worker) (string, error) {
	_, err := w.createSession(ctx, 150000)
	return "sessions", err
}

// pages views the card page of one of Pool open sessions.
type pages struct {
	r   *run
	ids []string
}

func (p *pages) setup(ctx context.Context, _ *worker) error {
	p.r.progress("set-up: %d open sessions", p.r.cfg.Pool)
	p.ids = make([]string, p.r.cfg.Pool)
	return p.r.parallel(ctx, len(p.ids), func(w *worker, i int) (err error) {
		p.ids[i], err = w.createSession(ctx, 150000)
		return err
	})
}

func (p *pages) op(ctx context.Context, w *worker) (string, error) {
	a, err := w.send(ctx, request{step: "page", method: http.MethodGet, path: "/pay/" + p.ids[w.rng.IntN(len(p.ids))]})
	if err == nil {
		err = expect("page", a, http.StatusOK)
	}
	if err == nil && !bytes.Contains(a.body, []byte(`id="card-form"`)) {
		err = &failure{step: "page", status: a.status, code: "no card form"}
	}
	return "page", err
}

// payments is a whole card payment: a session, then the page; with
// challenge, through the bank's 3-D Secure challenge.
type payments struct {
	r         *run
	number    string
	kind      string
	challenge bool
}

func (*payments) setup(context.Context, *worker) error { return nil }

func (p *payments) op(ctx context.Context, w *worker) (string, error) {
	id, err := w.createSession(ctx, 150000)
	if err == nil {
		err = w.pay(ctx, id, p.number, p.challenge)
	}
	return p.kind, err
}

// detokenize looks up stored tokens as a processor.
type detokenize struct {
	r      *run
	bodies [][]byte
}

func (d *detokenize) setup(ctx context.Context, w *worker) error {
	tokens := d.r.cfg.Tokens
	if len(tokens) == 0 {
		var err error
		if tokens, _, err = d.r.paidSessions(ctx, d.r.cfg.Pool, 150000); err != nil {
			return err
		}
	}
	for _, t := range tokens {
		b, _ := json.Marshal(map[string]string{"token": t})
		d.bodies = append(d.bodies, b)
	}
	_, err := d.call(ctx, w, d.bodies[0])
	return err
}

func (d *detokenize) call(ctx context.Context, w *worker, body []byte) (answer, error) {
	a, err := w.send(ctx, request{step: "detokenize", method: http.MethodPost, path: "/v1/detokenize", body: body,
		ctype: "application/json", header: map[string]string{"Authorization": "Bearer " + d.r.cfg.ProcessorKey}})
	if err == nil {
		err = expect("detokenize", a, http.StatusOK)
	}
	return a, err
}

func (d *detokenize) op(ctx context.Context, w *worker) (string, error) {
	a, err := d.call(ctx, w, d.bodies[w.rng.IntN(len(d.bodies))])
	if err == nil && !bytes.Contains(a.body, []byte(`"pan"`)) {
		err = &failure{step: "detokenize", status: a.status, code: "no pan"}
	}
	return "detokenize", err
}

// refunds refunds one minor unit at a time of Pool large payments, in turn,
// so each payment's refunds stay few.
type refunds struct {
	r        *run
	payments []string
	next     atomic.Uint64
}

func (f *refunds) setup(ctx context.Context, _ *worker) (err error) {
	_, f.payments, err = f.r.paidSessions(ctx, f.r.cfg.Pool, 100_000_000)
	return err
}

func (f *refunds) op(ctx context.Context, w *worker) (string, error) {
	pid := f.payments[f.next.Add(1)%uint64(len(f.payments))]
	a, err := w.api(ctx, "refund", http.MethodPost, "/v1/payments/"+pid+"/refunds", w.r.cfg.MerchantKey, map[string]int64{"amount": 1}, w.idemHeader())
	if err == nil {
		err = expect("refund", a, http.StatusCreated)
	}
	return "refund", err
}

// mix is the airline sale: each operation one of its parts, by weight.
type mix struct {
	parts   []scenario
	weights []int
	total   int
}

func (m *mix) setup(ctx context.Context, w *worker) error {
	for _, p := range m.parts {
		if err := p.setup(ctx, w); err != nil {
			return err
		}
	}
	return nil
}

// op picks the worker's next part by smooth weighted round robin (each
// part gains its weight, the one ahead is picked and pays the total back):
// every part's share holds over any run of total operations, and each part
// comes within the first total/weight of them, so a short run meets them
// all. Each worker starts from its own random credits.
func (m *mix) op(ctx context.Context, w *worker) (string, error) {
	if w.credits == nil {
		w.credits = make([]int, len(m.parts))
		for i := range w.credits {
			w.credits[i] = w.rng.IntN(m.total) - m.total/2
		}
	}
	best := 0
	for i, wgt := range m.weights {
		w.credits[i] += wgt
		if w.credits[i] > w.credits[best] {
			best = i
		}
	}
	w.credits[best] -= m.total
	return m.parts[best].op(ctx, w)
}

// floor drives the floor server (../shared/perf/floor): a transit decrypt
// of one of 256 ciphertexts it made in the set-up.
type floor struct {
	r      *run
	bodies [][]byte
}

func (f *floor) setup(ctx context.Context, _ *worker) error {
	f.bodies = make([][]byte, 256)
	return f.r.parallel(ctx, len(f.bodies), func(w *worker, i int) error {
		pt := base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "4000%012d", w.rng.Int64N(1e12)))
		a, err := w.send(ctx, request{step: "encrypt", method: http.MethodPost, path: "/v1/transit/encrypt/cards",
			body: fmt.Appendf(nil, `{"plaintext":%q}`, pt), ctype: "application/json", header: map[string]string{"X-Vault-Token": "root"}})
		if err == nil {
			err = expect("encrypt", a, http.StatusOK)
		}
		if err != nil {
			return err
		}
		var e struct {
			Data struct {
				Ciphertext string `json:"ciphertext"`
			} `json:"data"`
		}
		if json.Unmarshal(a.body, &e) != nil || e.Data.Ciphertext == "" {
			return &failure{step: "encrypt", status: a.status, code: "no ciphertext: is the target the floor server?"}
		}
		f.bodies[i], _ = json.Marshal(map[string]string{"ciphertext": e.Data.Ciphertext})
		return nil
	})
}

func (f *floor) op(ctx context.Context, w *worker) (string, error) {
	a, err := w.send(ctx, request{step: "decrypt", method: http.MethodPost, path: "/v1/transit/decrypt/cards",
		body: f.bodies[w.rng.IntN(len(f.bodies))], ctype: "application/json", header: map[string]string{"X-Vault-Token": "root"}})
	if err == nil {
		err = expect("decrypt", a, http.StatusOK)
	}
	return "floor", err
}
