package throttle

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

const ms = time.Millisecond

func msList(vs ...float64) []time.Duration {
	out := make([]time.Duration, len(vs))
	for i, v := range vs {
		out[i] = time.Duration(v * float64(ms))
	}
	return out
}

// backlog queues n requests of size at time 0 from one open-loop client.
func backlog(s *simulator, name string, write bool, size int64, n int) *simClient {
	c := s.client(name, size, n)
	c.closedLoop = false
	c.write = func(int) bool { return write }
	s.start(c)
	return c
}

// TestQEMUWaits checks admission times against values worked out by hand
// from QEMU's algorithm (util/throttle.c + block/throttle-groups.c).
func TestQEMUWaits(t *testing.T) {
	type stream struct {
		write bool
		size  int64
		n     int
		want  []time.Duration
	}
	tests := []struct {
		name    string
		l       Limits
		streams []stream
	}{
		{
			// 100-byte requests at 1000 B/s: the bucket holds 100 ms worth
			// (100 bytes); two requests pass (the check comes before the
			// charge), then one every 100 ms.
			name:    "steady state bps",
			l:       Limits{BPS: 1000},
			streams: []stream{{false, 100, 6, msList(0, 0, 100, 200, 300, 400)}},
		},
		{
			name:    "steady state iops",
			l:       Limits{IOPS: 50},
			streams: []stream{{true, 4096, 9, msList(0, 0, 0, 0, 0, 0, 20, 40, 60)}},
		},
		{
			// 64 KiB costs 16 operations of 4 KiB; the bucket holds 10.
			name:    "iops_size",
			l:       Limits{IOPS: 100, IOPSSize: 4096},
			streams: []stream{{false, 65536, 4, msList(0, 60, 220, 380)}},
		},
		{
			// iops_size does not make small requests cheaper.
			name:    "iops_size small requests",
			l:       Limits{IOPS: 10, IOPSSize: 4096},
			streams: []stream{{false, 512, 4, msList(0, 0, 100, 200)}},
		},
		{
			// Burst bucket: size 20/10 = 2 ops leaking at 20/s, so after
			// three free requests one goes every 50 ms (the burst rate).
			name:    "burst",
			l:       Limits{IOPS: 10, IOPSMax: 20, IOPSMaxLength: 2},
			streams: []stream{{false, 1, 6, msList(0, 0, 0, 50, 100, 150)}},
		},
		{
			// With burst length 1 the burst rate only sizes the bucket:
			// 20 ops pass at once, then the average applies.
			name:    "burst length 1",
			l:       Limits{IOPS: 10, IOPSMax: 20},
			streams: []stream{{false, 1, 23, append(make([]time.Duration, 21), msList(100, 200)...)}},
		},
		{
			name: "mixed read/write buckets",
			l:    Limits{BPSRead: 1000, BPSWrite: 2000},
			streams: []stream{
				{false, 100, 4, msList(0, 0, 100, 200)},
				{true, 100, 5, msList(0, 0, 0, 50, 100)},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, tc.l)
			var cs []*simClient
			for i, st := range tc.streams {
				cs = append(cs, backlog(s, fmt.Sprint("m", i), st.write, st.size, st.n))
			}
			s.run(10 * time.Second)
			for i, st := range tc.streams {
				got := s.times(cs[i], st.write)
				if !slices.Equal(got, st.want) {
					t.Errorf("stream %d: admitted at %v, want %v", i, got, st.want)
				}
			}
		})
	}
}

// TestConfigChangeMidStream: new limits reset the levels and re-examine
// the waiting request at once.
func TestConfigChangeMidStream(t *testing.T) {
	s := newSim(t, Limits{BPS: 1000})
	c := backlog(s, "m", false, 100, 8)
	s.at(250*ms, func() {
		if err := s.g.SetLimits(Limits{BPS: 2000}); err != nil {
			t.Error(err)
		}
	})
	s.run(5 * time.Second)
	want := msList(0, 0, 100, 200, 250, 250, 250, 300)
	if got := s.times(c, false); !slices.Equal(got, want) {
		t.Fatalf("admitted at %v, want %v", got, want)
	}
	if s.g.Limits().BPS != 2000 {
		t.Fatal("limits not updated")
	}
}

// TestConfigChangeDisables: limits that enable nothing release the queue.
func TestConfigChangeDisables(t *testing.T) {
	s := newSim(t, Limits{IOPS: 1})
	c := backlog(s, "m", true, 1, 5)
	s.at(time.Second+500*ms, func() {
		if err := s.g.SetLimits(Limits{}); err != nil {
			t.Error(err)
		}
	})
	s.run(10 * time.Second)
	want := msList(0, 900, 1500, 1500, 1500)
	if got := s.times(c, true); !slices.Equal(got, want) {
		t.Fatalf("admitted at %v, want %v", got, want)
	}
	if s.clk.Pending() != 0 {
		t.Fatalf("%d timers left armed", s.clk.Pending())
	}
}

