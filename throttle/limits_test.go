package throttle

import (
	"errors"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
)

const (
	msgConflict   = "bps/iops/max total values and read/write values cannot be used at the same time"
	msgIOPSSize   = "iops size requires an iops value to be set"
	msgRange      = "bps/iops/max values must be within [0, 1000000000000000]"
	msgNoRate     = "burst length set without burst rate"
	msgTooHigh    = "burst length too high for this burst rate"
	msgMaxNoAvg   = "bps_max/iops_max require corresponding bps/iops values"
	msgMaxTooLow  = "bps_max/iops_max cannot be lower than bps/iops"
	msgNegOpSize  = "iops size cannot be negative"
	valueMaxInt64 = int64(ValueMax)
)

// field pointers for the six buckets, so tests can iterate like QEMU's
// test-throttle.c does over BUCKETS_COUNT.
type bucketFields struct{ avg, max, length *int64 }

func fieldsOf(l *Limits) [numBuckets]bucketFields {
	return [numBuckets]bucketFields{
		{&l.BPS, &l.BPSMax, &l.BPSMaxLength},
		{&l.BPSRead, &l.BPSReadMax, &l.BPSReadMaxLength},
		{&l.BPSWrite, &l.BPSWriteMax, &l.BPSWriteMaxLength},
		{&l.IOPS, &l.IOPSMax, &l.IOPSMaxLength},
		{&l.IOPSRead, &l.IOPSReadMax, &l.IOPSReadMaxLength},
		{&l.IOPSWrite, &l.IOPSWriteMax, &l.IOPSWriteMaxLength},
	}
}

func validateMsg(l Limits) string {
	err := l.Validate()
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestValidateTable(t *testing.T) {
	tests := []struct {
		name string
		l    Limits
		want string
	}{
		{"zero", Limits{}, ""},
		{"bps", Limits{BPS: 1 << 20}, ""},
		{"rd+wr", Limits{BPSRead: 1, BPSWrite: 2, IOPSRead: 3, IOPSWrite: 4}, ""},
		{"bps+bps_rd", Limits{BPS: 1, BPSRead: 1}, msgConflict},
		{"bps+bps_wr", Limits{BPS: 1, BPSWrite: 1}, msgConflict},
		{"iops+iops_rd", Limits{IOPS: 1, IOPSRead: 1}, msgConflict},
		{"iops+iops_wr", Limits{IOPS: 1, IOPSWrite: 1}, msgConflict},
		{"bps_max+bps_rd_max", Limits{BPS: 1, BPSMax: 2, BPSReadMax: 2}, msgConflict},
		{"iops_max+iops_wr_max", Limits{IOPSWrite: 1, IOPSMax: 2, IOPSWriteMax: 2}, msgConflict},
		{"conflict before range", Limits{BPS: -1, BPSRead: 1}, msgConflict},
		{"iops_size alone", Limits{IOPSSize: 4096}, msgIOPSSize},
		{"iops_size with bps", Limits{BPS: 1, IOPSSize: 4096}, msgIOPSSize},
		{"iops_size with iops_rd", Limits{IOPSRead: 1, IOPSSize: 4096}, ""},
		{"iops_size negative", Limits{IOPS: 1, IOPSSize: -1}, msgNegOpSize},
		{"negative bps", Limits{BPS: -1}, msgRange},
		{"negative iops_wr", Limits{IOPSWrite: -150}, msgRange},
		{"negative max", Limits{BPS: 1, BPSMax: -1}, msgRange},
		{"avg at max", Limits{BPS: valueMaxInt64, BPSMax: valueMaxInt64}, ""},
		{"avg above max", Limits{IOPS: valueMaxInt64 + 1}, msgRange},
		{"max above max", Limits{IOPS: valueMaxInt64, IOPSMax: valueMaxInt64 + 1}, msgRange},
		{"length without max", Limits{BPS: 1, BPSMaxLength: 2}, msgNoRate},
		{"length without anything", Limits{IOPSReadMaxLength: 5}, msgNoRate},
		{"length 1 without max", Limits{BPS: 1, BPSMaxLength: 1}, ""},
		{"negative length no max", Limits{BPS: 1, BPSMaxLength: -1}, msgNoRate},
		{"negative length", Limits{BPS: 1, BPSMax: 1, BPSMaxLength: -1}, msgTooHigh},
		{"length at limit", Limits{BPS: 1, BPSMax: 1, BPSMaxLength: valueMaxInt64}, ""},
		{"length above limit", Limits{BPS: 1, BPSMax: 1, BPSMaxLength: valueMaxInt64 + 1}, msgTooHigh},
		{"product ok", Limits{BPS: 1, BPSMax: 2, BPSMaxLength: valueMaxInt64 / 2}, ""},
		{"product too high", Limits{BPS: 1, BPSMax: 3, BPSMaxLength: valueMaxInt64 / 2}, msgTooHigh},
		{"max rate length 1", Limits{BPS: 1, BPSMax: valueMaxInt64, BPSMaxLength: 1}, ""},
		{"max rate length 2", Limits{BPS: 1, BPSMax: valueMaxInt64, BPSMaxLength: 2}, msgTooHigh},
		{"max without avg", Limits{IOPSMax: 100}, msgMaxNoAvg},
		{"max below avg", Limits{IOPS: 100, IOPSMax: 30}, msgMaxTooLow},
		{"max equal avg", Limits{IOPS: 100, IOPSMax: 100}, ""},
		{"burst", Limits{BPS: 1 << 20, BPSMax: 10 << 20, BPSMaxLength: 60}, ""},
		// Per-bucket checks run bucket by bucket: the first bucket's
		// problem is reported even if a later bucket has an "earlier" one.
		{"bucket order", Limits{BPSMax: 5, IOPS: -1}, msgMaxNoAvg},
		{"bucket order 2", Limits{BPS: -1, IOPSMax: 5}, msgRange},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := validateMsg(tc.l)
			if got != tc.want {
				t.Fatalf("Validate() = %q, want %q", got, tc.want)
			}
			if got != "" {
				err := tc.l.Validate()
				if !errors.Is(err, blockio.ErrInvalid) {
					t.Errorf("error %v does not wrap blockio.ErrInvalid", err)
				}
				var le *LimitsError
				if !errors.As(err, &le) {
					t.Errorf("error %T is not a *LimitsError", err)
				}
			}
		})
	}
}

