package throttle

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/blocklayer/blocklayer/blockio"
)

func newFakeLimiter(t *testing.T, speed int64) (*RateLimiter, *FakeClock) {
	t.Helper()
	clk := NewFakeClock(0)
	r, err := NewRateLimiter(speed, WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	return r, clk
}

// TestRateLimiterSlices follows QEMU's ratelimit_calculate_delay step by
// step at 10 MiB/s (a quota of 1 MiB per 100 ms slice).
func TestRateLimiterSlices(t *testing.T) {
	r, clk := newFakeLimiter(t, 10<<20)
	steps := []struct {
		advance time.Duration
		n       int64
		want    time.Duration
	}{
		{0, 512 << 10, 0},                      // slice [0, 100ms): half the quota
		{0, 0, 0},                              // still below the quota
		{0, 512 << 10, 100 * ms},               // quota used up: sleep to the slice end
		{50 * ms, 0, 50 * ms},                  // still inside the slice
		{50 * ms, 0, 0},                        // at the slice end exactly: go
		{0, 64 << 10, 6250 * time.Microsecond}, // same slice, stretched by 1/16
		{7 * ms, 5 << 20, 500 * ms},            // new slice at 113 ms: 5 quotas = 500 ms
		{100 * ms, 0, 400 * ms},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		if got := r.CalculateDelay(s.n); got != s.want {
			t.Fatalf("step %d (t=%v n=%d): delay %v, want %v", i, clk.Now(), s.n, got, s.want)
		}
	}
}

func TestRateLimiterSpeed(t *testing.T) {
	if _, err := NewRateLimiter(-1); !errors.Is(err, blockio.ErrInvalid) || err.Error() != "Invalid parameter 'speed'" {
		t.Fatalf("negative speed: %v", err)
	}
	r, _ := newFakeLimiter(t, 0)
	r.Account(1 << 40)
	if d := r.Delay(); d != 0 {
		t.Fatalf("unlimited delay %v", d)
	}
	// A tiny speed still has a quota of one byte per slice.
	if err := r.SetSpeed(1); err != nil {
		t.Fatal(err)
	}
	if r.Speed() != 1 {
		t.Fatal("Speed")
	}
	if d := r.CalculateDelay(1); d != 100*ms {
		t.Fatalf("1 B/s: delay %v, want one slice", d)
	}
}

// TestRateLimiterAccuracy: a job loop (sleep, copy a chunk, account it)
// over 60 simulated seconds moves speed bytes per second within 1%.
func TestRateLimiterAccuracy(t *testing.T) {
	for _, c := range []struct{ speed, chunk int64 }{
		{10 << 20, 64 << 10}, {10 << 20, 4 << 20}, {1 << 20, 1 << 20}, {123457, 65536}, {100 << 20, 1 << 20},
	} {
		r, clk := newFakeLimiter(t, c.speed)
		var total int64
		const dur = 60 * time.Second
		for clk.Now() < dur {
			if d := r.Delay(); d > 0 {
				clk.Advance(d)
				continue
			}
			total += c.chunk
			r.Account(c.chunk)
		}
		within(t, "job rate", float64(total)/dur.Seconds(), float64(c.speed), 0.01)
	}
}

func TestRateLimiterSleep(t *testing.T) {
	r, clk := newFakeLimiter(t, 1<<20)
	r.Account(10 << 20) // 10 s worth
	done := make(chan error, 1)
	go func() { done <- r.Sleep(context.Background()) }()
	waitFor(t, "sleeping", func() bool { return clk.Pending() == 1 })
	clk.Advance(9 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("woke early: %v", err)
	default:
	}
	// The quota is truncated to whole bytes (104857 per slice), so
	// 10 MiB takes a little over 10 s.
	clk.Advance(time.Second + ms)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// SetSpeed wakes a sleeper so the new speed applies at once.
	r.Account(100 << 20)
	go func() { done <- r.Sleep(context.Background()) }()
	waitFor(t, "sleeping", func() bool { return clk.Pending() == 1 })
	if err := r.SetSpeed(0); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if clk.Pending() != 0 {
		t.Fatal("sleep timer not stopped")
	}

	// Cancellation.
	_ = r.SetSpeed(1 << 20)
	r.Account(100 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- r.Sleep(ctx) }()
	waitFor(t, "sleeping", func() bool { return clk.Pending() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}
