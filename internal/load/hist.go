package load

import (
	"math/bits"
	"time"
)

// hist is a latency histogram of fixed size: values in microseconds, in
// buckets of 1/subBuckets of a power of two (under 1.6% apart), so a
// ten-minute run costs the same memory as a ten-second one and percentiles
// stay within a bucket's width of the truth.
type hist struct {
	counts [64 * subBuckets]uint64
	n      uint64
	sum    time.Duration
	max    time.Duration
}

const (
	subBits    = 6
	subBuckets = 1 << subBits
)

// bucketOf is the bucket of a value in microseconds: values under
// subBuckets have a bucket each; above, each power of two is cut in
// subBuckets.
func bucketOf(us uint64) int {
	if us < subBuckets {
		return int(us)
	}
	exp := bits.Len64(us) - subBits // at least 1
	return exp*subBuckets + int(us>>(exp-1)&(subBuckets-1))
}

// lowerOf is the smallest value of a bucket, in microseconds.
func lowerOf(b int) uint64 {
	if b < subBuckets {
		return uint64(b)
	}
	exp := b / subBuckets
	return (subBuckets | uint64(b%subBuckets)) << (exp - 1)
}

// add records one latency.
func (h *hist) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d/time.Microsecond))]++
	h.n++
	h.sum += d
	h.max = max(h.max, d)
}

// merge adds another histogram's counts.
func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the latency below which a share q of the values fall: the
// middle of the bucket that holds the value of rank ceil(q*n), capped at the
// largest value seen.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.9999999)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for b, c := range h.counts {
		if seen += c; seen >= rank {
			lo, hi := lowerOf(b), lowerOf(b+1)
			d := time.Duration(lo+(hi-lo)/2) * time.Microsecond
			return min(d, h.max)
		}
	}
	return h.max
}

// mean is the average latency.
func (h *hist) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}
