package faultio

import (
	"math/rand/v2"
	"sort"
	"sync"

	"github.com/blocklayer/blocklayer/blockio"
)

// SectorSize is the granularity at which CrashDevice loses data: a sector
// is always either entirely one of its versions or entirely another.
const SectorSize = 512

// CrashDevice is a blockio.Device that remembers which writes are not yet
// durable, so tests can ask what the disk would hold after a power cut.
//
// Requests go to a base device, which always holds the current contents
// (what a read returns). Everything the base held when NewCrashDevice was
// called, and every write, discard or zero write that completed before a
// successful Flush began, is durable. The rest is "unflushed": for every
// sector it touched, CrashDevice keeps the sector's content before the
// first unflushed write (its durable content) and after each unflushed
// write (its versions, in order).
//
// A crash image (see Crash) starts as the current contents; each touched
// sector is then set to one of its versions or to its durable content,
// as if each unflushed write had reached the disk or not independently
// per sector, with a later write of a sector superseding an earlier one
// only when it reached the disk. Size changes (Truncate) count as durable
// at once.
//
// CrashDevice is safe for concurrent use. Writes, flushes and crashes are
// serialised with each other; reads go straight to the base. The memory it
// uses grows with the amount of unflushed data: a write, discard or zero
// write of n bytes keeps up to 2n bytes until the next Flush, so it is a
// tool for tests, not for terabyte-sized requests.
type CrashDevice struct {
	base blockio.Device

	mu      sync.Mutex
	seq     uint64               // sequence number of the last logged write
	sectors map[int64]*sectorLog // sector index -> unflushed history
	ops     []uint64             // sequence numbers of unflushed writes
	closed  bool
}

type sectorLog struct {
	durable  []byte // content before the first unflushed write
	versions []version
}

type version struct {
	seq  uint64
	data []byte
}

// NewCrashDevice wraps base, whose current content is taken as durable.
// Closing the CrashDevice closes base.
func NewCrashDevice(base blockio.Device) *CrashDevice {
	return &CrashDevice{base: base, sectors: make(map[int64]*sectorLog)}
}

// NewCrashMem returns a CrashDevice over a new zero-filled blockio.Mem of
// size bytes.
func NewCrashMem(size int64) *CrashDevice { return NewCrashDevice(blockio.NewMem(size)) }

// Base returns the wrapped device.
func (c *CrashDevice) Base() blockio.Device { return c.base }

// Unflushed returns the number of writes, discards and zero writes not
// yet covered by a completed Flush.
func (c *CrashDevice) Unflushed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ops)
}

// UnflushedSectors returns the number of sectors whose durable content
// differs in history from what reads return (sectors touched by an
// unflushed write).
func (c *CrashDevice) UnflushedSectors() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sectors)
}

// sectorSpan returns the byte range of whole sectors covering [off, off+n)
// clipped to size.
func sectorSpan(off, n, size int64) (start, end int64) {
	start = off / SectorSize * SectorSize
	end = off + n // <= size: the caller checked the range
	if r := end % SectorSize; r != 0 {
		if size-end < SectorSize-r { // also avoids overflow near MaxInt64
			end = size
		} else {
			end += SectorSize - r
		}
	}
	return start, end
}

// sectorEnd returns the end of the sector starting at s, clipped to end
// (without overflowing near math.MaxInt64).
func sectorEnd(s, end int64) int64 {
	if s >= end-SectorSize {
		return end
	}
	return s + SectorSize
}

