package blocktest

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/blockio/faultio"
)

// Open returns a new device of size bytes for one subtest. It fails the
// test (t.Fatal) when it cannot. The suite closes the device; Open may
// register further cleanup with t.Cleanup.
// An Open function is called from the test goroutine only.
type Open func(t *testing.T, size int64) blockio.Device

// OnBase builds the device under test on top of base. With create it
// makes a new device of size bytes on the empty base (formatting it, for
// an image format); without, it opens the device already on base (a
// crash image) and may ignore size. Devices that are their own storage,
// like blockio.Mem, return base itself.
// Called from the test goroutine only.
type OnBase func(t *testing.T, base blockio.Device, size int64, create bool) blockio.Device

// Identity is an OnBase for devices that are their own storage: it returns
// base unchanged. Use it with BaseSize 0 to run the durability test on the
// crash simulator itself.
func Identity(t *testing.T, base blockio.Device, size int64, create bool) blockio.Device {
	return base
}

// Options tunes the suite. The zero value runs everything on 4 MiB
// read-write devices with 512-byte sectors.
// Options is a plain value: safe to copy and to read from many goroutines;
// do not modify one another goroutine uses.
type Options struct {
	// Size is the device size passed to Open; 0 means 4 MiB.
	Size int64

	// ReadOnly says devices reject writes: Open must return a device with
	// content already in it. The suite then checks reads, ranges, status
	// and that every mutation fails with ErrReadOnly.
	ReadOnly bool

	// Sector is the granularity at which concurrent overlapping writes
	// must be atomic and at which Discard may keep old data; 0 means 512.
	Sector int64

	// NoConcurrency skips the concurrent-writer tests (for devices that
	// document they are not safe for concurrent use).
	NoConcurrency bool

	// Seed seeds all randomness; runs with equal seeds do the same
	// requests. 0 uses a fixed default.
	Seed uint64

	// OnBase enables the Flush durability test: the suite puts the device
	// on a faultio.CrashDevice, writes and flushes, writes more, takes
	// crash images and reopens them through OnBase. nil skips the test.
	OnBase OnBase

	// BaseSize is the size of the crash device's base; 0 means Size.
	BaseSize int64

	// Short shrinks loops (also implied by testing.Short()).
	Short bool
}

func (o *Options) norm() {
	if o.Size == 0 {
		o.Size = 4 << 20
	}
	if o.Sector == 0 {
		o.Sector = 512
	}
	if o.Seed == 0 {
		o.Seed = 0x5eed
	}
	if o.BaseSize == 0 {
		o.BaseSize = o.Size
	}
	if testing.Short() {
		o.Short = true
	}
}

func (o *Options) iters(n int) int {
	if o.Short {
		return max(n/4, 1)
	}
	return n
}

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, open Open, opts Options) {
	t.Helper()
	opts.norm()
	s := &suite{open: open, o: opts}
	if opts.ReadOnly {
		t.Run("ReadConsistency", s.readConsistency)
		t.Run("OutOfRange", s.outOfRange)
		t.Run("ZeroLength", s.zeroLength)
		t.Run("StatusTiling", s.statusTiling)
		t.Run("WritesRejected", s.writesRejected)
		t.Run("UseAfterClose", s.useAfterClose)
		return
	}
	t.Run("ReadAfterWrite", s.readAfterWrite)
	t.Run("UnalignedModel", s.unalignedModel)
	t.Run("OutOfRange", s.outOfRange)
	t.Run("ZeroLength", s.zeroLength)
	t.Run("ZeroDiscardStatus", s.zeroDiscardStatus)
	t.Run("StatusTiling", s.statusTiling)
	if !opts.NoConcurrency {
		t.Run("ConcurrentDisjoint", s.concurrentDisjoint)
		t.Run("ConcurrentOverlap", s.concurrentOverlap)
	}
	t.Run("Truncate", s.truncate)
	if opts.OnBase != nil {
		t.Run("FlushDurability", s.flushDurability)
	}
	t.Run("UseAfterClose", s.useAfterClose)
}

