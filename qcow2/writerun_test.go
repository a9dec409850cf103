package qcow2

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
)

// logDev records the order of writes and flushes reaching a Mem.
type logDev struct {
	*blockio.Mem
	mu  sync.Mutex
	log []devEvent
}

type devEvent struct {
	flush bool
	off   int64
	n     int
}

func (d *logDev) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	d.log = append(d.log, devEvent{off: off, n: len(p)})
	d.mu.Unlock()
	return d.Mem.WriteAt(p, off)
}

func (d *logDev) Flush() error {
	d.mu.Lock()
	d.log = append(d.log, devEvent{flush: true})
	d.mu.Unlock()
	return d.Mem.Flush()
}

// TestWriteRunOrdering checks that a large write over unallocated
// clusters reaches the device as one data write, and that on Flush the
// refcount block and the data are written, and a barrier passes, before
// the L2 table that points at the data.
func TestWriteRunOrdering(t *testing.T) {
	dev := &logDev{Mem: blockio.NewMem(0)}
	img, err := Create(dev, CreateOptions{Size: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if err := img.Flush(); err != nil {
		t.Fatal(err)
	}
	dev.log = nil
	p := pattern(rand.New(rand.NewPCG(1, 2)), 1<<20)
	if _, err := img.WriteAt(p, 2<<20); err != nil {
		t.Fatal(err)
	}
	if err := img.Flush(); err != nil {
		t.Fatal(err)
	}
	l2off := int64(img.l1[0] & l1OffsetMask)
	rbOff := int64(img.rt[0] & rtOffsetMask)
	data, l2, rb, lastFlush := -1, -1, -1, -1
	big := 0
	for i, e := range dev.log {
		switch {
		case e.flush:
			if l2 < 0 {
				lastFlush = i
			}
		case e.n == 1<<20:
			data = i
			big++
		case e.off == l2off:
			l2 = i
		case e.off == rbOff:
			rb = i
		}
	}
	t.Logf("device requests: %+v", dev.log)
	if big != 1 {
		t.Fatalf("want one 1 MiB data write, got %d", big)
	}
	if l2 < 0 || rb < 0 {
		t.Fatalf("missing L2 (%d) or refcount block (%d) write", l2, rb)
	}
	if !(data < l2 && rb < l2 && lastFlush > max(data, rb) && lastFlush < l2) {
		t.Fatalf("bad order: data %d, refblock %d, barrier %d, L2 %d", data, rb, lastFlush, l2)
	}

	// Overwriting the now allocated (contiguous) clusters is one data
	// write and no metadata.
	dev.log = nil
	if _, err := img.WriteAt(p, 2<<20); err != nil {
		t.Fatal(err)
	}
	if len(dev.log) != 1 || dev.log[0].n != 1<<20 {
		t.Fatalf("in-place overwrite: want one 1 MiB write, got %+v", dev.log)
	}
}

// TestWriteRunModel mixes large aligned writes (allocation runs and
// in-place runs) with small writes, zeroing and discards, and compares
// the image with a model, then checks the refcounts.
func TestWriteRunModel(t *testing.T) {
	for _, o := range []CreateOptions{
		{ClusterSize: 4096},
		{ClusterSize: 512, RefcountBits: 64},
		{ClusterSize: 16 << 10, ExtendedL2: true},
		{ClusterSize: 4096, Compat: "0.10"},
	} {
		const size = 8<<20 + 1536
		o.Size = size
		img, err := Create(blockio.NewMem(0), o)
		if err != nil {
			t.Fatal(err)
		}
		cs := img.ClusterSize()
		rng := rand.New(rand.NewPCG(uint64(cs), 3))
		model := make([]byte, size)
		ops := 300
		if testing.Short() {
			ops = 100
		}
		for i := range ops {
			off := rng.Int64N(size)
			var n int64
			switch k := rng.IntN(10); {
			case k < 5:
				off &^= cs - 1
				n = min(size-off, cs*(1+rng.Int64N(80)))
			case k < 7:
				n = min(size-off, 1+rng.Int64N(4*cs))
			case k < 8:
				n = min(size-off, 1+rng.Int64N(8*cs))
				if err := img.WriteZeroes(off, n, rng.IntN(2) == 0); err != nil {
					t.Fatal(err)
				}
				clear(model[off : off+n])
				continue
			case k < 9:
				off &^= cs - 1
				n = min(size-off, cs*(1+rng.Int64N(8)))
				if err := img.Discard(off, n); err != nil {
					t.Fatal(err)
				}
				clear(model[off : off+n])
				continue
			default:
				if err := img.Flush(); err != nil {
					t.Fatal(err)
				}
				continue
			}
			p := pattern(rng, int(n))
			if _, err := img.WriteAt(p, off); err != nil {
				t.Fatalf("op %d: write %d at %#x: %v", i, n, off, err)
			}
			copy(model[off:], p)
		}
		got := make([]byte, size)
		if _, err := img.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, model) {
			t.Fatalf("cluster size %d: image differs from model", cs)
		}
		if err := img.Flush(); err != nil {
			t.Fatal(err)
		}
		res, err := img.Check(context.Background(), CheckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.CheckErrors != 0 || res.Corruptions != 0 || res.Leaks != 0 {
			t.Fatalf("cluster size %d: check: %+v", cs, res)
		}
		img.Close()
	}
}
