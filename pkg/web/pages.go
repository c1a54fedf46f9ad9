package web

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/card"
	"github.com/paypage/paypage/pkg/limit"
	"github.com/paypage/paypage/pkg/money"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/threeds"
)

// langLink is one entry of the language switcher.
type langLink struct {
	Code, Name, URL string
	Current         bool
}

// orderView is the order summary at the top of the page.
type orderView struct {
	Merchant, Description, Reference, Amount string
	framers                                  []string // the merchant's frame origins
}

type hidden struct{ Name, Value string }

type fieldError struct{ Field, Message string }

// pageData is everything a page template reads. It never holds a card number
// or a security code: after a submit, those fields come back empty.
type pageData struct {
	Lang  string
	Langs []langLink
	// TestMode shows the "Test mode" banner: until a real connector
	// exists, every merchant is a test merchant.
	TestMode  bool
	Title     string
	BodyClass string
	Assets    *Assets
	Script    bool
	// Refresh is a meta refresh: only "0;url=..." (at once, never timed:
	// WCAG 2.2.1). A page that waits polls with script and, without it,
	// offers a link to check again.
	Refresh string

	Order        *orderView
	State        string // form, complete, expired, failed, processing, notfound, error
	Heading      string
	Body         string
	Notice       string
	Decline      string
	DeclineTitle string
	Poll         string // the status URL the page polls with script
	AttemptsLeft int
	LinkURL      string
	LinkText     string

	Action    string
	CSRF      string
	Values    struct{ Name, ExpMonth, ExpYear string }
	Errors    map[string]string
	ErrorList []fieldError
	Brand     string
	BrandName string
	CancelURL string
	// CardOffered: the session takes cards (else the page offers Kaspi QR only).
	CardOffered bool
	Kaspi       bool
	KaspiURL    string
	CardURL     string
	Hidden      []hidden

	ACS *acsView
	QR  *qrView
	cat Catalog

	formAction string   // the page's CSP form-action ("": 'self')
	framers    []string // origins that may frame a page with no Order
}

// frameOrigins are the origins that may frame the page: its merchant's.
func (d *pageData) frameOrigins() []string {
	if d.Order != nil {
		return d.Order.framers
	}
	return d.framers
}

// T translates for the page's language.
func (d *pageData) T(key string, args ...any) string { return d.cat.T(d.Lang, key, args...) }

func (s *Server) newPage(r *http.Request, lang string) *pageData {
	d := &pageData{Lang: lang, Assets: s.assets, Script: true, cat: s.cat, Errors: map[string]string{}, TestMode: true}
	d.Title = d.T("page.title")
	d.Langs = make([]langLink, 0, len(Languages))
	for _, l := range Languages {
		d.Langs = append(d.Langs, langLink{Code: l, Name: s.cat.T(l, "lang.name"), URL: langURL(r.URL, l), Current: l == lang})
	}
	return d
}

// langURL is the page's URL with its language set to lang, its other query
// parameters kept.
func langURL(u *url.URL, lang string) string {
	if u.RawQuery == "" && u.RawPath == "" && plainPath(u.Path) {
		return u.Path + "?lang=" + lang // what the general case makes of it, for less
	}
	q := u.Query()
	q.Set("lang", lang)
	return (&url.URL{Path: u.Path, RawQuery: q.Encode()}).String()
}

