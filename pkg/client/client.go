// Package client is paypage's Go client, for shops and processors: sessions,
// payments, refunds and events with a merchant's secret key, detokenize with
// a processor's, and webhook verification. It depends on the standard
// library and pkg/api (the wire types, themselves standard library only),
// never on the server.
//
// Every create (and every POST sent with Raw) carries an Idempotency-Key,
// the caller's or one it makes, and reuses it across its own retries, so a
// retry never makes a second session or refund. Only what is safe to repeat
// is retried (a GET, or a request under an Idempotency-Key): on 503 and 429,
// on 409 idempotency_in_progress (its own earlier try still running), and
// on a connection that failed before an answer, with exponential back-off
// and full jitter, waiting at least what Retry-After says; the number of
// tries and the longest wait are bounded, and the context ends the wait. An
// answer that is not a success is an *Error with the API's code, message and
// param and the HTTP status.
package client

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/paypage/paypage/pkg/api"
)

// Client calls one paypage service with one secret key: a merchant's
// (sk_...) for the shop API, or a processor's (psk_...) for detokenize. It
// is safe for concurrent use.
type Client struct {
	base      string
	key       string
	http      *http.Client
	retries   int
	backoff   time.Duration // the first retry's back-off; it doubles
	maxWait   time.Duration // the longest wait before a retry, Retry-After included
	userAgent string
	sleep     func(ctx context.Context, d time.Duration) error
}

// Option sets up a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests through hc (its
// transport, timeout, proxy).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithRetries sets how many times a call is retried after its first try
// (default 3; 0: never).
func WithRetries(n int) Option { return func(c *Client) { c.retries = max(0, n) } }

// WithBackoff sets the first retry's back-off (default 250 ms; it doubles
// each retry, with full jitter) and the longest wait before any retry
// (default 30 s): a Retry-After longer than that is not waited for, and the
// error is returned.
func WithBackoff(first, longest time.Duration) Option {
	return func(c *Client) { c.backoff, c.maxWait = first, longest }
}

// withSleep replaces the wait between tries (tests).
func withSleep(f func(ctx context.Context, d time.Duration) error) Option {
	return func(c *Client) { c.sleep = f }
}

