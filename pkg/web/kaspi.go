package web

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	qrcode "github.com/skip2/go-qrcode"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/kaspi"
	"github.com/paypage/paypage/pkg/limit"
	"github.com/paypage/paypage/pkg/money"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/vault"
)

// The bounds on Kaspi's notifications: a source (Kaspi's servers, or anyone)
// 20 a second with bursts of 40, all sources together 100 a second with
// bursts of 200 (the card velocity limit's 6,000 a minute). The payments
// then skip a notification for a QR looked at within the second.
var (
	kaspiNotifyRate = limit.Rate{PerSecond: 20, Burst: 40}
	kaspiNotifyAll  = limit.Rate{PerSecond: 100, Burst: 200}
)

// localSources is how many sources an in-memory limit tracks at once.
const localSources = 4096

// KaspiApp is the sandbox Kaspi.kz app's side: the page a QR code opens.
type KaspiApp interface {
	QR(ctx context.Context, id string) (kaspi.QR, error)
	Act(ctx context.Context, id, action string) (kaspi.QR, error)
}

// qrView is the Kaspi page's QR code and timing.
type qrView struct {
	Image      template.URL // a data: URL of the SVG we drew: trusted
	Payload    string
	ExpiresISO string
	Remaining  string
	PollURL    string
	PollPage   string
}

// QRSVG draws text as a QR code in SVG, with a quiet zone of four modules.
func QRSVG(text string) (string, error) {
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		return "", err
	}
	q.DisableBorder = true
	bm := q.Bitmap()
	n := len(bm)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges"><rect width="100%%" height="100%%" fill="#fff"/><path fill="#000" d="`, n+8, n+8)
	for y, row := range bm {
		for x := 0; x < len(row); x++ {
			if !row[x] {
				continue
			}
			run := 1
			for x+run < len(row) && row[x+run] {
				run++
			}
			fmt.Fprintf(&b, "M%d %dh%dv1h-%dz", x+4, y+4, run, run)
			x += run - 1
		}
	}
	b.WriteString(`"/></svg>`)
	return b.String(), nil
}

// kaspiPage shows the QR code of the Kaspi payment in flight; without one
// it sends the shopper to the session's page, where a button (a POST)
// starts one. It only reads.
func (s *Server) kaspiPage(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	ss, _, err := s.Payments.SessionForPage(r.Context(), id)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	a := ss.Live
	if a == nil || a.Stage != payment.StageKaspi || a.QR == nil {
		http.Redirect(w, r, "/pay/"+id, http.StatusSeeOther)
		return
	}
	svg, err := QRSVG(a.QR.Payload)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	d := s.newPage(r, pickLang(r, ss.Locale))
	d.Order = s.order(r.Context(), ss)
	d.Action = "/pay/" + id + "/kaspi"
	d.CSRF = s.csrfToken(w, r, id, d.frameOrigins() != nil)
	d.CancelURL = "/pay/" + id + "/cancel"
	if ss.Allows(payment.MethodCard) {
		d.CardURL = "/pay/" + id
	}
	left := max(0, a.QR.ExpiresAt.Sub(s.Payments.Now())).Round(time.Second)
	d.QR = &qrView{
		Image:   template.URL("data:image/svg+xml;base64," + base64.StdEncoding.EncodeToString([]byte(svg))),
		Payload: a.QR.Payload, ExpiresISO: a.QR.ExpiresAt.UTC().Format(time.RFC3339),
		Remaining: fmt.Sprintf("%d:%02d", int(left.Minutes()), int(left.Seconds())%60),
		PollURL:   "/pay/" + id + "/status", PollPage: "/pay/" + id + "/kaspi",
	}
	// The page polls with script; without it, the shopper checks by the
	// link when they choose (no timed refresh: WCAG 2.2.1).
	d.Title = d.T("kaspi.title")
	s.render(w, r, http.StatusOK, "kaspi", d)
}