// render writes a page, from its skeleton when it has one (skeleton.go);
// it buffers so that a template error becomes a clean 500.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page string, d *pageData) {
	body, ok := s.skeletons.fill(s, page, d)
	if !ok {
		body = s.skeletons.buffer()
		if err := s.pages[page].ExecuteTemplate(body, "layout", d); err != nil {
			s.log.Error("render", "page", page, "err", err.Error())
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
	}
	defer s.skeletons.done(body)
	if l := r.URL.Query().Get("lang"); isLang(l) {
		http.SetCookie(w, &http.Cookie{Name: "pp_lang", Value: l, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: 365 * 24 * 3600})
	}
	formAction := "'self'"
	if d.formAction != "" {
		formAction = d.formAction
	}
	setFramers(w.Header(), formAction, d.frameOrigins())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(body.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(body.Bytes())
}

func (s *Server) order(ctx context.Context, ss payment.Session) *orderView {
	name, framers := ss.Merchant, []string(nil)
	if s.Accounts != nil {
		if m, err := s.Accounts.Merchant(ctx, ss.Merchant); err == nil {
			name, framers = m.Name, m.FrameOrigins
		}
	}
	return &orderView{Merchant: name, Description: ss.Description, Reference: ss.Reference, Amount: money.Format(ss.Amount, ss.Currency), framers: framers}
}

func (s *Server) notFoundPage(w http.ResponseWriter, r *http.Request) {
	d := s.newPage(r, pickLang(r, ""))
	d.State, d.Heading, d.Body, d.Script = "notfound", d.T("state.not_found.title"), d.T("state.not_found.body"), false
	s.render(w, r, http.StatusNotFound, "pay", d)
}

// sessionPage fills the page for a session's current state.
func (s *Server) sessionPage(r *http.Request, ss payment.Session, p *payment.Payment) *pageData {
	d := s.newPage(r, pickLang(r, ss.Locale))
	d.Order = s.order(r.Context(), ss)
	d.Action = "/pay/" + ss.ID
	d.CancelURL = "/pay/" + ss.ID + "/cancel"
	d.CardOffered = ss.Allows(payment.MethodCard)
	d.Kaspi = ss.Allows(payment.MethodKaspi) && s.Payments.KaspiOffered()
	d.KaspiURL = "/pay/" + ss.ID + "/kaspi"
	if ss.LastDecline != nil {
		method := payment.MethodCard
		if p != nil {
			method = p.Method
		}
		d.DeclineTitle, d.Decline = s.declineText(d.Lang, ss.LastDecline.Code, method)
	}
	switch ss.StatusAt(s.Payments.Now()) {
	case payment.SessionComplete:
		ret := ss.ReturnURL(ss.SuccessURL)
		d.State, d.Heading, d.Decline = "complete", d.T("state.complete.title"), ""
		d.Body = d.T("state.complete.body", d.Order.Merchant)
		// At once: a timed refresh would hurry the shopper (WCAG 2.2.1);
		// the page is there for the browser that does not follow it.
		d.LinkURL, d.LinkText, d.Refresh = ret, d.T("state.return"), "0;url="+ret
	case payment.SessionExpired:
		d.State, d.Heading, d.Body = "expired", d.T("state.expired.title"), d.T("state.expired.body")
		d.LinkURL, d.LinkText = ss.ReturnURL(ss.CancelURL), d.T("state.return")
	case payment.SessionFailed:
		d.State, d.Heading, d.Body = "failed", d.T("state.failed.title"), d.T("state.failed.body")
		d.LinkURL, d.LinkText = ss.ReturnURL(ss.CancelURL), d.T("state.return")
	default:
		d.State = "form"
		if ss.Live != nil {
			d.State, d.Heading, d.Body, d.Decline = "processing", d.T("state.processing.title"), d.T("state.processing.body"), ""
			// Script polls (pay.js); without it the shopper checks again
			// by the link, when they choose (no timed refresh: WCAG 2.2.1).
			d.Poll, d.LinkURL, d.LinkText = "/pay/"+ss.ID+"/status", "/pay/"+ss.ID, d.T("state.check_again")
		} else if ss.LastDecline != nil && ss.Attempts > 0 {
			d.AttemptsLeft = ss.AttemptsLeft()
		}
	}
	return d
}

// notDeclined are the codes of attempts that nobody refused: the payment
// did not go through, and the page does not call it declined.
var notDeclined = map[string]bool{processor.Unavailable: true, processor.TryAgain: true, processor.QRExpired: true}

// declineText is the title and the text the shopper reads about how their
// last attempt ended, for the method it used: a Kaspi payment has its own
// words where a card's would be wrong ("use another card").
func (s *Server) declineText(lang, code, method string) (title, text string) {
	title = s.cat.T(lang, "decline.title")
	if notDeclined[code] {
		title = s.cat.T(lang, "decline.title.not_completed")
	}
	for _, key := range []string{"decline." + method + "." + code, "decline." + code} {
		if s.cat.Has(key) {
			return title, s.cat.T(lang, key)
		}
	}
	return title, s.cat.T(lang, "decline.default")
}

// payPage shows the page in the session's current state.
func (s *Server) payPage(w http.ResponseWriter, r *http.Request) {
	s.showSession(w, r, mux.Vars(r)["id"], http.StatusOK)
}

// showSession renders a session's page as it stands, answering with status.
func (s *Server) showSession(w http.ResponseWriter, r *http.Request, id string, status int) {
	ss, p, err := s.Payments.SessionForPage(r.Context(), id)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	if a := ss.Live; a != nil {
		switch a.Stage {
		case payment.StageChallenge:
			s.renderChallenge(w, r, status, ss, a.Challenge)
			return
		case payment.StageKaspi:
			http.Redirect(w, r, "/pay/"+ss.ID+"/kaspi", http.StatusSeeOther)
			return
		}
	}
	d := s.sessionPage(r, ss, p)
	d.CSRF = s.csrfToken(w, r, ss.ID, d.frameOrigins() != nil)
	d.Values.Name = s.nameFor(w, r, ss, d)
	s.render(w, r, status, "pay", d)
}

// pageError shows a page for an error outside a session's flow.
func (s *Server) pageError(w http.ResponseWriter, r *http.Request, err error) {
	if apperr.Is(err, apperr.NotFound) {
		s.notFoundPage(w, r)
		return
	}
	d := s.newPage(r, pickLang(r, ""))
	d.State, d.Heading, d.Script = "error", d.T("state.unavailable"), false
	d.LinkURL, d.LinkText = r.URL.Path, d.T("state.refresh")
	if Status(err) >= 500 {
		s.log.Error("page failed", "route", routeName(r), "code", apperr.Code(err), "err", err.Error())
	}
	s.render(w, r, Status(err), "pay", d)
}

// paySubmit takes the card form. Field errors come back beside the fields
// (the number and code are never echoed); a decline or success goes back to
// the page by redirect; a challenge sends the shopper to the bank.
func (s *Server) paySubmit(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	if err := r.ParseForm(); err != nil {
		s.pageError(w, r, apperr.E(apperr.Invalid, "form"))
		return
	}
	if !payment.ValidSessionID(id) {
		s.notFoundPage(w, r)
		return
	}
	if !s.csrfOK(r, id) {
		// An old tab or a forged post: show the page again with a fresh token.
		s.noticePage(w, r, id, http.StatusForbidden, "state.bad_request")
		return
	}
	in := payment.CardInput{
		Number: r.PostFormValue("number"), Name: r.PostFormValue("name"),
		ExpMonth: r.PostFormValue("exp_month"), ExpYear: r.PostFormValue("exp_year"), CVC: r.PostFormValue("cvc"),
	}
	out, err := s.Payments.SubmitCard(r.Context(), id, in, s.browser(r))
	if err == nil || !errors.As(err, new(payment.FieldErrors)) {
		s.rememberName(w, r, id, in.Name, out.Session)
	}
	if out.Challenge != nil && err == nil {
		s.renderChallenge(w, r, http.StatusOK, out.Session, out.Challenge)
		return
	}
	var fe payment.FieldErrors
	switch {
	case err == nil, errors.Is(err, payment.ErrInProgress), errors.Is(err, payment.ErrSessionComplete), errors.Is(err, payment.ErrChallengeOpen),
		errors.Is(err, payment.ErrSessionExpired), errors.Is(err, payment.ErrSessionFailed):
		http.Redirect(w, r, "/pay/"+id, http.StatusSeeOther)
	case errors.Is(err, payment.ErrMethodNotOffered):
		// A card posted to a session that takes Kaspi QR only (an old tab,
		// a hand-made form): say so, and offer what the session takes.
		s.noticePage(w, r, id, http.StatusBadRequest, "state.card_not_offered")
	case errors.As(err, &fe):
		d := s.sessionPage(r, out.Session, out.Payment)
		d.CSRF = s.csrfToken(w, r, id, d.frameOrigins() != nil)
		d.Decline = ""
		d.Values.Name, d.Values.ExpMonth, d.Values.ExpYear = in.Name, in.ExpMonth, in.ExpYear
		for _, e := range fe {
			msg := d.T("err." + e.Field + "." + e.Code)
			d.Errors[e.Field] = msg
			anchor := e.Field
			if anchor == "expiry" {
				anchor = "exp_month"
			}
			d.ErrorList = append(d.ErrorList, fieldError{Field: anchor, Message: msg})
		}
		if b := card.DetectBrand(digitsOnly(in.Number)); b != card.Unknown {
			d.Brand, d.BrandName = string(b), b.Name()
		}
		s.render(w, r, http.StatusUnprocessableEntity, "pay", d)
	default:
		if Status(err) >= 500 {
			s.log.Error("card submit failed", "code", apperr.Code(err), "err", err.Error())
		}
		notice := "state.unavailable"
		if apperr.Is(err, apperr.RateLimited) {
			notice = s.limitNotice(w, id, err)
		}
		s.noticePage(w, r, id, Status(err), notice)
	}
}

// limitNotice is the notice for a submission refused by a limit: the
// shopper reads which limit and when to try again (Retry-After, from what
// is left of the limit's window), and the log says which limit (never the
// card or the address).
func (s *Server) limitNotice(w http.ResponseWriter, id string, err error) string {
	var ex *limit.Exceeded
	if !errors.As(err, &ex) {
		return "state.rate_limited"
	}
	notice := "state.rate_limited"
	if s.cat.Has("limit." + ex.Rule) {
		notice = "limit." + ex.Rule
	}
	s.log.Warn("limit reached", "limit", ex.Rule, "session", id, "retry_after", ex.RetryAfter.String())
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(ex.RetryAfter.Seconds()))))
	return notice
}

