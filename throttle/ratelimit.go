package throttle

import (
	"context"
	"math"
	"sync"
	"time"
)

// SliceTime is the accounting slice of a RateLimiter, QEMU's
// BLOCK_JOB_SLICE_TIME.
const SliceTime = 100 * time.Millisecond

// RateLimiter paces a block job to speed bytes per second with QEMU's
// slice-based ratelimit (include/qemu/ratelimit.h): bytes are counted in
// slices of SliceTime; while a slice's quota (speed × SliceTime) is not
// used up the job runs freely, and once it is, the job sleeps until the
// slice — stretched in proportion to how far the quota was exceeded —
// ends. Work is recorded after it is done, so a job may overshoot by one
// chunk and then sleeps it off. Speed 0 means unlimited.
//
// (golang.org/x/time/rate is a token bucket that refuses requests larger
// than its burst and charges before the work, so it does not reproduce
// these semantics.)
//
// All methods are safe for concurrent use.
type RateLimiter struct {
	clock Clock

	mu         sync.Mutex
	speed      int64
	sliceNS    int64
	quota      uint64 // units per slice; 0 = unlimited
	sliceStart int64
	sliceEnd   int64
	dispatched uint64
	kick       chan struct{} // closed by SetSpeed to wake sleepers
}

// NewRateLimiter returns a limiter for speed bytes per second (0 =
// unlimited; negative is refused as QEMU refuses it). Options: WithClock.
func NewRateLimiter(speed int64, opts ...Option) (*RateLimiter, error) {
	o := buildOptions(opts)
	r := &RateLimiter{clock: o.clock, sliceEnd: math.MinInt64, kick: make(chan struct{})}
	if err := r.SetSpeed(speed); err != nil {
		return nil, err
	}
	return r, nil
}

// SetSpeed changes the speed (block-job-set-speed). A negative speed is
// refused with QEMU's "Invalid parameter 'speed'" (wrapping
// blockio.ErrInvalid). The current slice's accounting is kept. When the
// speed rises or becomes unlimited, goroutines sleeping in Sleep wake up
// and re-evaluate their delay (as QEMU kicks a sleeping job); a lower
// speed applies from their next delay computation.
func (r *RateLimiter) SetSpeed(speed int64) error {
	if speed < 0 {
		return &LimitsError{Msg: "Invalid parameter 'speed'"}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.speed
	r.speed = speed
	r.sliceNS = int64(SliceTime)
	if speed == 0 {
		r.quota = 0
	} else {
		r.quota = uint64(max(float64(speed)*float64(r.sliceNS)/nsPerSec, 1))
	}
	if speed == 0 || speed > old {
		close(r.kick)
		r.kick = make(chan struct{})
	}
	return nil
}

// Speed returns the speed in bytes per second (0 = unlimited).
func (r *RateLimiter) Speed() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.speed
}

// Account records n bytes of completed work
// (block_job_ratelimit_processed_bytes).
func (r *RateLimiter) Account(n int64) { r.CalculateDelay(n) }

// Delay returns how long the job must sleep before doing more work, 0 if
// it may continue now.
func (r *RateLimiter) Delay() time.Duration { return r.CalculateDelay(0) }

// CalculateDelay records n bytes and returns the delay before the next
// chunk may start (QEMU's ratelimit_calculate_delay). A negative n counts
// as 0.
func (r *RateLimiter) CalculateDelay(n int64) time.Duration {
	d, _ := r.calculate(n)
	return d
}

func (r *RateLimiter) calculate(n int64) (time.Duration, chan struct{}) {
	now := int64(r.clock.Now())
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.quota == 0 {
		return 0, r.kick
	}
	if r.sliceEnd < now {
		// The previous (possibly stretched) slice is over.
		r.sliceStart = now
		r.sliceEnd = now + r.sliceNS
		r.dispatched = 0
	}
	if n > 0 {
		// Saturate: a wrapped counter would mean "nothing dispatched".
		r.dispatched = max(r.dispatched+uint64(n), r.dispatched)
	}
	if r.dispatched < r.quota {
		return 0, r.kick
	}
	slices := float64(r.dispatched) / float64(r.quota)
	stretch := slices * float64(r.sliceNS)
	if stretch >= float64(math.MaxInt64-r.sliceStart) {
		r.sliceEnd = math.MaxInt64
	} else {
		r.sliceEnd = r.sliceStart + int64(stretch)
	}
	return time.Duration(r.sliceEnd - now), r.kick
}

// Sleep waits until the job may do more work
// (block_job_ratelimit_sleep). It returns ctx.Err() if ctx is done first;
// SetSpeed wakes it early so a raised speed takes effect at once.
func (r *RateLimiter) Sleep(ctx context.Context) error {
	for {
		d, kick := r.calculate(0)
		if d <= 0 {
			return nil
		}
		fired := make(chan struct{})
		t := r.clock.AfterFunc(d, func() { close(fired) })
		select {
		case <-fired:
		case <-kick:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}
