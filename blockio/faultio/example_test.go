package faultio_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/blockio/faultio"
)

// Crash-test an update: write, flush, write more, then look at what a
// power cut could leave behind.
func Example() {
	disk := faultio.NewCrashMem(1 << 20)

	disk.WriteAt([]byte("committed"), 0)
	disk.Flush() // everything written so far is now durable
	disk.WriteAt([]byte("in flight"), 4096)
	fmt.Println("unflushed writes:", disk.Unflushed())

	// Worst case: nothing since the flush reached the disk.
	img, _ := disk.CrashKeepNone()
	buf := make([]byte, 9)
	img.ReadAt(buf, 0)
	fmt.Printf("after crash: %q\n", buf)
	img.ReadAt(buf, 4096)
	fmt.Println("in-flight write survived:", !blockio.IsZero(buf))

	// Random power cuts: each unflushed write is kept or lost per sector.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 3 {
		img, _ := disk.Crash(rng)
		img.ReadAt(buf, 0)
		fmt.Printf("flushed data: %q\n", buf) // always intact
	}

	// Fault injection: the third write fails with ENOSPC.
	dev := faultio.NewInjector(blockio.NewMem(1 << 20))
	dev.Add(faultio.Rule{Ops: faultio.OpWrite, Nth: 3, Once: true, Errno: syscall.ENOSPC})
	for i := range 4 {
		_, err := dev.WriteAt([]byte{1}, int64(i))
		fmt.Println("write", i+1, errors.Is(err, blockio.ErrNoSpace))
	}
	// Output:
	// unflushed writes: 1
	// after crash: "committed"
	// in-flight write survived: false
	// flushed data: "committed"
	// flushed data: "committed"
	// flushed data: "committed"
	// write 1 false
	// write 2 false
	// write 3 true
	// write 4 false
}

// commit is a toy metadata update: write a record, flush, then point the
// header at it and flush again.
func commit(dev blockio.Device, rec string) error {
	if _, err := dev.WriteAt([]byte(rec), 4096); err != nil {
		return err
	}
	if err := dev.Flush(); err != nil {
		return err
	}
	if _, err := dev.WriteAt([]byte{byte(len(rec))}, 0); err != nil {
		return err
	}
	return dev.Flush()
}

// Prove an update crash-safe: cut the power before each of its requests
// in turn (an Injector fails the Nth request and everything after it, as a
// dead disk would), and check every image a power cut could leave.
func ExampleCrashDevice_everyPoint() {
	points := 0
	for n := 1; ; n++ {
		disk := faultio.NewCrashMem(1 << 20)
		dev := faultio.NewInjector(disk)
		dev.Add(faultio.Rule{Ops: faultio.OpAll &^ faultio.OpRead, Nth: n})
		err := commit(dev, "new record")

		rng := rand.New(rand.NewPCG(uint64(n), 0))
		for range 16 {
			img, _ := disk.Crash(rng)
			hdr := make([]byte, 1)
			img.ReadAt(hdr, 0)
			if hdr[0] != 0 { // the header points at a record: it must be whole
				rec := make([]byte, hdr[0])
				img.ReadAt(rec, 4096)
				if string(rec) != "new record" {
					fmt.Println("torn update at point", n)
				}
			}
		}
		points++
		if err == nil {
			break
		}
	}
	fmt.Println("crash points checked:", points)
	// Output:
	// crash points checked: 5
}
