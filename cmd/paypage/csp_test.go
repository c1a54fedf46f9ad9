package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paypage/paypage/internal/app"
)

// TestCSPReportsCommand: an operator reads the violation reports the pages
// received, oldest first, page by page.
func TestCSPReportsCommand(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	key := strings.Repeat("3c", 32) // an operator command makes no master key
	cfg, err := parseConfig([]string{"--data", data}, func(k string) string { return map[string]string{"PAYPAGE_MASTER_KEY": key}[k] })
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.OpenVault(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, rep := range []string{
		`{"directive":"img-src","blocked":"https://skim.example","page":"/pay/{id}","at":"2026-03-01T10:00:00Z"}`,
		`{"directive":"script-src-elem","blocked":"inline","page":"/pay/{id}/kaspi","at":"2026-03-01T10:00:01Z"}`,
	} {
		if _, err := a.Store().Append(context.Background(), "csp-reports", []byte(rep)); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	env := map[string]string{"PAYPAGE_DATA": data, "PAYPAGE_MASTER_KEY": key}
	_, out, err := paypage(t, env, "csp-reports", "--limit", "1")
	if err != nil || !strings.Contains(out, `"blocked": "https://skim.example"`) || strings.Contains(out, "script-src-elem") {
		t.Fatalf("csp-reports --limit 1: %v\n%s", err, out)
	}
	first := out[strings.Index(out, `"id": "`)+7:]
	first = first[:strings.Index(first, `"`)]
	_, out, err = paypage(t, env, "csp-reports", "--after", first)
	if err != nil || !strings.Contains(out, `"directive": "script-src-elem"`) || !strings.Contains(out, `"page": "/pay/{id}/kaspi"`) || strings.Contains(out, "img-src") {
		t.Fatalf("csp-reports --after %s: %v\n%s", first, err, out)
	}
}
