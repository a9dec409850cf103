package qcow2

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/blocklayer/blocklayer/blockio"
)

// smallImages returns tiny images (a few clusters) made by this package,
// covering compressed, zero, extended-L2 and v2 layouts, as fuzz seeds.
func smallImages(t testing.TB) [][]byte {
	var out [][]byte
	for _, o := range []CreateOptions{
		{ClusterSize: 512, Size: 64 << 10},
		{ClusterSize: 512, Size: 64 << 10, Compat: "0.10"},
		{ClusterSize: 16 << 10, Size: 256 << 10, ExtendedL2: true},
		{ClusterSize: 4096, Size: 64 << 10, CompressionType: "zstd", RefcountBits: 8},
		{ClusterSize: 4096, Size: 64 << 10, RefcountBits: 1},
	} {
		mem := blockio.NewMem(0)
		img, err := Create(mem, o)
		if err != nil {
			t.Fatal(err)
		}
		cs := img.ClusterSize()
		p := bytes.Repeat([]byte("qcow2 fuzz seed "), int(cs)/16)
		img.WriteAt(p[:cs/2], 0)
		img.WriteAt(p, cs)
		if err := img.WriteCompressed(p, 2*cs); err != nil {
			t.Fatal(err)
		}
		img.WriteZeroes(3*cs, cs, false)
		img.WriteAt(p[:100], 5*cs+7)
		if err := img.Flush(); err != nil {
			t.Fatal(err)
		}
		out = append(out, mem.Bytes())
		img.Close()
	}
	return out
}

func addCorpusHeaders(f *testing.F) {
	// The first cluster of a few qemu-made images (tables lie beyond it,
	// so these exercise the header checks).
	for _, n := range []string{"qcow2-compat11.qcow2", "qcow2-compat010.qcow2", "chain-top.qcow2", "qcow2-bitmaps.qcow2", "qcow2-datafile.qcow2", "qcow2-compressed-zstd.qcow2"} {
		b, err := os.ReadFile(filepath.Join("/tmp/blocklayer-corpus", n))
		if err == nil && len(b) >= 4096 {
			f.Add(b[:4096])
		}
	}
}

// FuzzHeader feeds arbitrary bytes to the header and extension parser.
func FuzzHeader(f *testing.F) {
	for _, b := range smallImages(f) {
		f.Add(b[:min(len(b), 1024)])
	}
	addCorpusHeaders(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeader(b, int64(len(b)))
		if err != nil {
			if !errors.Is(err, blockio.ErrCorrupt) && !errors.Is(err, blockio.ErrUnsupported) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if h.clusterBits < minClusterBits || h.clusterBits > maxClusterBits {
			t.Fatalf("accepted cluster_bits %d", h.clusterBits)
		}
	})
}

// FuzzOpenRead opens mutated small images and reads, maps, describes and
// checks them: nothing may panic or hang, and errors must be typed.
func FuzzOpenRead(f *testing.F) {
	for _, b := range smallImages(f) {
		if len(b) <= 64<<10 { // large inputs slow the fuzzer's mutator down
			f.Add(b)
		}
	}
	f.Fuzz(fuzzBody)
}

