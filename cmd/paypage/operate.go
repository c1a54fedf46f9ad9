package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/paypage/paypage/internal/app"
	"github.com/paypage/paypage/internal/opsock"
	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/audit"
)

// operate runs an operator command and prints its answer as JSON, and its
// warnings on stderr. When a service answers on the data directory's socket
// the command goes there: the service holds the embedded store, and the
// kernel names the operator to it. Otherwise this process opens the store.
// The same rule holds on Redis: one path for both stores, the operator's
// identity from the kernel whenever a service runs, and the commands that
// only a running service can do (unseal, seal) reach it the same way.
func (m *Main) operate(ctx context.Context, e entry, op operation) error {
	res, err := m.ask(ctx, e, op)
	if err != nil {
		return err
	}
	return printJSON(m.Stdout, res)
}

// ask runs an operator command where operate would, prints its warnings,
// and returns its answer.
func (m *Main) ask(ctx context.Context, e entry, op operation) (json.RawMessage, error) {
	args, err := json.Marshal(op)
	if err != nil {
		return nil, err
	}
	path := opsock.Path(m.Config.Data)
	ans, err := opsock.Call(ctx, path, opsock.Request{Command: e.name, Args: args, Store: storeID(m.Config)})
	switch _, only := op.(serviceOnly); {
	case errors.Is(err, opsock.ErrNoService) && only:
		err = fmt.Errorf("%s needs a running service, and none answers on %s: start \"paypage serve\" with the same --data", e.name, path)
	case errors.Is(err, opsock.ErrNoService):
		var res any
		res, ans.Warnings, err = m.operateHere(ctx, e, op)
		if err == nil {
			ans.Result, err = json.Marshal(res)
		}
	case err == nil:
		err = ans.Error.Err()
	}
	for _, w := range ans.Warnings {
		fmt.Fprintln(m.Stderr, "paypage: warning:", w)
	}
	return ans.Result, err
}

// operateHere runs an operation in this process, on a store it opens.
func (m *Main) operateHere(ctx context.Context, e entry, op operation) (any, []string, error) {
	a, err := app.OpenVault(ctx, m.Config, m.Log)
	if err != nil {
		return nil, nil, err
	}
	defer a.Close()
	return execute(ctx, a, operatorOf(opsock.Self(), "direct"), e, op)
}

// operatorOf is a peer as the audit trail names it.
func operatorOf(p opsock.Peer, via string) audit.Operator {
	o := audit.Operator{UID: p.UID, User: p.User, PID: p.PID, Via: via}
	if p.LoginUID >= 0 {
		uid := p.LoginUID
		o.LoginUID, o.Login = &uid, p.Login
	}
	return o
}

// serveOperators is the service's side of the socket: it runs what an
// operator sends on the service's own app.
func (m *Main) serveOperators(a *app.App) opsock.Handler {
	return func(ctx context.Context, p opsock.Peer, r opsock.Request) opsock.Answer {
		who := operatorOf(p, "socket")
		if r.Store != storeID(m.Config) {
			return opsock.Reply(nil, nil, apperr.E(apperr.Invalid, "this service runs on another store: give the command the service's --store"))
		}
		e, _, rest := lookup(strings.Fields(r.Command))
		var op operation
		if e != nil && len(rest) == 0 {
			op, _ = e.new().(operation)
		}
		if op == nil {
			return opsock.Reply(nil, nil, apperr.E(apperr.Invalid, "%q is not an operator command", r.Command))
		}
		dec := json.NewDecoder(bytes.NewReader(r.Args))
		dec.DisallowUnknownFields()
		if err := dec.Decode(op); err != nil && !errors.Is(err, io.EOF) {
			return opsock.Reply(nil, nil, apperr.E(apperr.Invalid, "arguments of %s: %v", e.name, err))
		}
		if ch, ok := op.(checker); ok {
			if err := ch.check(); err != nil {
				return opsock.Reply(nil, nil, apperr.E(apperr.Invalid, "%s: %v", e.name, err))
			}
		}
		m.Log.Info("operator command", "command", e.name, "user", p.User, "uid", p.UID, "login", p.Login, "pid", p.PID)
		return opsock.Reply(execute(ctx, a, who, *e, op))
	}
}

// storeID names the store a configuration means, without its secrets, so
// the service can refuse a command meant for another store.
func storeID(c Config) string {
	if c.Store == "" || c.Store == "bolt" {
		return "bolt"
	}
	h := sha256.Sum256([]byte(c.Store))
	return "redis:" + hex.EncodeToString(h[:8])
}

func printJSON(w io.Writer, v any) error {
	if raw, ok := v.(json.RawMessage); ok {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return err
		}
		buf.WriteByte('\n')
		_, err := w.Write(buf.Bytes())
		return err
	}
	out := json.NewEncoder(w)
	out.SetIndent("", "  ")
	return out.Encode(v)
}

// call is what an operation works with: the opened app, and what it leaves
// for the audit record and the operator.
type call struct {
	app       *app.App
	who       audit.Operator
	object    string   // what the audit record names
	merchants []string // the merchants it concerns: one audit record each
	also      []string // audit actions it did beside its entry's
	warnings  []string
}

// concerns names the merchants an operation concerns, for the audit trail.
func (c *call) concerns(merchants ...string) { c.merchants = append(c.merchants, merchants...) }

// warn tells the operator something worth knowing; the command still runs.
func (c *call) warn(format string, args ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf(format, args...))
}

// auditTimeout bounds the writing of an operation's audit records once
// it has run, whether or not its caller is still there.
const auditTimeout = 10 * time.Second

// execute runs an operation on an opened app and records it in the audit
// trail, with who ran it, when its entry names an audit action. The
// records are written even when ctx ended meanwhile (the caller went away
// after the change was made): a change is never left unaudited because
// its operator pressed Ctrl-C.
func execute(ctx context.Context, a *app.App, who audit.Operator, e entry, op operation) (any, []string, error) {
	c := &call{app: a, who: who}
	res, err := op.do(ctx, c)
	if e.audit == "" {
		return res, c.warnings, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	merchants := c.merchants
	if len(merchants) == 0 {
		merchants = []string{""}
	}
	for _, action := range append([]string{e.audit}, c.also...) {
		for _, m := range merchants {
			if aerr := a.AuditOperator(ctx, who, action, c.object, m, err); aerr != nil && err == nil {
				c.warn("done, but the audit record could not be written: %v", aerr)
				return res, c.warnings, err
			}
		}
	}
	return res, c.warnings, err
}
