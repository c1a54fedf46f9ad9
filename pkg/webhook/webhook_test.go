package webhook_test

import (
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
