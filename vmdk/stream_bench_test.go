package vmdk

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// BenchmarkStreamRead reads a 256 MiB streamOptimized image written by
// qemu-img (from half-random data) with sequential 2 MiB ReadAt calls.
func BenchmarkStreamRead(b *testing.B) {
	qimg := qemutest.Require(b, "qemu-img")
	dir := b.TempDir()
	raw := filepath.Join(dir, "src.raw")
	const size = 256 << 20
	if err := os.WriteFile(raw, halfRandom(7, size), 0o644); err != nil {
		b.Fatal(err)
	}
	img := filepath.Join(dir, "s.vmdk")
	qemutest.Run(b, qimg, "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, img)
	os.Remove(raw)
	im, err := OpenFile(img, Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer im.Close()
	buf := make([]byte, 2<<20)
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := im.ReadAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
	}
}
