package blockio_test

import (
	"errors"
	"math"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
)

// TestMemHugeDevice: a device of math.MaxInt64 bytes with a few written
// chunks. Discards, zero writes and status queries over the whole range
// must finish at once (cost bounded by allocated chunks, not by size), and
// requests that would overflow off+len fail with ErrOutOfRange.
func TestMemHugeDevice(t *testing.T) {
	const size = math.MaxInt64
	m := blockio.NewMem(size)
	data := []byte("not zero")
	offs := []int64{0, 1 << 40, 1<<62 + 3, size - int64(len(data))}
	for _, off := range offs {
		if _, err := m.WriteAt(data, off); err != nil {
			t.Fatalf("WriteAt(%d): %v", off, err)
		}
	}
	// Status of the huge hole after the first chunk ends at the next one.
	e, err := m.BlockStatus(64<<10, size-(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	if e.Data || e.Start != 64<<10 || e.End() != 1<<40 {
		t.Fatalf("hole extent %+v, want zero [64KiB, 1TiB)", e)
	}
	e, err = blockio.BlockStatus(m, 1<<40, size-(1<<40))
	if err != nil || !e.Data || e.End() != 1<<40+64<<10 {
		t.Fatalf("data extent %+v, %v", e, err)
	}
	// Overflowing ranges are rejected, not wrapped.
	buf := make([]byte, 16)
	for _, off := range []int64{size - 8, size, -1, math.MinInt64} {
		if _, err := m.ReadAt(buf, off); !errors.Is(err, blockio.ErrOutOfRange) {
			t.Errorf("ReadAt(16 bytes at %d) = %v, want ErrOutOfRange", off, err)
		}
		if _, err := m.WriteAt(buf, off); !errors.Is(err, blockio.ErrOutOfRange) {
			t.Errorf("WriteAt(16 bytes at %d) = %v, want ErrOutOfRange", off, err)
		}
	}
	if err := m.Discard(1, size); !errors.Is(err, blockio.ErrOutOfRange) {
		t.Errorf("Discard(1, MaxInt64) = %v, want ErrOutOfRange", err)
	}
	if err := m.Discard(8, -1); !errors.Is(err, blockio.ErrOutOfRange) {
		t.Errorf("Discard(8, -1) = %v, want ErrOutOfRange", err)
	}
	// Zero everything but the first 4 bytes: only they survive.
	if err := blockio.WriteZeroes(m, 4, size-4, true); err != nil {
		t.Fatal(err)
	}
	for _, off := range offs[1:] {
		if _, err := m.ReadAt(buf[:8], off); err != nil || !blockio.IsZero(buf[:8]) {
			t.Fatalf("after zeroing, %d reads %q, %v", off, buf[:8], err)
		}
	}
	if _, err := m.ReadAt(buf[:8], 0); err != nil || string(buf[:8]) != "not \x00\x00\x00\x00" {
		t.Fatalf("head reads %q, %v", buf[:8], err)
	}
	e, err = m.BlockStatus(64<<10, size-(64<<10))
	if err != nil || e.Data || e.End() != size {
		t.Fatalf("after zeroing, status %+v, %v: want one hole to the end", e, err)
	}
	if err := m.Truncate(1<<20, blockio.PreallocOff); err != nil || m.Size() != 1<<20 {
		t.Fatalf("Truncate: %v (size %d)", err, m.Size())
	}
}