// kaspiAction starts a Kaspi QR payment (action start), switches back to the
// card form (card), or asks for a new QR code (new).
func (s *Server) kaspiAction(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	if err := r.ParseForm(); err != nil || !s.csrfOK(r, id) {
		s.noticePage(w, r, id, http.StatusForbidden, "state.bad_request")
		return
	}
	ctx := r.Context()
	action := r.PostFormValue("action")
	if action == "card" || action == "new" {
		if _, err := s.Payments.CancelKaspi(ctx, id); err != nil && !errors.Is(err, payment.ErrStaleResult) && !errors.Is(err, payment.ErrInProgress) {
			s.pageError(w, r, err)
			return
		}
		if action == "card" {
			http.Redirect(w, r, "/pay/"+id, http.StatusSeeOther)
			return
		}
	}
	_, err := s.Payments.StartKaspi(ctx, id, clientIP(r))
	switch {
	case err == nil, errors.Is(err, payment.ErrInProgress), errors.Is(err, payment.ErrPending):
		http.Redirect(w, r, "/pay/"+id+"/kaspi", http.StatusSeeOther)
	case apperr.Is(err, apperr.RateLimited):
		s.noticePage(w, r, id, Status(err), s.limitNotice(w, id, err))
	case apperr.Is(err, apperr.NotFound), apperr.Is(err, apperr.Unavailable), apperr.Is(err, apperr.Internal):
		s.pageError(w, r, err)
	default:
		http.Redirect(w, r, "/pay/"+id, http.StatusSeeOther)
	}
}

// kaspiNotify takes Kaspi Pay's notification that a QR was paid or
// declined. It is only a hint: the status is read from Kaspi, and Kaspi is
// polled besides, so a notification refused here loses nothing. It needs no
// credential, so it is bounded in memory before anything is read: per
// source, then over all (kaspiNotifyRate, kaspiNotifyAll).
func (s *Server) kaspiNotify(w http.ResponseWriter, r *http.Request) {
	if src := clientBucket(r); !s.notifies.Allow(src) {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(s.notifies.RetryAfter(src).Seconds()))))
		s.writeError(w, r, apperr.E(apperr.RateLimited, "too many notifications: try again later"))
		return
	}
	var n kaspi.Notification
	if err := decodeJSON(r, &n); err != nil {
		s.writeError(w, r, err)
		return
	}
	if !payment.ValidSessionID(n.ExternalID) || !vault.ValidID(n.QRID, "kqr_") {
		s.writeError(w, r, apperr.E(apperr.Invalid, "not a notification of ours"))
		return
	}
	_, err := s.Payments.KaspiNotified(r.Context(), n.ExternalID, n.QRID)
	switch {
	case err == nil, errors.Is(err, payment.ErrStaleResult), errors.Is(err, payment.ErrInProgress), errors.Is(err, payment.ErrPending):
		writeJSON(w, http.StatusOK, map[string]string{"status": "received"})
	default:
		s.writeError(w, r, err)
	}
}

func (s *Server) kaspiAppPage(w http.ResponseWriter, r *http.Request) {
	q, err := s.KaspiApp.QR(r.Context(), mux.Vars(r)["qr"])
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	s.renderKaspiApp(w, r, q, http.StatusOK)
}

func (s *Server) renderKaspiApp(w http.ResponseWriter, r *http.Request, q kaspi.QR, status int) {
	d := s.newPage(r, pickLang(r, ""))
	d.Title = d.T("sbkaspi.title")
	d.BodyClass = "bank-page"
	d.Action = "/sandbox/kaspi/" + q.ID
	d.CSRF = s.csrfToken(w, r, "kaspi:"+q.ID, false)
	d.Body = d.T("sbkaspi.confirm", money.Format(q.Amount, "KZT"), q.MerchantName)
	switch q.Status {
	case payment.KaspiPending:
	case payment.KaspiPaid:
		d.Notice = d.T("sbkaspi.paid")
	case payment.KaspiDeclined:
		d.Notice = d.T("sbkaspi.declined")
	default:
		d.Notice = d.T("sbkaspi.closed")
	}
	s.render(w, r, status, "sbkaspi", d)
}

func (s *Server) kaspiAppSubmit(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["qr"]
	if err := r.ParseForm(); err != nil {
		s.pageError(w, r, err)
		return
	}
	if !s.csrfOK(r, "kaspi:"+id) {
		q, err := s.KaspiApp.QR(r.Context(), id)
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		s.renderKaspiApp(w, r, q, http.StatusForbidden)
		return
	}
	q, err := s.KaspiApp.Act(r.Context(), id, r.PostFormValue("action"))
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	s.renderKaspiApp(w, r, q, http.StatusOK)
}
