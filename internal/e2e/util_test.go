package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/store"
)

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// httpGet fetches a URL and returns its status and body.
func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// sessionVersion is the stored session record's version: how many times it
// has been written.
func sessionVersion(t *testing.T, e *env, id string) int64 {
	t.Helper()
	r, err := e.app.Store().Get(context.Background(), store.Key{Kind: "session", ID: id, Group: payment.Group(id)})
	if err != nil {
		t.Fatal(err)
	}
	return r.Version
}
