package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paypage/paypage/internal/app"
	"github.com/paypage/paypage/internal/opsock"
)

// TestUnsealReadsOnlyTheOperatorsInput: unseal without --share reads the
// share from the operator's standard input, in the operator's process; an
// unseal that reaches the service without a share is refused there, and
// the service never reads its own standard input (which may be a terminal
// or a pipe someone else feeds).
func TestUnsealReadsOnlyTheOperatorsInput(t *testing.T) {
	c := &unsealCmd{}
	if err := c.prompt(strings.NewReader("  ppk1-share\n")); err != nil || c.Share != "ppk1-share" {
		t.Fatalf("prompt: %q %v", c.Share, err)
	}
	if err := (&unsealCmd{Reset: true}).prompt(strings.NewReader("ppk1-share\n")); err != nil {
		t.Fatalf("a reset reads no share: %v", err)
	}

	cfg, err := parseConfig([]string{"--data", filepath.Join(t.TempDir(), "data"), "--unseal-shares", "3"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := app.OpenVault(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// The service's own standard input holds a line (not this test's to
	// read): the service must leave it alone.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := w.WriteString("ppk1-from-the-services-stdin\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	stdin := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = stdin }()
	m := &Main{Config: cfg, Log: log}
	handle := m.serveOperators(a)
	for _, args := range []string{`{}`, `{"share": ""}`, `{"share": "ppk1-x", "reset": true}`} {
		ans := handle(context.Background(), opsock.Peer{UID: os.Getuid(), User: "alice"}, opsock.Request{Command: "unseal", Args: []byte(args), Store: storeID(cfg)})
		if ans.Error == nil || ans.Error.Code != "invalid" {
			t.Fatalf("unseal %s through the socket: %+v", args, ans)
		}
	}
	left, _ := io.ReadAll(r)
	if string(left) != "ppk1-from-the-services-stdin\n" {
		t.Fatalf("the service read its own standard input: %q left", left)
	}
	// --reset through the socket drops what was given, and is audited.
	ans := handle(context.Background(), opsock.Peer{UID: os.Getuid(), User: "alice"}, opsock.Request{Command: "unseal", Args: []byte(`{"reset": true}`), Store: storeID(cfg)})
	if ans.Error != nil || !strings.Contains(string(ans.Result), `"shares_given":0`) {
		t.Fatalf("unseal --reset: %+v %s", ans.Error, ans.Result)
	}
	evs, err := a.Audit.List(context.Background(), "", 10)
	if err != nil || len(evs) == 0 || evs[len(evs)-1].Action != "keys.unseal" || evs[len(evs)-1].Object != "reset" {
		t.Fatalf("reset not audited: %+v %v", evs, err)
	}
}