// New returns a client of the service at baseURL (https://pay.example.com)
// that authenticates with secretKey.
func New(baseURL, secretKey string, opts ...Option) *Client {
	c := &Client{
		base: strings.TrimRight(baseURL, "/"), key: secretKey, http: &http.Client{Timeout: 60 * time.Second},
		retries: 3, backoff: 250 * time.Millisecond, maxWait: 30 * time.Second, userAgent: "paypage-go/1", sleep: sleepCtx,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Error is an answer that is not a success: the API's error, with the HTTP
// status. Code is one of invalid, unauthorized, forbidden, not_found,
// token_deleted, method_not_allowed, conflict, idempotency_in_progress,
// idempotency_mismatch, rate_limited, unavailable, internal.
type Error struct {
	Status     int
	Code       string
	Message    string
	Param      string        // the request field at fault, if any
	RetryAfter time.Duration // what Retry-After said, if anything
}

func (e *Error) Error() string {
	s := fmt.Sprintf("paypage: %d %s: %s", e.Status, e.Code, e.Message)
	if e.Param != "" {
		s += " (" + e.Param + ")"
	}
	return s
}

// CodeInProgress is the code of a 409 that says an earlier try of the same
// request (under the same Idempotency-Key) is still running: retry it.
const CodeInProgress = "idempotency_in_progress"

// Temporary reports whether the same call may succeed later (503, 429, or
// a 409 idempotency_in_progress): what the client retries by itself, and
// what was still so after its retries.
func (e *Error) Temporary() bool {
	return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests ||
		(e.Status == http.StatusConflict && e.Code == CodeInProgress)
}

// CallOption sets up one call.
type CallOption func(*call)

type call struct {
	idemKey string
	header  http.Header
}

// IdempotencyKey sends key as the call's Idempotency-Key (a create makes
// one up otherwise). The service answers a repeat of the same request under
// the same key with the first answer, for 24 hours.
func IdempotencyKey(key string) CallOption { return func(c *call) { c.idemKey = key } }

// Header adds a request header to the call.
func Header(name, value string) CallOption {
	return func(c *call) {
		if c.header == nil {
			c.header = http.Header{}
		}
		c.header.Add(name, value)
	}
}

// Response is an answer as it came: what Raw returns.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// CreateSession opens a payment session (POST /v1/sessions); send the
// shopper to its URL.
func (c *Client) CreateSession(ctx context.Context, p api.SessionParams, opts ...CallOption) (*api.Session, error) {
	var s api.Session
	return &s, c.create(ctx, "/v1/sessions", p, &s, opts)
}

// Session reads a session, with its payment once there is one.
func (c *Client) Session(ctx context.Context, id string) (*api.Session, error) {
	var s api.Session
	return &s, c.get(ctx, "/v1/sessions/"+url.PathEscape(id), &s)
}

// Payment reads a payment.
func (c *Client) Payment(ctx context.Context, id string) (*api.Payment, error) {
	var p api.Payment
	return &p, c.get(ctx, "/v1/payments/"+url.PathEscape(id), &p)
}

// CreateRefund refunds a payment, in whole (p.Amount nil) or in part.
func (c *Client) CreateRefund(ctx context.Context, paymentID string, p api.RefundParams, opts ...CallOption) (*api.Refund, error) {
	var r api.Refund
	return &r, c.create(ctx, "/v1/payments/"+url.PathEscape(paymentID)+"/refunds", p, &r, opts)
}

// Events lists the merchant's webhook events after the event after (""
// from the first), oldest first, at most limit (1 to 100; 0: 20), each
// with where its delivery stands.
func (c *Client) Events(ctx context.Context, after string, limit int) (*api.EventList, error) {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var l api.EventList
	return &l, c.get(ctx, path, &l)
}

// Detokenize returns the card behind a token (processor keys only, for the
// merchants the processor serves). The answer holds a card number: keep it
// in memory only, for the authorization it is asked for.
func (c *Client) Detokenize(ctx context.Context, token string) (*api.CardDetails, error) {
	var d api.CardDetails
	body, _ := json.Marshal(api.DetokenizeParams{Token: token})
	// A read (each try is audited, nothing else changes): safe to repeat.
	return &d, c.decode(c.send(ctx, http.MethodPost, "/v1/detokenize", body, nil, true))(&d)
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	return c.decode(c.send(ctx, http.MethodGet, path, nil, nil, true))(out)
}

// create POSTs params under an Idempotency-Key that every retry reuses.
func (c *Client) create(ctx context.Context, path string, params, out any, opts []CallOption) error {
	cl := call{}
	for _, o := range opts {
		o(&cl)
	}
	if cl.idemKey == "" {
		cl.idemKey = newIdempotencyKey()
	}
	h := cl.header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set(idemHeader, cl.idemKey)
	body, err := json.Marshal(params)
	if err != nil {
		return err
	}
	return c.decode(c.send(ctx, http.MethodPost, path, body, h, true))(out)
}

// Raw sends a request as the client sends every call (its key, JSON,
// retries) and returns the answer whatever its status; err is only for a
// call that got no answer. For calls the typed methods do not make, and
// for tests that send what a careless shop would. A body is sent as
// application/json unless header says otherwise.
//
// A POST gets an Idempotency-Key of its own unless header names one, and
// keeps it across its retries, so a retry is the same request. An
// Idempotency-Key given empty sends none: that request is never retried,
// since a repeat could make the object twice (a second refund).
func (c *Client) Raw(ctx context.Context, method, path string, body []byte, header http.Header) (*Response, error) {
	header = header.Clone()
	if method == http.MethodPost {
		if _, given := header[idemHeader]; !given {
			if header == nil {
				header = http.Header{}
			}
			header.Set(idemHeader, newIdempotencyKey())
		}
	}
	if v, given := header[idemHeader]; given && (len(v) == 0 || v[0] == "") {
		delete(header, idemHeader)
	}
	repeatable := method == http.MethodGet || method == http.MethodHead || header.Get(idemHeader) != ""
	return c.send(ctx, method, path, body, header, repeatable)
}

// idemHeader is the Idempotency-Key header, in its canonical form.
const idemHeader = "Idempotency-Key"

// decode turns an answer into out, or into an *Error.
func (c *Client) decode(resp *Response, err error) func(out any) error {
	return func(out any) error {
		if err != nil {
			return err
		}
		if resp.Status >= 300 {
			return errorOf(resp)
		}
		if err := json.Unmarshal(resp.Body, out); err != nil {
			return fmt.Errorf("paypage: reading the answer (%d): %w", resp.Status, err)
		}
		return nil
	}
}

func errorOf(resp *Response) *Error {
	var b api.ErrorBody
	e := &Error{Status: resp.Status, RetryAfter: retryAfter(resp.Header)}
	if json.Unmarshal(resp.Body, &b) == nil && b.Error.Code != "" {
		e.Code, e.Message, e.Param = b.Error.Code, b.Error.Message, b.Error.Param
	} else {
		e.Code, e.Message = "http_"+strconv.Itoa(resp.Status), http.StatusText(resp.Status)
	}
	return e
}

// send makes the call, retrying what may be retried when the call is
// repeatable: a read, or a request under an Idempotency-Key (the service
// answers its repeat with the first answer). Anything else could be made
// twice, and is sent once.
func (c *Client) send(ctx context.Context, method, path string, body []byte, header http.Header, repeatable bool) (*Response, error) {
	for try := 0; ; try++ {
		resp, err := c.once(ctx, method, path, body, header)
		if try >= c.retries || !repeatable || !retryable(resp, err) || ctx.Err() != nil {
			return resp, err
		}
		wait := c.backoffFor(try)
		if resp != nil {
			if ra := retryAfter(resp.Header); ra > wait {
				wait = ra
			}
		}
		if wait > c.maxWait {
			return resp, err // the service asks for longer than we wait: say so
		}
		if serr := c.sleep(ctx, wait); serr != nil {
			if err == nil {
				return resp, nil
			}
			return nil, serr
		}
	}
}

// retryable: a 503 or a 429, a 409 idempotency_in_progress, or no answer
// at all (a connection refused or cut before the answer; never the
// caller's own cancellation).
func retryable(resp *Response, err error) bool {
	if err != nil {
		return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	}
	switch resp.Status {
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return true
	case http.StatusConflict:
		return errorOf(resp).Code == CodeInProgress
	}
	return false
}

// backoffFor is the wait before retry n+1: a random time up to the first
// back-off doubled n times (full jitter), never above the longest wait.
func (c *Client) backoffFor(n int) time.Duration {
	ceil := c.backoff << min(n, 20)
	if ceil <= 0 || ceil > c.maxWait {
		ceil = c.maxWait
	}
	if ceil <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

func (c *Client) once(ctx context.Context, method, path string, body []byte, header http.Header) (*Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range header {
		req.Header[http.CanonicalHeaderKey(k)] = vs
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// retryAfter reads Retry-After in seconds (the form paypage sends) or as
// an HTTP date. A number of seconds too large for a Duration (about 292
// years) is the longest Duration: never a negative wait.
func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseUint(v, 10, 64); err == nil {
		if s > uint64(math.MaxInt64/int64(time.Second)) {
			return math.MaxInt64
		}
		return time.Duration(s) * time.Second
	} else if errors.Is(err, strconv.ErrRange) {
		return math.MaxInt64
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newIdempotencyKey is 128 random bits.
func newIdempotencyKey() string {
	b := make([]byte, 16)
	_, _ = cryptorand.Read(b)
	return "idem_" + hex.EncodeToString(b)
}

// WebhookTolerance is how far a webhook's signature time may be from now.
const WebhookTolerance = 5 * time.Minute

// ParseWebhook verifies a webhook delivery's signature (the
// Paypage-Signature header) under the merchant's webhook secret, refusing a
// signature older or newer than WebhookTolerance (a replay) and an empty
// secret (api.ErrNoSecret: a secret that did not load), and returns the
// event. Pass the body exactly as it came. A retry of a delivery is signed
// anew: deduplicate on the returned event's ID (it is in the signed body),
// never on the unsigned Paypage-Event-Id header.
func ParseWebhook(secret, header string, body []byte) (*api.Event, error) {
	return ParseWebhookAt(secret, header, body, time.Now())
}

// ParseWebhookAt is ParseWebhook at the time now.
func ParseWebhookAt(secret, header string, body []byte, now time.Time) (*api.Event, error) {
	if err := api.VerifyWebhook(secret, header, body, now, WebhookTolerance); err != nil {
		return nil, fmt.Errorf("paypage webhook: %w", err)
	}
	var e api.Event
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("paypage webhook: reading the event: %w", err)
	}
	return &e, nil
}
