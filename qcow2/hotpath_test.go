package qcow2

import (
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
)

// TestReadHotPathAllocs requires reads of allocated, zero, unallocated
// (backing) and multi-cluster ranges to allocate nothing once the L2
// table is cached (the issue's "no per-request allocations on the read
// hot path"). Counting allocations is deterministic, unlike timing.
func TestReadHotPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	back, err := Create(blockio.NewMem(0), CreateOptions{Size: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	img, err := Create(blockio.NewMem(0), CreateOptions{Size: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	img.backing = back
	defer img.Close()
	buf := make([]byte, 256<<10)
	for i := range buf {
		buf[i] = byte(i)
	}
	if _, err := back.WriteAt(buf[:64<<10], 4<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if err := img.WriteZeroes(1<<20, 64<<10, false); err != nil {
		t.Fatal(err)
	}
	if err := img.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		off  int64
		n    int
	}{
		{"allocated-4k", 8192, 4096},
		{"allocated-batch", 0, 256 << 10},
		{"zero", 1 << 20, 4096},
		{"backing", 4 << 20, 4096},
		{"unallocated-batch", 2 << 20, 128 << 10},
	} {
		p := make([]byte, c.n)
		if _, err := img.ReadAt(p, c.off); err != nil {
			t.Fatal(err)
		}
		if a := testing.AllocsPerRun(50, func() {
			if _, err := img.ReadAt(p, c.off); err != nil {
				t.Fatal(err)
			}
		}); a != 0 {
			t.Errorf("%s: %.1f allocations per read, want 0", c.name, a)
		}
	}
}
