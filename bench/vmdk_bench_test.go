package bench

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
	"github.com/blocklayer/blocklayer/vmdk"
)

const vmdkBenchSize = 256 << 20

// vmdkSource writes a raw file of vmdkBenchSize bytes that is about half
// random (incompressible) and half a compressible text pattern, in 64 KiB
// runs, and returns its path and content.
func vmdkSource(b *testing.B) (string, []byte) {
	b.Helper()
	rng := rand.New(rand.NewPCG(5, 5))
	data := make([]byte, vmdkBenchSize)
	for off := 0; off < len(data); off += 64 << 10 {
		c := data[off : off+64<<10]
		if rng.IntN(2) == 0 {
			for i := 0; i < len(c); i += 8 {
				v := rng.Uint64()
				for k := 0; k < 8; k++ {
					c[i+k] = byte(v >> (8 * k))
				}
			}
		} else {
			for i := range c {
				c[i] = "the quick brown fox jumps over the lazy vmdk "[i%45]
			}
		}
	}
	p := filepath.Join(b.TempDir(), "src.raw")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		b.Fatal(err)
	}
	return p, data
}

func runQemu(b *testing.B, args ...string) {
	b.Helper()
	qemutest.Run(b, "qemu-img", args...)
}

// benchQemu runs `qemu-img args...` as the "qemu-img" sub-benchmark, the
// reference each blocklayer figure stands beside.
func benchQemu(b *testing.B, args ...string) {
	b.Run("qemu-img", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(vmdkBenchSize)
		for b.Loop() {
			runQemu(b, args...)
		}
	})
}

// BenchmarkVMDKStreamOptimized: raw -> streamOptimized, ours (reading the
// raw file with blockio and writing through CreateFile in 2 MiB chunks,
// like a converter) side by side with `qemu-img convert`.
func BenchmarkVMDKStreamOptimized(b *testing.B) {
	src, _ := vmdkSource(b)
	dir := b.TempDir()
	for _, lv := range []struct {
		name  string
		level int
	}{{"blocklayer", 0}, {"blocklayer-zlib6", 6}} {
		b.Run(lv.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(vmdkBenchSize)
			buf := make([]byte, 2<<20)
			for b.Loop() {
				in, err := blockio.OpenFile(src, blockio.FileOptions{ReadOnly: true})
				if err != nil {
					b.Fatal(err)
				}
				out, err := vmdk.CreateFile(filepath.Join(dir, "ours.vmdk"), vmdkBenchSize,
					vmdk.CreateOptions{Subformat: vmdk.StreamOptimized, CompressionLevel: lv.level})
				if err != nil {
					b.Fatal(err)
				}
				for off := int64(0); off < vmdkBenchSize; off += int64(len(buf)) {
					if _, err := in.ReadAt(buf, off); err != nil {
						b.Fatal(err)
					}
					if _, err := out.WriteAt(buf, off); err != nil {
						b.Fatal(err)
					}
				}
				if err := out.Close(); err != nil {
					b.Fatal(err)
				}
				in.Close()
			}
		})
	}
	benchQemu(b, "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", src, filepath.Join(dir, "qemu.vmdk"))
}

// BenchmarkVMDKSparseToRaw: monolithicSparse (written by qemu-img) -> raw,
// ours (sequential 2 MiB reads, zero extents skipped via BlockStatus)
// side by side with `qemu-img convert -O raw`.
func BenchmarkVMDKSparseToRaw(b *testing.B) { benchVMDKToRaw(b) }

// BenchmarkVMDKStreamToRaw: streamOptimized (written by qemu-img) -> raw,
// ours side by side with `qemu-img convert -O raw`.
func BenchmarkVMDKStreamToRaw(b *testing.B) {
	benchVMDKToRaw(b, "-o", "subformat=streamOptimized")
}

