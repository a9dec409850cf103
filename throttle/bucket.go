package throttle

import "math"

// This file holds QEMU's leaky-bucket arithmetic (util/throttle.c), kept
// in float64 exactly as QEMU computes it so that waits agree to the
// nanosecond.

const nsPerSec = 1e9

// bucket is one leaky bucket: a configuration plus its current levels.
type bucket struct {
	avg, max    uint64  // configured rates (units per second)
	burstLength uint64  // seconds, >= 1
	favg, fmax  float64 // the rates as float64
	size        float64 // main bucket size: avg/10, or max*burstLength
	burstSize   float64 // burst bucket size: max/10 (0 without a burst rate)

	level      float64 // units in the main bucket
	burstLevel float64 // units in the burst bucket (only when burstLength > 1)
}

func (b *bucket) configure(c bucketConfig) {
	*b = bucket{avg: c.avg, max: c.max, burstLength: c.burstLength,
		favg: float64(c.avg), fmax: float64(c.max)}
	if c.max == 0 {
		// Without a burst rate QEMU still lets 100 ms worth of the
		// average through unthrottled.
		b.size = float64(c.avg) / 10
	} else {
		b.size = float64(c.max * c.burstLength) // product <= ValueMax after Validate
		b.burstSize = float64(c.max) / 10
	}
}

// leak empties the bucket by the units that drained in deltaNS.
func (b *bucket) leak(deltaNS int64) {
	leak := b.favg * float64(deltaNS) / nsPerSec
	b.level = max(b.level-leak, 0)
	if b.burstLength > 1 {
		leak = b.fmax * float64(deltaNS) / nsPerSec
		b.burstLevel = max(b.burstLevel-leak, 0)
	}
}

// waitNS is how long the next request must wait before this bucket lets
// it through (QEMU's throttle_compute_wait), 0 if it may go now.
func (b *bucket) waitNS() int64 {
	if b.avg == 0 {
		return 0
	}
	if extra := b.level - b.size; extra > 0 {
		return nsFor(extra, b.favg)
	}
	if b.burstLength > 1 {
		if extra := b.burstLevel - b.burstSize; extra > 0 {
			return nsFor(extra, b.fmax)
		}
	}
	return 0
}

// nsFor converts extra units at rate units/s into nanoseconds, truncated
// like QEMU's double-to-int64 conversion and clamped (QEMU would overflow
// on absurd request sizes; we wait "forever" instead).
func nsFor(extra, rate float64) int64 {
	w := extra * nsPerSec
	w /= rate
	if !(w < math.MaxInt64) { // also catches NaN
		return math.MaxInt64
	}
	return int64(w)
}

func (b *bucket) add(units float64) {
	b.level += units
	if b.burstLength > 1 {
		b.burstLevel += units
	}
}

// state is a ThrottleState: the six buckets, the operation size and the
// time of the last leak. The zero state throttles nothing.
type state struct {
	b            [numBuckets]bucket
	opSize       uint64
	previousLeak int64

	// Only buckets with avg > 0 influence anything; these lists let the
	// hot path skip the others (an inactive bucket's level is never read).
	active []*bucket    // buckets to leak
	check  [2][]*bucket // per direction: active buckets among the four checked
	bytesB [2][]*bucket // per direction: active byte buckets to charge
	opsB   [2][]*bucket // per direction: active operation buckets to charge

	activeBk       [numBuckets]*bucket
	checkBk        [2][4]*bucket
	bytesBk, opsBk [2][2]*bucket
}

// directions
const (
	dirRead  = 0
	dirWrite = 1
)

// configure installs l (already validated), zeroes all levels and starts
// leaking from now (QEMU's throttle_config).
func (s *state) configure(l Limits, now int64) {
	cfg := l.buckets()
	for i := range s.b {
		s.b[i].configure(cfg[i])
	}
	s.opSize = uint64(l.IOPSSize)
	s.previousLeak = now
	s.active = s.activeBk[:0]
	for i := range s.b {
		if s.b[i].avg != 0 {
			s.active = append(s.active, &s.b[i])
		}
	}
	pick := func(dst []*bucket, idx ...int) []*bucket {
		for _, i := range idx {
			if s.b[i].avg != 0 {
				dst = append(dst, &s.b[i])
			}
		}
		return dst
	}
	s.check[dirRead] = pick(s.checkBk[dirRead][:0], bpsTotal, opsTotal, bpsRead, opsRead)
	s.check[dirWrite] = pick(s.checkBk[dirWrite][:0], bpsTotal, opsTotal, bpsWrite, opsWrite)
	s.bytesB[dirRead] = pick(s.bytesBk[dirRead][:0], bpsTotal, bpsRead)
	s.bytesB[dirWrite] = pick(s.bytesBk[dirWrite][:0], bpsTotal, bpsWrite)
	s.opsB[dirRead] = pick(s.opsBk[dirRead][:0], opsTotal, opsRead)
	s.opsB[dirWrite] = pick(s.opsBk[dirWrite][:0], opsTotal, opsWrite)
}

// leak drains every bucket by the time elapsed since the previous leak.
func (s *state) leak(now int64) {
	delta := now - s.previousLeak
	s.previousLeak = now
	if delta <= 0 {
		return
	}
	for _, b := range s.active {
		b.leak(delta)
	}
}

// waitFor is the longest wait among the buckets a request of direction d
// is checked against.
func (s *state) waitFor(d int) int64 {
	var w int64
	for _, b := range s.check[d] {
		if b.level <= b.size && (b.burstLength <= 1 || b.burstLevel <= b.burstSize) {
			continue // fast path: this bucket does not hold the request
		}
		if x := b.waitNS(); x > w {
			w = x
		}
	}
	return w
}

// computeWait leaks up to now and returns the wait of the next request in
// direction d (QEMU's throttle_compute_timer).
func (s *state) computeWait(d int, now int64) int64 {
	s.leak(now)
	return s.waitFor(d)
}

// account charges an admitted request of size bytes (QEMU's
// throttle_account): size to the byte buckets, one operation — or
// size/opSize operations for requests larger than opSize — to the
// operation buckets.
func (s *state) account(d int, size uint64) {
	fsize := float64(size)
	for _, b := range s.bytesB[d] {
		b.add(fsize)
	}
	if len(s.opsB[d]) == 0 {
		return
	}
	units := 1.0
	if s.opSize != 0 && size > s.opSize {
		units = float64(size) / float64(s.opSize)
	}
	for _, b := range s.opsB[d] {
		b.add(units)
	}
}
