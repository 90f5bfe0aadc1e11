package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"sync"
	"time"
)

// A histogram counts latencies in log-linear buckets: values below
// 2^subBits nanoseconds exactly, larger ones in 2^subBits buckets per power
// of two, so every bucket is at most 1/2^subBits (about 3%) wide relative to
// its values, from 1ns to hours, in a fixed array.
const (
	subBits    = 5
	subBuckets = 1 << subBits
	numBuckets = (64 - subBits + 1) * subBuckets
)

type histogram struct {
	counts [numBuckets]int64
	n      int64
	max    int64
	sum    int64
}

// bucketOf returns the bucket of v nanoseconds (v >= 0).
func bucketOf(v int64) int {
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits - 1 // v >> shift is in [32, 64)
	return (shift+1)*subBuckets + int(v>>shift) - subBuckets
}

// bucketHigh returns the largest value of bucket i.
func bucketHigh(i int) int64 {
	if i < subBuckets {
		return int64(i)
	}
	shift := i/subBuckets - 1
	sub := int64(i%subBuckets + subBuckets)
	if shift+subBits+1 > 62 { // (sub+1)<<shift would overflow
		return math.MaxInt64
	}
	return (sub+1)<<shift - 1
}

func (h *histogram) record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += v
	h.max = max(h.max, v)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// histogramJSON is a histogram as JSON: its non-empty buckets, as pairs
// of index and count.
type histogramJSON struct {
	N       int64      `json:"n"`
	Max     int64      `json:"max_ns"`
	Sum     int64      `json:"sum_ns"`
	Buckets [][2]int64 `json:"buckets"`
}

// MarshalJSON writes the histogram with its non-empty buckets only.
func (h *histogram) MarshalJSON() ([]byte, error) {
	j := histogramJSON{N: h.n, Max: h.max, Sum: h.sum, Buckets: [][2]int64{}}
	for i, c := range h.counts {
		if c != 0 {
			j.Buckets = append(j.Buckets, [2]int64{int64(i), c})
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (h *histogram) UnmarshalJSON(b []byte) error {
	var j histogramJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*h = histogram{n: j.N, max: j.Max, sum: j.Sum}
	var n int64
	for _, bc := range j.Buckets {
		if bc[0] < 0 || bc[0] >= numBuckets || bc[1] < 0 {
			return fmt.Errorf("histogram: bad bucket %v", bc)
		}
		h.counts[bc[0]] += bc[1]
		n += bc[1]
	}
	if n != h.n {
		return fmt.Errorf("histogram: buckets hold %d values, not %d", n, h.n)
	}
	return nil
}

// quantile returns the upper bound of the bucket that holds the q-th
// quantile (0 < q <= 1), never above the largest value recorded, so the
// answer overstates the true value by at most one bucket width.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketHigh(i), h.max))
		}
	}
	return time.Duration(h.max)
}

func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}

// recorder is a histogram many goroutines record into without sharing a
// cache line: each takes a shard from a pool, and snapshot merges them all.
type recorder struct {
	pool sync.Pool
	mu   sync.Mutex
	all  []*lockedHist
}

type lockedHist struct {
	mu sync.Mutex
	h  histogram
}

func newRecorder() *recorder {
	r := &recorder{}
	r.pool.New = func() any {
		lh := &lockedHist{}
		r.mu.Lock()
		r.all = append(r.all, lh)
		r.mu.Unlock()
		return lh
	}
	return r
}

func (r *recorder) record(d time.Duration) {
	lh := r.pool.Get().(*lockedHist)
	lh.mu.Lock() // uncontended: the shard belongs to this goroutine until Put
	lh.h.record(d)
	lh.mu.Unlock()
	r.pool.Put(lh)
}

// snapshot returns the merge of every shard.
func (r *recorder) snapshot() *histogram {
	out := &histogram{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, lh := range r.all {
		lh.mu.Lock()
		out.merge(&lh.h)
		lh.mu.Unlock()
	}
	return out
}
