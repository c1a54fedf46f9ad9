package audit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/audit"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/memory"
)

var ctx = context.Background()

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// flaky is a store whose appends fail while down is set.
type flaky struct {
	store.Store
	mu   sync.Mutex
	down bool
}

func (f *flaky) Append(ctx context.Context, log string, data []byte) (string, error) {
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if down {
		return "", store.ErrUnavailable
	}
	return f.Store.Append(ctx, log, data)
}

func newLog(t *testing.T) (*audit.Log, *clock, *flaky) {
	t.Helper()
	st := &flaky{Store: memory.New()}
	l := audit.New(st)
	c := &clock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	l.Now = c.Now
	return l, c, st
}

func all(t *testing.T, l *audit.Log) []audit.Event {
	t.Helper()
	evs, err := l.List(ctx, "", 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// A thousand refusals from one source in one window are one record with a
// count, written when the window ends; another source has its own.
func TestRefusalsOneRecordPerWindow(t *testing.T) {
	t.Parallel()
	l, c, _ := newLog(t)
	r := audit.NewRefusals(l, time.Minute, 100, nil)
	for i := 0; i < 1000; i++ {
		if n := r.Add(audit.Event{Actor: "unknown", Action: "detokenize", Source: "192.0.2.1", Reason: "unauthorized"}); n != int64(i+1) {
			t.Fatalf("refusal %d counted %d", i+1, n)
		}
		c.Advance(10 * time.Millisecond)
	}
	r.Add(audit.Event{Actor: "unknown", Action: "detokenize", Source: "2001:db8:1:2::/64", Reason: "unauthorized"})
	if err := r.Flush(ctx, false); err != nil || len(all(t, l)) != 0 {
		t.Fatalf("records written before the window ended: %v %v", all(t, l), err)
	}
	// An operator reading the trail sees the counts so far; the limit's
	// count of the source stays.
	if err := r.Flush(ctx, true); err != nil || len(all(t, l)) != 2 || all(t, l)[0].Count+all(t, l)[1].Count != 1001 {
		t.Fatalf("early flush: %+v %v", all(t, l), err)
	}
	if n := r.Count("192.0.2.1"); n != 1000 {
		t.Fatalf("the early flush reset the source's count to %d", n)
	}
	for i := 0; i < 5; i++ {
		r.Add(audit.Event{Actor: "unknown", Action: "detokenize", Source: "192.0.2.1", Reason: "unauthorized"})
	}
	c.Advance(time.Minute)
	if r.Count("192.0.2.1") != 0 {
		t.Fatal("counts carried into the next window")
	}
	if err := r.Flush(ctx, false); err != nil {
		t.Fatal(err)
	}
	evs := all(t, l)
	if len(evs) != 3 || evs[2].Count != 5 {
		t.Fatalf("%d records: %+v", len(evs), evs)
	}
	for _, e := range evs[:2] {
		want := int64(1)
		if e.Source == "192.0.2.1" {
			want = 1000
		}
		if e.Count != want || e.Outcome != audit.Failure || e.Reason != "unauthorized" || e.First.IsZero() || e.Last.Before(e.First) {
			t.Errorf("record %+v", e)
		}
	}
}

// Past the bound on sources, the rest of a window's refusals are one
// record under OtherSources, and are counted in shared slots: each at least
// its own count, some with others'.
func TestRefusalsBoundTheirMemory(t *testing.T) {
	t.Parallel()
	l, c, _ := newLog(t)
	r := audit.NewRefusals(l, time.Minute, 10, nil)
	shared := 0
	for i := 0; i < 5000; i++ {
		n := r.Add(audit.Event{Actor: "unknown", Action: "authenticate", Source: fmt.Sprintf("198.51.%d.%d", i/250, i%250), Reason: "unauthorized"})
		if n < 1 || i < 10 && n != 1 {
			t.Fatalf("source %d counted %d", i, n)
		}
		if n > 1 {
			shared++
		}
	}
	if shared == 0 || shared > 2500 {
		t.Errorf("%d of 4,990 sources past the bound shared a slot with an earlier one", shared)
	}
	c.Advance(time.Minute)
	if err := r.Flush(ctx, false); err != nil {
		t.Fatal(err)
	}
	evs := all(t, l)
	if len(evs) != 11 {
		t.Fatalf("%d records for 5,000 sources", len(evs))
	}
	var others int64
	for _, e := range evs {
		if e.Source == audit.OtherSources {
			others = e.Count
		}
	}
	if others != 4990 {
		t.Fatalf("other sources: %d", others)
	}
}

// A source past the bound is still held back: a window that has seen its
// bound of sources counts a further source's refusals in its slot, so the
// refusal limit (web: Count(source) >= max -> 429) applies to it, and a
// source never refused is not held back while the table has room.
func TestRefusalsPastTheBoundStillCount(t *testing.T) {
	t.Parallel()
	l, _, _ := newLog(t)
	r := audit.NewRefusals(l, time.Minute, 3, nil)
	if n := r.Count("203.0.113.66"); n != 0 {
		t.Fatalf("a source never refused counts %d", n)
	}
	for i := 0; i < 3; i++ { // three sources fill the table with one refusal each
		r.Add(audit.Event{Actor: "unknown", Action: "detokenize", Reason: "unauthorized", Source: fmt.Sprintf("198.51.100.%d", i)})
	}
	const flood = 1000
	for i := 0; i < flood; i++ {
		r.Add(audit.Event{Actor: "unknown", Action: "detokenize", Reason: "unauthorized", Source: "203.0.113.66"})
	}
	if n := r.Count("203.0.113.66"); n < flood {
		t.Fatalf("a fourth source made %d refused calls and its count is %d: the limit of 30 never applies to it", flood, n)
	}
	if n := r.Count("198.51.100.1"); n != 1 {
		t.Errorf("a tracked source's count moved with a folded one's: %d", n)
	}
}

// Records the store refuses are kept for the next flush; a shutdown flush
// writes the window in progress.
func TestRefusalsSurviveAnOutage(t *testing.T) {
	t.Parallel()
	l, c, st := newLog(t)
	r := audit.NewRefusals(l, time.Minute, 100, nil)
	r.Add(audit.Event{Actor: "unknown", Action: "detokenize", Source: "192.0.2.1", Reason: "unauthorized"})
	c.Advance(time.Minute)
	st.down = true
	if err := r.Flush(ctx, false); err == nil {
		t.Fatal("a flush to a store that is down succeeded")
	}
	r.Add(audit.Event{Actor: "unknown", Action: "detokenize", Source: "192.0.2.9", Reason: "forbidden"})
	st.down = false
	if err := r.Flush(ctx, true); err != nil {
		t.Fatal(err)
	}
	if evs := all(t, l); len(evs) != 2 || evs[0].Source != "192.0.2.1" || evs[1].Source != "192.0.2.9" {
		t.Fatalf("records %+v", evs)
	}
}

// The trail is capped only by what was exported: Trim removes exported
// records past Keep, never one that was not exported; the mark moves only
// from where an export began.
func TestExportMarkAndTrim(t *testing.T) {
	t.Parallel()
	l, _, _ := newLog(t)
	l.Keep = 3
	for i := 0; i < 10; i++ {
		if err := l.Record(ctx, audit.Event{Actor: "system", Action: fmt.Sprint("a", i), Outcome: audit.Success}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := l.Trim(ctx); err != nil || n != 0 {
		t.Fatalf("trimmed %d unexported records: %v", n, err)
	}
	m, evs, err := l.Unexported(ctx, 4)
	if err != nil || m.Through != "" || len(evs) != 4 {
		t.Fatalf("unexported: %+v %d %v", m, len(evs), err)
	}
	if _, err := l.MarkExported(ctx, "", "no-such-record"); err == nil {
		t.Fatal("a mark past no record")
	}
	m, err = l.MarkExported(ctx, "", evs[3].ID)
	if err != nil || m.Through != evs[3].ID || m.Exported != 4 {
		t.Fatalf("mark: %+v %v", m, err)
	}
	if _, err := l.MarkExported(ctx, "", evs[3].ID); !errors.Is(err, audit.ErrMarkMoved) {
		t.Fatalf("a second export from the old mark: %v", err)
	}
	if n, err := l.Trim(ctx); err != nil || n != 4 || len(all(t, l)) != 6 {
		t.Fatalf("trim after exporting 4 of 10 with Keep 3: removed %d, %d left, %v", n, len(all(t, l)), err)
	}
	m, evs, _ = l.Unexported(ctx, 100)
	if len(evs) != 6 || evs[0].Action != "a4" {
		t.Fatalf("unexported after the trim: %+v", evs)
	}
	if m, err = l.MarkExported(ctx, m.Through, evs[5].ID); err != nil || m.Exported != 10 {
		t.Fatalf("second mark: %+v %v", m, err)
	}
	if n, err := l.Trim(ctx); err != nil || n != 3 {
		t.Fatalf("final trim: %d %v", n, err)
	}
	if left := all(t, l); len(left) != 3 || left[0].Action != "a7" {
		t.Fatalf("left %+v", left)
	}
}
