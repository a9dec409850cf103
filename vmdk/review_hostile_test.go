package vmdk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zlib"

	"github.com/blocklayer/blocklayer/blockio"
)

// bigGDExtent returns a sparse extent whose header promises a 1 TiB
// capacity: a 64 KiB grain directory (all tables unallocated) in a file of
// 129 sectors.
func bigGDExtent() []byte {
	h := sparseHeader{Version: 1, Flags: flagNLDetect, Capacity: 16384 * 512 * 128, GrainSize: 128,
		NumGTEsPerGT: 512, GDOffset: 1, OverHead: 129}
	b := make([]byte, 129*512)
	copy(b, h.marshal())
	return b
}

// repeatedExtents returns a descriptor naming the extent "x" n times.
func repeatedExtents(n int, sectors int64) []byte {
	var sb strings.Builder
	sb.WriteString("# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"twoGbMaxExtentSparse\"\n")
	for range n {
		fmt.Fprintf(&sb, "RW %d SPARSE \"x\"\n", sectors)
	}
	return []byte(sb.String())
}

// TestRepeatedExtentMemoryBudget: a descriptor naming one small file
// thousands of times must not multiply the grain directory allocation;
// the metadata memory limit applies to the image as a whole.
func TestRepeatedExtentMemoryBudget(t *testing.T) {
	ext := bigGDExtent()
	opens := 0
	opener := func(path string, ro bool) (blockio.Device, error) {
		opens++
		m := blockio.NewMem(int64(len(ext)))
		m.WriteAt(ext, 0)
		return m, nil
	}
	open := func(n int, limit int64) (*Image, error) {
		text := repeatedExtents(n, 16384*512*128)
		dev := blockio.NewMem(int64(len(text)))
		dev.WriteAt(text, 0)
		return Open(dev, Options{ReadOnly: true, FileOpener: opener, MaxMetadataMemory: limit})
	}
	// 5000 extents x 64 KiB of directory = 320 MB: refused once 1 MiB is used.
	_, err := open(5000, 1<<20)
	if !errors.Is(err, blockio.ErrCorrupt) || !strings.Contains(err.Error(), "L1 size too big") {
		t.Fatalf("5000 extents: %v", err)
	}
	if opens > 17 {
		t.Errorf("opened %d extents before refusing (budget allows 16)", opens)
	}
	// Within the budget it opens, and the table caches share what is left.
	img, err := open(10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	for _, e := range img.extents {
		if got := int64(e.sp.cacheMax) * e.sp.gtBytes; got > (1<<20-10*65536)/10 {
			t.Errorf("extent cache of %d bytes exceeds its share", got)
		}
	}
	if _, err := img.ReadAt(make([]byte, 4096), img.Size()-4096); err != nil {
		t.Fatal(err)
	}
}

// hugeCompressedGrain builds a compressed, marker-using sparse extent with
// 1 GiB grains (the most QEMU accepts) whose grain 0 holds a short deflate
// stream of 2 MiB of pattern data.
func hugeCompressedGrain(t testing.TB) []byte {
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	pat := bytes.Repeat([]byte("0123456789abcdef"), 2<<20/16)
	zw.Write(pat)
	zw.Close()
	const grain = 0x200000
	h := sparseHeader{Version: 1, Flags: flagNLDetect | flagCompressed | flagMarker, Capacity: 4 * grain,
		GrainSize: grain, NumGTEsPerGT: 4, GDOffset: 1, OverHead: 3, CompressAlgorithm: compressDeflate}
	b := make([]byte, 3*512)
	copy(b, h.marshal())
	binary.LittleEndian.PutUint32(b[512:], 2)  // GT 0 at sector 2
	binary.LittleEndian.PutUint32(b[1024:], 3) // grain 0 at sector 3
	var m [12]byte
	binary.LittleEndian.PutUint32(m[8:], uint32(z.Len()))
	b = append(b, m[:]...)
	b = append(b, z.Bytes()...)
	for len(b)%512 != 0 {
		b = append(b, 0)
	}
	return b
}

// TestHugeCompressedGrainPartialRead: a small read from a 1 GiB compressed
// grain must not buffer the whole grain.
func TestHugeCompressedGrainPartialRead(t *testing.T) {
	data := hugeCompressedGrain(t)
	dev := blockio.NewMem(int64(len(data)))
	dev.WriteAt(data, 0)
	img, err := Open(dev, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	buf := make([]byte, 4096)
	for _, off := range []int64{1<<20 + 16*3, 512 << 20, 1<<30 + 4096} {
		if _, err := img.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, len(buf))
		if off < 2<<20 {
			for i := range want {
				want[i] = "0123456789abcdef"[(off+int64(i))%16]
			}
		}
		if !bytes.Equal(buf, want) {
			t.Fatalf("read at %d: got %q...", off, buf[:32])
		}
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("three 4 KiB reads allocated %d MiB", alloc>>20)
	}
}

// TestHostileGrainMarkers: compressed grains whose marker claims a huge
// size, or that lie past the end of the file, are corruption errors.
func TestHostileGrainMarkers(t *testing.T) {
	for name, mod := range map[string]func(b []byte) []byte{
		"hugeSize": func(b []byte) []byte { binary.LittleEndian.PutUint32(b[3*512+8:], 0xffffffff); return b },
		"zeroSize": func(b []byte) []byte { binary.LittleEndian.PutUint32(b[3*512+8:], 0); return b },
		"pastEOF":  func(b []byte) []byte { binary.LittleEndian.PutUint32(b[1024:], 1<<30); return b },
		"garbage":  func(b []byte) []byte { copy(b[3*512+12:], bytes.Repeat([]byte{0xff}, 64)); return b },
		"gtPastEOF": func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[512:], 0xfffffff0)
			return b
		},
	} {
		data := mod(hugeCompressedGrain(t))
		dev := blockio.NewMem(int64(len(data)))
		dev.WriteAt(data, 0)
		img, err := Open(dev, Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("%s: open: %v", name, err)
		}
		_, err = img.ReadAt(make([]byte, 4096), 8192)
		img.Close()
		if !errors.Is(err, blockio.ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
}

// TestOverlappingGrainTables: two directory entries naming one grain
// table read consistently (the same data twice) and Check reports it.
func TestOverlappingGrainTables(t *testing.T) {
	img, mem := newKeptImage(t, 64<<20)
	if _, err := img.WriteAt(bytes.Repeat([]byte{7}, 65536), 0); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	h, err := parseSparseHeader(mustRead(t, mem, 0, 512), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, gd := range []uint64{h.GDOffset, h.RGDOffset} {
		first := mustRead(t, mem, int64(gd)*512, 4)
		mem.WriteAt(first, int64(gd)*512+4) // GD[1] = GD[0]
	}
	img2, err := Open(mem, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img2.Close()
	b := make([]byte, 65536)
	img2.ReadAt(b, 32<<20) // first grain of table 1
	if !bytes.Equal(b, bytes.Repeat([]byte{7}, 65536)) {
		t.Fatal("shared table not followed")
	}
	res, err := img2.Check(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if res.Corruptions == 0 {
		t.Errorf("check does not see the shared grain: %+v", res)
	}
}

func mustRead(t testing.TB, d blockio.Device, off, n int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := d.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEvictWhileFlushing races writers that allocate grains in many grain
// tables, readers, and Flush, with a grain-table cache of one table, so
// tables are evicted and re-read while flushMeta is writing them. A table
// evicted before its write reached the disk would be re-read stale and
// lose allocations.
func TestEvictWhileFlushing(t *testing.T) {
	const size = 256 << 20 // 8 grain tables
	img, mem := newKeptImage(t, size)
	img.extents[0].sp.cacheMax = 1
	m := make(model, size)
	const workers = 4
	rounds := 300
	if testing.Short() {
		rounds = 100
	}
	var stop atomic.Bool
	var wg, bg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 77))
			for range rounds {
				g := rng.Int64N(size/65536/workers)*workers + int64(w) // own grains
				off := g*65536 + rng.Int64N(60000)
				p := make([]byte, 1+rng.Int64N(4096))
				for i := range p {
					p[i] = byte(rng.IntN(255) + 1)
				}
				if _, err := img.WriteAt(p, off); err != nil {
					t.Error(err)
					return
				}
				copy(m[off:], p) // disjoint per worker
			}
		}()
	}
	bg.Add(2)
	go func() {
		defer bg.Done()
		for !stop.Load() {
			if err := img.Flush(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer bg.Done()
		rng := rand.New(rand.NewPCG(5, 5))
		b := make([]byte, 8192)
		for !stop.Load() {
			img.ReadAt(b, rng.Int64N(size-8192))
		}
	}()
	wg.Wait()
	stop.Store(true)
	bg.Wait()
	checkModel(t, img, m)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	img2, err := Open(mem, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img2.Close()
	checkModel(t, img2, m)
	res, err := img2.Check(t.Context())
	if err != nil || res.Corruptions != 0 {
		t.Fatalf("check %+v %v", res, err)
	}
}

// TestFlatGrowRace: concurrent writers past the end of a short flat
// extent file must not let one writer's growth truncate another's data.
func TestFlatGrowRace(t *testing.T) {
	flat := slowDev{blockio.NewMem(0)}
	desc := []byte("# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 65536 FLAT \"f\" 0\n")
	dev := blockio.NewMem(int64(len(desc)))
	dev.WriteAt(desc, 0)
	img, err := Open(dev, Options{FileOpener: func(string, bool) (blockio.Device, error) { return flat, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := img.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 4096), int64(i)*4096*7); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	b := make([]byte, 4096)
	for i := range n {
		img.ReadAt(b, int64(i)*4096*7)
		if !bytes.Equal(b, bytes.Repeat([]byte{byte(i + 1)}, 4096)) {
			t.Fatalf("write %d lost", i)
		}
	}
}

// newKeptImage creates a monolithicSparse image on a Mem that survives
// Close, for reopening.
func newKeptImage(t testing.TB, size int64) (*Image, *blockio.Mem) {
	t.Helper()
	mem := blockio.NewMem(0)
	img, err := Create(slowDev{mem}, CreateOptions{Size: size})
	if err != nil {
		t.Fatal(err)
	}
	return img, mem
}

// slowDev is a Mem that survives Close and whose Flush and Truncate take
// a little while, widening the windows in which concurrent requests can
// interleave with them.
type slowDev struct{ *blockio.Mem }

func (slowDev) Close() error { return nil }

func (d slowDev) Flush() error {
	time.Sleep(100 * time.Microsecond)
	return d.Mem.Flush()
}

func (d slowDev) Truncate(size int64, p blockio.Prealloc) error {
	time.Sleep(100 * time.Microsecond)
	return d.Mem.Truncate(size, p)
}
