package periodic_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/periodic"
)

func TestWrite(t *testing.T) {
	t.Parallel()
	var wrote []int
	write := func(_ context.Context, n int) error {
		if n == 3 {
			return errors.New("down")
		}
		wrote = append(wrote, n)
		return nil
	}
	rest, err := periodic.Write(context.Background(), []int{1, 2, 3, 4}, write)
	if err == nil || !slices.Equal(rest, []int{3, 4}) || !slices.Equal(wrote, []int{1, 2}) {
		t.Fatalf("rest %v, wrote %v, err %v", rest, wrote, err)
	}
	if rest, err := periodic.Write(context.Background(), []int{1, 2}, write); rest != nil || err != nil {
		t.Fatalf("all written: rest %v, err %v", rest, err)
	}
}

// When its context ends, Flush writes everything once more, under a
// context of its own that has not ended.
func TestFlushAtTheEnd(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var calls []bool
	cancel()
	periodic.Flush(ctx, time.Hour, slog.Default(), "test records", func(fctx context.Context, all bool) error {
		if fctx.Err() != nil {
			t.Error("the last flush runs under an ended context")
		}
		calls = append(calls, all)
		return nil
	})
	if !slices.Equal(calls, []bool{true}) {
		t.Fatalf("flushes %v, want one of everything", calls)
	}
}
