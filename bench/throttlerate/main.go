// Command throttlerate measures, with the real clock, the rate that
// blocklayer's throttling achieves: a throttle group limited to -rate
// bytes/s driven by several goroutines on two members, and a block-job
// RateLimiter at the same speed. It prints the achieved rates and their
// error against the limit and exits with status 1 if a steady-state rate
// is off by more than -tol.
//
//	go run ./bench/throttlerate -rate 10485760 -dur 3s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blocklayer/blocklayer/throttle"
)

func main() {
	rate := flag.Int64("rate", 10<<20, "limit in bytes per second")
	dur := flag.Duration("dur", 3*time.Second, "measurement window")
	size := flag.Int64("size", 64<<10, "request size in bytes")
	workers := flag.Int("workers", 4, "goroutines issuing requests (on two members)")
	tol := flag.Float64("tol", 0.03, "allowed relative error of steady-state rates")
	qemu := flag.Bool("qemu", false, "also compare sequential-write timings with qemu-io")
	flag.Parse()

	ok := true
	report := func(what string, bytes int64, d time.Duration, judged bool) {
		got := float64(bytes) / d.Seconds()
		errRel := (got - float64(*rate)) / float64(*rate)
		verdict := "info"
		if judged {
			verdict = "ok"
			if math.Abs(errRel) > *tol {
				verdict = "FAIL"
				ok = false
			}
		}
		fmt.Printf("%-44s %8.3f MiB/s over %-8v (%+.2f%%) %s\n", what, got/(1<<20), d.Round(time.Millisecond), errRel*100, verdict)
	}

	// 1. A throttle group (QEMU's block_set_io_throttle bps). The first
	// 100 ms worth of the limit passes unthrottled (the bucket's size),
	// so the overall figure includes that allowance; the steady-state
	// window starts after warm-up.
	g, err := throttle.NewGroup("bench", throttle.Limits{BPS: *rate})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	members := []*throttle.Member{g.Join("a"), g.Join("b")}
	var admitted atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	warmup := time.Second
	start := time.Now()
	var atWarm int64
	for i := range *workers {
		m := members[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if err := m.Wait(context.Background(), i%3 == 0, *size); err != nil {
					panic(err)
				}
				admitted.Add(*size)
			}
		}()
	}
	time.Sleep(*dur)
	report("group: overall from start (incl. 100 ms)", admitted.Load(), time.Since(start), false)
	time.Sleep(warmup - min(warmup, *dur))
	atWarm = admitted.Load()
	warmStart := time.Now()
	time.Sleep(*dur)
	report("group: steady state", admitted.Load()-atWarm, time.Since(warmStart), true)
	stop.Store(true)
	wg.Wait()
	for _, m := range members {
		m.Leave()
	}

	// 2. A block job paced by RateLimiter (job speed).
	r, err := throttle.NewRateLimiter(*rate)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var copied int64
	jobStart := time.Now()
	for time.Since(jobStart) < *dur {
		if err := r.Sleep(context.Background()); err != nil {
			panic(err)
		}
		copied += *size
		r.Account(*size)
	}
	report("job rate limiter", copied, time.Since(jobStart), true)
	if *qemu {
		compareQEMU()
	}
	if !ok {
		os.Exit(1)
	}
}

// scenario is a run of n sequential writes of size bytes under limits l
// (and the same limits as a QAPI ThrottleLimits object for QEMU).
type scenario struct {
	name string
	l    throttle.Limits
	qom  map[string]int64
	n    int
	size int64
}

func compareQEMU() {
	scenarios := []scenario{
		{"bps 10 MiB/s, 480 x 64 KiB", throttle.Limits{BPS: 10 << 20},
			map[string]int64{"bps-total": 10 << 20}, 480, 64 << 10},
		{"iops 100, iops-size 4 KiB, 20 x 64 KiB", throttle.Limits{IOPS: 100, IOPSSize: 4096},
			map[string]int64{"iops-total": 100, "iops-size": 4096}, 20, 64 << 10},
		{"bps 1 MiB/s burst 4 MiB/s x 2 s, 160 x 64 KiB",
			throttle.Limits{BPS: 1 << 20, BPSMax: 4 << 20, BPSMaxLength: 2},
			map[string]int64{"bps-total": 1 << 20, "bps-total-max": 4 << 20, "bps-total-max-length": 2}, 160, 64 << 10},
	}
	fmt.Println()
	fmt.Printf("%-46s %10s %10s %10s\n", "sequential writes", "model", "ours", "qemu-io")
	base, err := qemuIO(nil, 1, 512) // process start-up, unthrottled
	if err != nil {
		fmt.Println("qemu-io:", err)
		return
	}
	for _, sc := range scenarios {
		model := modelTime(sc)
		ours := oursTime(sc)
		q, err := qemuIO(sc.qom, sc.n, sc.size)
		qs := "error"
		if err == nil {
			qs = fmt.Sprintf("%.3fs", (q - base).Seconds())
		} else {
			fmt.Println("qemu-io:", err)
		}
		fmt.Printf("%-46s %9.3fs %9.3fs %10s\n", sc.name, model.Seconds(), ours.Seconds(), qs)
	}
	fmt.Printf("(qemu-io times exclude its start-up, measured as %v)\n", base.Round(time.Millisecond))
}

// modelTime is the exact time at which the last write is admitted.
func modelTime(sc scenario) time.Duration {
	clk := throttle.NewFakeClock(0)
	g, err := throttle.NewGroup("model", sc.l, throttle.WithClock(clk))
	if err != nil {
		panic(err)
	}
	m := g.Join("m")
	done := make(chan struct{})
	go func() {
		for range sc.n {
			if err := m.Wait(context.Background(), true, sc.size); err != nil {
				panic(err)
			}
		}
		close(done)
	}()
	for {
		select {
		case <-done:
			return clk.Now()
		default:
		}
		if m.Stats().QueuedWrites > 0 {
			clk.RunNext()
		} else {
			time.Sleep(5 * time.Microsecond)
		}
	}
}

func oursTime(sc scenario) time.Duration {
	g, err := throttle.NewGroup("ours", sc.l)
	if err != nil {
		panic(err)
	}
	m := g.Join("m")
	start := time.Now()
	for range sc.n {
		if err := m.Wait(context.Background(), true, sc.size); err != nil {
			panic(err)
		}
	}
	return time.Since(start)
}

// qemuIO times n sequential writes through a throttle filter node on a
// null-co device (limits nil: no throttle node).
func qemuIO(limits map[string]int64, n int, size int64) (time.Duration, error) {
	var args []string
	image := "driver=null-co,size=1G"
	if limits != nil {
		obj, _ := json.Marshal(map[string]any{"qom-type": "throttle-group", "id": "tg0", "limits": limits})
		args = append(args, "--object", string(obj))
		image = "driver=throttle,throttle-group=tg0,file.driver=null-co,file.size=1G"
	}
	args = append(args, "--image-opts", image)
	for i := range n {
		args = append(args, "-c", fmt.Sprintf("write -q %d %d", int64(i)*size, size))
	}
	start := time.Now()
	out, err := exec.Command("qemu-io", args...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, out)
	}
	return time.Since(start), nil
}
