package qcow2

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/blockio/faultio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// TestTruncateInterop grows (past L1 capacity, so the L1 table moves) and
// shrinks images through the library, with and without a larger backing
// file, and checks the result with qemu-img check / info / compare against
// a model.
func TestTruncateInterop(t *testing.T) {
	qemuImg := qemutest.Require(t, "qemu-img")
	cases := []struct {
		name     string
		opts     CreateOptions
		backing  string
		snapshot bool
	}{
		{"c512", CreateOptions{ClusterSize: 512}, "", false},
		{"c512-v2", CreateOptions{ClusterSize: 512, Compat: "0.10"}, "", false},
		{"c4k-rc1", CreateOptions{ClusterSize: 4096, RefcountBits: 1}, "", false},
		{"c16k-extl2", CreateOptions{ClusterSize: 16 << 10, ExtendedL2: true}, "", false},
		{"c4k-rawbacking", CreateOptions{ClusterSize: 4096}, "raw", false},
		{"c4k-v2-qcow2backing", CreateOptions{ClusterSize: 4096, Compat: "0.10"}, "qcow2", false},
		{"c16k-extl2-backing", CreateOptions{ClusterSize: 16 << 10, ExtendedL2: true}, "raw", false},
		{"c4k-snapshot", CreateOptions{ClusterSize: 4096}, "", true},
		{"c4k-lazy", CreateOptions{ClusterSize: 4096, LazyRefcounts: true}, "", false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			dir := t.TempDir()
			const size0 = 1 << 20
			const bsize = 4 << 20 // the backing file is larger than the image
			var bdata []byte
			o := c.opts
			if c.backing != "" {
				var name string
				name, bdata = makeBacking(t, dir, c.backing, bsize, rng)
				o.BackingFile, o.BackingFormat = name, c.backing
			}
			path := filepath.Join(dir, "img.qcow2")
			img, err := CreateFile(path, size0, o)
			if err != nil {
				t.Fatal(err)
			}
			model := make([]byte, size0)
			copy(model, bdata)
			write := func(off int64, n int) {
				p := pattern(rng, n)
				if _, err := img.WriteAt(p, off); err != nil {
					t.Fatal(err)
				}
				copy(model[off:], p)
			}
			for range 20 {
				off := rng.Int64N(int64(len(model)) - 8192)
				write(off, 1+rng.IntN(8192))
			}
			if c.snapshot {
				if err := img.Close(); err != nil {
					t.Fatal(err)
				}
				qemutest.Run(t, qemuImg, "snapshot", "-c", "s1", path)
				if img, err = OpenFile(path, Options{}); err != nil {
					t.Fatal(err)
				}
			}
			resize := func(n int64) {
				t.Helper()
				if err := img.Truncate(n, blockio.PreallocOff); err != nil {
					t.Fatalf("Truncate(%d): %v", n, err)
				}
				if img.Size() != n {
					t.Fatalf("Size() = %d after Truncate(%d)", img.Size(), n)
				}
				if int64(len(model)) > n {
					model = model[:n]
				} else {
					model = append(model, make([]byte, n-int64(len(model)))...)
				}
			}
			verify := func(stage string) {
				t.Helper()
				got := make([]byte, len(model))
				if _, err := img.ReadAt(got, 0); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, model) {
					t.Fatalf("%s: content differs from the model", stage)
				}
				res, err := img.Check(context.Background(), CheckOptions{})
				if err != nil || res.Corruptions != 0 || res.Leaks != 0 {
					t.Fatalf("%s: Check = %+v, %v", stage, res, err)
				}
			}
			// Grow past the L1 table's reach, write at the new end.
			resize(40<<20 + 512)
			verify("grow")
			write(int64(len(model))-9000, 9000)
			write(3<<20+100, 5000) // inside the range a backing file would show
			// Shrink into data (unaligned), grow back: the cut data stays gone.
			resize(2<<20 + 1536)
			verify("shrink")
			resize(6 << 20)
			verify("regrow")
			write(5<<20, 4096)
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			qemuCheck(t, path)
			info := qemutest.Run(t, qemuImg, "info", "--output=json", path)
			if !strings.Contains(info, `"virtual-size": 6291456`) {
				t.Errorf("qemu-img info after resize:\n%s", info)
			}
			raw := filepath.Join(dir, "model.raw")
			if err := os.WriteFile(raw, model, 0o644); err != nil {
				t.Fatal(err)
			}
			qemuCompare(t, path, "qcow2", raw)
			// qemu-img resizes what we wrote, and we read what it made.
			qemutest.Run(t, qemuImg, "resize", path, "7M")
			img2, err := OpenFile(path, Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer img2.Close()
			got := make([]byte, img2.Size())
			if _, err := img2.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:len(model)], model) || !blockio.IsZero(got[len(model):]) {
				t.Error("content after qemu-img resize differs")
			}
		})
	}
}

