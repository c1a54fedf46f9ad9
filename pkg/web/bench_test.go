package web

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/paypage/paypage/pkg/money"
)

// BenchmarkRenderCardPage is the card page's template with its order, CSRF
// token and headers: what GET /pay/{id} costs beside reading the session.
func BenchmarkRenderCardPage(b *testing.B) {
	ts := newTestServer(b, Config{})
	r := httptest.NewRequest(http.MethodGet, "/pay/ses_x", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		d := ts.newPage(r, "en")
		d.Order = &orderView{Merchant: "Air Astana", Description: "Almaty - Astana", Reference: "PNR ABC123", Amount: money.Format(150000, "KZT")}
		d.State, d.Action, d.CancelURL = "form", "/pay/ses_x", "/pay/ses_x/cancel"
		d.CSRF = ts.csrfToken(w, r, "ses_x", false)
		ts.render(w, r, http.StatusOK, "pay", d)
		if w.Code != http.StatusOK || w.Body.Len() < 1000 {
			b.Fatalf("%d, %d bytes", w.Code, w.Body.Len())
		}
	}
}
