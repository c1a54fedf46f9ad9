package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/paypage/paypage/pkg/audit"
)

// auditListCmd reads the audit trail.
type auditListCmd struct {
	Merchant string `json:"merchant"`
	After    string `json:"after"`
	Limit    int    `json:"limit"`
}

func (c *auditListCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.After, "after", "", "list the records after this record `ID`")
	fs.IntVar(&c.Limit, "limit", 100, "at most this `many`")
	fs.StringVar(&c.Merchant, "merchant", "", "only the records that concern this merchant (merchant `ID`)")
}

func (c *auditListCmd) do(ctx context.Context, k *call) (any, error) {
	k.app.WriteRefusals(ctx)
	return k.app.Audit.Filter(ctx, c.Merchant, c.After, c.Limit)
}

// auditUnexportedCmd reads the records after the export mark, or after a
// record past it (an export that does not move the mark pages on so).
type auditUnexportedCmd struct {
	After string `json:"after"`
	Limit int    `json:"limit"`
}

func (c *auditUnexportedCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.After, "after", "", "the records after this record `ID` instead of after the mark")
	fs.IntVar(&c.Limit, "limit", 1000, "at most this `many`")
}

// unexported is the answer of audit unexported.
type unexported struct {
	Mark    audit.Mark    `json:"mark"`
	Records []audit.Event `json:"records"`
}

func (c *auditUnexportedCmd) do(ctx context.Context, k *call) (any, error) {
	k.app.WriteRefusals(ctx)
	if c.After == "" {
		m, evs, err := k.app.Audit.Unexported(ctx, c.Limit)
		return unexported{Mark: m, Records: evs}, err
	}
	m, _, err := k.app.Audit.ExportMark(ctx)
	if err != nil {
		return nil, err
	}
	evs, err := k.app.Audit.List(ctx, c.After, c.Limit)
	return unexported{Mark: m, Records: evs}, err
}

// auditMarkExportedCmd moves the export mark, then trims the trail.
type auditMarkExportedCmd struct {
	After   string `json:"after"`
	Through string `json:"through"`
}

func (c *auditMarkExportedCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.After, "after", "", "the `ID` the mark is at now (empty: nothing exported yet)")
	fs.StringVar(&c.Through, "through", "", "the last exported record's `ID` (required)")
}

func (c *auditMarkExportedCmd) check() error { return need(c.Through, "through") }

func (c *auditMarkExportedCmd) do(ctx context.Context, k *call) (any, error) {
	k.object = c.Through
	m, err := k.app.Audit.MarkExported(ctx, c.After, c.Through)
	if err != nil {
		return nil, err
	}
	n, err := k.app.Audit.Trim(ctx)
	if err != nil {
		k.warn("marked, but not trimmed: %v", err)
	}
	return map[string]any{"mark": m, "trimmed": n}, nil
}

// auditExportCmd writes the records not yet exported as JSON lines, a batch
// at a time, and marks each batch exported once it is written and synced: a
// failure leaves the mark where the output ends. Output that cannot be
// synced (a pipe, a terminal, a socket: stdout most often) is not known to
// be safe when the write returns, so the mark stays unless --mark says the
// reader keeps what it is given; the command then says how to move it
// (audit mark-exported). Moving the mark is itself audited, so that record
// waits for the next export.
type auditExportCmd struct {
	Out   string
	Batch int
	Mark  bool
}

func (c *auditExportCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Out, "out", "", "append to this `FILE` (mode 0600), synced before the mark moves (default: stdout, synced when it is a file)")
	fs.IntVar(&c.Batch, "batch", 1000, "records per batch: each is written, then marked")
	fs.BoolVar(&c.Mark, "mark", false, "move the mark even when the output cannot be synced (a pipe or a terminal): the reader has kept every line")
}

// syncable returns how to sync w when it is a regular file, and false for
// anything else (a pipe, a terminal, a socket), whose written bytes may
// still be lost.
func syncable(w io.Writer) (func() error, bool) {
	f, ok := w.(*os.File)
	if !ok {
		return nil, false
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return nil, false
	}
	return f.Sync, true
}

func (c *auditExportCmd) run(ctx context.Context, m *Main) error {
	if c.Batch <= 0 {
		return usagef("audit export: --batch must be positive")
	}
	w := m.Stdout
	if c.Out != "" {
		f, err := os.OpenFile(c.Out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	sync, safe := syncable(w)
	if !safe {
		sync = func() error { return nil }
	}
	marking := safe || c.Mark
	var (
		total int64
		mark  audit.Mark
		after string // where the next batch starts, when the mark stays
	)
	for {
		raw, err := m.ask(ctx, entryNamed("audit unexported"), &auditUnexportedCmd{After: after, Limit: c.Batch})
		if err != nil {
			return err
		}
		var u unexported
		if err := json.Unmarshal(raw, &u); err != nil {
			return err
		}
		mark = u.Mark
		if after == "" {
			after = u.Mark.Through
		}
		if len(u.Records) == 0 {
			break
		}
		enc := json.NewEncoder(w)
		for _, e := range u.Records {
			if err := enc.Encode(e); err != nil {
				return fmt.Errorf("writing the export (the mark stays at %q): %w", u.Mark.Through, err)
			}
		}
		if err := sync(); err != nil {
			return fmt.Errorf("syncing the export (the mark stays at %q): %w", u.Mark.Through, err)
		}
		last := u.Records[len(u.Records)-1].ID
		total += int64(len(u.Records))
		if !marking {
			after = last
			if len(u.Records) < c.Batch {
				break
			}
			continue
		}
		raw, err = m.ask(ctx, entryNamed("audit mark-exported"), &auditMarkExportedCmd{After: u.Mark.Through, Through: last})
		if err != nil {
			return err
		}
		var res struct {
			Mark audit.Mark `json:"mark"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return err
		}
		mark, after = res.Mark, ""
		if len(u.Records) < c.Batch {
			break // the rest (the record of this mark, for one) goes with the next export
		}
	}
	if !marking && total > 0 {
		fmt.Fprintf(m.Stderr, "paypage: wrote %d records to output that cannot be synced (a pipe or a terminal), so the mark stays at %q "+
			"and nothing is trimmed. Once they are safe, move it:\n  paypage audit mark-exported --after %q --through %q\n"+
			"(or export with --out FILE, which is synced, or with --mark when the reader keeps every line)\n", total, mark.Through, mark.Through, after)
		return nil
	}
	fmt.Fprintf(m.Stderr, "paypage: exported %d records; the mark is at %q (%d exported in all)\n", total, mark.Through, mark.Exported)
	return nil
}
