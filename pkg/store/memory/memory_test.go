package memory_test

import (
	"testing"

	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/memory"
	"github.com/paypage/paypage/pkg/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memory.New() })
}

// BenchmarkStore is each round trip of a card payment with no I/O: the
// engines' floor.
func BenchmarkStore(b *testing.B) { storetest.Bench(b, memory.New()) }
