package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paypage/paypage/internal/app"
	"github.com/paypage/paypage/pkg/audit"
)

// Review of issue 12: "each subcommand's --help shows its own flags and the
// settings it reads". With a bad value in the environment (one the operator
// is asking help about, typically) --help fails with exit 2 instead: the
// settings are parsed before the flags (commands.go flagSets -> addSettings).
func TestReview12HelpDespiteBadEnvironment(t *testing.T) {
	t.Parallel()
	for _, env := range []string{"PAYPAGE_LIMIT_CARD_PER_DAY=ten", "PAYPAGE_WEBHOOK_ALLOW_PRIVATE=yes"} {
		k, v, _ := strings.Cut(env, "=")
		var out, errb bytes.Buffer
		err := run(context.Background(), []string{"merchant", "add", "--help"}, func(name string) string {
			if name == k {
				return v
			}
			return ""
		}, &out, &errb)
		if err != nil || !strings.Contains(out.String(), "Usage: paypage merchant add") {
			t.Errorf("%s: merchant add --help: %v\n%s", env, err, out.String()+errb.String())
		}
	}
}

// cancelAfter runs an operation and then cancels its context, as the
// operator socket does when the caller goes away (Ctrl-C) after the change
// is committed but before execute has written its audit record.
type cancelAfter struct {
	operation
	cancel context.CancelFunc
}

func (c cancelAfter) do(ctx context.Context, k *call) (any, error) {
	res, err := c.operation.do(ctx, k)
	c.cancel()
	return res, err
}

// A change made through the socket whose caller leaves just after it is
// committed is not audited: execute writes the record with the request's
// context, which the socket has cancelled (operate.go execute ->
// App.AuditOperator(ctx, ...)). The merchant exists; no record names who
// made it. (keys reencrypt interrupted by Ctrl-C goes the same way: the
// records moved so far are never audited.)
func TestReview12AuditedEvenIfCallerLeaves(t *testing.T) {
	t.Parallel()
	cfg, err := parseConfig([]string{"--data", filepath.Join(t.TempDir(), "data")}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.OpenVault(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	who := audit.Operator{UID: 1000, User: "alice", PID: 42, Via: "socket"}
	_, warnings, err := execute(ctx, a, who, entryNamed("merchant add"), cancelAfter{&merchantAddCmd{Name: "Shop"}, cancel})
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := a.Accounts.ListMerchants(context.Background())
	evs, _ := a.Audit.List(context.Background(), "", 100)
	if len(ms) == 1 && len(evs) == 0 {
		t.Fatalf("merchant %s was added by alice through the socket, and the audit trail is empty (warnings to a caller that has gone: %q)", ms[0].ID, warnings)
	}
}
