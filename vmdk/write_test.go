package vmdk

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
)

// model is a plain byte slice standing in for the disk.
type model []byte

func checkModel(t testing.TB, dev blockio.Device, m model) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < int64(len(m)); off += int64(len(buf)) {
		n := min(int64(len(buf)), int64(len(m))-off)
		if _, err := dev.ReadAt(buf[:n], off); err != nil {
			t.Fatalf("read %d: %v", off, err)
		}
		if !bytes.Equal(buf[:n], m[off:off+n]) {
			for i := range n {
				if buf[i] != m[off+i] {
					t.Fatalf("mismatch at %d: got %#x want %#x", off+i, buf[i], m[off+i])
				}
			}
		}
	}
}

func newMemImage(t testing.TB, size int64, opts CreateOptions) (*Image, *blockio.Mem) {
	t.Helper()
	mem := blockio.NewMem(0)
	opts.Size = size
	img, err := Create(mem, opts)
	if err != nil {
		t.Fatal(err)
	}
	return img, mem
}

func randomWrites(t testing.TB, img *Image, m model, rng *rand.Rand, n int, maxLen int64) {
	t.Helper()
	size := int64(len(m))
	for range n {
		l := rng.Int64N(maxLen) + 1
		off := rng.Int64N(size - l + 1)
		switch rng.IntN(8) {
		case 0:
			if err := img.WriteZeroes(off, l, rng.IntN(2) == 0); err != nil {
				t.Fatalf("write zeroes %d+%d: %v", off, l, err)
			}
			clear(m[off : off+l])
		default:
			p := make([]byte, l)
			c := byte(rng.IntN(255) + 1)
			for i := range p {
				p[i] = c + byte(i>>9)
			}
			if _, err := img.WriteAt(p, off); err != nil {
				t.Fatalf("write %d+%d: %v", off, l, err)
			}
			copy(m[off:], p)
		}
	}
}

func TestRandomWritesMem(t *testing.T) {
	for _, zg := range []bool{false, true} {
		t.Run(fmt.Sprintf("zeroed=%v", zg), func(t *testing.T) {
			const size = 64 << 20
			img, mem := newMemImage(t, size, CreateOptions{ZeroedGrain: zg})
			m := make(model, size)
			rng := rand.New(rand.NewPCG(1, 2))
			n := 400
			if testing.Short() {
				n = 100
			}
			randomWrites(t, img, m, rng, n, 300<<10)
			checkModel(t, img, m)
			if err := img.Flush(); err != nil {
				t.Fatal(err)
			}
			// Reopen from the same bytes.
			clone, _ := mem.Clone()
			img2, err := Open(clone, Options{})
			if err != nil {
				t.Fatal(err)
			}
			checkModel(t, img2, m)
			res, err := img2.Check(context.Background())
			if err != nil || res.Corruptions != 0 {
				t.Fatalf("check: %+v %v", res, err)
			}
			img2.Close()
			img.Close()
		})
	}
}

func TestConcurrentWriters(t *testing.T) {
	const size = 32 << 20
	img, _ := newMemImage(t, size, CreateOptions{})
	defer img.Close()
	m := make(model, size)
	var wg sync.WaitGroup
	const workers = 8
	// Each worker owns interleaved 16 KiB chunks, so several workers race
	// to allocate the same 64 KiB grain.
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for range 200 {
				chunk := rng.Int64N(size/(16<<10)/workers)*workers + int64(w)
				off := chunk * 16 << 10
				p := bytes.Repeat([]byte{byte(w + 1)}, 16<<10)
				p[0] = byte(rng.IntN(256))
				if _, err := img.WriteAt(p, off); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Rebuild the expectation from what each chunk now holds: every chunk
	// must be wholly one worker's pattern or zero; and grain allocation
	// must be unique.
	buf := make([]byte, 16<<10)
	for off := int64(0); off < size; off += int64(len(buf)) {
		img.ReadAt(buf, off)
		w := byte((off / (16 << 10)) % workers)
		if !blockio.IsZero(buf[1:]) && !bytes.Equal(buf[1:], bytes.Repeat([]byte{w + 1}, len(buf)-1)) {
			t.Fatalf("chunk at %d holds foreign data", off)
		}
		copy(m[off:], buf)
	}
	res, err := img.Check(context.Background())
	if err != nil || res.Corruptions != 0 || res.Leaks != 0 {
		t.Fatalf("check: %+v %v", res, err)
	}
}

// TestHugeGrains writes into an extent with 4 MiB grains (chunked COW
// fill) and no preallocated grain tables, and checks against a model.
func TestHugeGrains(t *testing.T) {
	const size = 64 << 20
	h := sparseHeader{Version: 1, Flags: flagNLDetect, Capacity: size / 512, GrainSize: 8192,
		DescOffset: 0, NumGTEsPerGT: 4, GDOffset: 1, OverHead: 8192}
	mem := blockio.NewMem(8192 * 512)
	mem.WriteAt(h.marshal(), 0)
	img, err := Open(mem, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := make(model, size)
	rng := rand.New(rand.NewPCG(3, 3))
	randomWrites(t, img, m, rng, 40, 100<<10)
	checkModel(t, img, m)
	if err := img.Flush(); err != nil {
		t.Fatal(err)
	}
	clone, _ := mem.Clone()
	img2, err := Open(clone, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	checkModel(t, img2, m)
	res, err := img2.Check(context.Background())
	if err != nil || res.Corruptions != 0 || res.Leaks != 0 {
		t.Fatalf("check %+v %v", res, err)
	}
}