func TestTruncateErrors(t *testing.T) {
	img, err := Create(blockio.NewMem(0), CreateOptions{Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	var ie *blockio.InvalidError
	if err := img.Truncate(1<<20+100, blockio.PreallocOff); !errors.As(err, &ie) {
		t.Errorf("unaligned size: %v", err)
	}
	if err := img.Truncate(-512, blockio.PreallocOff); !errors.As(err, &ie) {
		t.Errorf("negative size: %v", err)
	}
	if err := img.Truncate(2<<20, blockio.Prealloc(42)); !errors.As(err, &ie) {
		t.Errorf("bad preallocation mode: %v", err)
	}
	if err := img.Truncate(1<<62+512, blockio.PreallocOff); !errors.As(err, &ie) {
		t.Errorf("huge size: %v", err)
	}
	// An L1 table beyond QEMU's 32 MiB limit is refused before anything
	// is allocated.
	if err := img.Truncate(1<<55, blockio.PreallocOff); err == nil {
		t.Error("grow to 2^55 with 64 KiB clusters succeeded")
	}
	if img.Size() != 1<<20 {
		t.Errorf("size changed by failed resizes: %d", img.Size())
	}
}

// TestTruncateCrash cuts power at every device request during grows (L1
// table moves) and shrinks: the image always opens with the old or the
// new size, Check finds no corruption, and the data written and flushed
// before reads back.
func TestTruncateCrash(t *testing.T) {
	for _, lazy := range []bool{false, true} {
		crash := faultio.NewCrashMem(0)
		dev := &cutDevice{CrashDevice: crash}
		img, err := Create(dev, CreateOptions{Size: 64 << 10, ClusterSize: 512, LazyRefcounts: lazy})
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(3, 4))
		data := pattern(rng, 64<<10)
		if _, err := img.WriteAt(data, 0); err != nil {
			t.Fatal(err)
		}
		if err := img.Flush(); err != nil {
			t.Fatal(err)
		}
		cuts := 0
		sizes := map[int64]bool{64 << 10: true}
		dev.every = 1
		if raceEnabled || testing.Short() {
			dev.every = 3
		}
		dev.cut = func(seq int) {
			mem, err := crash.CrashKeepNone()
			if err != nil {
				t.Fatal(err)
			}
			cuts++
			ci, err := Open(mem, Options{})
			if err != nil {
				t.Fatalf("cut %d: open: %v", seq, err)
			}
			defer ci.Close()
			if !sizes[ci.Size()] {
				t.Fatalf("cut %d: size %d, want one of %v", seq, ci.Size(), sizes)
			}
			res, err := ci.Check(context.Background(), CheckOptions{})
			if err != nil || res.Corruptions != 0 {
				t.Fatalf("cut %d: Check = %+v, %v", seq, res, err)
			}
			n := min(ci.Size(), 32<<10)
			got := make([]byte, n)
			if _, err := ci.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data[:n]) {
				t.Fatalf("cut %d: flushed data lost", seq)
			}
			if ci.Size() > 32<<10 {
				// Everything between the 32 KiB mark and the end reads as
				// the data (the original size) or zeros (regrown).
				rest := make([]byte, ci.Size()-32<<10)
				if _, err := ci.ReadAt(rest, 32<<10); err != nil {
					t.Fatal(err)
				}
				for j, b := range rest {
					if o := 32<<10 + int64(j); b != 0 && (o >= 64<<10 || b != data[o]) {
						t.Fatalf("cut %d: byte %#x = %#x", seq, o, b)
					}
				}
			}
		}
		for _, n := range []int64{8 << 20, 32 << 10, 16 << 20, 64 << 20} {
			sizes[n] = true
			if err := img.Truncate(n, blockio.PreallocOff); err != nil {
				t.Fatal(err)
			}
		}
		dev.cut = nil
		if err := img.Close(); err != nil {
			t.Fatal(err)
		}
		if cuts < 10 {
			t.Errorf("only %d power cuts", cuts)
		}
	}
}

// TestTruncatePrealloc grows images with each preallocation mode: the new
// area reads as zeros (also where recycled clusters held data), is
// allocated per qemu-img map, and qemu-img check is clean.
func TestTruncatePrealloc(t *testing.T) {
	qemuImg := qemutest.Require(t, "qemu-img")
	for _, c := range []struct {
		name string
		opts CreateOptions
		mode blockio.Prealloc
	}{
		{"metadata", CreateOptions{ClusterSize: 4096}, blockio.PreallocMetadata},
		{"falloc-v2", CreateOptions{ClusterSize: 4096, Compat: "0.10"}, blockio.PreallocFalloc},
		{"full-extl2", CreateOptions{ClusterSize: 16 << 10, ExtendedL2: true}, blockio.PreallocFull},
		{"metadata-datafile", CreateOptions{ClusterSize: 4096, DataFile: "@"}, blockio.PreallocMetadata},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "img.qcow2")
			o := c.opts
			if o.DataFile == "@" {
				o.DataFile = filepath.Join(dir, "img.data")
			}
			img, err := CreateFile(path, 1<<20, o)
			if err != nil {
				t.Fatal(err)
			}
			// Write, discard and flush so that freed clusters get recycled.
			p := bytes.Repeat([]byte{0xee}, 512<<10)
			if _, err := img.WriteAt(p, 0); err != nil {
				t.Fatal(err)
			}
			if err := img.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := img.Discard(0, 512<<10); err != nil {
				t.Fatal(err)
			}
			if err := img.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := img.Truncate(3<<20, c.mode); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 2<<20)
			if _, err := img.ReadAt(got, 1<<20); err != nil {
				t.Fatal(err)
			}
			if !blockio.IsZero(got) {
				t.Fatal("preallocated area does not read as zeros")
			}
			e, err := img.BlockStatus(1<<20, 2<<20)
			if err != nil || !e.Allocated || e.Length != 2<<20 {
				t.Errorf("BlockStatus of the preallocated area = %+v, %v", e, err)
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			qemuCheck(t, path)
			out := qemutest.Run(t, qemuImg, "map", "--output=json", path)
			if !strings.Contains(out, `"start": 1048576, "length": 2097152, "depth": 0, "present": true`) {
				t.Errorf("qemu-img map after preallocated resize:\n%s", out)
			}
		})
	}
}
