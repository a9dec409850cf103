package throttle

import (
	"time"
)

// Clock is the time source of a Group or RateLimiter. Now is a monotonic
// reading (any fixed origin); AfterFunc runs f once, in its own goroutine
// or synchronously from a fake clock's Advance, after d has elapsed on
// this clock. Implementations must be safe for concurrent use.
//
// The default is the system's monotonic clock. Tests inject a FakeClock
// (QEMU uses the virtual clock under qtest for the same reason).
type Clock interface {
	Now() time.Duration
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call. Stop prevents it from firing and
// reports whether it did so.
type Timer interface {
	Stop() bool
}

// Option configures NewGroup and NewRateLimiter.
type Option func(*options)

type options struct {
	clock Clock
}

// WithClock makes a Group or RateLimiter use c instead of the system's
// monotonic clock. A nil c keeps the default.
func WithClock(c Clock) Option {
	return func(o *options) {
		if c != nil {
			o.clock = c
		}
	}
}

func buildOptions(opts []Option) options {
	o := options{clock: systemClock}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	return o
}

// realClock reads the runtime's monotonic clock.
type realClock struct{ origin time.Time }

var systemClock Clock = realClock{origin: time.Now()}

func (c realClock) Now() time.Duration { return time.Since(c.origin) }

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
