package app

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

// TestBudgetRotationAudited: a rotation the service makes by itself, when a
// data key nears its seal budget, is in the audit trail (actor system),
// with the versions and the count.
func TestBudgetRotationAudited(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, err := Open(ctx, Config{Addr: "127.0.0.1:0", Data: filepath.Join(t.TempDir(), "data"), KeySealBudget: 64},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for range 100 {
		if _, err := a.Vault.SealSecret("p", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := a.Audit.List(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Action == "keys.rotate" && e.Actor == "system" && strings.HasPrefix(e.Object, "v2 (v1 sealed ") && strings.Contains(e.Object, "budget of 64") {
			return
		}
	}
	t.Fatalf("no audit record of the budget rotation: %+v", evs)
}