// TestInvalidSetLimitsKeepsState: a refused configuration changes nothing.
func TestInvalidSetLimitsKeepsState(t *testing.T) {
	s := newSim(t, Limits{BPS: 1000})
	c := backlog(s, "m", false, 100, 4)
	s.at(50*ms, func() {
		if err := s.g.SetLimits(Limits{BPS: 1, BPSRead: 1}); err == nil {
			t.Error("invalid limits accepted")
		}
	})
	s.run(time.Second)
	if got, want := s.times(c, false), msList(0, 0, 100, 200); !slices.Equal(got, want) {
		t.Fatalf("admitted at %v, want %v", got, want)
	}
}

// --- an independent model of QEMU's arithmetic, written from the
// description in shared/docs/throttle.md §2-§4, for random cross-checks.

type refBucket struct {
	avg, max, length  float64
	level, burstLevel float64
	hasBurst          bool
	avgU, maxU, lenU  uint64
}

func refModel(l Limits) ([6]refBucket, float64) {
	vals := [6][3]int64{
		{l.BPS, l.BPSMax, l.BPSMaxLength}, {l.BPSRead, l.BPSReadMax, l.BPSReadMaxLength},
		{l.BPSWrite, l.BPSWriteMax, l.BPSWriteMaxLength}, {l.IOPS, l.IOPSMax, l.IOPSMaxLength},
		{l.IOPSRead, l.IOPSReadMax, l.IOPSReadMaxLength}, {l.IOPSWrite, l.IOPSWriteMax, l.IOPSWriteMaxLength},
	}
	var bs [6]refBucket
	for i, v := range vals {
		length := v[2]
		if length == 0 {
			length = 1
		}
		bs[i] = refBucket{avg: float64(v[0]), max: float64(v[1]), length: float64(length),
			hasBurst: length > 1, avgU: uint64(v[0]), maxU: uint64(v[1]), lenU: uint64(length)}
	}
	return bs, float64(l.IOPSSize)
}

func (b *refBucket) wait() int64 {
	if b.avgU == 0 {
		return 0
	}
	var size, burstSize float64
	if b.maxU == 0 {
		size = b.avg / 10
	} else {
		size = float64(b.maxU * b.lenU)
		burstSize = b.max / 10
	}
	if extra := b.level - size; extra > 0 {
		return int64(extra * 1e9 / b.avg)
	}
	if b.hasBurst {
		if extra := b.burstLevel - burstSize; extra > 0 {
			return int64(extra * 1e9 / b.max)
		}
	}
	return 0
}

// refBacklog returns the admission times of requests all queued at time 0
// by one member in one direction.
func refBacklog(l Limits, write bool, sizes []int64) []time.Duration {
	bs, opSize := refModel(l)
	checked := []int{0, 3, 1, 4}
	if write {
		checked = []int{0, 3, 2, 5}
	}
	var now, prev int64
	var out []time.Duration
	for _, size := range sizes {
		if delta := now - prev; delta > 0 {
			for i := range bs {
				b := &bs[i]
				b.level = math.Max(b.level-b.avg*float64(delta)/1e9, 0)
				if b.hasBurst {
					b.burstLevel = math.Max(b.burstLevel-b.max*float64(delta)/1e9, 0)
				}
			}
		}
		prev = now
		var w int64
		for _, i := range checked {
			w = max(w, bs[i].wait())
		}
		now += w
		out = append(out, time.Duration(now))
		units := 1.0
		if opSize != 0 && float64(size) > opSize {
			units = float64(size) / opSize
		}
		for _, i := range checked {
			add := float64(size)
			if i >= 3 {
				add = units
			}
			bs[i].level += add
			if bs[i].hasBurst {
				bs[i].burstLevel += add
			}
		}
	}
	return out
}

func randomLimits(r *rand.Rand) Limits {
	for {
		var l Limits
		f := fieldsOf(&l)
		for i := range f {
			if r.IntN(3) == 0 {
				continue
			}
			*f[i].avg = 1 + r.Int64N(1<<20)
			if r.IntN(2) == 0 {
				*f[i].max = *f[i].avg + r.Int64N(1<<21)
				if r.IntN(2) == 0 {
					*f[i].length = 1 + r.Int64N(5)
				}
			}
		}
		if r.IntN(3) == 0 {
			l.IOPSSize = 512 << r.IntN(5)
		}
		if l.Validate() == nil && l.Enabled() {
			return l
		}
	}
}

// TestMatchesReferenceModel cross-checks the group's admission times with
// the independent model over random limits and request sizes.
func TestMatchesReferenceModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 300
	if testing.Short() {
		n = 60
	}
	for iter := range n {
		l := randomLimits(r)
		write := r.IntN(2) == 0
		sizes := make([]int64, 40)
		for i := range sizes {
			sizes[i] = 1 + r.Int64N(1<<20)
		}
		want := refBacklog(l, write, sizes)

		s := newSim(t, l)
		c := s.client("m", 0, 0)
		c.closedLoop = false
		for _, size := range sizes {
			s.submitReq(c, write, size)
		}
		s.run(want[len(want)-1] + time.Second)
		got := s.times(c, write)
		if !slices.Equal(got, want) {
			t.Fatalf("iter %d limits %+v write=%v:\n got %v\nwant %v", iter, l, write, got, want)
		}
	}
}
