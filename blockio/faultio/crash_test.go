package faultio_test

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/blockio/blocktest"
	"github.com/blocklayer/blocklayer/blockio/faultio"
)

func TestCrashConformance(t *testing.T) {
	blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
		return faultio.NewCrashMem(size)
	}, blocktest.Options{OnBase: blocktest.Identity, Short: true})
}

// The durability test also works for a device layered on the crash device
// (here an Injector without rules standing in for an image format).
func TestCrashLayered(t *testing.T) {
	blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
		return faultio.NewInjector(blockio.NewMem(size))
	}, blocktest.Options{Short: true, OnBase: func(t *testing.T, base blockio.Device, size int64, create bool) blockio.Device {
		return faultio.NewInjector(base)
	}})
}

func read(t *testing.T, d blockio.Device, off, n int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := d.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

func sector(v byte) []byte { return bytes.Repeat([]byte{v}, faultio.SectorSize) }

func TestCrashBasics(t *testing.T) {
	c := faultio.NewCrashMem(1 << 20)
	c.WriteAt(sector(1), 0)
	c.WriteAt(sector(2), 512)
	if c.Unflushed() != 2 || c.UnflushedSectors() != 2 {
		t.Fatalf("unflushed %d/%d", c.Unflushed(), c.UnflushedSectors())
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if c.Unflushed() != 0 || c.UnflushedSectors() != 0 {
		t.Fatalf("after flush unflushed %d/%d", c.Unflushed(), c.UnflushedSectors())
	}
	c.WriteAt(sector(3), 0)    // overwrite flushed data
	c.WriteAt(sector(4), 1024) // new data
	c.WriteAt(sector(5), 1024) // overwrite unflushed data
	none, err := c.CrashKeepNone()
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(sector(1), sector(2)...), sector(0)...)
	if got := read(t, none, 0, 1536); !bytes.Equal(got, want) {
		t.Fatalf("keep none: %v %v %v", got[0], got[512], got[1024])
	}
	all, _ := c.CrashKeepAll()
	want = append(append(sector(3), sector(2)...), sector(5)...)
	if got := read(t, all, 0, 1536); !bytes.Equal(got, want) {
		t.Fatal("keep all differs from the current content")
	}
	// Random crashes: every outcome allowed by the write history, and all
	// of them eventually.
	seen := map[[2]byte]bool{}
	for seed := uint64(0); seed < 64; seed++ {
		img, err := c.Crash(rand.New(rand.NewPCG(seed, 0)))
		if err != nil {
			t.Fatal(err)
		}
		got := read(t, img, 0, 1536)
		s0, s2 := got[0], got[1024]
		if !bytes.Equal(got[:512], sector(s0)) || !bytes.Equal(got[1024:], sector(s2)) {
			t.Fatal("torn sector")
		}
		if (s0 != 1 && s0 != 3) || (s2 != 0 && s2 != 4 && s2 != 5) || got[512] != 2 {
			t.Fatalf("impossible crash image: %d %d %d", s0, got[512], s2)
		}
		seen[[2]byte{s0, s2}] = true
	}
	if len(seen) != 6 {
		t.Fatalf("saw %d of 6 possible outcomes in 64 crashes", len(seen))
	}
	// The crash device itself is unchanged.
	if got := read(t, c, 1024, 1); got[0] != 5 {
		t.Fatal("crash changed the device")
	}
}

func TestCrashSubSector(t *testing.T) {
	c := faultio.NewCrashMem(4096)
	c.WriteAt([]byte("abc"), 100) // sector 0, partial
	c.WriteAt([]byte("xyz"), 510) // straddles sectors 0 and 1
	img, _ := c.CrashSelect(func(w uint64, s int64) bool { return w == 2 && s == 1 })
	got := read(t, img, 0, 1024)
	if got[100] != 0 || got[510] != 0 || got[512] != 'z' {
		t.Fatalf("per-sector selection wrong: %q %q", got[100:103], got[510:513])
	}
	img, _ = c.CrashSelect(func(w uint64, s int64) bool { return w == 1 })
	got = read(t, img, 0, 1024)
	if string(got[100:103]) != "abc" || got[510] != 0 || got[512] != 0 {
		t.Fatal("keeping only write 1 wrong")
	}
	img, _ = c.CrashSelect(func(w uint64, s int64) bool { return w == 2 })
	got = read(t, img, 0, 1024)
	// Write 2's version of sector 0 includes write 1's bytes, as the page
	// cache would have sent the whole sector.
	if string(got[100:103]) != "abc" || string(got[510:513]) != "xyz" {
		t.Fatal("keeping only write 2 wrong")
	}
}

func TestCrashDiscardZeroTruncate(t *testing.T) {
	c := faultio.NewCrashMem(1 << 20)
	c.WriteAt(bytes.Repeat([]byte{7}, 8192), 0)
	c.Flush()
	c.Discard(0, 4096)
	c.WriteZeroes(4096, 1024, false)
	if c.Unflushed() != 2 {
		t.Fatalf("unflushed = %d", c.Unflushed())
	}
	none, _ := c.CrashKeepNone()
	if got := read(t, none, 0, 8192); !bytes.Equal(got, bytes.Repeat([]byte{7}, 8192)) {
		t.Fatal("discard/zero not undone by a crash")
	}
	all, _ := c.CrashKeepAll()
	if got := read(t, all, 0, 5120); !blockio.IsZero(got) {
		t.Fatal("discard/zero lost in keep-all")
	}
	// Shrink into unflushed data, grow back: the cut part stays zero.
	c.WriteAt(bytes.Repeat([]byte{9}, 1024), 6144)
	if err := c.Truncate(6400, blockio.PreallocOff); err != nil {
		t.Fatal(err)
	}
	c.Truncate(1<<20, blockio.PreallocOff)
	for _, f := range []func() (*blockio.Mem, error){c.CrashKeepNone, c.CrashKeepAll} {
		img, err := f()
		if err != nil {
			t.Fatal(err)
		}
		if img.Size() != 1<<20 {
			t.Fatal("size")
		}
		if got := read(t, img, 6400, 1024); !blockio.IsZero(got) {
			t.Fatal("truncated data reappeared after crash")
		}
	}
}

func TestCrashFlushFailure(t *testing.T) {
	c := faultio.NewCrashDevice(faultio.NewInjector(blockio.NewMem(1 << 20)))
	inj := c.Base().(*faultio.Injector)
	inj.Add(faultio.Rule{Ops: faultio.OpFlush, Once: true})
	c.WriteAt(sector(1), 0)
	if err := c.Flush(); err == nil {
		t.Fatal("flush succeeded")
	}
	if c.Unflushed() != 1 {
		t.Fatal("failed flush made writes durable")
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if c.Unflushed() != 0 {
		t.Fatal("flush did not make writes durable")
	}
}

func TestCrashConcurrent(t *testing.T) {
	c := faultio.NewCrashMem(1 << 20)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				c.WriteAt(sector(byte(g+1)), int64(g*512))
				if i%10 == 0 {
					c.Flush()
				}
				if i%17 == 0 {
					if _, err := c.Crash(rand.New(rand.NewPCG(uint64(g), uint64(i)))); err != nil {
						t.Error(err)
					}
				}
			}
		}(g)
	}
	wg.Wait()
	c.Flush()
	img, _ := c.CrashKeepNone()
	for g := 0; g < 4; g++ {
		if got := read(t, img, int64(g*512), 512); !bytes.Equal(got, sector(byte(g+1))) {
			t.Fatal("flushed data lost")
		}
	}
	c.Close()
	if _, err := c.Crash(rand.New(rand.NewPCG(1, 1))); !errors.Is(err, blockio.ErrClosed) {
		t.Fatalf("crash after close = %v", err)
	}
}

