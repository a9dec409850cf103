package throttle

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the process's user+system CPU time. Benchmarks report it
// per operation ("cpu-ns/op") beside the wall-clock ns/op, which on a
// shared, overloaded machine includes time the benchmark was not running.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkClockNow is the cost of one reading of the default clock, which
// every throttled Wait needs (QEMU reads its clock on every request too).
func BenchmarkClockNow(b *testing.B) {
	c := systemClock
	var sink time.Duration
	start := cpuTime()
	for b.Loop() {
		sink += c.Now()
	}
	reportCPU(b, start)
	_ = sink
}

// The hot path: a request that needs no wait.

// benchWait times m.Wait of bytes-byte writes that are admitted at once.
func benchWait(b *testing.B, m *Member, bytes int64) {
	ctx := context.Background()
	b.ReportAllocs()
	start := cpuTime()
	defer reportCPU(b, start)
	for b.Loop() {
		if err := m.Wait(ctx, true, bytes); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWaitUnlimited(b *testing.B) {
	g, _ := NewGroup("b", Limits{})
	benchWait(b, g.Join("m"), 4096)
}

func BenchmarkWaitUnderLimit(b *testing.B) {
	g, _ := NewGroup("b", Limits{BPS: ValueMax, IOPS: ValueMax})
	benchWait(b, g.Join("m"), 4096)
}

func BenchmarkWaitUnderLimitAllBuckets(b *testing.B) {
	l := Limits{
		BPSRead: ValueMax / 2, BPSWrite: ValueMax / 2, BPSWriteMax: ValueMax / 2, BPSWriteMaxLength: 2,
		IOPSRead: ValueMax / 4, IOPSWrite: ValueMax / 4, IOPSWriteMax: ValueMax / 4, IOPSWriteMaxLength: 3,
		IOPSSize: 4096,
	}
	g, err := NewGroup("b", l)
	if err != nil {
		b.Fatal(err)
	}
	m := g.Join("m")
	for range 7 {
		g.Join("other")
	}
	benchWait(b, m, 65536)
}

func BenchmarkWaitUnderLimitParallel(b *testing.B) {
	g, _ := NewGroup("b", Limits{BPS: ValueMax, IOPS: ValueMax})
	ctx := context.Background()
	b.ReportAllocs()
	start := cpuTime()
	defer reportCPU(b, start) // the goroutines share the CPU time: per op, all cores
	b.RunParallel(func(pb *testing.PB) {
		m := g.Join("m")
		for pb.Next() {
			if err := m.Wait(ctx, false, 4096); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkRateLimiterAccount(b *testing.B) {
	r, _ := NewRateLimiter(1 << 50)
	b.ReportAllocs()
	start := cpuTime()
	defer reportCPU(b, start)
	for b.Loop() {
		r.Account(65536)
	}
}
