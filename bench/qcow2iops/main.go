// Command qcow2iops measures small-request IOPS through blocklayer's qcow2
// driver, in the request patterns `qemu-img bench` uses, so that run.sh
// can put both side by side.
//
// Patterns:
//
//   - stride (default): request i goes to (offset + i*step) mod size, the
//     exact offset sequence of `qemu-img bench -o offset -S step`.
//     step = request size gives qemu-img bench's default sequential
//     pattern; an odd multiple of the request size visits every aligned
//     block of the image once per pass in a scattered order.
//   - random: uniformly random request-aligned offsets (seeded PCG, one
//     stream per goroutine). qemu-img bench has no random mode.
//
// -d goroutines issue requests concurrently (qemu-img bench -d keeps that
// many requests in flight); -c requests in total, or for -dur when set.
// Only the request loop is timed (as qemu-img bench times only its
// request loop); the image is closed (flushed) afterwards and the close
// time is printed separately.
//
// -procs sets GOMAXPROCS. It matters with -direct: a goroutine blocked in
// an O_DIRECT pread/pwrite keeps its P until the runtime's sysmon hands
// it off, so with GOMAXPROCS = 2 fewer than -d requests are in flight at
// once; page-cache requests are too short for that to matter.
//
// Output, one line:
//
//	qcow2iops rw=read pattern=stride step=4096 depth=32 size=4096 direct=false procs=2 requests=200000 seconds=1.234567 iops=162000.0 close=0.001s
//
// Example:
//
//	go run ./bench/qcow2iops -f /tmp/img.qcow2 -rw write -d 32 -c 200000
package main

import (
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/blocklayer/blocklayer/qcow2"
)

func main() {
	path := flag.String("f", "", "qcow2 image (must exist; its contents are overwritten by -rw write)")
	rw := flag.String("rw", "read", "read or write")
	pattern := flag.String("pattern", "stride", "stride (qemu-img bench's offset sequence) or random")
	step := flag.Int64("S", 0, "stride step in bytes (0 = request size, i.e. sequential)")
	start := flag.Int64("o", 0, "first offset (stride pattern)")
	size := flag.Int("s", 4096, "request size in bytes")
	depth := flag.Int("d", 32, "goroutines issuing requests concurrently")
	count := flag.Int64("c", 200000, "number of requests")
	dur := flag.Duration("dur", 0, "run for this long instead of -c requests")
	direct := flag.Bool("direct", false, "open the image with O_DIRECT (qemu -t none)")
	seed := flag.Uint64("seed", 1, "random pattern seed")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the request loop here")
	lat := flag.Bool("lat", false, "also report the slowest request and the number of requests slower than 10 ms")
	procs := flag.Int("procs", 0, "set GOMAXPROCS (0 = Go's default, the number of CPUs)")
	flag.Parse()
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	if *path == "" || (*rw != "read" && *rw != "write") || (*pattern != "stride" && *pattern != "random") ||
		*size <= 0 || *depth <= 0 || (*count <= 0 && *dur <= 0) {
		flag.Usage()
		os.Exit(2)
	}
	if *step == 0 {
		*step = int64(*size)
	}
	write := *rw == "write"

	img, err := qcow2.OpenFile(*path, qcow2.Options{ReadOnly: !write, Direct: *direct})
	if err != nil {
		log.Fatal(err)
	}
	isize := img.Size()
	bs := int64(*size)
	if isize < bs {
		log.Fatalf("image (%d bytes) smaller than one request", isize)
	}
	if *start < 0 || *start >= isize {
		log.Fatalf("-o %d outside the image", *start)
	}
	nblocks := isize / bs

	limit := *count
	if *dur > 0 {
		limit = 1<<62 - 1
	}
	var next atomic.Int64 // requests issued
	var stop atomic.Bool
	var failed atomic.Value
	var wg sync.WaitGroup
	var maxLat, slow atomic.Int64 // -lat: slowest request (ns), requests > 10 ms

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer f.Close()
	}
	t0 := time.Now()
	if *dur > 0 {
		time.AfterFunc(*dur, func() { stop.Store(true) })
	}
	for w := 0; w < *depth; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buf := alignedBuf(*size, 4096)
			for i := range buf {
				buf[i] = byte(i*7 + w)
			}
			r := rand.New(rand.NewPCG(*seed, uint64(w)))
			for !stop.Load() {
				i := next.Add(1) - 1
				if i >= limit {
					return
				}
				var off int64
				if *pattern == "random" {
					off = r.Int64N(nblocks) * bs
				} else {
					// qemu-img 7.2 wraps modulo the image size (offsets
					// stay aligned because step and size are).
					off = int64((uint64(*start) + uint64(i)*uint64(*step)) % uint64(isize))
					if off+bs > isize {
						off = 0
					}
				}
				var err error
				var ts time.Time
				if *lat {
					ts = time.Now()
				}
				if write {
					_, err = img.WriteAt(buf, off)
				} else {
					_, err = img.ReadAt(buf, off)
				}
				if *lat {
					d := int64(time.Since(ts))
					if d > 10e6 {
						slow.Add(1)
					}
					for m := maxLat.Load(); d > m && !maxLat.CompareAndSwap(m, d); m = maxLat.Load() {
					}
				}
				if err != nil {
					failed.CompareAndSwap(nil, fmt.Errorf("%s at %d: %w", *rw, off, err))
					stop.Store(true)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if *cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	if e := failed.Load(); e != nil {
		log.Fatal(e)
	}
	done := min(next.Load(), limit)
	t1 := time.Now()
	if err := img.Close(); err != nil {
		log.Fatal(err)
	}
	closeT := time.Since(t1)
	stepOut := *step
	if *pattern == "random" {
		stepOut = 0
	}
	fmt.Printf("qcow2iops rw=%s pattern=%s step=%d depth=%d size=%d direct=%v procs=%d requests=%d seconds=%.6f iops=%.1f close=%.3fs\n",
		*rw, *pattern, stepOut, *depth, *size, *direct, runtime.GOMAXPROCS(0), done, elapsed.Seconds(),
		float64(done)/elapsed.Seconds(), closeT.Seconds())
	if *lat {
		fmt.Printf("qcow2iops max-latency=%v slow(>10ms)=%d\n", time.Duration(maxLat.Load()), slow.Load())
	}
}

// alignedBuf returns n bytes whose address is a multiple of align (so that
// O_DIRECT requests need no bounce buffer).
func alignedBuf(n, align int) []byte {
	b := make([]byte, n+align)
	a := int(uintptr(unsafe.Pointer(&b[0])) & uintptr(align-1))
	if a != 0 {
		a = align - a
	}
	return b[a : a+n : a+n]
}
