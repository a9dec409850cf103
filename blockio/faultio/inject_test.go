package faultio_test

import (
	"errors"
	"math"
	"sync"
	"syscall"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/blockio/blocktest"
	"github.com/blocklayer/blocklayer/blockio/faultio"
)

func TestInjectorConformance(t *testing.T) {
	blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
		d := faultio.NewInjector(blockio.NewMem(size))
		d.Add(faultio.Rule{Ops: faultio.OpWrite, Off: 1 << 50, Len: 1}) // never matches
		return d
	}, blocktest.Options{Short: true})
}

func TestInjectorNth(t *testing.T) {
	d := faultio.NewInjector(blockio.NewMem(1 << 20))
	id := d.Add(faultio.Rule{Ops: faultio.OpWrite, Nth: 3, Once: true, Errno: syscall.ENOSPC})
	buf := make([]byte, 512)
	for i := 1; i <= 5; i++ {
		_, err := d.WriteAt(buf, 0)
		if i == 3 {
			if !errors.Is(err, blockio.ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("write %d = %v, want ENOSPC/ErrNoSpace", i, err)
			}
			var oe *blockio.OpError
			if !errors.As(err, &oe) || oe.Op != "write" {
				t.Fatalf("error %v is not an OpError for write", err)
			}
		} else if err != nil {
			t.Fatalf("write %d = %v", i, err)
		}
	}
	if d.Fired(id) != 1 || d.Count(faultio.OpWrite) != 5 || d.Count(faultio.OpRead) != 0 {
		t.Fatalf("fired %d, writes %d", d.Fired(id), d.Count(faultio.OpWrite))
	}
	// Reads are unaffected.
	if _, err := d.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
}

func TestInjectorAlways(t *testing.T) {
	d := faultio.NewInjector(blockio.NewMem(1 << 20))
	id := d.Add(faultio.Rule{Ops: faultio.OpRead | faultio.OpFlush, Nth: 2})
	buf := make([]byte, 512)
	if _, err := d.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := d.ReadAt(buf, 0); !errors.Is(err, syscall.EIO) {
			t.Fatalf("read = %v, want EIO", err)
		}
	}
	if err := d.Flush(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("flush = %v", err)
	}
	d.Remove(id)
	if _, err := d.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
}

func TestInjectorRange(t *testing.T) {
	mem := blockio.NewMem(1 << 20)
	d := faultio.NewInjector(mem)
	d.Add(faultio.Rule{Ops: faultio.OpWrite | faultio.OpDiscard | faultio.OpZero, Off: 4096, Len: 4096, Errno: syscall.EROFS})
	buf := []byte{1, 2, 3, 4}
	for _, c := range []struct {
		off  int64
		fail bool
	}{{0, false}, {4092, false}, {4093, true}, {4096, true}, {8191, true}, {8192, false}} {
		_, err := d.WriteAt(buf, c.off)
		if (err != nil) != c.fail {
			t.Errorf("write at %d: %v (want failure %v)", c.off, err, c.fail)
		}
		if c.fail && !errors.Is(err, blockio.ErrReadOnly) {
			t.Errorf("write at %d: %v, want EROFS mapped to ErrReadOnly", c.off, err)
		}
	}
	// A failed request does not reach the base.
	got := make([]byte, 4)
	mem.ReadAt(got, 4096)
	if !blockio.IsZero(got) {
		t.Fatal("failed write reached the base")
	}
	if err := d.Discard(0, 8192); err == nil {
		t.Fatal("discard over the range succeeded")
	}
	if err := d.WriteZeroes(8192, 512, false); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil {
		t.Fatalf("flush matched a ranged rule: %v", err)
	}
	d.Clear()
	if err := d.Discard(0, 8192); err != nil {
		t.Fatal(err)
	}
}

func TestInjectorConcurrent(t *testing.T) {
	d := faultio.NewInjector(blockio.NewMem(1 << 20))
	id := d.Add(faultio.Rule{Ops: faultio.OpWrite, Nth: 50, Once: true})
	var wg sync.WaitGroup
	var mu sync.Mutex
	fails := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			buf := make([]byte, 512)
			for i := 0; i < 25; i++ {
				if _, err := d.WriteAt(buf, int64(g*512)); err != nil {
					mu.Lock()
					fails++
					mu.Unlock()
				}
			}
		}(g)
	}
	wg.Wait()
	if fails != 1 || d.Fired(id) != 1 || d.Count(faultio.OpAll) != 200 {
		t.Fatalf("fails=%d fired=%d count=%d", fails, d.Fired(id), d.Count(faultio.OpAll))
	}
}

func TestOpString(t *testing.T) {
	if s := (faultio.OpRead | faultio.OpFlush).String(); s != "read|flush" {
		t.Fatal(s)
	}
	if s := faultio.Op(0).String(); s != "none" {
		t.Fatal(s)
	}
}

// TestInjectRangeToEnd: a rule with Len = math.MaxInt64 ("from Off to the
// end") and requests near the top of the offset space must match by
// overlap, not by an overflowing Off+Len.
func TestInjectRangeToEnd(t *testing.T) {
	const size = math.MaxInt64
	d := faultio.NewInjector(blockio.NewMem(size))
	d.Add(faultio.Rule{Ops: faultio.OpWrite, Off: 1 << 40, Len: math.MaxInt64})
	p := []byte("data")
	for _, c := range []struct {
		off  int64
		fail bool
	}{
		{0, false},
		{1<<40 - 4, false},
		{1<<40 - 3, true}, // overlaps the rule's first byte
		{1 << 40, true},
		{size - 4, true},
	} {
		_, err := d.WriteAt(p, c.off)
		if got := errors.Is(err, syscall.EIO); got != c.fail {
			t.Errorf("write at %d: err %v, want failure %v", c.off, err, c.fail)
		}
	}
	d.Clear()
	d.Add(faultio.Rule{Ops: faultio.OpWrite, Off: -5, Len: 10}) // covers [0, 5)
	if _, err := d.WriteAt(p, 4); !errors.Is(err, syscall.EIO) {
		t.Errorf("write at 4 under a rule [-5, 5): %v", err)
	}
	if _, err := d.WriteAt(p, 5); err != nil {
		t.Errorf("write at 5 under a rule [-5, 5): %v", err)
	}
}
