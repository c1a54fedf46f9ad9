package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"github.com/paypage/paypage/pkg/account"
	"github.com/paypage/paypage/pkg/api"
	"github.com/paypage/paypage/pkg/apiview"
	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/audit"
	"github.com/paypage/paypage/pkg/idempotency"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/vault"
)

var errNoRoute = apperr.E(apperr.NotFound, "no such endpoint")

type principalKey struct{}

func principalOf(r *http.Request) account.Principal {
	p, _ := r.Context().Value(principalKey{}).(account.Principal)
	return p
}

// authenticate checks the bearer secret key and that it is of the wanted
// kind. A source that has had too many calls refused in this window is
// refused before its key is even looked up; each refusal is counted
// (Refusals), not written one by one.
func (s *Server) authenticate(kind string, next http.HandlerFunc) http.HandlerFunc {
	action := "authenticate"
	if kind == account.KindProcessor {
		action = "detokenize"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if max := s.cfg.RefusalsPerMinute; max > 0 && s.Refusals.Count(clientBucket(r)) >= max {
			err := apperr.E(apperr.RateLimited, "too many refused calls from this address: try again later")
			s.refuse(r, action, "unknown", err)
			w.Header().Set("Retry-After", strconv.Itoa(int(s.Refusals.Remaining().Seconds())+1))
			s.writeError(w, r, err)
			return
		}
		secret, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			s.refuse(r, action, "unknown", account.ErrUnauthorized)
			w.Header().Set("WWW-Authenticate", `Bearer realm="paypage"`)
			s.writeError(w, r, account.ErrUnauthorized)
			return
		}
		p, err := s.Accounts.Authenticate(r.Context(), secret)
		if err != nil {
			if apperr.Is(err, apperr.Unauthorized) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="paypage"`)
				s.refuse(r, action, "unknown", err)
			}
			s.writeError(w, r, err)
			return
		}
		if p.Kind != kind {
			err := apperr.E(apperr.Forbidden, "this endpoint needs a %s key", kind)
			s.refuse(r, action, p.String(), err)
			s.writeError(w, r, err)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}
}

// bearer reads the credential of an Authorization header of the Bearer
// scheme, whose name is case-insensitive (RFC 9110 11.1): "bearer sk_..."
// is as good as "Bearer sk_...".
func bearer(h string) (string, bool) {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(cred), true
}

func (s *Server) merchantOnly(h http.HandlerFunc) http.HandlerFunc {
	return s.authenticate(account.KindMerchant, h)
}

func (s *Server) processorOnly(h http.HandlerFunc) http.HandlerFunc {
	return s.authenticate(account.KindProcessor, h)
}

// decodeJSON reads a JSON body strictly: the right content type, valid
// UTF-8, one object whose member names are the request's own, spelled
// exactly (Go's decoder would take "Amount" for "amount"), each once, with
// values of the right types and never null (a null is not "absent": leave
// the member out). Each refusal names the field, in our words, not Go's.
func decodeJSON(r *http.Request, into any) error {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		return apperr.E(apperr.Invalid, "send a JSON body with Content-Type: application/json")
	}
	body, err := io.ReadAll(r.Body)
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &maxErr):
		return apperr.E(apperr.Invalid, "the body is larger than %d bytes", maxErr.Limit)
	case err != nil:
		return apperr.E(apperr.Invalid, "the body could not be read")
	}
	if !validUnicode(body) {
		// Go's decoder would keep a bad byte or a lone surrogate as U+FFFD:
		// what is stored would not be what was sent.
		return apperr.E(apperr.Invalid, "the body is not valid UTF-8 (or holds an unpaired surrogate escape)")
	}
	fields := jsonFieldsOf(into)
	if err := checkMembers(body, fields); err != nil {
		return err
	}
	var typeErr *json.UnmarshalTypeError
	if err := json.Unmarshal(body, into); errors.As(err, &typeErr) {
		name, _, _ := strings.Cut(typeErr.Field, ".")
		return apperr.Field(name, "must be %s", fields[name])
	} else if err != nil {
		return apperr.E(apperr.Invalid, "the body is not valid JSON")
	}
	return nil
}

// checkMembers reads the body's one object and refuses a member that is
// not one of fields (matched exactly), a member given twice, anything but
// an object, and anything after it.
func checkMembers(body []byte, fields map[string]string) error {
	notJSON := apperr.E(apperr.Invalid, "the body is not valid JSON")
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return notJSON
	}
	if tok != json.Delim('{') {
		return apperr.E(apperr.Invalid, "the body must be a JSON object")
	}
	seen := make(map[string]bool, len(fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return notJSON
		}
		name, _ := tok.(string)
		if _, ok := fields[name]; !ok {
			for known := range fields {
				if strings.EqualFold(known, name) {
					return apperr.Field(safeParam(name), "is not a known field: names are lower case (%s)", known)
				}
			}
			return apperr.Field(safeParam(name), "is not a known field")
		}
		if seen[name] {
			return apperr.Field(name, "is given twice")
		}
		seen[name] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return notJSON
		}
		if string(value) == "null" {
			return apperr.Field(name, "must be %s, not null: leave it out for the default", fields[name])
		}
	}
	if _, err := dec.Token(); err != nil {
		return notJSON
	}
	if _, err := dec.Token(); err != io.EOF {
		return apperr.E(apperr.Invalid, "the body must hold one JSON object")
	}
	return nil
}

// maxParam is the longest member name an error names, in bytes.
const maxParam = 40

// safeParam is an unknown member's name as an error may name it: every
// digit masked (a card number sent as a name must never come back in an
// error, a log or a metric) and cut to maxParam bytes.
func safeParam(name string) string {
	b := []byte(name)
	for i, c := range b {
		if c >= '0' && c <= '9' {
			b[i] = '*'
		}
	}
	if len(b) <= maxParam {
		return string(b)
	}
	cut := maxParam
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return string(b[:cut]) + "…"
}

// validUnicode reports whether a JSON text is valid UTF-8 whose \u escapes
// pair their surrogates: what Go's decoder would otherwise turn into U+FFFD.
func validUnicode(body []byte) bool {
	if !utf8.Valid(body) {
		return false
	}
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' || i+1 >= len(body) {
			continue
		}
		i++ // the escaped character: a backslash escapes the next one only
		if body[i] != 'u' {
			continue
		}
		u := hex4(body, i+1)
		switch {
		case u >= 0xDC00 && u <= 0xDFFF:
			return false // a low surrogate with no high one before it
		case u >= 0xD800 && u <= 0xDBFF:
			if i+10 >= len(body) || body[i+5] != '\\' || body[i+6] != 'u' {
				return false
			}
			if lo := hex4(body, i+7); lo < 0xDC00 || lo > 0xDFFF {
				return false
			}
			i += 10
		default:
			i += 4
		}
	}
	return true
}

// hex4 is the value of the four hex digits at body[i:], or -1.
func hex4(body []byte, i int) int {
	if i+4 > len(body) {
		return -1
	}
	v, err := strconv.ParseUint(string(body[i:i+4]), 16, 16)
	if err != nil {
		return -1
	}
	return int(v)
}

// jsonFields are, per request type, its members' JSON names and the JSON
// type each takes ("an integer", "a string", ...), read once.
var jsonFields sync.Map // reflect.Type -> map[string]string

func jsonFieldsOf(v any) map[string]string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if f, ok := jsonFields.Load(t); ok {
		return f.(map[string]string)
	}
	f := map[string]string{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if !sf.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		f[name] = jsonTypeName(sf.Type)
	}
	jsonFields.Store(t, f)
	return f
}

// jsonTypeName names a Go type as the JSON a client sends for it.
func jsonTypeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(jsonTypeName(t.Elem()), "an "), "a ") + "s"
	case reflect.Pointer:
		return jsonTypeName(t.Elem())
	}
	return "an object"
}

// sessionView is a session as the shop sees it now.
func (s *Server) sessionView(ss payment.Session, p *payment.Payment) api.Session {
	return apiview.SessionOf(ss, p, apiview.PageURL(s.cfg.PublicURL, ss.ID), s.Payments.Now())
}

// idempotent runs a create under the request's Idempotency-Key, if it has
// one: a retry of the same request gets the first answer (with
// Idempotent-Replayed: true), or, when the first try died on the way, goes
// on with the same object ID, so the object is made once. do makes the
// object with the ID it is given and answers with a status and a view. Only
// a success is kept: a refusal made nothing, so the key is free again; after
// a 5xx the retry goes on from where the first try stood.
func (s *Server) idempotent(w http.ResponseWriter, r *http.Request, scope string, req any, newID func() string, do func(id string) (int, any, error)) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		status, body, err := do(newID())
		s.answer(w, r, status, body, err)
		return
	}
	canon, _ := json.Marshal(req)
	first, claim, err := s.Idem.Begin(r.Context(), scope, principalOf(r).ID, key, canon, newID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if first != nil {
		// The record keeps the body compact: indent it as it was sent, so
		// the replay is the first answer byte for byte.
		var out bytes.Buffer
		if json.Indent(&out, first.Body, "", "  ") != nil {
			out.Reset()
			out.Write(first.Body)
		}
		out.WriteByte('\n')
		w.Header().Set("Idempotent-Replayed", "true")
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(first.Status)
		_, _ = w.Write(out.Bytes())
		return
	}
	status, body, err := do(claim.ObjectID)
	var kerr error
	var raw []byte
	switch {
	case err == nil:
		raw, _ = json.MarshalIndent(body, "", "  ")
		raw = append(raw, '\n') // what writeJSON writes
		kerr = s.Idem.Finish(r.Context(), claim, idempotency.Answer{Status: status, Body: raw})
	case Status(err) < 500:
		kerr = s.Idem.Abandon(r.Context(), claim)
	default:
		kerr = s.Idem.Release(r.Context(), claim)
	}
	if kerr != nil {
		s.log.Warn("idempotency record not updated", "err", kerr.Error())
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// The answer kept is the answer given, encoded once.
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(raw)
}

// answer writes a view, or the error.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, status int, body any, err error) {
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, status, body)
}

func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	var req payment.CreateRequest
	if err := decodeJSON(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	m := principalOf(r)
	s.idempotent(w, r, "sessions", req, payment.NewSessionID, func(id string) (int, any, error) {
		ss, err := s.Payments.CreateSession(r.Context(), m.ID, id, req)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusCreated, s.sessionView(ss, nil), nil
	})
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	m := principalOf(r)
	ss, p, err := s.Payments.Session(r.Context(), m.ID, mux.Vars(r)["id"])
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.sessionView(ss, p))
}

func (s *Server) getPayment(w http.ResponseWriter, r *http.Request) {
	p, err := s.Payments.Payment(r.Context(), principalOf(r).ID, mux.Vars(r)["id"])
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, apiview.PaymentOf(p))
}

func (s *Server) createRefund(w http.ResponseWriter, r *http.Request) {
	var req payment.RefundRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	pid := mux.Vars(r)["id"]
	m := principalOf(r)
	s.idempotent(w, r, "refunds|"+pid, req, payment.NewRefundID, func(id string) (int, any, error) {
		ref, err := s.Payments.Refund(r.Context(), m.ID, pid, id, req)
		// Every refund asked for is audited, by the merchant that asked; a
		// replayed answer is the same refund, already recorded.
		e := audit.Event{Actor: m.String(), Action: "refund", Outcome: audit.Success, Source: clientIP(r), Object: pid + "/" + id, Merchant: m.ID}
		if err != nil {
			e.Outcome, e.Reason = audit.Failure, apperr.Code(err)
		} else if ref.Status == payment.RefundFailed {
			e.Outcome, e.Reason = audit.Failure, ref.FailureCode
		}
		s.record(r, e)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusCreated, apiview.RefundOf(pid, ref), nil
	})
}

// detokenize gives an authorized processor the card behind a token of a
// merchant it serves. It is rate-limited per processor (a token bucket that
// every replica shares). The spend of the bucket runs while the body is
// read and the token's record is fetched, so the two share a round trip to
// the store; nothing is opened before the spend allows it, and a refused
// spend is the answer. Every call the bucket lets through leaves its own
// audit record, naming the token, before it is answered, whether it gets a
// card or not: no record, no answer. Calls over the bucket are counted
// (audit.Refusals): the bucket is what bounds the writes of the others.
func (s *Server) detokenize(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	limit := s.spend(r, p)
	var req api.DetokenizeParams
	err := decodeJSON(r, &req)
	if err == nil && req.Token == "" {
		err = apperr.Field("token", "is required")
	}
	var (
		c    vault.Card
		info vault.Info
	)
	if err != nil {
		if lerr := limit.verdict(); lerr != nil {
			s.refuseDetokenize(w, r, p, lerr)
			return
		}
	} else {
		c, info, err = s.Vault.LookupForAfter(r.Context(), req.Token, p.Serves, limit.verdict)
		if errors.As(err, new(*rateLimited)) || errors.As(err, new(*spendFailed)) {
			s.refuseDetokenize(w, r, p, err)
			return
		}
	}
	object := req.Token
	if object != "" && !vault.ValidToken(object) {
		object = "(malformed)" // never record what was sent: it could be a card number
	}
	if aerr := s.auditDetokenize(r, p.String(), object, info.Merchant, err); aerr != nil {
		// No audit record, no answer: PCI DSS 10.2 wants every access, and
		// every attempt at one, logged.
		s.writeError(w, r, apperr.Wrap(apperr.Unavailable, aerr, "audit trail unavailable"))
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.CardDetails{PAN: c.PAN.Digits(), ExpMonth: c.Expiry.Month, ExpYear: c.Expiry.Year, CardholderName: c.Name, Brand: string(info.Brand), Merchant: info.Merchant})
}

// refuseDetokenize answers a detokenize call its spend refused: over the
// rate (429 with Retry-After, counted as a refusal: audit.Refusals, which
// also counts toward --limit-refusals-per-minute), or the store failing to
// spend it (as the store's error).
func (s *Server) refuseDetokenize(w http.ResponseWriter, r *http.Request, p account.Principal, err error) {
	var sf *spendFailed
	if errors.As(err, &sf) {
		s.writeError(w, r, sf.err)
		return
	}
	var rl *rateLimited
	if errors.As(err, &rl) {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(rl.wait.Seconds()))))
		err = rl.err
	}
	s.Refusals.Add(audit.Event{Actor: p.String(), Action: "detokenize", Source: clientBucket(r), Reason: apperr.Code(err)})
	s.writeError(w, r, err)
}

// spending is a detokenize rate's token being spent in the background.
type spending struct {
	done chan struct{}
	err  error // nil, *rateLimited or *spendFailed
}

// rateLimited is a spend the bucket refused: how long until a token is there.
type rateLimited struct {
	wait time.Duration
	err  error
}

func (e *rateLimited) Error() string { return e.err.Error() }
func (e *rateLimited) Unwrap() error { return e.err }

// spendFailed is a spend the store could not make.
type spendFailed struct{ err error }

func (e *spendFailed) Error() string { return e.err.Error() }
func (e *spendFailed) Unwrap() error { return e.err }

// spend starts spending a token of the processor's detokenize bucket; nil
// when the processor has no limit.
func (s *Server) spend(r *http.Request, p account.Principal) *spending {
	rate := s.detokenizeRate(p)
	if rate <= 0 {
		return nil
	}
	sp := &spending{done: make(chan struct{})}
	go func() {
		defer close(sp.done)
		// One bucket per processor, whatever its rate: replicas that differ
		// in --detokenize-per-second for a while still share it, and a new
		// rate applies to the tokens left. The time is the audit trail's,
		// which is the app's clock (tests move it).
		k := store.K("bucket_detok", p.ID)
		wait, err := s.Store.Allow(r.Context(), k, store.Bucket{PerSecond: float64(rate), Burst: rate}, s.Audit.Now())
		switch {
		case err != nil:
			sp.err = &spendFailed{err}
		case wait > 0:
			sp.err = &rateLimited{wait: wait, err: apperr.E(apperr.RateLimited, "detokenize limit of %d a second reached", rate)}
		}
	}()
	return sp
}

// verdict waits for the spend: nil when a token was spent (or there is no
// limit).
func (sp *spending) verdict() error {
	if sp == nil {
		return nil
	}
	<-sp.done
	return sp.err
}

// refuse counts a refused call for the audit trail (one record per source
// and window, with the count: audit.Refusals), writing nothing now.
func (s *Server) refuse(r *http.Request, action, actor string, why error) {
	s.Refusals.Add(audit.Event{Actor: actor, Action: action, Source: clientBucket(r), Reason: apperr.Code(why), Object: routeName(r)})
}

// detokenizeRate is a processor's calls a second: its own rate, else the
// setting; 0 or less: no limit.
func (s *Server) detokenizeRate(p account.Principal) int64 {
	if p.Rate != nil {
		return *p.Rate
	}
	return s.cfg.DetokenizePerSecond
}

// auditDetokenize records one detokenize call by an authenticated
// processor: a success, or a failure with its reason. A token of a
// merchant the processor does not serve is recorded under that merchant.
// These refusals are not counted toward --limit-refusals-per-minute: the
// processor is known, its bucket bounds its calls, and a token cannot be
// guessed.
func (s *Server) auditDetokenize(r *http.Request, actor, token, merchant string, failure error) error {
	e := audit.Event{Actor: actor, Action: "detokenize", Outcome: audit.Success, Source: clientIP(r), Object: token, Merchant: merchant}
	if failure != nil {
		e.Outcome, e.Reason = audit.Failure, apperr.Code(failure)
		if errors.Is(failure, vault.ErrNotAllowed) {
			e.Reason = "refused: merchant not served"
		}
	}
	return s.record(r, e)
}

// record appends an audit record, and logs when it cannot.
func (s *Server) record(r *http.Request, e audit.Event) error {
	err := s.Audit.Record(r.Context(), e)
	if err != nil {
		s.log.Error("audit record failed", "action", e.Action, "err", err.Error())
	}
	return err
}
