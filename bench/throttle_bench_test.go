package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/throttle"
)

// Throttling overhead when no request has to wait. Baseline: the same
// device without the throttle wrapper. (The real-clock rate check is the
// program in ./throttlerate.)

func thrMemDevice(b *testing.B) blockio.Device {
	mem := blockio.NewMem(64 << 20)
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	if _, err := mem.WriteAt(buf, 0); err != nil {
		b.Fatal(err)
	}
	return mem
}

func thrDevice(b *testing.B, l throttle.Limits) blockio.Device {
	g, err := throttle.NewGroup("bench", l)
	if err != nil {
		b.Fatal(err)
	}
	return throttle.NewDevice(thrMemDevice(b), g.Join("dev"))
}

func thrRead4K(b *testing.B, dev blockio.Device) {
	buf := make([]byte, 4096)
	b.SetBytes(4096)
	b.ReportAllocs()
	off := int64(0)
	for b.Loop() {
		if _, err := dev.ReadAt(buf, off); err != nil {
			b.Fatal(err)
		}
		off = (off + 4096) % (64 << 20)
	}
}

func BenchmarkThrottleRead4K(b *testing.B) {
	b.Run("baseline=mem", func(b *testing.B) { thrRead4K(b, thrMemDevice(b)) })
	b.Run("unlimited", func(b *testing.B) { thrRead4K(b, thrDevice(b, throttle.Limits{})) })
	b.Run("under-limit", func(b *testing.B) {
		thrRead4K(b, thrDevice(b, throttle.Limits{BPS: throttle.ValueMax, IOPS: throttle.ValueMax}))
	})
}

func BenchmarkThrottleWait(b *testing.B) {
	for _, c := range []struct {
		name string
		l    throttle.Limits
	}{
		{"unlimited", throttle.Limits{}},
		{"under-limit", throttle.Limits{BPS: throttle.ValueMax, IOPS: throttle.ValueMax}},
		{"under-limit-burst", throttle.Limits{BPSWrite: throttle.ValueMax / 4, BPSWriteMax: throttle.ValueMax / 2,
			BPSWriteMaxLength: 2, IOPSWrite: throttle.ValueMax / 4, IOPSSize: 4096}},
	} {
		b.Run(c.name, func(b *testing.B) {
			g, err := throttle.NewGroup("bench", c.l)
			if err != nil {
				b.Fatal(err)
			}
			m := g.Join("m")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Wait(ctx, true, 4096); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkThrottleWaitMembers: members of one group issuing in parallel
// (the group's lock is shared).
func BenchmarkThrottleWaitMembers(b *testing.B) {
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			g, _ := throttle.NewGroup("bench", throttle.Limits{BPS: throttle.ValueMax, IOPS: throttle.ValueMax})
			ms := make(chan *throttle.Member, n)
			for i := range n {
				ms <- g.Join(fmt.Sprint("m", i))
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(max(n/2, 1))
			b.RunParallel(func(pb *testing.PB) {
				var m *throttle.Member
				select {
				case m = <-ms:
				default:
					m = g.Join("extra")
				}
				for pb.Next() {
					if err := m.Wait(ctx, false, 4096); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
