package throttle

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// qomLimits renders l as the "limits" property of a throttle-group object
// (QAPI ThrottleLimits), leaving zero fields absent (QEMU's defaults).
func qomLimits(l Limits) string {
	m := map[string]int64{}
	put := func(k string, v int64) {
		if v != 0 {
			m[k] = v
		}
	}
	put("bps-total", l.BPS)
	put("bps-read", l.BPSRead)
	put("bps-write", l.BPSWrite)
	put("iops-total", l.IOPS)
	put("iops-read", l.IOPSRead)
	put("iops-write", l.IOPSWrite)
	put("bps-total-max", l.BPSMax)
	put("bps-read-max", l.BPSReadMax)
	put("bps-write-max", l.BPSWriteMax)
	put("iops-total-max", l.IOPSMax)
	put("iops-read-max", l.IOPSReadMax)
	put("iops-write-max", l.IOPSWriteMax)
	put("bps-total-max-length", l.BPSMaxLength)
	put("bps-read-max-length", l.BPSReadMaxLength)
	put("bps-write-max-length", l.BPSWriteMaxLength)
	put("iops-total-max-length", l.IOPSMaxLength)
	put("iops-read-max-length", l.IOPSReadMaxLength)
	put("iops-write-max-length", l.IOPSWriteMaxLength)
	put("iops-size", l.IOPSSize)
	obj := map[string]any{"qom-type": "throttle-group", "id": "tg0", "limits": m}
	b, _ := json.Marshal(obj)
	return string(b)
}

// comparableWithQOM excludes the two places where the throttle-group
// object path differs from block_set_io_throttle, which Validate follows:
// the object refuses burst lengths above UINT_MAX with its own range
// message, and we refuse a negative iops_size that QEMU turns into a huge
// operation size.
func comparableWithQOM(l Limits) bool {
	for _, f := range fieldsOf(&l) {
		if *f.length > math.MaxUint32 {
			return false
		}
	}
	return l.IOPSSize >= 0
}

// TestValidateMatchesQEMU asks qemu-img (creating a throttle-group object,
// which runs QEMU's throttle_is_valid) about the table's limits and about
// random ones, and compares acceptance and messages.
func TestValidateMatchesQEMU(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	img := filepath.Join(t.TempDir(), "t.raw")
	qemutest.Run(t, "qemu-img", "create", "-f", "raw", img, "1M")

	var cases []Limits
	cases = append(cases,
		Limits{BPS: 1, BPSRead: 1}, Limits{IOPSMax: 5, IOPS: 1, IOPSWriteMax: 5}, Limits{IOPSSize: 4096},
		Limits{BPS: 1, IOPSSize: 4096}, Limits{IOPSRead: 1, IOPSSize: 4096}, Limits{BPS: -1},
		Limits{BPS: valueMaxInt64 + 1}, Limits{BPS: valueMaxInt64, BPSMax: valueMaxInt64},
		Limits{BPS: 1, BPSMaxLength: 2}, Limits{BPS: 1, BPSMax: 1, BPSMaxLength: -1},
		Limits{BPS: 1, BPSMaxLength: -1}, Limits{BPS: 1, BPSMax: valueMaxInt64, BPSMaxLength: 2},
		Limits{BPS: 1, BPSMax: 3, BPSMaxLength: 1 << 31}, Limits{IOPSMax: 100}, Limits{IOPS: 100, IOPSMax: 30},
		Limits{BPSMax: 5, IOPS: -1}, Limits{BPS: -1, IOPSMax: 5}, Limits{BPS: 10 << 20, BPSMax: 100 << 20, BPSMaxLength: 30},
	)
	r := rand.New(rand.NewPCG(7, 7))
	n := 60
	if testing.Short() {
		n = 15
	}
	vals := []int64{-5, 0, 0, 0, 1, 2, 100, 1000, 1 << 20, valueMaxInt64 / 3, valueMaxInt64, valueMaxInt64 + 1}
	for range n {
		var l Limits
		fs := fieldsOf(&l)
		for class := range 2 { // bytes, operations
			idx := []int{3 * class} // total only, or read and write
			if r.IntN(2) == 0 {
				idx = []int{3*class + 1, 3*class + 2}
			}
			if r.IntN(8) == 0 {
				idx = []int{3 * class, 3*class + 1} // a conflict
			}
			for _, i := range idx {
				f := fs[i]
				*f.avg = vals[r.IntN(len(vals))]
				switch r.IntN(4) {
				case 0:
					*f.max = vals[r.IntN(len(vals))]
				case 1:
					*f.max = *f.avg * int64(r.IntN(20))
				}
				if r.IntN(3) == 0 {
					*f.length = []int64{-1, 0, 1, 2, 60, 1 << 30}[r.IntN(6)]
				}
			}
		}
		if r.IntN(4) == 0 {
			l.IOPSSize = 4096
		}
		cases = append(cases, l)
	}
	seen := map[string]int{}
	for _, l := range cases {
		if !comparableWithQOM(l) {
			continue
		}
		obj := qomLimits(l)
		_, stderr, err := qemutest.RunErr(t, "qemu-img", "info", "--object", obj, img)
		qemuMsg := ""
		if err != nil {
			qemuMsg = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(stderr), "qemu-img:"))
		}
		seen[qemuMsg]++
		if got := validateMsg(l); got != qemuMsg {
			t.Errorf("%s:\n ours %q\n qemu %q", obj, got, qemuMsg)
		}
	}
	t.Logf("QEMU verdicts: %v", seen)
}