// noticePage shows a session's page with a notice above it.
func (s *Server) noticePage(w http.ResponseWriter, r *http.Request, id string, status int, notice string) {
	ss, p, err := s.Payments.SessionForPage(r.Context(), id)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	d := s.sessionPage(r, ss, p)
	d.CSRF = s.csrfToken(w, r, id, d.frameOrigins() != nil)
	d.Notice = d.T(notice)
	d.Values.Name = s.nameFor(w, r, ss, d)
	s.render(w, r, status, "pay", d)
}

func digitsOnly(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
		if b.Len() >= 8 {
			break
		}
	}
	return b.String()
}

// browser gathers what 3-D Secure wants to know of the shopper's browser.
func (s *Server) browser(r *http.Request) threeds.Browser {
	return threeds.Browser{
		IP: clientIP(r), UserAgent: truncate(r.UserAgent(), 500), AcceptHeader: truncate(r.Header.Get("Accept"), 200),
		Language: pickLang(r, ""), JavaScript: r.PostFormValue("js") == "1",
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// renderChallenge sends the shopper to the issuer's page: a form that posts
// the CReq, sent by script at once, or by the shopper's click without it.
func (s *Server) renderChallenge(w http.ResponseWriter, r *http.Request, status int, ss payment.Session, c *payment.Challenge) {
	d := s.newPage(r, pickLang(r, ss.Locale))
	d.Order = s.order(r.Context(), ss)
	d.Heading, d.Body, d.LinkText = d.T("threeds.title"), d.T("threeds.body"), d.T("threeds.button")
	d.Action = c.ACSURL
	d.Hidden = []hidden{{"creq", c.CReq}, {"lang", d.Lang}}
	if u, err := url.Parse(c.ACSURL); err == nil && u.Host != "" {
		d.formAction = "'self' " + u.Scheme + "://" + u.Host
	}
	s.render(w, r, status, "redirect", d)
}

// threeDSReturn is the 3-D Secure notification URL: the issuer's page posts
// the CRes here through the browser (cross-site, so no CSRF cookie).
func (s *Server) threeDSReturn(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	if err := r.ParseForm(); err != nil {
		s.pageError(w, r, apperr.E(apperr.Invalid, "form"))
		return
	}
	_, err := s.Payments.ChallengeReturn(r.Context(), id, r.PostFormValue("cres"))
	switch {
	case err == nil, errors.Is(err, payment.ErrStaleResult), errors.Is(err, payment.ErrChallengeOpen),
		errors.Is(err, payment.ErrInProgress), errors.Is(err, payment.ErrPending):
		// The page shows where the session stands (a pending answer shows
		// as processing, and the server asks for it by itself).
		http.Redirect(w, r, "/pay/"+id, http.StatusSeeOther)
	case apperr.Is(err, apperr.Invalid):
		s.showSession(w, r, id, http.StatusBadRequest)
	default:
		s.pageError(w, r, err)
	}
}

// payCancel takes the shopper back to the shop's cancel_url.
func (s *Server) payCancel(w http.ResponseWriter, r *http.Request) {
	ss, _, err := s.Payments.SessionForPage(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	if ss.Status == payment.SessionComplete {
		http.Redirect(w, r, ss.ReturnURL(ss.SuccessURL), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, ss.ReturnURL(ss.CancelURL), http.StatusSeeOther)
}

// payStatus answers the page's polling: done, and where to go next. It only
// reads: the server drives the attempt, the page watches.
func (s *Server) payStatus(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	ss, _, err := s.Payments.SessionForPage(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": ss.StatusAt(s.Payments.Now()), "done": ss.Live == nil, "next": "/pay/" + id})
}

// nameCookie keeps the cardholder name in the shopper's browser while an
// attempt runs, so the form after a decline has it filled in again (the
// number and the code are never kept, anywhere). Nothing is stored on the
// server for it; the cookie is scoped to the session's page and lives an
// hour at most.
const nameCookie = "pp_name"

// rememberName sets (or, once the session is paid, clears) the name cookie
// after a card submission that reached the rules.
func (s *Server) rememberName(w http.ResponseWriter, r *http.Request, id, typed string, ss payment.Session) {
	name, err := card.ParseName(typed)
	if err != nil || ss.ID == "" {
		return
	}
	if ss.Status == payment.SessionComplete {
		name = ""
	}
	http.SetCookie(w, s.nameCookieOf(r, id, name, s.order(r.Context(), ss).framers != nil))
}

// nameFor is the name the form of page d shows: the remembered one while
// the session may still be paid. A page that shows the session finished
// (paid, expired, its attempts used up) clears the cookie, however the
// session got there (a challenge, Kaspi, the reconciler, the clock).
func (s *Server) nameFor(w http.ResponseWriter, r *http.Request, ss payment.Session, d *pageData) string {
	name := rememberedName(r)
	switch d.State {
	case "complete", "expired", "failed":
		if _, err := r.Cookie(nameCookie); err == nil {
			http.SetCookie(w, s.nameCookieOf(r, ss.ID, "", d.frameOrigins() != nil))
		}
		return ""
	}
	return name
}

// nameCookieOf is the name cookie of a session's page holding name, or,
// with no name, the cookie that deletes it (same path and attributes, or
// the browser keeps the old one).
func (s *Server) nameCookieOf(r *http.Request, id, name string, framed bool) *http.Cookie {
	c := &http.Cookie{Name: nameCookie, Value: url.QueryEscape(name), Path: "/pay/" + id, MaxAge: 3600, HttpOnly: true,
		Secure: strings.HasPrefix(s.cfg.PublicURL, "https://"), SameSite: http.SameSiteLaxMode}
	if name == "" {
		c.MaxAge = -1
	}
	if c.Secure && framed {
		c.SameSite, c.Partitioned = http.SameSiteNoneMode, true // as the CSRF cookie of a framed page
	}
	return c
}

// rememberedName is the name the name cookie holds (the browser sends only
// the cookie of this session's page), if it still reads as a cardholder name.
func rememberedName(r *http.Request) string {
	c, err := r.Cookie(nameCookie)
	if err != nil {
		return ""
	}
	v, err := url.QueryUnescape(c.Value)
	if err != nil {
		return ""
	}
	name, err := card.ParseName(v)
	if err != nil {
		return ""
	}
	return name
}

// plainPath reports whether a path is letters, digits and -._~/ alone: a
// URL holds it as it is.
func plainPath(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~/", c) >= 0) {
			return false
		}
	}
	return strings.HasPrefix(p, "/")
}
