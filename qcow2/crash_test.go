package qcow2

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/blockio/faultio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// TestCrashConsistency runs a seeded workload on the power-cut simulator
// and, at many points, checks crash images: each opens, Check finds no
// corruption (leaks are allowed), and every byte written before the last
// completed Flush and not rewritten since reads back.
func TestCrashConsistency(t *testing.T) {
	configs := []struct {
		name string
		opts CreateOptions
		size int64
	}{
		{"c512-rc64-growth", CreateOptions{ClusterSize: 512, RefcountBits: 64}, 2 << 20},
		{"c4k-rc16", CreateOptions{ClusterSize: 4096}, 4 << 20},
		{"c4k-v2", CreateOptions{ClusterSize: 4096, Compat: "0.10"}, 4 << 20},
		{"c16k-extl2-rc2", CreateOptions{ClusterSize: 16 << 10, ExtendedL2: true, RefcountBits: 2}, 4 << 20},
		{"c4k-zstd-rc8", CreateOptions{ClusterSize: 4096, CompressionType: "zstd", RefcountBits: 8}, 4 << 20},
		{"c4k-lazy", CreateOptions{ClusterSize: 4096, LazyRefcounts: true}, 4 << 20},
		{"c512-lazy-rc64", CreateOptions{ClusterSize: 512, LazyRefcounts: true, RefcountBits: 64}, 2 << 20},
	}
	ops, cutsPerPoint := 400, 4
	if testing.Short() || raceEnabled {
		ops, cutsPerPoint = 120, 2
	}
	qemuImg := ""
	if !testing.Short() && !raceEnabled {
		qemuImg = qemutest.Require(t, "qemu-img")
	}
	for ci, cfg := range configs {
		t.Run(cfg.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(uint64(ci), 99))
			crash := faultio.NewCrashMem(0)
			dev := &cutDevice{CrashDevice: crash}
			o := cfg.opts
			o.Size = cfg.size
			img, err := Create(dev, o)
			if err != nil {
				t.Fatal(err)
			}
			if err := img.Flush(); err != nil {
				t.Fatal(err)
			}
			cs := img.ClusterSize()
			model := make([]byte, cfg.size)
			flushed := make([]byte, cfg.size)
			touched := make([]bool, cfg.size)
			cuts := 0
			// Power cuts happen between device requests, also in the middle
			// of a Flush's ordered metadata writes.
			dev.every = max(1, 40/cutsPerPoint)
			dev.cut = func(seq int) {
				for c := 0; c < cutsPerPoint; c++ {
					mem := crashImage(t, crash, seq, c)
					cuts++
					useQemu := qemuImg != "" && cuts%25 == 1
					verifyCrashImage(t, fmt.Sprintf("device request %d cut %d", seq, c), mem, flushed, touched, useQemu, o.LazyRefcounts)
				}
			}
			for i := 0; i < ops; i++ {
				off := rng.Int64N(cfg.size)
				n := min(cfg.size-off, 1+rng.Int64N(3*cs))
				k := rng.IntN(12)
				if k == 5 {
					// A multi-cluster write (one allocation run / one
					// data write in the image).
					off &^= cs - 1
					n = min(cfg.size-off, cs*(2+rng.Int64N(7)))
				}
				switch {
				case k == 8:
					off &^= cs - 1
					n = min(cfg.size-off, ((n+cs-1)/cs)*cs)
				case k == 9:
					off &^= cs - 1
					n = min(cfg.size-off, cs*(1+rng.Int64N(2)))
				}
				crashOp(t, img, rng, k, off, n, model, flushed, touched)
			}
			dev.cut = nil
			img.Close()
			t.Logf("%d crash images verified", cuts)
		})
	}
}

// cutDevice calls cut before every every-th request, while the image
// is in the middle of whatever it is doing.
type cutDevice struct {
	*faultio.CrashDevice
	seq   int
	every int
	cut   func(seq int)
}

func (d *cutDevice) tick() {
	d.seq++
	if d.cut != nil && d.seq%d.every == 0 {
		d.cut(d.seq)
	}
}

