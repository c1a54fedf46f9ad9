package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/bolt"
	"github.com/paypage/paypage/pkg/store/memory"
	"github.com/paypage/paypage/pkg/store/redis"
	"github.com/paypage/paypage/pkg/store/redis/redistest"
)

// Engines opens one store of each engine for a benchmark: memory (no I/O:
// the cost of the step itself), bolt in a temporary directory, and a real
// redis-server on a free port. They close when tb ends.
func Engines(tb testing.TB) map[string]store.Store {
	tb.Helper()
	db, err := bolt.Open(filepath.Join(tb.TempDir(), "paypage.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	rdb, err := redis.Open(context.Background(), redistest.Start(tb).URL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rdb.Close() })
	return map[string]store.Store{"memory": memory.New(), "bolt": db, "redis": rdb}
}

// EachEngine runs a benchmark on each of Engines, as sub-benchmarks named
// for the engine.
func EachEngine(b *testing.B, f func(b *testing.B, s store.Store)) {
	for name, s := range Engines(b) {
		b.Run(name, func(b *testing.B) { f(b, s) })
	}
}
