package throttle

import (
	"fmt"

	"github.com/blocklayer/blocklayer/blockio"
)

// ValueMax is the largest rate (units per second) and the largest product
// of burst rate and burst length that a configuration may use, as QEMU's
// THROTTLE_VALUE_MAX. It keeps the floating-point bucket math far from
// overflow.
const ValueMax = 1_000_000_000_000_000

// Limits are the arguments of QMP block_set_io_throttle (and of the
// ThrottleLimits object of a throttle-group) for one group of devices.
//
// Rates are per second; 0 switches a limit off. The *Max fields are burst
// rates: while a burst lasts, I/O may run at that rate instead of the
// average. The *MaxLength fields are the number of seconds a burst at the
// Max rate may last; 0 means the default of 1 second. IOPSSize, when not 0,
// makes a request larger than IOPSSize bytes count as bytes/IOPSSize
// operations (fractionally).
//
// The zero Limits is valid and means "no throttling". Limits is a plain
// value; it is safe to copy.
type Limits struct {
	BPS, BPSRead, BPSWrite    int64
	IOPS, IOPSRead, IOPSWrite int64

	BPSMax, BPSReadMax, BPSWriteMax    int64
	IOPSMax, IOPSReadMax, IOPSWriteMax int64

	BPSMaxLength, BPSReadMaxLength, BPSWriteMaxLength    int64
	IOPSMaxLength, IOPSReadMaxLength, IOPSWriteMaxLength int64

	IOPSSize int64
}

// Bucket indices, in QEMU's order (BucketType). Validation reports the
// first offending bucket in this order, as QEMU does.
const (
	bpsTotal = iota
	bpsRead
	bpsWrite
	opsTotal
	opsRead
	opsWrite
	numBuckets
)

// LimitsError reports a configuration that QEMU would refuse. Its message
// is exactly QEMU's error text, so a QMP layer can return it unchanged as
// a GenericError. It wraps blockio.ErrInvalid. Immutable once returned:
// safe to share between goroutines.
type LimitsError struct {
	Msg string
}

func (e *LimitsError) Error() string { return e.Msg }

// Unwrap returns blockio.ErrInvalid.
func (e *LimitsError) Unwrap() error { return blockio.ErrInvalid }

// bucketConfig is one bucket of a configuration as QEMU stores it:
// unsigned rates (negative inputs wrap around exactly as a C assignment of
// an int64 QAPI value to a uint64_t field does) and a burst length of at
// least 1 when taken from a zero field.
type bucketConfig struct {
	avg, max, burstLength uint64
}

// buckets returns the six bucket configurations of l.
func (l *Limits) buckets() [numBuckets]bucketConfig {
	length := func(v int64) uint64 {
		if v == 0 {
			return 1 // absent: QEMU's default burst length
		}
		return uint64(v)
	}
	return [numBuckets]bucketConfig{
		bpsTotal: {uint64(l.BPS), uint64(l.BPSMax), length(l.BPSMaxLength)},
		bpsRead:  {uint64(l.BPSRead), uint64(l.BPSReadMax), length(l.BPSReadMaxLength)},
		bpsWrite: {uint64(l.BPSWrite), uint64(l.BPSWriteMax), length(l.BPSWriteMaxLength)},
		opsTotal: {uint64(l.IOPS), uint64(l.IOPSMax), length(l.IOPSMaxLength)},
		opsRead:  {uint64(l.IOPSRead), uint64(l.IOPSReadMax), length(l.IOPSReadMaxLength)},
		opsWrite: {uint64(l.IOPSWrite), uint64(l.IOPSWriteMax), length(l.IOPSWriteMaxLength)},
	}
}

// Enabled reports whether l throttles anything, that is whether any
// average rate is set (QEMU's throttle_enabled). Burst settings alone
// never enable throttling (and are refused by Validate).
func (l Limits) Enabled() bool {
	return l.BPS > 0 || l.BPSRead > 0 || l.BPSWrite > 0 ||
		l.IOPS > 0 || l.IOPSRead > 0 || l.IOPSWrite > 0
}

// Validate reports whether QEMU would accept l, checking in QEMU's order
// (throttle_is_valid) and returning QEMU's message in a *LimitsError:
//
//   - a total value together with a read or write value, for averages or
//     bursts: "bps/iops/max total values and read/write values cannot be
//     used at the same time"
//   - IOPSSize without any IOPS average: "iops size requires an iops value
//     to be set"
//   - then per bucket (bps, bps_rd, bps_wr, iops, iops_rd, iops_wr): a rate
//     or burst rate outside [0, 1e15] ("bps/iops/max values must be within
//     [0, 1000000000000000]"); a burst length without a burst rate ("burst
//     length set without burst rate"); burst rate times burst length above
//     1e15 ("burst length too high for this burst rate"); a burst rate
//     without an average ("bps_max/iops_max require corresponding bps/iops
//     values"); a burst rate below the average ("bps_max/iops_max cannot be
//     lower than bps/iops").
//
// Negative values behave as in block_set_io_throttle, where QEMU stores the
// int64 argument in an unsigned field: a negative rate is out of range and
// a negative burst length is "too high" (or "set without burst rate").
// QEMU's "the burst length cannot be 0" cannot happen here because a zero
// length means the default of 1. One deliberate difference: a negative
// IOPSSize, which block_set_io_throttle silently turns into a huge
// operation size, is refused with "iops size cannot be negative".
func (l Limits) Validate() error {
	b := l.buckets()
	conflict := func(total, rd, wr uint64) bool { return total != 0 && (rd != 0 || wr != 0) }
	if conflict(b[bpsTotal].avg, b[bpsRead].avg, b[bpsWrite].avg) ||
		conflict(b[opsTotal].avg, b[opsRead].avg, b[opsWrite].avg) ||
		conflict(b[bpsTotal].max, b[bpsRead].max, b[bpsWrite].max) ||
		conflict(b[opsTotal].max, b[opsRead].max, b[opsWrite].max) {
		return &LimitsError{"bps/iops/max total values and read/write values cannot be used at the same time"}
	}
	if l.IOPSSize != 0 && b[opsTotal].avg == 0 && b[opsRead].avg == 0 && b[opsWrite].avg == 0 {
		return &LimitsError{"iops size requires an iops value to be set"}
	}
	if l.IOPSSize < 0 {
		return &LimitsError{"iops size cannot be negative"}
	}
	for _, bk := range b {
		if bk.avg > ValueMax || bk.max > ValueMax {
			return &LimitsError{fmt.Sprintf("bps/iops/max values must be within [0, %d]", int64(ValueMax))}
		}
		if bk.burstLength == 0 {
			return &LimitsError{"the burst length cannot be 0"}
		}
		if bk.burstLength > 1 && bk.max == 0 {
			return &LimitsError{"burst length set without burst rate"}
		}
		if bk.max != 0 && bk.burstLength > ValueMax/bk.max {
			return &LimitsError{"burst length too high for this burst rate"}
		}
		if bk.max != 0 && bk.avg == 0 {
			return &LimitsError{"bps_max/iops_max require corresponding bps/iops values"}
		}
		if bk.max != 0 && bk.max < bk.avg {
			return &LimitsError{"bps_max/iops_max cannot be lower than bps/iops"}
		}
	}
	return nil
}
