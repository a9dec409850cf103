package qcow2

import (
	"os"
	"path/filepath"
	"testing"
)

// benchSeqAlloc measures sequential allocating writes of bs bytes into a
// fresh 256 MiB image (64 KiB clusters) on a real file, the pattern of
// `blockimg convert -O qcow2`. Each time the image is full a new one is
// created (outside the timing); Flush is included.
func benchSeqAlloc(b *testing.B, bs int) {
	const size = 256 << 20
	dir := b.TempDir()
	path := filepath.Join(dir, "seq.qcow2")
	newImg := func() *Image {
		os.Remove(path)
		img, err := CreateFile(path, size, CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		return img
	}
	img := newImg()
	buf := make([]byte, bs)
	for i := range buf {
		buf[i] = byte(i*7 + i>>12)
	}
	b.SetBytes(int64(bs))
	b.ReportAllocs()
	b.ResetTimer()
	off := int64(0)
	for i := 0; i < b.N; i++ {
		if off+int64(bs) > size {
			if err := img.Flush(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			img.Close()
			img = newImg()
			off = 0
			b.StartTimer()
		}
		if _, err := img.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
		off += int64(bs)
	}
	if err := img.Flush(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	img.Close()
}

func BenchmarkSeqAllocWrite1M(b *testing.B) { benchSeqAlloc(b, 1<<20) }
func BenchmarkSeqAllocWrite2M(b *testing.B) { benchSeqAlloc(b, 2<<20) }
