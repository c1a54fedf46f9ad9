package redis

import (
	"context"
	"sync"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"
)

// batcher sends the commands of concurrent callers to Redis together. Each
// of its loops takes every call waiting when it starts a round trip and
// sends their commands in one pipeline: under load many calls share one
// round trip (one write and one read on each side) instead of a connection
// each, and a lone call waits for nothing. A call's commands go out
// together, in order, in the same pipeline.
type batcher struct {
	c      goredis.UniversalClient
	queue  chan *call
	mu     sync.RWMutex // held to send on queue; closed under it
	closed bool
	wg     sync.WaitGroup
	trips  atomic.Int64
}

// call is one caller's commands, and the signal that their answers are in.
type call struct {
	cmds []goredis.Cmder
	done chan struct{}
}

const (
	// batchLoops is how many round trips may be in flight at once.
	batchLoops = 4
	// maxBatch bounds the commands of one round trip.
	maxBatch = 512
)

func newBatcher(c goredis.UniversalClient) *batcher {
	b := &batcher{c: c, queue: make(chan *call, maxBatch)}
	b.wg.Add(batchLoops)
	for range batchLoops {
		go b.loop()
	}
	return b
}

// do sends cmds in the next round trip and waits for their answers, each
// in its command. It gives up waiting when ctx ends (the commands may still
// run, as with any request whose answer is lost).
func (b *batcher) do(ctx context.Context, cmds ...goredis.Cmder) error {
	c := &call{cmds: cmds, done: make(chan struct{})}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return goredis.ErrClosed
	}
	select {
	case b.queue <- c:
	case <-ctx.Done():
		b.mu.RUnlock()
		return ctx.Err()
	}
	b.mu.RUnlock()
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop sends what waits, a round trip at a time, until the batcher closes
// and the last call is answered.
func (b *batcher) loop() {
	defer b.wg.Done()
	batch := make([]*call, 0, maxBatch)
	for c := range b.queue {
		batch = append(batch[:0], c)
		n := len(c.cmds)
	more:
		for n < maxBatch {
			select {
			case c, ok := <-b.queue:
				if !ok {
					break more
				}
				batch = append(batch, c)
				n += len(c.cmds)
			default:
				break more
			}
		}
		b.send(batch)
	}
}

// send runs a batch's commands in one pipeline and wakes their callers.
func (b *batcher) send(batch []*call) {
	b.trips.Add(1)
	ctx := context.Background() // the client's own timeouts bound the trip
	_, _ = b.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, c := range batch {
			for _, cmd := range c.cmds {
				_ = p.Process(ctx, cmd)
			}
		}
		return nil
	})
	for _, c := range batch {
		close(c.done)
	}
}

// close answers what is queued, then stops the loops.
func (b *batcher) close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.queue)
	}
	b.mu.Unlock()
	b.wg.Wait()
}
