package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Webhook deliveries are JSON POSTs of an Event with these headers.
const (
	SignatureHeader = "Paypage-Signature"  // "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">"
	EventIDHeader   = "Paypage-Event-Id"   // the event's ID, unsigned: deduplicate on the signed body's id instead
	EventTypeHeader = "Paypage-Event-Type" // the event's type
)

// Why a webhook's signature is refused.
var (
	ErrSignatureMalformed = errors.New("malformed signature header")
	ErrSignatureStale     = errors.New("signature timestamp outside the tolerance: a replay?")
	ErrSignatureMismatch  = errors.New("signature does not match")
	ErrNoSecret           = errors.New("no webhook secret: an HMAC under an empty key proves nothing")
)

// SignWebhook returns the signature header of body at time t under the
// merchant's webhook secret.
func SignWebhook(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(webhookMAC(secret, ts, body))
}

// VerifyWebhook checks a signature header against body; it refuses a
// timestamp further than tolerance from now (a replay), and an empty secret
// (one that did not load: anyone could sign under it). Several v1 values
// may be given (during a secret's roll); one must match, compared in
// constant time.
func VerifyWebhook(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if secret == "" {
		return ErrNoSecret
	}
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrSignatureMalformed
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrSignatureStale
	}
	want := webhookMAC(secret, ts, body)
	for _, s := range sigs {
		got, err := hex.DecodeString(s)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrSignatureMismatch
}

func webhookMAC(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	return m.Sum(nil)
}