func fuzzBody(t *testing.T, b []byte) {
	wd := time.AfterFunc(30*time.Second, func() { panic("fuzz input took more than 30s (hang?)") })
	defer wd.Stop()
	{
		if len(b) > 4<<20 {
			return
		}
		mem := blockio.NewMem(int64(len(b)))
		mem.WriteAt(b, 0)
		img, err := Open(mem, Options{ReadOnly: true, NoBacking: true, MemoryLimit: 64 << 20})
		if err != nil {
			return
		}
		defer img.Close()
		img.Info()
		size := img.Size()
		buf := make([]byte, 64<<10)
		for _, off := range []int64{0, size / 3, size - 1, size / 2} {
			if off < 0 || off >= size {
				continue
			}
			n := min(int64(len(buf)), size-off)
			img.ReadAt(buf[:n], off)
		}
		off := int64(0)
		for i := 0; i < 256 && off < size; i++ {
			e, err := img.BlockStatus(off, size-off)
			if err != nil {
				break
			}
			if e.Length <= 0 || e.Start != off {
				t.Fatalf("bad extent %+v at %d", e, off)
			}
			off = e.End()
		}
		img.Snapshots()
		img.Bitmaps()
		if _, err := img.Check(context.Background(), CheckOptions{}); err != nil && !typedErr(err) {
			t.Fatalf("check: untyped error %v", err)
		}
		// Writes on a read-write open must fail cleanly or keep the image
		// consistent enough to read back.
		mem2 := blockio.NewMem(int64(len(b)))
		mem2.WriteAt(b, 0)
		w, err := Open(mem2, Options{NoBacking: true, MemoryLimit: 64 << 20})
		if err != nil {
			return
		}
		defer w.Close()
		ws := w.Size()
		if ws == 0 {
			return
		}
		p := bytes.Repeat([]byte{0xa5}, 700)
		for _, off := range []int64{0, ws / 4, ws / 2, ws - 1} {
			n := min(int64(len(p)), ws-off)
			if _, err := w.WriteAt(p[:n], off); err != nil {
				return
			}
		}
		w.WriteZeroes(0, min(ws, 4096), true)
		w.Discard(ws/2, min(ws-ws/2, 65536))
		w.Deallocate(0, min(ws, 2*w.ClusterSize()))
		if err := w.Flush(); err != nil {
			return
		}
		// A header rewrite keeps the image openable, or fails cleanly.
		if err := w.ChangeBackingFile("fuzz-backing.qcow2", "qcow2"); err != nil {
			if !typedErr(err) {
				t.Fatalf("change backing file: untyped error %v", err)
			}
		} else {
			snap := blockio.NewMem(int64(len(mem2.Bytes())))
			snap.WriteAt(mem2.Bytes(), 0)
			r, err := Open(snap, Options{ReadOnly: true, NoBacking: true, MemoryLimit: 64 << 20})
			if err != nil {
				t.Fatalf("reopen after ChangeBackingFile: %v", err)
			}
			r.Close()
		}
		if q := ws / 4; q >= 4096 && q+int64(len(p)) <= ws/2 {
			got := make([]byte, len(p))
			if _, err := w.ReadAt(got, q); err == nil && !bytes.Equal(got, p) {
				t.Fatalf("write at %d not read back", q)
			}
		}
		// Repair and resize the mutated image: typed errors only.
		if _, err := w.Check(context.Background(), CheckOptions{Repair: RepairAll}); err != nil && !typedErr(err) {
			t.Fatalf("check -r all: untyped error %v", err)
		}
		if err := w.Truncate((ws+65536)&^511, blockio.PreallocOff); err != nil {
			if !typedErr(err) {
				t.Fatalf("grow: untyped error %v", err)
			}
			return
		}
		if err := w.Truncate(max(512, ws/2&^511), blockio.PreallocOff); err != nil && !typedErr(err) {
			t.Fatalf("shrink: untyped error %v", err)
		}
	}
}

func typedErr(err error) bool {
	for _, s := range []error{blockio.ErrCorrupt, blockio.ErrUnsupported, blockio.ErrInvalid, blockio.ErrOutOfRange, blockio.ErrNoSpace, blockio.ErrReadOnly} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// TestMutatedImages runs the fuzz body over seeded random mutations of
// the small seed images (byte flips, 0xff fields, cut ranges), so every
// test run covers hostile inputs even without -fuzz.
func TestMutatedImages(t *testing.T) {
	seeds := smallImages(t)
	r := rand.New(rand.NewPCG(1, 2))
	n := 1500
	if raceEnabled {
		// The body also repairs and resizes each image; keep the -race
		// run of the package within its time budget.
		n = 700
	}
	if testing.Short() {
		n = 300
	}
	for i := 0; i < n; i++ {
		b := append([]byte(nil), seeds[r.IntN(len(seeds))]...)
		for k := 0; k < 1+r.IntN(6); k++ {
			p := r.IntN(min(len(b), 600))
			if r.IntN(3) == 0 {
				p = r.IntN(len(b))
			}
			switch r.IntN(4) {
			case 0:
				b[p] = byte(r.Uint32())
			case 1:
				b[p] = 0xff
			case 2:
				b = append(b[:p], b[min(len(b), p+r.IntN(64)):]...)
			default:
				b[p] ^= 1 << r.IntN(8)
			}
			if len(b) == 0 {
				b = []byte{0}
			}
		}
		fuzzBody(t, b)
	}
}
