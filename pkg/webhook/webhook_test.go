package webhook_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/webhook"
)

func TestSignVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"evt_1"}`)
	h := webhook.Sign("whsec_x", now, body)
	if !strings.HasPrefix(h, "t=1800000000,v1=") {
		t.Fatalf("header %q", h)
	}
	tests := []struct {
		name, secret, header string
		body                 []byte
		at                   time.Time
		ok                   bool
	}{
		{"good", "whsec_x", h, body, now.Add(time.Minute), true},
		{"wrong secret", "whsec_y", h, body, now, false},
		{"tampered body", "whsec_x", h, []byte(`{"id":"evt_2"}`), now, false},
		{"replayed later", "whsec_x", h, body, now.Add(10 * time.Minute), false},
		{"from the future", "whsec_x", h, body, now.Add(-10 * time.Minute), false},
		{"malformed", "whsec_x", "v1=abc", body, now, false},
		{"second signature matches", "whsec_x", h + ",v1=00", body, now, true},
	}
	for _, tt := range tests {
		err := webhook.Verify(tt.secret, tt.header, tt.body, tt.at, 5*time.Minute)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v", tt.name, err)
		}
	}
}

func TestClientRefusesPrivateAddressesAndRedirects(t *testing.T) {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		http.Redirect(w, r, "http://example.invalid/", http.StatusFound)
	}))
	defer srv.Close()
	_, err := webhook.NewClient(time.Second, false).Post(srv.URL, "application/json", nil)
	if err == nil || !strings.Contains(err.Error(), "private address") || hits != 0 {
		t.Fatalf("loopback delivery: err=%v hits=%d", err, hits)
	}
	resp, err := webhook.NewClient(time.Second, true).Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || hits != 1 {
		t.Fatalf("redirect followed: %d, %d hits", resp.StatusCode, hits)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL, nil)
	if _, err := webhook.NewClient(time.Second, true).Do(req); err == nil {
		t.Fatal("cancelled request went out")
	}
}
