package web

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/paypage/paypage/pkg/money"
	"github.com/paypage/paypage/pkg/threeds"
)

// acsView is the sandbox bank page's content.
type acsView struct {
	Programme, MerchantName, Amount, MaskedPAN, Code string
}

// The sandbox bank page: GET shows the challenge (it accepts the CReq as a
// POST too, as a real ACS does); POST takes a code, a resend or a cancel.
// When the challenge ends, the page posts the CRes back to the shop's page.

func (s *Server) acsPage(w http.ResponseWriter, r *http.Request) {
	t, _, err := s.ACS.Transaction(r.Context(), mux.Vars(r)["tx"])
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	s.renderACS(w, r, t, "", http.StatusOK)
}

func (s *Server) renderACS(w http.ResponseWriter, r *http.Request, t threeds.Transaction, notice string, status int) {
	lang := acsLang(r, t)
	// The bank page follows the merchant's framing policy: a page framed by
	// the shop sends the shopper here inside the same frame.
	var framers []string
	if s.Accounts != nil {
		if m, err := s.Accounts.Merchant(r.Context(), t.Merchant); err == nil {
			framers = m.FrameOrigins
		}
	}
	if !t.Open() {
		d := s.newPage(r, lang)
		d.framers = framers
		d.BodyClass = "bank-page"
		d.Heading, d.Body, d.LinkText = t.Programme(), d.T("acs.done.fail"), d.T("threeds.back")
		if t.Status == threeds.Authenticated {
			d.Body = d.T("acs.done.ok")
		}
		d.Action = t.NotificationURL
		d.Hidden = []hidden{{"cres", t.CRes()}}
		s.render(w, r, status, "redirect", d)
		return
	}
	d := s.newPage(r, lang)
	d.framers = framers
	d.BodyClass = "bank-page"
	d.Title = t.Programme()
	d.Action = "/sandbox/acs/" + t.ID
	d.CSRF = s.csrfToken(w, r, "acs:"+t.ID, framers != nil)
	d.Notice = notice
	d.ACS = &acsView{Programme: t.Programme(), MerchantName: t.MerchantName, Amount: money.Format(t.Amount, t.Currency), MaskedPAN: t.MaskedPAN, Code: threeds.SandboxCode}
	if t.Tries > 0 {
		d.Errors["code"] = d.T("acs.wrong", t.TriesLeft())
	}
	s.render(w, r, status, "acs", d)
}

func (s *Server) acsSubmit(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["tx"]
	if err := r.ParseForm(); err != nil {
		s.pageError(w, r, err)
		return
	}
	ctx := r.Context()
	if r.PostFormValue("creq") != "" {
		// The shop's page arriving with the CReq: show the challenge.
		t, _, err := s.ACS.Transaction(ctx, id)
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		s.renderACS(w, r, t, "", http.StatusOK)
		return
	}
	if !s.csrfOK(r, "acs:"+id) {
		t, _, err := s.ACS.Transaction(ctx, id)
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		s.renderACS(w, r, t, "", http.StatusForbidden)
		return
	}
	var (
		t      threeds.Transaction
		err    error
		notice string
	)
	switch r.PostFormValue("action") {
	case "resend":
		t, err = s.ACS.Resend(ctx, id)
		notice = s.cat.T(acsLang(r, t), "acs.resent")
	case "cancel":
		t, err = s.ACS.Cancel(ctx, id)
	default:
		t, err = s.ACS.SubmitCode(ctx, id, r.PostFormValue("code"))
	}
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	status := http.StatusOK
	if t.Open() && t.Tries > 0 && r.PostFormValue("action") != "resend" {
		status = http.StatusUnprocessableEntity
	}
	s.renderACS(w, r, t, notice, status)
}

// acsLang is the bank page's language: the one the shopper's page sent it
// with (a hidden field in each of its forms, so that a wrong code or a
// resend keeps it), else the shopper's choice or browser.
func acsLang(r *http.Request, t threeds.Transaction) string {
	if l := r.PostFormValue("lang"); isLang(l) {
		return l
	}
	return pickLang(r, t.Language)
}
