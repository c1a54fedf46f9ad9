// Command paypage is the hosted payment page and card vault: one binary with
// the service and the operator's subcommands.
//
//	paypage serve
//	paypage merchant add --name N [--webhook-url U]
//	paypage merchant set-webhook --id ID --webhook-url U [--roll-secret]
//	paypage processor add --name N
//	paypage keys status|rotate|reencrypt
//	paypage keys rewrap --new-master-key-file F
//	paypage audit list [--after ID] [--limit N]
//	paypage events list|resend
//
// Every subcommand reads the same settings as flags or PAYPAGE_* variables.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/paypage/paypage/internal/app"
	"github.com/paypage/paypage/pkg/vault"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "paypage:", err)
		}
		os.Exit(2)
	}
}

const usage = `paypage: a hosted payment page and card vault

Usage:
  paypage serve                                   run the service
  paypage merchant add --name N [--webhook-url U] add a shop; prints its secrets once
  paypage merchant set-webhook --id ID --webhook-url U [--roll-secret]
  paypage processor add --name N                  add a processor credential; prints it once
  paypage keys status|rotate|reencrypt            data keys: state, new version, move old records
  paypage keys rewrap --new-master-key-file F     wrap the data keys under a new master key
  paypage audit list [--after ID] [--limit N]     read the audit trail
  paypage events list [--merchant ID]|resend --id EVT

Settings (flags or environment): --addr PAYPAGE_ADDR, --data PAYPAGE_DATA,
--store PAYPAGE_STORE, --public-url PAYPAGE_PUBLIC_URL,
--master-key-file PAYPAGE_MASTER_KEY_FILE. Run a subcommand with -h for all.
`

// run dispatches a command line; main and the tests call it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	cmd, rest := args[0], args[1:]
	sub := ""
	if cmd != "serve" && len(rest) > 0 && len(rest[0]) > 0 && rest[0][0] != '-' {
		sub, rest = rest[0], rest[1:]
	}
	name := cmd
	if sub != "" {
		name += " " + sub
	}
	var flagName, flagWebhook, flagID, flagAfter, flagMerchant, flagNewKey string
	var flagLimit int
	var flagRoll bool
	cfg, _, err := parseConfig("paypage "+name, rest, getenv, func(fs *flag.FlagSet) {
		fs.SetOutput(stderr)
		switch cmd + " " + sub {
		case "merchant add":
			fs.StringVar(&flagName, "name", "", "the shop's name, as shoppers see it")
			fs.StringVar(&flagWebhook, "webhook-url", "", "where events are delivered")
		case "merchant set-webhook":
			fs.StringVar(&flagID, "id", "", "merchant ID")
			fs.StringVar(&flagWebhook, "webhook-url", "", "where events are delivered (empty: none)")
			fs.BoolVar(&flagRoll, "roll-secret", false, "also make a new signing secret, printed once")
		case "processor add":
			fs.StringVar(&flagName, "name", "", "the processor's name")
		case "audit list", "events list":
			fs.StringVar(&flagAfter, "after", "", "list after this ID")
			fs.IntVar(&flagLimit, "limit", 100, "how many")
			fs.StringVar(&flagMerchant, "merchant", "", "only this merchant's events")
		case "events resend":
			fs.StringVar(&flagID, "id", "", "event ID")
		case "keys rewrap":
			fs.StringVar(&flagNewKey, "new-master-key-file", "", "the new master key (64 hex characters, mode 0600)")
		}
	})
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)
	if cmd == "serve" {
		return serve(ctx, cfg, log)
	}
	a, err := app.OpenVault(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	out := json.NewEncoder(stdout)
	out.SetIndent("", "  ")
	switch cmd + " " + sub {
	case "merchant add":
		m, err := a.Accounts.AddMerchant(ctx, flagName, flagWebhook)
		if err != nil {
			return err
		}
		return out.Encode(m)
	case "merchant set-webhook":
		if err := a.Accounts.SetWebhookURL(ctx, flagID, flagWebhook); err != nil {
			return err
		}
		res := map[string]string{"id": flagID, "webhook_url": flagWebhook}
		if flagRoll {
			secret, err := a.Accounts.RollWebhookSecret(ctx, flagID)
			a.AuditOperator(ctx, "merchant.roll_webhook_secret", flagID, err)
			if err != nil {
				return err
			}
			res["webhook_secret"] = secret
		}
		return out.Encode(res)
	case "processor add":
		p, err := a.Accounts.AddProcessor(ctx, flagName)
		if err != nil {
			return err
		}
		return out.Encode(p)
	case "keys status":
		st, err := a.Vault.Status(ctx)
		if err != nil {
			return err
		}
		return out.Encode(st)
	case "keys rotate":
		v, err := a.Vault.Rotate(ctx)
		a.AuditOperator(ctx, "keys.rotate", fmt.Sprintf("v%d", v), err)
		if err != nil {
			return err
		}
		return out.Encode(map[string]any{"active_version": v})
	case "keys reencrypt":
		res, err := a.Vault.Reencrypt(ctx)
		a.AuditOperator(ctx, "keys.reencrypt", fmt.Sprintf("moved %d", res.Moved), err)
		if err != nil {
			return fmt.Errorf("re-encryption stopped after moving %d records (run it again to resume): %w", res.Moved, err)
		}
		return out.Encode(res)
	case "keys rewrap":
		next, err := vault.LoadKEKFile(flagNewKey)
		if err != nil {
			return err
		}
		err = a.Vault.Rewrap(ctx, next)
		a.AuditOperator(ctx, "keys.rewrap", next.ID(), err)
		if err != nil {
			return err
		}
		return out.Encode(map[string]string{"kek": next.ID(), "next": "restart every replica with the new master key"})
	case "audit list":
		evs, err := a.Audit.List(ctx, flagAfter, flagLimit)
		if err != nil {
			return err
		}
		return out.Encode(evs)
	case "events list":
		return a.ListEvents(ctx, out, flagMerchant, flagAfter, flagLimit)
	case "events resend":
		return a.ResendEvent(ctx, out, flagID)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", name)
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