// A crash device over a non-Mem base is cloned through BlockStatus.
func TestCrashGenericBase(t *testing.T) {
	c := faultio.NewCrashDevice(faultio.NewInjector(blockio.NewMem(1 << 20)))
	c.WriteAt([]byte("durable"), 300000)
	c.Flush()
	c.WriteAt([]byte("lost"), 700000)
	img, err := c.CrashKeepNone()
	if err != nil {
		t.Fatal(err)
	}
	if string(read(t, img, 300000, 7)) != "durable" || !blockio.IsZero(read(t, img, 700000, 4)) {
		t.Fatal("generic clone wrong")
	}
}

// TestCrashSectorSpanNearMaxInt64: a write ending inside the last partial
// sector of a device whose size is close to math.MaxInt64 must not
// overflow the sector rounding.
func TestCrashSectorSpanNearMaxInt64(t *testing.T) {
	const size = math.MaxInt64
	c := faultio.NewCrashMem(size)
	if _, err := c.WriteAt([]byte("tail"), size-10); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteAt([]byte("x"), size-1); err != nil {
		t.Fatal(err)
	}
	if got := c.UnflushedSectors(); got != 1 {
		t.Fatalf("UnflushedSectors = %d, want 1", got)
	}
	img, err := c.CrashKeepNone()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := img.ReadAt(buf, size-10); err != nil || !blockio.IsZero(buf) {
		t.Fatalf("crash keeping nothing reads %q, %v", buf, err)
	}
	if img, err = c.CrashKeepAll(); err != nil {
		t.Fatal(err)
	}
	if _, err := img.ReadAt(buf, size-10); err != nil || string(buf) != "tail\x00\x00\x00\x00\x00x" {
		t.Fatalf("crash keeping all reads %q, %v", buf, err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}