type suite struct {
	open Open
	o    Options
}

func (s *suite) dev(t *testing.T) blockio.Device {
	t.Helper()
	d := s.open(t, s.o.Size)
	if d == nil {
		t.Fatal("open returned a nil device")
	}
	t.Cleanup(func() { d.Close() })
	if d.Size() != s.o.Size && !s.o.ReadOnly {
		t.Fatalf("Size() = %d, want %d", d.Size(), s.o.Size)
	}
	return d
}

func (s *suite) rng(salt uint64) *rand.Rand { return rand.New(rand.NewPCG(s.o.Seed, salt)) }

func fill(r *rand.Rand, p []byte) {
	for i := range p {
		p[i] = byte(r.Uint32()) | 1 // never zero, so writes are visible
	}
}

func mustRead(t *testing.T, d blockio.Device, off, n int64) []byte {
	t.Helper()
	b := make([]byte, n)
	got, err := d.ReadAt(b, off)
	if err != nil || got != len(b) {
		t.Fatalf("ReadAt(off=%d, len=%d) = %d, %v", off, n, got, err)
	}
	return b
}

func mustWrite(t *testing.T, d blockio.Device, p []byte, off int64) {
	t.Helper()
	got, err := d.WriteAt(p, off)
	if err != nil || got != len(p) {
		t.Fatalf("WriteAt(off=%d, len=%d) = %d, %v", off, len(p), got, err)
	}
}

// diff reports the first mismatch between got and want at base offset off.
func diff(got, want []byte, off int64) string {
	for i := range want {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at offset %d: got %#02x, want %#02x", off+int64(i), got[i], want[i])
		}
	}
	return ""
}

// randRange picks a request biased towards sector, 4 KiB and 64 KiB
// boundaries and odd lengths.
func randRange(r *rand.Rand, size, maxLen int64) (off, n int64) {
	switch r.IntN(4) {
	case 0: // aligned
		n = (1 + r.Int64N(maxLen/512)) * 512
		off = r.Int64N((size-n)/512+1) * 512
	case 1: // straddle a 64 KiB or 4 KiB boundary
		g := []int64{4096, 65536}[r.IntN(2)]
		b := (1 + r.Int64N(max(size/g-1, 1))) * g
		n = 1 + r.Int64N(min(maxLen, 3*g))
		off = b - 1 - r.Int64N(min(n, b))
	default:
		n = 1 + r.Int64N(maxLen)
		off = r.Int64N(size - n + 1)
	}
	if n > size {
		n = size
	}
	if off+n > size {
		off = size - n
	}
	return off, n
}