// benchVMDKToRaw converts the source to a vmdk with qemu-img (createOpts
// pick the subformat), then times converting it back to raw: ours
// (pipeCopy, no flush: qemu-img convert writes with cache=unsafe by
// default) and qemu-img's.
func benchVMDKToRaw(b *testing.B, createOpts ...string) {
	src, _ := vmdkSource(b)
	dir := b.TempDir()
	img := filepath.Join(dir, "src.vmdk")
	runQemu(b, append(append([]string{"convert", "-f", "raw", "-O", "vmdk"}, createOpts...), src, img)...)
	b.Run("blocklayer", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(vmdkBenchSize)
		for b.Loop() {
			in, err := vmdk.OpenFile(img, vmdk.Options{ReadOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			out, err := blockio.CreateFile(filepath.Join(dir, "ours.raw"), vmdkBenchSize, blockio.FileOptions{})
			if err != nil {
				b.Fatal(err)
			}
			pipeCopy(b, in, out, vmdkBenchSize)
			out.Close()
			in.Close()
		}
	})
	benchQemu(b, "convert", "-f", "vmdk", "-O", "raw", img, filepath.Join(dir, "qemu.raw"))
}

// pipeCopy copies size bytes from in to out in 2 MiB chunks with reads and
// writes overlapped (one reader goroutine, as a converter would do),
// skipping ranges BlockStatus reports as unallocated zeros.
func pipeCopy(b *testing.B, in blockio.Device, out blockio.Device, size int64) {
	type chunk struct {
		off int64
		buf []byte
	}
	const cs = 2 << 20
	free := make(chan []byte, 4)
	for range 4 {
		free <- make([]byte, cs)
	}
	full := make(chan chunk, 4)
	go func() {
		defer close(full)
		for off := int64(0); off < size; {
			st, err := blockio.BlockStatus(in, off, min(cs, size-off))
			if err != nil {
				b.Error(err)
				return
			}
			if !st.Data && st.Zero {
				off += st.Length
				continue
			}
			buf := (<-free)[:st.Length]
			if _, err := in.ReadAt(buf, off); err != nil {
				b.Error(err)
				return
			}
			full <- chunk{off, buf}
			off += st.Length
		}
	}()
	for c := range full {
		if _, err := out.WriteAt(c.buf, c.off); err != nil {
			b.Fatal(err)
		}
		free <- c.buf[:cap(c.buf)]
	}
}

// BenchmarkVMDKRawToSparse: raw -> monolithicSparse, ours (pipelined 2 MiB
// writes; Close makes the image durable, which qemu-img's default
// cache=unsafe skips) side by side with `qemu-img convert -O vmdk`.
func BenchmarkVMDKRawToSparse(b *testing.B) {
	src, _ := vmdkSource(b)
	dir := b.TempDir()
	b.Run("blocklayer", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(vmdkBenchSize)
		for b.Loop() {
			in, err := blockio.OpenFile(src, blockio.FileOptions{ReadOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			out, err := vmdk.CreateFile(filepath.Join(dir, "ours.vmdk"), vmdkBenchSize, vmdk.CreateOptions{})
			if err != nil {
				b.Fatal(err)
			}
			pipeCopy(b, in, out, vmdkBenchSize)
			if err := out.Close(); err != nil {
				b.Fatal(err)
			}
			in.Close()
		}
	})
	benchQemu(b, "convert", "-f", "raw", "-O", "vmdk", src, filepath.Join(dir, "qemu.vmdk"))
}

// BenchmarkVMDKRandomIO measures the per-request cost of 4 KiB random I/O
// on allocated grains of a file-backed monolithicSparse image (1 GiB, one
// 64 KiB grain allocated per MiB): serial and parallel reads, parallel
// reads with a grain-table cache too small for the working set (every
// request risks a table load), and in-place overwrites.
func BenchmarkVMDKRandomIO(b *testing.B) {
	const size = 1 << 30
	path := filepath.Join(b.TempDir(), "r.vmdk")
	img, err := vmdk.CreateFile(path, size, vmdk.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	grain := make([]byte, 64<<10)
	for i := range grain {
		grain[i] = byte(i*7 + 1)
	}
	for off := int64(0); off < size; off += 1 << 20 {
		if _, err := img.WriteAt(grain, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := img.Close(); err != nil {
		b.Fatal(err)
	}
	pick := func(rng *rand.Rand) int64 {
		return rng.Int64N(size>>20)<<20 + rng.Int64N(16)*4096
	}
	open := func(b *testing.B, opts vmdk.Options) *vmdk.Image {
		img, err := vmdk.OpenFile(path, opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { img.Close() })
		return img
	}
	b.Run("read4k", func(b *testing.B) {
		img := open(b, vmdk.Options{ReadOnly: true})
		rng := rand.New(rand.NewPCG(1, 1))
		buf := make([]byte, 4096)
		b.ReportAllocs()
		b.SetBytes(4096)
		for b.Loop() {
			if _, err := img.ReadAt(buf, pick(rng)); err != nil {
				b.Fatal(err)
			}
		}
	})
	parallelRead := func(b *testing.B, img *vmdk.Image) {
		b.ReportAllocs()
		b.SetBytes(4096)
		var seed atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(seed.Add(1), 2))
			buf := make([]byte, 4096)
			for pb.Next() {
				if _, err := img.ReadAt(buf, pick(rng)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("read4k-parallel", func(b *testing.B) {
		parallelRead(b, open(b, vmdk.Options{ReadOnly: true}))
	})
	b.Run("read4k-parallel-smallcache", func(b *testing.B) {
		// 16 KiB of directory leaves room for 8 of the 32 tables.
		parallelRead(b, open(b, vmdk.Options{ReadOnly: true, MaxMetadataMemory: 16<<10 + 8*2048}))
	})
	b.Run("write4k-inplace", func(b *testing.B) {
		img := open(b, vmdk.Options{})
		rng := rand.New(rand.NewPCG(3, 3))
		buf := make([]byte, 4096)
		b.ReportAllocs()
		b.SetBytes(4096)
		for b.Loop() {
			if _, err := img.WriteAt(buf, pick(rng)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
