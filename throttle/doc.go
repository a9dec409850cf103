// Package throttle implements QEMU's I/O throttling: leaky-bucket limits
// with bursts and iops_size (util/throttle.c), throttle groups whose
// members share one budget and are served round-robin
// (block/throttle-groups.c), the slice-based rate limiter of block jobs
// (include/qemu/ratelimit.h) and a blockio.Device wrapper that throttles
// a device like QEMU's throttle filter node.
//
// # Limits
//
// Limits holds the arguments of block_set_io_throttle: average rates for
// bytes and operations (total, or read and write separately), burst rates
// with burst lengths in seconds, and iops_size. Validate refuses exactly
// the configurations QEMU refuses, with QEMU's error messages.
//
// # Buckets
//
// Each of the six limits is a leaky bucket. A bucket without a burst rate
// holds 100 ms worth of its average; with a burst rate max and burst
// length L it holds max·L, and when L > 1 a second bucket of max/10 that
// drains at max caps the burst's rate. Buckets drain continuously at their
// average. A request is checked against the total bucket and its
// direction's bucket for bytes and for operations, and may go when none of
// them is over its size; it is then charged in full ("pay after": one
// large request may overshoot and the following requests wait off the
// debt). A request larger than iops_size counts as bytes/iops_size
// operations. Waits are computed in float64 exactly as QEMU does, so they
// agree with QEMU's to the nanosecond.
//
// Consequences worth knowing: a saturating client bursts at max for
// (max·L − max/10)/(max − avg) seconds, not exactly L; with L = 1 the burst
// rate only sizes the bucket (max units pass at once); changing the
// limits empties the buckets.
//
// # Groups
//
// NewGroup creates a group; Join adds members (devices) and Member.Wait
// blocks a request until it may go. While several members have requests
// queued, one request per member is admitted per turn, round-robin, so
// saturating members share the limit equally by request count, and a
// lightly loaded member waits at most one round. Reads and writes queue
// and take turns independently; each member's queue is FIFO. At most one
// timer per direction is armed per group; blocked requests cost one
// channel, not a goroutine. A request whose context is cancelled while
// queued leaves the queue uncharged. Leave releases the member's queued
// requests and passes its turn on; BeginDrain/EndDrain let a member bypass
// the limits while its device is drained, as QEMU does.
//
// The clock is injectable (WithClock); FakeClock makes tests and
// simulations deterministic, as QEMU's virtual clock does under qtest.
//
// # Jobs
//
// RateLimiter paces block jobs at a speed in bytes per second with QEMU's
// 100 ms slices: work is accounted after it is done and the job sleeps
// once a slice's quota is used up. golang.org/x/time/rate is not used: it
// is a token bucket that charges before the work and refuses requests
// larger than its burst.
package throttle
