package throttle

import (
	"encoding/binary"
	"math"
	"testing"
	"time"
)

// FuzzLimits feeds arbitrary limits and request streams to Validate and,
// for accepted limits, to the bucket math and a group on a fake clock: no
// panics, no negative or NaN waits or levels, admissions in time order.
func FuzzLimits(f *testing.F) {
	seed := func(l Limits, ops []byte) {
		f.Add(l.BPS, l.BPSRead, l.BPSWrite, l.IOPS, l.IOPSRead, l.IOPSWrite,
			l.BPSMax, l.BPSReadMax, l.IOPSMax, l.IOPSWriteMax,
			l.BPSMaxLength, l.IOPSMaxLength, l.IOPSSize, ops)
	}
	ops := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 200, 255, 17, 33, 1, 0, 0, 9}
	seed(Limits{BPS: 1000}, ops)
	seed(Limits{IOPS: 100, IOPSSize: 4096}, ops)
	seed(Limits{IOPS: 10, IOPSMax: 20, IOPSMaxLength: 2}, ops)
	seed(Limits{BPSRead: 500000, BPSWrite: 285000, IOPSRead: 20000, IOPSWriteMax: 0}, ops)
	seed(Limits{BPS: ValueMax, BPSMax: ValueMax, BPSMaxLength: 1}, ops)
	seed(Limits{BPS: 1, BPSMax: 2, BPSMaxLength: ValueMax / 2}, ops)
	seed(Limits{BPS: -1}, nil)
	seed(Limits{IOPS: 1, IOPSMax: 1, IOPSMaxLength: -1}, nil)
	seed(Limits{BPS: 1, IOPS: 1, IOPSSize: math.MaxInt64}, ops)

	f.Fuzz(func(t *testing.T, bps, bpsRd, bpsWr, iops, iopsRd, iopsWr,
		bpsMax, bpsRdMax, iopsMax, iopsWrMax, bpsLen, iopsLen, opSize int64, ops []byte) {
		l := Limits{BPS: bps, BPSRead: bpsRd, BPSWrite: bpsWr, IOPS: iops, IOPSRead: iopsRd, IOPSWrite: iopsWr,
			BPSMax: bpsMax, BPSReadMax: bpsRdMax, IOPSMax: iopsMax, IOPSWriteMax: iopsWrMax,
			BPSMaxLength: bpsLen, IOPSMaxLength: iopsLen, IOPSSize: opSize}
		if len(ops) > 256 {
			ops = ops[:256]
		}
		if err := l.Validate(); err != nil {
			if _, err := NewGroup("f", l); err == nil {
				t.Fatal("NewGroup accepted limits Validate refused")
			}
			return
		}
		// Bucket math directly.
		var s state
		s.configure(l, 0)
		now := int64(0)
		for i := 0; i+3 <= len(ops); i += 3 {
			now += int64(ops[i]) << (ops[i+1] % 40)
			d := int(ops[i+2] & 1)
			w := s.computeWait(d, now)
			if w < 0 {
				t.Fatalf("negative wait %d", w)
			}
			size := uint64(ops[i+1]) << (ops[i+2] % 64)
			s.account(d, size)
			for j := range s.b {
				if b := s.b[j]; b.level < 0 || math.IsNaN(b.level) || b.burstLevel < 0 || math.IsNaN(b.burstLevel) {
					t.Fatalf("bucket %d level %v burst %v", j, b.level, b.burstLevel)
				}
			}
		}
		// A group on a fake clock, driven by the request stream.
		sim := newSim(t, l)
		c := sim.client("m", 0, 0)
		c.closedLoop = false
		for i := 0; i+2 <= len(ops); i += 2 {
			size := int64(binary.LittleEndian.Uint16(ops[i:]))
			sim.submitReq(c, ops[i]&1 == 1, size)
		}
		for step := 0; step < 10000 && sim.clk.RunNext(); step++ {
			if sim.clk.Now() < 0 {
				t.Fatal("time went negative")
			}
		}
		sim.run(sim.clk.Now() + time.Nanosecond)
		last := time.Duration(math.MinInt64)
		for _, ev := range sim.log {
			if ev.at < last {
				t.Fatalf("admissions out of order: %v after %v", ev.at, last)
			}
			last = ev.at
		}
	})
}
