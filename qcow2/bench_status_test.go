package qcow2

import (
	"path/filepath"
	"testing"
)

// BenchmarkBlockStatus maps a written 16 MiB image on a real file one
// 64 KiB cluster per call, the inner loop of `blockimg map`: every call
// returns a data extent (and may probe the file for holes).
func BenchmarkBlockStatus(b *testing.B) {
	img := newStatusBenchImage(b)
	cs := img.ClusterSize()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := int64(i) * cs % statusBenchSize
		e, err := img.BlockStatus(off, cs)
		if err != nil || !e.Data {
			b.Fatalf("%+v %v", e, err)
		}
	}
}

// BenchmarkBlockStatusParallel is BenchmarkBlockStatus from GOMAXPROCS
// goroutines at once: the metadata lock is contended.
func BenchmarkBlockStatusParallel(b *testing.B) {
	img := newStatusBenchImage(b)
	cs := img.ClusterSize()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for i := int64(0); pb.Next(); i++ {
			e, err := img.BlockStatus(i*cs%statusBenchSize, cs)
			if err != nil || !e.Data {
				b.Errorf("%+v %v", e, err)
				return
			}
		}
	})
}

const statusBenchSize = 16 << 20

func newStatusBenchImage(b *testing.B) *Image {
	const size = statusBenchSize
	img, err := CreateFile(filepath.Join(b.TempDir(), "bs.qcow2"), size, CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { img.Close() })
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i | 1)
	}
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := img.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := img.Flush(); err != nil {
		b.Fatal(err)
	}
	return img
}
