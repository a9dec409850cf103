package main

import (
	"strings"
	"syscall"

	"github.com/blocklayer/blocklayer/blockio/faultio"
	"math/rand/v2"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
)

// newHalfFull returns an in-memory device with every other MiB filled
// with pseudo-random data.
func newHalfFull(size int64) *blockio.Mem {
	m := blockio.NewMem(size)
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += 2 << 20 {
		for i := range buf {
			buf[i] = byte(r.Uint32())
		}
		m.WriteAt(buf, off)
	}
	return m
}

func convertMem(t testing.TB, src blockio.Device, workers int, outOfOrder bool) *blockio.Mem {
	dst := blockio.NewMem(src.Size())
	c := &converter{src: src, dst: dst, size: src.Size(), workers: workers, outOfOrder: outOfOrder,
		minSparse: defaultMinSparse, zeroInit: true}
	if err := c.run(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestConverterMem checks the engine against in-memory devices with
// several worker counts, in and out of order.
func TestConverterMem(t *testing.T) {
	src := newHalfFull(16 << 20)
	want := src.Bytes()
	for _, w := range []int{1, 3, 8} {
		for _, ooo := range []bool{false, true} {
			dst := convertMem(t, src, w, ooo)
			if got := dst.Bytes(); string(got) != string(want) {
				t.Fatalf("workers=%d outOfOrder=%v: content differs", w, ooo)
			}
		}
	}
}

// BenchmarkConvertMem measures the conversion engine itself (planning,
// zero detection, ordering) between in-memory devices.
func BenchmarkConvertMem(b *testing.B) {
	const size = 64 << 20
	src := newHalfFull(size)
	b.ReportAllocs()
	b.SetBytes(size)
	for b.Loop() {
		convertMem(b, src, 8, false)
	}
}

// TestConverterFaults injects read and write errors at several points:
// the conversion fails with a worded error, never hangs or panics, in
// and out of order.
func TestConverterFaults(t *testing.T) {
	src := newHalfFull(12 << 20)
	for _, op := range []faultio.Op{faultio.OpRead, faultio.OpWrite} {
		for _, nth := range []int{1, 2, 5} {
			for _, ooo := range []bool{false, true} {
				in := faultio.NewInjector(src)
				dst := faultio.NewInjector(blockio.NewMem(src.Size()))
				target := dst
				if op == faultio.OpRead {
					in.Add(faultio.Rule{Ops: op, Nth: nth, Errno: syscall.EIO})
				} else {
					dst.Add(faultio.Rule{Ops: op, Nth: nth, Errno: syscall.ENOSPC})
				}
				c := &converter{src: in, dst: target, size: src.Size(), workers: 4, outOfOrder: ooo,
					minSparse: defaultMinSparse, zeroInit: true}
				err := c.run()
				if err == nil {
					t.Fatalf("op %v nth %d: no error", op, nth)
				}
				want := "error while writing at byte"
				if op == faultio.OpRead {
					want = "error while reading at byte"
				}
				if !strings.Contains(err.Error(), want) {
					t.Errorf("op %v nth %d: error %q, want %q", op, nth, err, want)
				}
			}
		}
	}
}
