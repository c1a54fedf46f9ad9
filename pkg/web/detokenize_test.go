package web

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/account"
	"github.com/paypage/paypage/pkg/audit"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/memory"
	"github.com/paypage/paypage/pkg/vault/vaulttest"
)

// meeting is a store whose token-bucket spend waits until the card's
// record is read: a detokenize that spent before reading would never see
// its spend answered.
type meeting struct {
	*memory.DB
	read chan struct{}
}

func (m *meeting) Get(ctx context.Context, k store.Key) (store.Record, error) {
	if k.Kind == "card" {
		close(m.read)
	}
	return m.DB.Get(ctx, k)
}

func (m *meeting) Allow(ctx context.Context, k store.Key, b store.Bucket, now time.Time) (time.Duration, error) {
	select {
	case <-m.read:
		return m.DB.Allow(ctx, k, b, now)
	case <-time.After(10 * time.Second):
		return 0, errors.New("the card was not read while the rate's token was spent")
	}
}

// Detokenize spends its rate's token while it reads the token's record, so
// the two share a round trip to the store.
func TestDetokenizeSpendsWhileReading(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := &meeting{DB: memory.New(), read: make(chan struct{})}
	v := vaulttest.Open(t, db)
	accounts := account.New(db, v)
	m, err := accounts.AddMerchant(ctx, "Air Astana", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := accounts.AddProcessor(ctx, account.ProcessorSpec{Name: "Acquirer", Merchants: []string{m.ID}})
	if err != nil {
		t.Fatal(err)
	}
	info := vaulttest.Card(t, v, m.ID, "4242424242424242")
	al := audit.New(db)
	s, err := New(Config{PublicURL: "http://pay.example"}, Deps{Store: db, Vault: v, Accounts: accounts, Audit: al,
		Refusals: audit.NewRefusals(al, time.Minute, 100, nil), CSRFTags: v.CSRFTags})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/v1/detokenize", strings.NewReader(`{"token": "`+info.Token+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.SecretKey)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "4242424242424242") {
		t.Fatalf("%d %s", w.Code, w.Body.String())
	}
}
