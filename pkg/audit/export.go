package audit

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/paypage/paypage/pkg/apperr"
	"github.com/paypage/paypage/pkg/store"
)

// Mark is how far the trail has been exported: every record up to and
// including Through. Only exported records may be trimmed.
type Mark struct {
	Through  string    `json:"through,omitempty"` // the last exported record's ID ("": none yet)
	Exported int64     `json:"exported"`          // how many records were exported, all told
	Time     time.Time `json:"time,omitzero"`     // when the mark last moved
}

var markKey = store.K("audit_export", "mark")

// ExportMark reads the mark and its version.
func (l *Log) ExportMark(ctx context.Context) (Mark, int64, error) {
	r, err := l.store.Get(ctx, markKey)
	if errors.Is(err, store.ErrNotFound) {
		return Mark{}, 0, nil
	}
	if err != nil {
		return Mark{}, 0, err
	}
	var m Mark
	if err := json.Unmarshal(r.Value, &m); err != nil {
		return Mark{}, 0, err
	}
	return m, r.Version, nil
}

// Unexported returns up to limit records after the mark, oldest first, and
// the mark they follow.
func (l *Log) Unexported(ctx context.Context, limit int) (Mark, []Event, error) {
	m, _, err := l.ExportMark(ctx)
	if err != nil {
		return m, nil, err
	}
	evs, err := l.List(ctx, m.Through, limit)
	return m, evs, err
}

// ErrMarkMoved refuses to move a mark that another export moved first.
var ErrMarkMoved = apperr.E(apperr.Conflict, "the export mark moved meanwhile: another export ran; export again")

// MarkExported moves the mark from after (where the caller's export began)
// to through (the last record it wrote), once the records are safe
// elsewhere; it refuses if the mark is no longer at after, or if through is
// not a record past it. It returns the new mark.
func (l *Log) MarkExported(ctx context.Context, after, through string) (Mark, error) {
	m, ver, err := l.ExportMark(ctx)
	if err != nil {
		return m, err
	}
	if m.Through != after {
		return m, ErrMarkMoved
	}
	n, err := l.countThrough(ctx, after, through)
	if err != nil {
		return m, err
	}
	next := Mark{Through: through, Exported: m.Exported + n, Time: l.Now().UTC()}
	b, _ := json.Marshal(next)
	op := store.Update(markKey, b, ver)
	if ver == 0 {
		op = store.Create(markKey, b, 0)
	}
	if err := l.store.Commit(ctx, op); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return m, ErrMarkMoved
		}
		return m, err
	}
	return next, nil
}

// countThrough counts the records after after up to through, which must be one.
func (l *Log) countThrough(ctx context.Context, after, through string) (int64, error) {
	var n int64
	for cur := after; ; {
		page, err := l.store.Read(ctx, logName, cur, 1000)
		if err != nil {
			return 0, err
		}
		for _, e := range page {
			n++
			if e.ID == through {
				return n, nil
			}
		}
		if len(page) == 0 {
			return 0, apperr.Field("through", "%q is not a record after the export mark", through)
		}
		cur = page[len(page)-1].ID
	}
}

// Trim removes the oldest exported records while more than Keep remain,
// and returns how many it removed. Unexported records stay, whatever Keep.
func (l *Log) Trim(ctx context.Context) (int, error) {
	if l.Keep <= 0 {
		return 0, nil
	}
	m, _, err := l.ExportMark(ctx)
	if err != nil || m.Through == "" {
		return 0, err
	}
	return l.store.TrimLog(ctx, logName, m.Through, l.Keep)
}