// logged runs a mutation of [off, off+n) on the base and records the
// affected sectors' durable content and new version.
func (c *CrashDevice) logged(off, n int64, do func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return &blockio.OpError{Op: "write", Path: "crash device", Off: off, Err: blockio.ErrClosed}
	}
	size := c.base.Size()
	if n <= 0 || blockio.CheckRange("write", off, n, size) != nil {
		// Nothing to log: let the base report the error or do nothing.
		return do()
	}
	start, end := sectorSpan(off, n, size)
	// Save the durable content of sectors touched for the first time.
	var pre []byte
	for s := start; s < end; s = sectorEnd(s, end) {
		if c.sectors[s/SectorSize] != nil {
			continue
		}
		if pre == nil {
			pre = make([]byte, end-start)
			if _, err := c.base.ReadAt(pre, start); err != nil {
				return err
			}
		}
		e := sectorEnd(s, end)
		c.sectors[s/SectorSize] = &sectorLog{durable: pre[s-start : e-start : e-start]}
	}
	err := do()
	// Record what the base holds now, even after a failure: a failed
	// write may have changed part of the range.
	post := make([]byte, end-start)
	if _, rerr := c.base.ReadAt(post, start); rerr != nil {
		if err == nil {
			err = rerr
		}
		return err
	}
	c.seq++
	c.ops = append(c.ops, c.seq)
	for s := start; s < end; s = sectorEnd(s, end) {
		l := c.sectors[s/SectorSize]
		e := sectorEnd(s, end)
		l.versions = append(l.versions, version{seq: c.seq, data: post[s-start : e-start : e-start]})
	}
	return err
}

// ReadAt implements blockio.Device.
func (c *CrashDevice) ReadAt(p []byte, off int64) (int, error) { return c.base.ReadAt(p, off) }

// WriteAt implements blockio.Device.
func (c *CrashDevice) WriteAt(p []byte, off int64) (int, error) {
	var n int
	err := c.logged(off, int64(len(p)), func() (err error) {
		n, err = c.base.WriteAt(p, off)
		return err
	})
	return n, err
}

// Discard implements blockio.Discarder.
func (c *CrashDevice) Discard(off, n int64) error {
	return c.logged(off, n, func() error { return blockio.Discard(c.base, off, n) })
}

// WriteZeroes implements blockio.ZeroWriter.
func (c *CrashDevice) WriteZeroes(off, n int64, mayUnmap bool) error {
	return c.logged(off, n, func() error { return blockio.WriteZeroes(c.base, off, n, mayUnmap) })
}

// BlockStatus implements blockio.StatusReporter by asking the base.
func (c *CrashDevice) BlockStatus(off, n int64) (blockio.Extent, error) {
	return blockio.BlockStatus(c.base, off, n)
}

// Size implements blockio.Device.
func (c *CrashDevice) Size() int64 { return c.base.Size() }

// Truncate implements blockio.Truncater. The new size is durable at once;
// history of sectors beyond it is dropped.
func (c *CrashDevice) Truncate(size int64, prealloc blockio.Prealloc) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return &blockio.OpError{Op: "truncate", Path: "crash device", Off: size, Err: blockio.ErrClosed}
	}
	if err := blockio.Truncate(c.base, size, prealloc); err != nil {
		return err
	}
	for s, l := range c.sectors {
		start := s * SectorSize
		if start >= size {
			delete(c.sectors, s)
			continue
		}
		if keep := size - start; keep < int64(len(l.durable)) {
			l.durable = l.durable[:keep]
			for i := range l.versions {
				l.versions[i].data = l.versions[i].data[:keep]
			}
		}
	}
	return nil
}

// Flush implements blockio.Device. When the base flush succeeds, every
// write that completed before Flush was called becomes durable.
func (c *CrashDevice) Flush() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return &blockio.OpError{Op: "flush", Path: "crash device", Off: -1, Err: blockio.ErrClosed}
	}
	covered := c.seq
	c.mu.Unlock()
	if err := c.base.Flush(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for s, l := range c.sectors {
		i := sort.Search(len(l.versions), func(i int) bool { return l.versions[i].seq > covered })
		if i == 0 {
			continue
		}
		if i == len(l.versions) {
			delete(c.sectors, s)
			continue
		}
		l.durable = l.versions[i-1].data
		l.versions = l.versions[i:]
	}
	i := sort.Search(len(c.ops), func(i int) bool { return c.ops[i] > covered })
	c.ops = c.ops[i:]
	return nil
}