// TestValidateQEMUUnitTests walks the per-bucket cases of QEMU's
// tests/unit/test-throttle.c (test_enabled, test_conflicting_config,
// test_is_valid, test_ranges, test_max_is_missing_limit).
func TestValidateQEMUUnitTests(t *testing.T) {
	for i := range numBuckets {
		set := func(isMax bool, value int64) Limits {
			var l Limits
			f := fieldsOf(&l)[i]
			if isMax {
				*f.max = value
				*f.avg = max(*f.avg, 1)
			} else {
				*f.avg = value
			}
			return l
		}
		for _, isMax := range []bool{false, true} {
			if validateMsg(set(isMax, -1)) == "" {
				t.Errorf("bucket %d max=%v: -1 accepted", i, isMax)
			}
			if m := validateMsg(set(isMax, 0)); m != "" {
				t.Errorf("bucket %d max=%v: 0 refused: %s", i, isMax, m)
			}
			if m := validateMsg(set(isMax, 1)); m != "" {
				t.Errorf("bucket %d max=%v: 1 refused: %s", i, isMax, m)
			}
		}
		l := set(false, 150)
		if !l.Enabled() || l.Validate() != nil {
			t.Errorf("bucket %d avg 150: enabled=%v err=%v", i, l.Enabled(), l.Validate())
		}
		// max is missing its limit
		for _, c := range []struct {
			max, avg int64
			want     string
		}{{100, 0, msgMaxNoAvg}, {0, 0, ""}, {0, 100, ""}, {30, 100, msgMaxTooLow}, {100, 100, ""}} {
			var l Limits
			f := fieldsOf(&l)[i]
			*f.max, *f.avg = c.max, c.avg
			if got := validateMsg(l); got != c.want {
				t.Errorf("bucket %d max=%d avg=%d: %q, want %q", i, c.max, c.avg, got, c.want)
			}
		}
	}
	// Conflicts, for averages and for burst rates.
	sets := [][3]int{{bpsTotal, bpsRead, bpsWrite}, {opsTotal, opsRead, opsWrite}}
	for _, isMax := range []bool{false, true} {
		for _, s := range sets {
			mk := func(idx ...int) Limits {
				var l Limits
				for _, i := range idx {
					f := fieldsOf(&l)[i]
					if isMax {
						*f.max = 1
						*f.avg = 1
					} else {
						*f.avg = 1
					}
				}
				return l
			}
			total, rd, wr := s[0], s[1], s[2]
			for _, c := range []struct {
				l    Limits
				want string
			}{
				{mk(total, rd), msgConflict},
				{mk(total, wr), msgConflict},
				{mk(total, rd, wr), msgConflict},
				{mk(total), ""},
				{mk(rd, wr), ""},
			} {
				if got := validateMsg(c.l); got != c.want {
					t.Errorf("conflict set %v max=%v %+v: %q want %q", s, isMax, c.l, got, c.want)
				}
			}
		}
	}
}

func TestEnabled(t *testing.T) {
	if (Limits{}).Enabled() {
		t.Fatal("zero limits enabled")
	}
	if (Limits{IOPSSize: 4096}).Enabled() {
		t.Fatal("iops_size alone enabled")
	}
	if !(Limits{IOPSWrite: 1}).Enabled() {
		t.Fatal("iops_wr not enabled")
	}
}
