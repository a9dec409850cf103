package bitmap

import (
	"math/rand/v2"
	"testing"
)

func benchSparse(b *testing.B) *HBitmap {
	b.Helper()
	h, _ := New(1<<40, 64<<10)
	rng := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		h.Set(rng.Int64N(1<<20)<<20, 1<<20)
	}
	return h
}

// BenchmarkDecodeOnly measures the iterator's batch decoder alone on the
// sparse case of bench/BenchmarkHBitmapIterateSparse (1 TiB, 64 KiB
// granularity, 1,000 areas), without NextArea's per-call cost.
func BenchmarkDecodeOnly(b *testing.B) {
	h := benchSparse(b)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n = 0
		it := h.Iterator(0)
		it.rebuild(0)
		it.batch = maxBatch
		for {
			it.decode()
			if it.an == it.ai {
				break
			}
			n += it.an - it.ai
			it.batch = maxBatch
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/area")
}
