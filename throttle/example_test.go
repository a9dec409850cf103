package throttle_test

import (
	"fmt"
	"time"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/throttle"
)

// Two disks share 1 MiB/s. A simulated clock makes the example
// deterministic; without WithClock the group uses the real clock.
func Example() {
	clk := throttle.NewFakeClock(0)
	g, err := throttle.NewGroup("tenant-a", throttle.Limits{BPS: 1 << 20}, throttle.WithClock(clk))
	if err != nil {
		panic(err)
	}
	vda := throttle.NewDevice(blockio.NewMem(64<<20), g.Join("vda"))
	vdb := throttle.NewDevice(blockio.NewMem(64<<20), g.Join("vdb"))

	done := make(chan time.Duration, 2)
	for _, dev := range []*throttle.Device{vda, vdb} {
		go func() {
			buf := make([]byte, 128<<10)
			for i := range 8 { // 1 MiB per disk
				if _, err := dev.WriteAt(buf, int64(i)*int64(len(buf))); err != nil {
					panic(err)
				}
			}
			done <- clk.Now()
		}()
	}
	// Drive the simulated clock: whenever requests are queued, jump to the
	// group's timer.
	for finished := 0; finished < 2; {
		select {
		case <-done:
			finished++
			continue
		default:
		}
		a, b := vda.Member().Stats(), vdb.Member().Stats()
		if a.QueuedWrites+b.QueuedWrites > 0 {
			clk.RunNext()
		} else {
			time.Sleep(10 * time.Microsecond)
		}
	}
	fmt.Printf("2 MiB written by two disks in %v at 1 MiB/s\n", clk.Now().Round(time.Millisecond))
	fmt.Println("vda wrote", vda.Member().Stats().WriteBytes>>10, "KiB; vdb wrote", vdb.Member().Stats().WriteBytes>>10, "KiB")
	// Output:
	// 2 MiB written by two disks in 1.775s at 1 MiB/s
	// vda wrote 1024 KiB; vdb wrote 1024 KiB
}

func ExampleLimits_Validate() {
	for _, l := range []throttle.Limits{
		{BPS: 10 << 20, BPSMax: 100 << 20, BPSMaxLength: 30},
		{BPS: 10 << 20, BPSRead: 5 << 20},
		{IOPS: 500, IOPSMax: 100},
		{BPS: 1 << 20, BPSMaxLength: 10},
	} {
		fmt.Println(l.Validate())
	}
	// Output:
	// <nil>
	// bps/iops/max total values and read/write values cannot be used at the same time
	// bps_max/iops_max cannot be lower than bps/iops
	// burst length set without burst rate
}

// A block job copying at speed 4 MiB/s in 1 MiB chunks.
func ExampleRateLimiter() {
	clk := throttle.NewFakeClock(0)
	r, err := throttle.NewRateLimiter(4<<20, throttle.WithClock(clk))
	if err != nil {
		panic(err)
	}
	var copied int64
	for copied < 16<<20 {
		if d := r.Delay(); d > 0 { // a real job calls r.Sleep(ctx)
			clk.Advance(d)
			continue
		}
		copied += 1 << 20 // copy a chunk, then account it
		r.Account(1 << 20)
	}
	fmt.Printf("copied %d MiB, last chunk started at %v\n", copied>>20, clk.Now().Round(time.Millisecond))
	// Output:
	// copied 16 MiB, last chunk started at 3.75s
}
