package bench

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/qcow2"
)

const qcow2BenchSize = 1 << 30

// benchQcow2Image creates a fully allocated 1 GiB qcow2 image (every
// cluster allocated, data area written with zeros) like
// `qemu-img create -f qcow2 -o preallocation=full`.
func benchQcow2Image(b *testing.B) *qcow2.Image {
	b.Helper()
	path := filepath.Join(b.TempDir(), "bench.qcow2")
	img, err := qcow2.CreateFile(path, qcow2BenchSize, qcow2.CreateOptions{Preallocation: blockio.PreallocFull})
	if err != nil {
		b.Fatal(err)
	}
	return img
}

func benchQcow2Random(b *testing.B, write, seq bool) {
	img := benchQcow2Image(b)
	defer img.Close()
	const bs = 4096
	var seed, next atomic.Uint64
	b.SetBytes(bs)
	b.ReportAllocs()
	// 32 goroutines at GOMAXPROCS=1..2 (qemu-img bench -d 32).
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(seed.Add(1), 7))
		buf := make([]byte, bs)
		for i := range buf {
			buf[i] = byte(i)
		}
		for pb.Next() {
			off := r.Int64N(qcow2BenchSize/bs) * bs
			if seq {
				// qemu-img bench's pattern: each request at the next 4 KiB.
				off = int64(next.Add(1)-1) * bs % qcow2BenchSize
			}
			var err error
			if write {
				_, err = img.WriteAt(buf, off)
			} else {
				_, err = img.ReadAt(buf, off)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkQcow2RandRead4K: 4 KiB random reads, 32 goroutines, 1 GiB
// fully allocated image.
func BenchmarkQcow2RandRead4K(b *testing.B) { benchQcow2Random(b, false, false) }

// BenchmarkQcow2RandWrite4K: 4 KiB random overwrites, 32 goroutines.
func BenchmarkQcow2RandWrite4K(b *testing.B) { benchQcow2Random(b, true, false) }

// BenchmarkQcow2SeqRead4K and BenchmarkQcow2SeqWrite4K use the request
// pattern of `qemu-img bench -d 32 -s 4k` (consecutive 4 KiB requests, 32
// in flight) for a like-for-like comparison.
func BenchmarkQcow2SeqRead4K(b *testing.B) { benchQcow2Random(b, false, true) }

func BenchmarkQcow2SeqWrite4K(b *testing.B) { benchQcow2Random(b, true, true) }

// BenchmarkQcow2Check512 checks a 1 GiB image with 512-byte clusters,
// every cluster allocated (compare with `qemu-img check` on an image made
// by `qemu-img create -f qcow2 -o cluster_size=512,preallocation=metadata`).
func BenchmarkQcow2Check512(b *testing.B) {
	path := filepath.Join(b.TempDir(), "check.qcow2")
	img, err := qcow2.CreateFile(path, qcow2BenchSize, qcow2.CreateOptions{ClusterSize: 512, Preallocation: blockio.PreallocMetadata})
	if err != nil {
		b.Fatal(err)
	}
	if err := img.Close(); err != nil {
		b.Fatal(err)
	}
	img, err = qcow2.OpenFile(path, qcow2.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer img.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := img.Check(context.Background(), qcow2.CheckOptions{})
		if err != nil || res.Corruptions != 0 || res.Leaks != 0 {
			b.Fatalf("%+v %v", res, err)
		}
	}
}