// Close implements blockio.Device and closes the base. Crash images can no
// longer be taken afterwards.
func (c *CrashDevice) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return &blockio.OpError{Op: "close", Path: "crash device", Off: -1, Err: blockio.ErrClosed}
	}
	c.closed = true
	c.sectors = nil
	return c.base.Close()
}

// Crash returns the disk as it could be after a power cut now: durable
// data intact, and each unflushed write kept or lost independently for
// each sector it touched (a fair coin per write and sector drawn from
// rng; the sector holds the latest kept version, or its durable content
// when none is kept). The same rng state gives the same image. The
// CrashDevice itself is unchanged and stays usable.
func (c *CrashDevice) Crash(rng *rand.Rand) (*blockio.Mem, error) {
	return c.CrashSelect(func(uint64, int64) bool { return rng.IntN(2) == 1 })
}

// CrashKeepNone returns the durable content only: every unflushed write is
// lost.
func (c *CrashDevice) CrashKeepNone() (*blockio.Mem, error) {
	return c.CrashSelect(func(uint64, int64) bool { return false })
}

// CrashKeepAll returns the current content: every unflushed write reached
// the disk.
func (c *CrashDevice) CrashKeepAll() (*blockio.Mem, error) {
	return c.CrashSelect(func(uint64, int64) bool { return true })
}

// CrashSelect returns a crash image in which keep decides which writes
// reached the disk. It is called with the write's sequence number
// (1-based, in completion order, counting all writes since NewCrashDevice)
// and the sector index, from the latest write of each sector backwards,
// until it returns true; sectors are visited in ascending order.
func (c *CrashDevice) CrashSelect(keep func(write uint64, sector int64) bool) (*blockio.Mem, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, &blockio.OpError{Op: "crash", Path: "crash device", Off: -1, Err: blockio.ErrClosed}
	}
	img, err := cloneDevice(c.base)
	if err != nil {
		return nil, err
	}
	idx := make([]int64, 0, len(c.sectors))
	for s := range c.sectors {
		idx = append(idx, s)
	}
	sort.Slice(idx, func(i, j int) bool { return idx[i] < idx[j] })
	for _, s := range idx {
		l := c.sectors[s]
		data := l.durable
		for i := len(l.versions) - 1; i >= 0; i-- {
			if keep(l.versions[i].seq, s) {
				data = l.versions[i].data
				break
			}
		}
		if _, err := img.WriteAt(data, s*SectorSize); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// cloneDevice copies dev into a new Mem, skipping holes.
func cloneDevice(dev blockio.Device) (*blockio.Mem, error) {
	if m, ok := dev.(*blockio.Mem); ok {
		return m.Clone()
	}
	size := dev.Size()
	img := blockio.NewMem(size)
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		e, err := blockio.BlockStatus(dev, off, size-off)
		if err != nil {
			return nil, err
		}
		if e.Length <= 0 {
			e.Length = size - off
		}
		if !e.Zero || e.Data {
			for p := off; p < off+e.Length; {
				n := min(int64(len(buf)), off+e.Length-p)
				if _, err := dev.ReadAt(buf[:n], p); err != nil {
					return nil, err
				}
				if _, err := img.WriteAt(buf[:n], p); err != nil {
					return nil, err
				}
				p += n
			}
		}
		off += e.Length
	}
	return img, nil
}

var (
	_ blockio.Device         = (*CrashDevice)(nil)
	_ blockio.Discarder      = (*CrashDevice)(nil)
	_ blockio.ZeroWriter     = (*CrashDevice)(nil)
	_ blockio.StatusReporter = (*CrashDevice)(nil)
	_ blockio.Truncater      = (*CrashDevice)(nil)
	_ blockio.Device         = (*Injector)(nil)
)
