//go:build linux

package blockio_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
)

func benchFile(b *testing.B, opts blockio.FileOptions, size int64) *blockio.File {
	b.Helper()
	f, err := blockio.CreateFile(filepath.Join(b.TempDir(), "bench.raw"), size, opts)
	if err != nil {
		if errors.Is(err, blockio.ErrUnsupported) {
			b.Skip(err)
		}
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

func benchIO(b *testing.B, opts blockio.FileOptions, bs int, unaligned, write bool) {
	const size = 64 << 20
	f := benchFile(b, opts, size)
	buf := make([]byte, bs+1)[1:] // deliberately misaligned memory when unaligned
	if !unaligned {
		buf = make([]byte, bs)
	}
	for i := range buf {
		buf[i] = byte(i) | 1
	}
	// Populate so reads hit data.
	for off := int64(0); off < size; off += int64(len(buf)) {
		f.WriteAt(buf, off)
	}
	shift := int64(0)
	if unaligned {
		shift = 100
	}
	b.SetBytes(int64(bs))
	b.ReportAllocs()
	b.ResetTimer()
	off := int64(0)
	for i := 0; i < b.N; i++ {
		var err error
		if write {
			_, err = f.WriteAt(buf, off+shift)
		} else {
			_, err = f.ReadAt(buf, off+shift)
		}
		if err != nil {
			b.Fatal(err)
		}
		off = (off + int64(bs)) % (size - int64(bs) - shift)
	}
}

func BenchmarkFileRead64K(b *testing.B)  { benchIO(b, blockio.FileOptions{}, 64<<10, false, false) }
func BenchmarkFileWrite64K(b *testing.B) { benchIO(b, blockio.FileOptions{}, 64<<10, false, true) }
func BenchmarkFileDirectRead64K(b *testing.B) {
	benchIO(b, blockio.FileOptions{Direct: true}, 64<<10, false, false)
}
func BenchmarkFileDirectWrite64K(b *testing.B) {
	benchIO(b, blockio.FileOptions{Direct: true}, 64<<10, false, true)
}
func BenchmarkFileDirectReadUnaligned(b *testing.B) {
	benchIO(b, blockio.FileOptions{Direct: true}, 64<<10, true, false)
}
func BenchmarkFileDirectWriteUnaligned(b *testing.B) {
	benchIO(b, blockio.FileOptions{Direct: true}, 64<<10, true, true)
}

func BenchmarkMemWrite64K(b *testing.B) {
	m := blockio.NewMem(64 << 20)
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = 1
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m.WriteAt(buf, int64(i%1000)*int64(len(buf)))
	}
}
