package qcow2

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
)

// TestOverlapCheckModes points an L2 entry at another L2 table and reads
// through it under each overlap-check mode: "all" always refuses, "cached"
// refuses once that table is cached, "constant" and "none" only guard
// fixed metadata (QEMU's semantics). An entry pointing into the L1 table
// is refused by every mode but "none".
func TestOverlapCheckModes(t *testing.T) {
	o := CreateOptions{Size: 4 << 20, ClusterSize: 4096}
	mem := blockio.NewMem(0)
	img, err := Create(mem, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 2 << 20} { // two L2 tables
		if _, err := img.WriteAt([]byte("data"), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := img.Flush(); err != nil {
		t.Fatal(err)
	}
	b := append([]byte(nil), mem.Bytes()...)
	img.Close()
	l1 := binary.BigEndian.Uint64(b[40:])
	l2a := binary.BigEndian.Uint64(b[l1:]) & l1OffsetMask
	l2b := binary.BigEndian.Uint64(b[l1+8:]) & l1OffsetMask
	binary.BigEndian.PutUint64(b[l2a+8:], l2b|oflagCopied) // guest cluster 1 -> L2 table b
	binary.BigEndian.PutUint64(b[l2a+16:], l1|oflagCopied) // guest cluster 2 -> L1 table
	for _, c := range []struct {
		mode              string
		cold, warm, fixed bool // refused: L2 b uncached, L2 b cached, L1
	}{
		{"all", true, true, true},
		{"cached", false, true, true},
		{"", false, true, true},
		{"constant", false, false, true},
		{"none", false, false, false},
	} {
		for _, step := range []struct {
			name   string
			off    int64
			warm   bool
			refuse bool
		}{
			{"l2-uncached", 4096, false, c.cold},
			{"l2-cached", 4096, true, c.warm},
			{"l1", 8192, false, c.fixed},
		} {
			img, err := Open(memOf(b), Options{ReadOnly: true, OverlapCheck: c.mode})
			if err != nil {
				t.Fatal(err)
			}
			p := make([]byte, 16)
			if step.warm {
				if _, err := img.ReadAt(p, 2<<20); err != nil {
					t.Fatal(err)
				}
			}
			_, err = img.ReadAt(p, step.off)
			if got := errors.Is(err, blockio.ErrCorrupt); got != step.refuse {
				t.Errorf("mode %q %s: err = %v, want refused=%v", c.mode, step.name, err, step.refuse)
			}
			img.Close()
		}
	}
}

// TestSmallCaches runs random writes, zero writes and discards with the
// smallest L2 and refcount caches (every request evicts dirty tables) and
// with a split cache-size, and checks content and refcounts.
func TestSmallCaches(t *testing.T) {
	for i, opts := range []Options{
		{L2CacheSize: 1, RefcountCacheSize: 1},
		{CacheSize: 64 << 10},
		{L2CacheSize: 8 << 10, CacheSize: 32 << 10},
	} {
		mem := blockio.NewMem(0)
		img, err := Create(mem, CreateOptions{Size: 16 << 20, ClusterSize: 4096, RefcountBits: 1 << (i + 2)})
		if err != nil {
			t.Fatal(err)
		}
		if err := img.Flush(); err != nil {
			t.Fatal(err)
		}
		b := append([]byte(nil), mem.Bytes()...)
		img.Close()
		img, err = Open(memOf(b), opts)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(i), 3))
		model := make([]byte, 16<<20)
		for range 300 {
			off := rng.Int64N(16<<20 - 20000)
			n := 1 + rng.Int64N(20000)
			switch rng.IntN(4) {
			case 0, 1:
				p := pattern(rng, int(n))
				if _, err := img.WriteAt(p, off); err != nil {
					t.Fatal(err)
				}
				copy(model[off:], p)
			case 2:
				if err := img.WriteZeroes(off, n, true); err != nil {
					t.Fatal(err)
				}
				clear(model[off : off+n])
			default:
				off &^= 4095
				n = (n + 4095) &^ 4095
				if err := img.Discard(off, n); err != nil {
					t.Fatal(err)
				}
				clear(model[off : off+n])
			}
		}
		got := make([]byte, len(model))
		if _, err := img.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, model) {
			t.Fatalf("%+v: content differs from the model", opts)
		}
		res, err := img.Check(context.Background(), CheckOptions{})
		if err != nil || res.Corruptions != 0 || res.Leaks != 0 {
			t.Fatalf("%+v: Check = %+v, %v", opts, res, err)
		}
		if img.l2c.max != 2 && i == 0 {
			t.Errorf("l2 cache holds %d tables, want the minimum 2", img.l2c.max)
		}
		img.Close()
	}
}

// TestMemoryLimitRefusesTables: an image whose L1 table exceeds
// Options.MemoryLimit is refused before the table is allocated.
func TestMemoryLimitRefusesTables(t *testing.T) {
	b := newImageBytes(t, CreateOptions{Size: 64 << 30, ClusterSize: 512})
	if _, err := Open(memOf(b), Options{ReadOnly: true, MemoryLimit: 64 << 10}); !errors.Is(err, blockio.ErrInvalid) {
		t.Fatalf("open with a 64 KiB memory limit: %v", err)
	}
	img, err := Open(memOf(b), Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
}