func (s *suite) readAfterWrite(t *testing.T) {
	d := s.dev(t)
	r := s.rng(1)
	size := d.Size()
	// Fresh device reads as zeros.
	if b := mustRead(t, d, 0, min(size, 1<<20)); !blockio.IsZero(b) {
		t.Fatalf("new device does not read as zeros")
	}
	for _, n := range []int64{512, 4096, 65536, 1 << 20} {
		if n > size {
			continue
		}
		off := r.Int64N(size/n) * n
		p := make([]byte, n)
		fill(r, p)
		mustWrite(t, d, p, off)
		if got := mustRead(t, d, off, n); !bytes.Equal(got, p) {
			t.Fatalf("aligned %d-byte write at %d: %s", n, off, diff(got, p, off))
		}
	}
	// The last byte and the first byte.
	mustWrite(t, d, []byte{0xab}, size-1)
	mustWrite(t, d, []byte{0xcd}, 0)
	if b := mustRead(t, d, size-1, 1); b[0] != 0xab {
		t.Fatalf("last byte = %#x, want 0xab", b[0])
	}
	if b := mustRead(t, d, 0, 1); b[0] != 0xcd {
		t.Fatalf("first byte = %#x, want 0xcd", b[0])
	}
	if err := d.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func (s *suite) unalignedModel(t *testing.T) {
	d := s.dev(t)
	r := s.rng(2)
	size := d.Size()
	model := make([]byte, size)
	for i := 0; i < s.o.iters(400); i++ {
		off, n := randRange(r, size, 200<<10)
		switch r.IntN(5) {
		case 0, 1:
			p := make([]byte, n)
			fill(r, p)
			// Write from an unaligned slice of a larger buffer too.
			if r.IntN(2) == 0 {
				q := make([]byte, n+7)
				copy(q[3:], p)
				p = q[3 : 3+n]
			}
			mustWrite(t, d, p, off)
			copy(model[off:], p)
		case 2:
			if err := blockio.WriteZeroes(d, off, n, r.IntN(2) == 0); err != nil {
				t.Fatalf("WriteZeroes(%d, %d): %v", off, n, err)
			}
			clear(model[off : off+n])
		case 3:
			if err := blockio.Discard(d, off, n); err != nil {
				t.Fatalf("Discard(%d, %d): %v", off, n, err)
			}
			got := mustRead(t, d, off, n)
			s.checkDiscarded(t, got, model[off:off+n], off)
			copy(model[off:], got)
		default:
			buf := make([]byte, n+5)
			got := buf[5:]
			if k, err := d.ReadAt(got, off); err != nil || int64(k) != n {
				t.Fatalf("ReadAt(%d, %d) = %d, %v", off, n, k, err)
			}
			if !bytes.Equal(got, model[off:off+n]) {
				t.Fatalf("op %d: read(%d, %d): %s", i, off, n, diff(got, model[off:off+n], off))
			}
		}
	}
	if got := mustRead(t, d, 0, size); !bytes.Equal(got, model) {
		t.Fatalf("final content: %s", diff(got, model, 0))
	}
}

// checkDiscarded accepts, per sector, either zeros or the old content.
func (s *suite) checkDiscarded(t *testing.T, got, old []byte, off int64) {
	t.Helper()
	for i := 0; i < len(got); {
		e := min(len(got), i+int(s.o.Sector-(off+int64(i))%s.o.Sector))
		if !blockio.IsZero(got[i:e]) && !bytes.Equal(got[i:e], old[i:e]) {
			t.Fatalf("after Discard, bytes %d..%d are neither zero nor the old content", off+int64(i), off+int64(e))
		}
		i = e
	}
}

func (s *suite) outOfRange(t *testing.T) {
	d := s.dev(t)
	size := d.Size()
	buf := make([]byte, 1024)
	cases := []struct {
		off int64
		n   int
	}{{-1, 1}, {-512, 512}, {size, 1}, {size - 1, 2}, {size - 512, 1024}, {size + 4096, 1}, {math.MaxInt64, 1}, {math.MaxInt64 - 10, 100}, {math.MinInt64, 1}}
	for _, c := range cases {
		n, err := d.ReadAt(buf[:c.n], c.off)
		if !errors.Is(err, blockio.ErrOutOfRange) || n != 0 {
			t.Errorf("ReadAt(off=%d, len=%d) = %d, %v; want 0, ErrOutOfRange", c.off, c.n, n, err)
		}
		if s.o.ReadOnly {
			continue
		}
		n, err = d.WriteAt(buf[:c.n], c.off)
		if !errors.Is(err, blockio.ErrOutOfRange) || n != 0 {
			t.Errorf("WriteAt(off=%d, len=%d) = %d, %v; want 0, ErrOutOfRange", c.off, c.n, n, err)
		}
		if err := blockio.Discard(d, c.off, int64(c.n)); !errors.Is(err, blockio.ErrOutOfRange) {
			t.Errorf("Discard(%d, %d) = %v; want ErrOutOfRange", c.off, c.n, err)
		}
		if err := blockio.WriteZeroes(d, c.off, int64(c.n), false); !errors.Is(err, blockio.ErrOutOfRange) {
			t.Errorf("WriteZeroes(%d, %d) = %v; want ErrOutOfRange", c.off, c.n, err)
		}
	}
	for _, c := range []struct{ off, n int64 }{{-1, 1}, {size, 1}, {0, size + 1}, {0, -1}, {math.MaxInt64, 1}} {
		if _, err := blockio.BlockStatus(d, c.off, c.n); !errors.Is(err, blockio.ErrOutOfRange) {
			t.Errorf("BlockStatus(%d, %d) = %v; want ErrOutOfRange", c.off, c.n, err)
		}
	}
	// The last byte is still in range.
	if _, err := d.ReadAt(buf[:1], size-1); err != nil {
		t.Errorf("ReadAt(last byte): %v", err)
	}
}

func (s *suite) zeroLength(t *testing.T) {
	d := s.dev(t)
	size := d.Size()
	for _, off := range []int64{0, 1, size / 2, size} {
		if n, err := d.ReadAt(nil, off); n != 0 || err != nil {
			t.Errorf("ReadAt(nil, %d) = %d, %v", off, n, err)
		}
		if _, err := blockio.BlockStatus(d, off, 0); err != nil {
			t.Errorf("BlockStatus(%d, 0) = %v", off, err)
		}
		if s.o.ReadOnly {
			continue
		}
		if n, err := d.WriteAt([]byte{}, off); n != 0 || err != nil {
			t.Errorf("WriteAt(empty, %d) = %d, %v", off, n, err)
		}
		if err := blockio.Discard(d, off, 0); err != nil {
			t.Errorf("Discard(%d, 0) = %v", off, err)
		}
		if err := blockio.WriteZeroes(d, off, 0, true); err != nil {
			t.Errorf("WriteZeroes(%d, 0) = %v", off, err)
		}
	}
}

// walkStatus walks BlockStatus over the whole device, checking that the
// extents tile it, and returns them.
func walkStatus(t *testing.T, d blockio.Device) []blockio.Extent {
	t.Helper()
	size := d.Size()
	var out []blockio.Extent
	for off := int64(0); off < size; {
		e, err := blockio.BlockStatus(d, off, size-off)
		if err != nil {
			t.Fatalf("BlockStatus(%d, %d): %v", off, size-off, err)
		}
		if e.Start != off || e.Length <= 0 || e.End() > size {
			t.Fatalf("BlockStatus(%d, %d) = %+v: does not start at the offset or has a bad length", off, size-off, e)
		}
		out = append(out, e)
		off = e.End()
		if len(out) > 1<<20 {
			t.Fatalf("BlockStatus returned more than 1M extents")
		}
	}
	return out
}

// checkStatus checks that zero extents read as zeros and that no byte
// reads non-zero inside an extent claimed to be zero.
func checkStatus(t *testing.T, d blockio.Device) []blockio.Extent {
	t.Helper()
	ext := walkStatus(t, d)
	for _, e := range ext {
		if !e.Zero {
			continue
		}
		for off := e.Start; off < e.End(); {
			n := min(e.End()-off, 1<<20)
			if b := mustRead(t, d, off, n); !blockio.IsZero(b) {
				t.Fatalf("extent %+v is reported zero but reads non-zero data", e)
			}
			off += n
		}
	}
	return ext
}

func extentAt(ext []blockio.Extent, off int64) blockio.Extent {
	for _, e := range ext {
		if off >= e.Start && off < e.End() {
			return e
		}
	}
	return blockio.Extent{}
}

func (s *suite) zeroDiscardStatus(t *testing.T) {
	d := s.dev(t)
	r := s.rng(3)
	size := d.Size()
	checkStatus(t, d)
	type span struct{ off, n int64 }
	var written []span
	for i := 0; i < 8; i++ {
		off, n := randRange(r, size, 128<<10)
		p := make([]byte, n)
		fill(r, p)
		mustWrite(t, d, p, off)
		written = append(written, span{off, n})
	}
	ext := checkStatus(t, d)
	for _, w := range written {
		for _, off := range []int64{w.off, w.off + w.n - 1} {
			if e := extentAt(ext, off); !e.Data && !e.Allocated {
				t.Fatalf("byte %d was written but its extent %+v is neither data nor allocated", off, e)
			}
		}
	}
	// Zero and discard parts of the written spans, with and without unmap.
	for i, w := range written {
		off, n := w.off+w.n/4, max(w.n/2, 1)
		switch i % 3 {
		case 0:
			if err := blockio.WriteZeroes(d, off, n, false); err != nil {
				t.Fatalf("WriteZeroes: %v", err)
			}
		case 1:
			if err := blockio.WriteZeroes(d, off, n, true); err != nil {
				t.Fatalf("WriteZeroes(unmap): %v", err)
			}
		case 2:
			old := mustRead(t, d, off, n)
			if err := blockio.Discard(d, off, n); err != nil {
				t.Fatalf("Discard: %v", err)
			}
			s.checkDiscarded(t, mustRead(t, d, off, n), old, off)
			continue
		}
		if b := mustRead(t, d, off, n); !blockio.IsZero(b) {
			t.Fatalf("range %d+%d does not read as zeros after WriteZeroes", off, n)
		}
	}
	checkStatus(t, d)
	// Zero the whole device: everything reads as zeros.
	if err := blockio.WriteZeroes(d, 0, size, true); err != nil {
		t.Fatalf("WriteZeroes(whole device): %v", err)
	}
	checkStatus(t, d)
	if b := mustRead(t, d, 0, size); !blockio.IsZero(b) {
		t.Fatal("device does not read as zeros after WriteZeroes of the whole device")
	}
}

func (s *suite) statusTiling(t *testing.T) {
	d := s.dev(t)
	ext := checkStatus(t, d)
	// Sub-range queries agree with the full walk's tiling rules.
	size := d.Size()
	r := s.rng(4)
	for i := 0; i < 32; i++ {
		off, n := randRange(r, size, size)
		e, err := blockio.BlockStatus(d, off, n)
		if err != nil {
			t.Fatalf("BlockStatus(%d, %d): %v", off, n, err)
		}
		if e.Start != off || e.Length <= 0 || e.Length > n {
			t.Fatalf("BlockStatus(%d, %d) = %+v", off, n, e)
		}
		if full := extentAt(ext, off); full.Zero && !e.Zero && !e.Data {
			t.Fatalf("BlockStatus(%d, %d) = %+v disagrees with %+v", off, n, e, full)
		}
	}
}

func (s *suite) readConsistency(t *testing.T) {
	d := s.dev(t)
	size := d.Size()
	whole := mustRead(t, d, 0, size)
	r := s.rng(5)
	for i := 0; i < s.o.iters(200); i++ {
		off, n := randRange(r, size, 256<<10)
		buf := make([]byte, n+3)
		got := buf[3:]
		if k, err := d.ReadAt(got, off); err != nil || int64(k) != n {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", off, n, k, err)
		}
		if !bytes.Equal(got, whole[off:off+n]) {
			t.Fatalf("ReadAt(%d, %d) disagrees with a whole-device read: %s", off, n, diff(got, whole[off:off+n], off))
		}
	}
	// Concurrent readers see the same content.
	if !s.o.NoConcurrency {
		parallel(t, 8, func(g int) error {
			r := s.rng(100 + uint64(g))
			for i := 0; i < s.o.iters(50); i++ {
				off, n := randRange(r, size, 64<<10)
				got := make([]byte, n)
				if _, err := d.ReadAt(got, off); err != nil {
					return err
				}
				if !bytes.Equal(got, whole[off:off+n]) {
					return fmt.Errorf("concurrent ReadAt(%d, %d) disagrees", off, n)
				}
			}
			return nil
		})
	}
}

// parallel runs fn(0) ... fn(workers-1) in their own goroutines and fails
// the test with the errors they return once all have finished.
func parallel(t *testing.T, workers int, fn func(g int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(g); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
}

func (s *suite) writesRejected(t *testing.T) {
	d := s.dev(t)
	before := mustRead(t, d, 0, min(d.Size(), 64<<10))
	if n, err := d.WriteAt([]byte{1, 2, 3}, 0); !errors.Is(err, blockio.ErrReadOnly) || n != 0 {
		t.Errorf("WriteAt on read-only device = %d, %v; want 0, ErrReadOnly", n, err)
	}
	if z, ok := d.(blockio.ZeroWriter); ok {
		if err := z.WriteZeroes(0, 512, true); !errors.Is(err, blockio.ErrReadOnly) {
			t.Errorf("WriteZeroes on read-only device = %v; want ErrReadOnly", err)
		}
	}
	if dc, ok := d.(blockio.Discarder); ok {
		if err := dc.Discard(0, 512); !errors.Is(err, blockio.ErrReadOnly) {
			t.Errorf("Discard on read-only device = %v; want ErrReadOnly", err)
		}
	}
	if tr, ok := d.(blockio.Truncater); ok {
		if err := tr.Truncate(d.Size()+512, blockio.PreallocOff); !errors.Is(err, blockio.ErrReadOnly) && !errors.Is(err, blockio.ErrUnsupported) {
			t.Errorf("Truncate on read-only device = %v; want ErrReadOnly", err)
		}
	}
	if after := mustRead(t, d, 0, int64(len(before))); !bytes.Equal(before, after) {
		t.Errorf("content changed after rejected writes")
	}
}

func (s *suite) concurrentDisjoint(t *testing.T) {
	d := s.dev(t)
	size := d.Size()
	r := s.rng(6)
	const workers = 8
	// Cut the device into segments at random (unaligned) points and deal
	// them out, so neighbours share sectors and blocks.
	type seg struct{ off, n int64 }
	var segs [workers][]seg
	for off, i := int64(0), 0; off < size; i++ {
		n := min(size-off, 1+r.Int64N(96<<10))
		segs[i%workers] = append(segs[i%workers], seg{off, n})
		off += n
	}
	model := make([]byte, size)
	parallel(t, workers, func(g int) error {
		r := s.rng(200 + uint64(g))
		mine := segs[g]
		if len(mine) == 0 {
			return nil
		}
		for i := 0; i < s.o.iters(60); i++ {
			sg := mine[r.IntN(len(mine))]
			a := r.Int64N(sg.n)
			n := 1 + r.Int64N(sg.n-a)
			if r.IntN(3) == 0 { // often touch the segment edges
				a, n = 0, sg.n
			}
			off := sg.off + a
			p := make([]byte, n)
			fill(r, p)
			if _, err := d.WriteAt(p, off); err != nil {
				return fmt.Errorf("worker %d: WriteAt(%d, %d): %w", g, off, n, err)
			}
			copy(model[off:], p) // disjoint per worker: no race
			got := make([]byte, n)
			if _, err := d.ReadAt(got, off); err != nil {
				return fmt.Errorf("worker %d: ReadAt(%d, %d): %w", g, off, n, err)
			}
			if !bytes.Equal(got, p) {
				return fmt.Errorf("worker %d: read back of %d+%d: %s", g, off, n, diff(got, p, off))
			}
		}
		return nil
	})
	if got := mustRead(t, d, 0, size); !bytes.Equal(got, model) {
		t.Fatalf("after concurrent disjoint writes: %s", diff(got, model, 0))
	}
}

func (s *suite) concurrentOverlap(t *testing.T) {
	d := s.dev(t)
	sec := s.o.Sector
	span := min(d.Size()/sec, 256) // sectors
	const workers = 6
	type rg struct{ lo, hi int64 } // sectors
	ranges := make([]rg, workers)
	r := s.rng(7)
	for g := range ranges {
		lo := r.Int64N(span / 2)
		ranges[g] = rg{lo, lo + 1 + r.Int64N(span-lo)}
	}
	parallel(t, workers, func(g int) error {
		p := bytes.Repeat([]byte{byte(g + 1)}, int((ranges[g].hi-ranges[g].lo)*sec))
		for i := 0; i < s.o.iters(40); i++ {
			if _, err := d.WriteAt(p, ranges[g].lo*sec); err != nil {
				return err
			}
		}
		return nil
	})
	got := mustRead(t, d, 0, span*sec)
	for sn := int64(0); sn < span; sn++ {
		b := got[sn*sec : (sn+1)*sec]
		v := b[0]
		if !bytes.Equal(b, bytes.Repeat([]byte{v}, int(sec))) {
			t.Fatalf("sector %d is torn: mixes data from several writers", sn)
		}
		allowed := map[byte]bool{}
		for g, rr := range ranges {
			if sn >= rr.lo && sn < rr.hi {
				allowed[byte(g+1)] = true
			}
		}
		if len(allowed) == 0 {
			allowed[0] = true
		}
		if !allowed[v] {
			t.Fatalf("sector %d holds %#x, not the data of a writer covering it", sn, v)
		}
	}
}

func (s *suite) truncate(t *testing.T) {
	d := s.dev(t)
	if _, ok := d.(blockio.Truncater); !ok {
		t.Skip("device does not implement blockio.Truncater")
	}
	size := d.Size()
	r := s.rng(8)
	p := make([]byte, 8192)
	fill(r, p)
	mustWrite(t, d, p, size-int64(len(p)))
	grow := size + 1<<20
	if err := blockio.Truncate(d, grow, blockio.PreallocOff); err != nil {
		if errors.Is(err, blockio.ErrUnsupported) {
			t.Skipf("resizing unsupported: %v", err)
		}
		t.Fatalf("Truncate(%d): %v", grow, err)
	}
	if d.Size() != grow {
		t.Fatalf("Size() after growing = %d, want %d", d.Size(), grow)
	}
	if got := mustRead(t, d, size-int64(len(p)), int64(len(p))); !bytes.Equal(got, p) {
		t.Fatal("data before the old end changed when growing")
	}
	if b := mustRead(t, d, size, grow-size); !blockio.IsZero(b) {
		t.Fatal("grown area does not read as zeros")
	}
	mustWrite(t, d, p, grow-int64(len(p)))
	// Shrink into the data, then grow again: the cut data must not return.
	cut := size - 4096
	if err := blockio.Truncate(d, cut, blockio.PreallocOff); err != nil {
		t.Fatalf("Truncate(%d): %v", cut, err)
	}
	if d.Size() != cut {
		t.Fatalf("Size() after shrinking = %d, want %d", d.Size(), cut)
	}
	if _, err := d.ReadAt(make([]byte, 1), cut); !errors.Is(err, blockio.ErrOutOfRange) {
		t.Fatalf("read past the new end = %v, want ErrOutOfRange", err)
	}
	if err := blockio.Truncate(d, size, blockio.PreallocOff); err != nil {
		t.Fatalf("Truncate(%d): %v", size, err)
	}
	if got := mustRead(t, d, size-int64(len(p)), 4096); !bytes.Equal(got, p[:4096]) {
		t.Fatal("data below the cut changed")
	}
	if b := mustRead(t, d, cut, size-cut); !blockio.IsZero(b) {
		t.Fatal("data cut by shrinking came back after growing again")
	}
	checkStatus(t, d)
}

func (s *suite) flushDurability(t *testing.T) {
	size := s.o.Size
	base := faultio.NewCrashMem(s.o.BaseSize)
	d := s.o.OnBase(t, base, size, true)
	if d == nil {
		t.Fatal("OnBase returned a nil device")
	}
	defer func() {
		if d != blockio.Device(base) {
			d.Close()
		}
	}()
	r := s.rng(9)
	model := make([]byte, size)
	// Flushed generation.
	for i := 0; i < 16; i++ {
		off, n := randRange(r, size, 64<<10)
		p := make([]byte, n)
		fill(r, p)
		mustWrite(t, d, p, off)
		copy(model[off:], p)
	}
	if err := d.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	flushed := bytes.Clone(model)
	// Unflushed generation, partly over flushed data.
	touched := make([]bool, size)
	for i := 0; i < 16; i++ {
		off, n := randRange(r, size, 64<<10)
		p := make([]byte, n)
		fill(r, p)
		mustWrite(t, d, p, off)
		copy(model[off:], p)
		for j := off; j < off+n; j++ {
			touched[j] = true
		}
	}
	// check reopens a crash image and compares it with want wherever
	// skip is false (skip nil: everywhere).
	check := func(name string, img *blockio.Mem, want []byte, skip []bool) {
		t.Helper()
		dev := s.o.OnBase(t, img, size, false)
		if dev == nil {
			t.Fatalf("%s: OnBase returned nil for a crash image", name)
		}
		defer dev.Close()
		if dev.Size() != size {
			t.Fatalf("%s: size after crash = %d, want %d", name, dev.Size(), size)
		}
		got := mustRead(t, dev, 0, size)
		if skip == nil {
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: %s", name, diff(got, want, 0))
			}
			return
		}
		for i := range got {
			if !skip[i] && got[i] != want[i] {
				t.Fatalf("%s: byte %d = %#02x after crash, want %#02x (flushed and not overwritten)", name, i, got[i], want[i])
			}
		}
	}
	img, err := base.CrashKeepNone()
	if err != nil {
		t.Fatal(err)
	}
	check("keep none", img, flushed, nil)
	img, err = base.CrashKeepAll()
	if err != nil {
		t.Fatal(err)
	}
	// Unflushed writes may sit in the device's own caches, so even with
	// every issued write kept only the flushed data is certain.
	check("keep all", img, flushed, touched)
	for seed := uint64(0); seed < uint64(s.o.iters(8)); seed++ {
		img, err := base.Crash(rand.New(rand.NewPCG(s.o.Seed, seed)))
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("random crash %d", seed), img, flushed, touched)
	}
	// After a second flush everything survives any crash.
	if err := d.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	img, err = base.Crash(rand.New(rand.NewPCG(s.o.Seed, 99)))
	if err != nil {
		t.Fatal(err)
	}
	check("crash after second flush", img, model, nil)
}

func (s *suite) useAfterClose(t *testing.T) {
	d := s.open(t, s.o.Size)
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	buf := make([]byte, 512)
	if _, err := d.ReadAt(buf, 0); !errors.Is(err, blockio.ErrClosed) {
		t.Errorf("ReadAt after Close = %v, want ErrClosed", err)
	}
	if _, err := d.WriteAt(buf, 0); err == nil {
		t.Errorf("WriteAt after Close succeeded")
	}
	if err := d.Flush(); !s.o.ReadOnly && !errors.Is(err, blockio.ErrClosed) {
		t.Errorf("Flush after Close = %v, want ErrClosed", err)
	}
	if _, err := blockio.BlockStatus(d, 0, 512); err == nil {
		if _, ok := d.(blockio.StatusReporter); ok {
			t.Errorf("BlockStatus after Close succeeded")
		}
	}
	_ = blockio.Discard(d, 0, 512)
	_ = blockio.WriteZeroes(d, 0, 512, false)
	_ = d.Size()
	if err := d.Close(); err == nil {
		t.Logf("second Close returned nil")
	}
}
