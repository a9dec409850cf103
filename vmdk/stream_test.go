package vmdk

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// halfRandom returns size bytes: runs of random bytes, a repeated text
// pattern and zeros (roughly 50% compressible, with holes).
func halfRandom(seed uint64, size int64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, size)
	for off := int64(0); off < size; off += 32 << 10 {
		c := b[off:min(off+32<<10, size)]
		switch rng.IntN(5) {
		case 0, 1:
			for i := range c {
				c[i] = byte(rng.Uint32())
			}
		case 2, 3:
			for i := range c {
				c[i] = "blocklayer vmdk stream "[i%23]
			}
		}
	}
	return b
}

func writeSequential(t testing.TB, img *Image, src []byte, chunk int) {
	t.Helper()
	for off := 0; off < len(src); off += chunk {
		c := src[off:min(off+chunk, len(src))]
		if isZero(c) {
			continue // a converter skips zero ranges
		}
		if _, err := img.WriteAt(c, int64(off)); err != nil {
			t.Fatalf("write %d: %v", off, err)
		}
	}
}

func TestStreamMem(t *testing.T) {
	const size = 24<<20 + 12345*512 // not a multiple of the grain
	src := halfRandom(3, size)
	mem := blockio.NewMem(0)
	img, err := Create(keepOpen{mem}, CreateOptions{Size: size, Subformat: StreamOptimized, CompressionWorkers: 3})
	if err != nil {
		t.Fatal(err)
	}
	writeSequential(t, img, src, 100000) // unaligned chunks
	if _, err := img.WriteAt([]byte{1}, 0); !errors.Is(err, blockio.ErrUnsupported) {
		t.Fatalf("backwards write: %v", err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	clone, _ := mem.Clone()
	r, err := Open(clone, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checkModel(t, r, src)
	if r.CreateType() != StreamOptimized {
		t.Errorf("createType %q", r.CreateType())
	}
	res, err := r.Check(context.Background())
	if err != nil || res.Corruptions != 0 {
		t.Fatalf("check %+v %v", res, err)
	}
}

func TestStreamInterop(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	const size = 40 << 20
	src := halfRandom(5, size)
	dir := t.TempDir()
	raw := filepath.Join(dir, "src.raw")
	if err := os.WriteFile(raw, src, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s.vmdk")
	img, err := CreateFile(path, size, CreateOptions{Subformat: StreamOptimized})
	if err != nil {
		t.Fatal(err)
	}
	writeSequential(t, img, src, 2<<20)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	qemuCheck(t, path)
	qemuCompare(t, path, raw)
	r, err := OpenFile(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	checkModel(t, r, src)
	compareInfoJSON(t, r, []byte(qemutest.Run(t, "qemu-img", "info", "--output=json", path)))
	r.Close()
	// And the other way: a qemu-written stream reads back identically.
	q := filepath.Join(dir, "q.vmdk")
	qemutest.Run(t, "qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, q)
	r, err = OpenFile(q, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	checkModel(t, r, src)
	r.Close()
}

// keepOpen lets a test read a Mem after the image on it was closed.
type keepOpen struct{ *blockio.Mem }

func (keepOpen) Close() error { return nil }