func (d *cutDevice) WriteAt(p []byte, off int64) (int, error) {
	d.tick()
	return d.CrashDevice.WriteAt(p, off)
}

func (d *cutDevice) Flush() error {
	d.tick()
	return d.CrashDevice.Flush()
}

func (d *cutDevice) Truncate(size int64, prealloc blockio.Prealloc) error {
	d.tick()
	return d.CrashDevice.Truncate(size, prealloc)
}

func verifyCrashImage(t *testing.T, name string, mem *blockio.Mem, flushed []byte, touched []bool, useQemu, lazy bool) {
	t.Helper()
	var raw []byte
	if useQemu && !lazy {
		raw = mem.Bytes()
	}
	// A read-write open repairs a dirty (lazy refcounts) image first.
	img, err := Open(mem, Options{})
	if err != nil {
		t.Fatalf("%s: open after crash: %v", name, err)
	}
	defer img.Close()
	res, err := img.Check(context.Background(), CheckOptions{})
	if err != nil {
		t.Fatalf("%s: check: %v", name, err)
	}
	if res.Corruptions != 0 || res.CheckErrors != 0 || (lazy && res.Leaks != 0) {
		var log []string
		img.Check(context.Background(), CheckOptions{Log: func(s string) { log = append(log, s) }})
		t.Fatalf("%s: check after crash: %+v\n%v", name, res, log[:min(10, len(log))])
	}
	got := make([]byte, len(flushed))
	if _, err := img.ReadAt(got, 0); err != nil {
		t.Fatalf("%s: read: %v", name, err)
	}
	for i := range got {
		if !touched[i] && got[i] != flushed[i] {
			t.Fatalf("%s: byte %d = %#x, flushed %#x (lost acknowledged data)", name, i, got[i], flushed[i])
		}
	}
	if useQemu && lazy {
		raw = mem.Bytes()
	}
	if useQemu {
		p := filepath.Join(t.TempDir(), "crash.qcow2")
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		r, rc := qemuCheckRaw(t, p)
		if r.Corruptions != 0 || rc == 2 || rc == 1 {
			t.Fatalf("%s: qemu-img check after crash: rc %d %+v", name, rc, r)
		}
	}
}

// crashOp applies workload operation kind k (0-5 write, 6-7 zero write, 8
// discard, 9 compressed write, 10+ flush) at [off, off+n) to img and to the
// model of the guest content. flushed is the content at the last completed
// Flush; touched marks bytes changed since then, which a crash may lose.
func crashOp(t *testing.T, img *Image, rng *rand.Rand, k int, off, n int64, model, flushed []byte, touched []bool) {
	t.Helper()
	if k < 10 {
		for j := off; j < off+n; j++ {
			touched[j] = true
		}
	}
	switch {
	case k < 6:
		p := pattern(rng, int(n))
		if _, err := img.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], p)
	case k < 8:
		if err := img.WriteZeroes(off, n, rng.IntN(2) == 0); err != nil {
			t.Fatal(err)
		}
		clear(model[off : off+n])
	case k < 9:
		if err := img.Discard(off, n); err != nil {
			t.Fatal(err)
		}
		// Whole clusters read as zeros after a discard.
		clear(model[off : off+n])
	case k < 10:
		p := pattern(rng, int(n))
		if err := img.WriteCompressed(p, off); err != nil {
			t.Fatal(err)
		}
		copy(model[off:], p)
	default:
		if err := img.Flush(); err != nil {
			t.Fatal(err)
		}
		copy(flushed, model)
		clear(touched)
	}
}

// crashImage returns the c-th simulated power cut after device request
// seq: c 0 keeps none of the unflushed writes, any other c a random
// subset seeded by (seq, c).
func crashImage(t *testing.T, crash *faultio.CrashDevice, seq, c int) *blockio.Mem {
	t.Helper()
	var mem *blockio.Mem
	var err error
	if c == 0 {
		mem, err = crash.CrashKeepNone()
	} else {
		mem, err = crash.Crash(rand.New(rand.NewPCG(uint64(seq), uint64(c))))
	}
	if err != nil {
		t.Fatal(err)
	}
	return mem
}
