// Package periodic writes out, a tick at a time, what a process counts in
// memory and records a window at a time (the refusal records, the CSP
// reports), and whatever is left when it stops.
package periodic

import (
	"context"
	"log/slog"
	"time"
)

// Flush calls flush(ctx, false) every tick until ctx ends, then once more
// with all set under a fresh context of five seconds, so what was counted
// is written at shutdown too. Failures are logged under what ("refusal
// records"); the flush keeps what it could not write for the next call.
func Flush(ctx context.Context, tick time.Duration, log *slog.Logger, what string, flush func(ctx context.Context, all bool) error) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := flush(fctx, true); err != nil {
				log.Error(what+" not written at shutdown", "err", err.Error())
			}
			return
		case <-t.C:
			if err := flush(ctx, false); err != nil && ctx.Err() == nil {
				log.Warn(what+" not written yet", "err", err.Error())
			}
		}
	}
}

// Write writes items in order until one fails, and returns the items not
// written (that one and those after it) with its error: nil, nil when all
// were written.
func Write[T any](ctx context.Context, items []T, write func(context.Context, T) error) ([]T, error) {
	for i, it := range items {
		if err := write(ctx, it); err != nil {
			return items[i:], err
		}
	}
	return nil, nil
}
