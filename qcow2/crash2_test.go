package qcow2

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/blockio/faultio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// TestCrashSharedAndBacking extends the power-cut test to the paths the
// plain workload does not reach: copy-on-write of partial clusters from a
// backing file, and an image with an internal snapshot made by qemu-img,
// where L2 tables and data clusters are shared (refcount 2) and every
// write copies the L2 table and drops one reference from the old one.
func TestCrashSharedAndBacking(t *testing.T) {
	qemuImg := qemutest.Require(t, "qemu-img")
	qemuIO := qemutest.Require(t, "qemu-io")
	ops, cutEvery := 160, 7
	if testing.Short() || raceEnabled {
		ops, cutEvery = 60, 11
	}
	const size = 2 << 20
	for ci, name := range []string{"backing", "snapshot", "snapshot-lazy"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			rng := rand.New(rand.NewPCG(uint64(ci), 5))
			flushed := make([]byte, size)
			var base *blockio.Mem
			switch name {
			case "backing":
				bpath := filepath.Join(dir, "base.raw")
				for i := range flushed {
					flushed[i] = byte(i>>10) | 0x80
				}
				if err := os.WriteFile(bpath, flushed, 0o644); err != nil {
					t.Fatal(err)
				}
				m := blockio.NewMem(0)
				img, err := Create(m, CreateOptions{Size: size, ClusterSize: 4096, BackingFile: bpath, BackingFormat: "raw"})
				if err != nil {
					t.Fatal(err)
				}
				if err := img.Flush(); err != nil {
					t.Fatal(err)
				}
				raw := append([]byte(nil), m.Bytes()...)
				img.Close()
				base = blockio.NewMem(0)
				if err := base.Truncate(int64(len(raw)), blockio.PreallocOff); err != nil {
					t.Fatal(err)
				}
				if _, err := base.WriteAt(raw, 0); err != nil {
					t.Fatal(err)
				}
			default:
				p := filepath.Join(dir, "snap.qcow2")
				o := "cluster_size=4096"
				if name == "snapshot-lazy" {
					o += ",lazy_refcounts=on"
				}
				qemutest.Run(t, qemuImg, "create", "-f", "qcow2", "-o", o, p, fmt.Sprint(size))
				qemutest.Run(t, qemuIO, "-c", "write -P 0x5a 0 1M", "-c", "write -c -P 0x33 1M 64k", p)
				qemutest.Run(t, qemuImg, "snapshot", "-c", "s1", p)
				raw, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				base = blockio.NewMem(0)
				if err := base.Truncate(int64(len(raw)), blockio.PreallocOff); err != nil {
					t.Fatal(err)
				}
				if _, err := base.WriteAt(raw, 0); err != nil {
					t.Fatal(err)
				}
				for i := range 1 << 20 {
					flushed[i] = 0x5a
				}
				for i := 1 << 20; i < 1<<20+64<<10; i++ {
					flushed[i] = 0x33
				}
			}
			crash := faultio.NewCrashDevice(base)
			dev := &cutDevice{CrashDevice: crash, every: cutEvery}
			img, err := Open(dev, Options{})
			if err != nil {
				t.Fatal(err)
			}
			cs := img.ClusterSize()
			model := append([]byte(nil), flushed...)
			touched := make([]bool, size)
			cuts := 0
			dev.cut = func(seq int) {
				for c := range 2 {
					mem := crashImage(t, crash, seq, c)
					cuts++
					verifyCrashImage(t, fmt.Sprintf("%s: request %d cut %d", name, seq, c), mem, flushed, touched, cuts%20 == 1, name == "snapshot-lazy")
				}
			}
			for range ops {
				off := rng.Int64N(size)
				n := min(size-off, 1+rng.Int64N(3*cs))
				k := rng.IntN(11)
				if k == 5 {
					// A multi-cluster write (one allocation run / one
					// data write in the image).
					off &^= cs - 1
					n = min(size-off, cs*(2+rng.Int64N(7)))
				}
				if k == 8 || k == 9 {
					off &^= cs - 1
					n = min(size-off, cs*(1+rng.Int64N(2)))
				}
				crashOp(t, img, rng, k, off, n, model, flushed, touched)
			}
			dev.cut = nil
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			if cuts < 20 {
				t.Errorf("only %d crash images", cuts)
			}
			t.Logf("%d crash images verified", cuts)
		})
	}
}
