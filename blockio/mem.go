package blockio

import (
	"sync"
)

const memChunk = 64 << 10

// Mem is a sparse in-memory Device. Storage is allocated in 64 KiB chunks
// on first write of non-zero data; unwritten, discarded and zeroed ranges
// hold no memory and report as holes in BlockStatus.
//
// Mem is safe for concurrent use by multiple goroutines. The zero value is
// not usable; create one with NewMem.
type Mem struct {
	mu       sync.RWMutex
	size     int64
	chunks   map[int64][]byte // chunk index -> memChunk bytes
	readOnly bool
	closed   bool
}

// NewMem returns an empty (all zeros) in-memory device of size bytes (a
// negative size is taken as 0). Any size up to math.MaxInt64 is fine: only
// written chunks use memory, and every operation costs at most the request
// length or the number of allocated chunks, never the device size.
func NewMem(size int64) *Mem {
	if size < 0 {
		size = 0
	}
	return &Mem{size: size, chunks: make(map[int64][]byte)}
}

// SetReadOnly makes later writes fail with ErrReadOnly (or allows them
// again).
func (m *Mem) SetReadOnly(ro bool) {
	m.mu.Lock()
	m.readOnly = ro
	m.mu.Unlock()
}

// Size returns the device size in bytes.
func (m *Mem) Size() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.size
}

// ReadAt implements Device.
func (m *Mem) ReadAt(p []byte, off int64) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return 0, ErrClosed
	}
	if err := CheckRange("read", off, int64(len(p)), m.size); err != nil {
		return 0, err
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		ci, co := pos/memChunk, pos%memChunk
		n := min(len(p)-done, int(memChunk-co))
		if c := m.chunks[ci]; c != nil {
			copy(p[done:done+n], c[co:])
		} else {
			clear(p[done : done+n])
		}
		done += n
	}
	return done, nil
}

// WriteAt implements Device.
func (m *Mem) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.writable("write", off, int64(len(p))); err != nil {
		return 0, err
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		ci, co := pos/memChunk, pos%memChunk
		n := min(len(p)-done, int(memChunk-co))
		src := p[done : done+n]
		c := m.chunks[ci]
		if c == nil {
			if IsZero(src) {
				done += n
				continue
			}
			c = make([]byte, memChunk)
			m.chunks[ci] = c
		}
		copy(c[co:], src)
		done += n
	}
	return done, nil
}

func (m *Mem) writable(op string, off, n int64) error {
	if m.closed {
		return ErrClosed
	}
	if m.readOnly {
		return ErrReadOnly
	}
	return CheckRange(op, off, n, m.size)
}

// zeroRange clears [off, off+n), freeing whole chunks. Caller holds mu.
// The cost is bounded by the allocated chunks, not by n: a discard of an
// exabyte-sized range must not walk its holes.
func (m *Mem) zeroRange(off, n int64) {
	end := off + n
	if n/memChunk > int64(len(m.chunks))+2 {
		for ci := range m.chunks {
			s, e := max(ci*memChunk, off), chunkEnd(ci*memChunk, end)
			if s < e {
				m.zeroRange(s, e-s) // at most one chunk: the loop below
			}
		}
		return
	}
	for off < end {
		ci, co := off/memChunk, off%memChunk
		l := min(end-off, memChunk-co)
		if c := m.chunks[ci]; c != nil {
			if l == memChunk {
				delete(m.chunks, ci)
			} else {
				clear(c[co : co+l])
				if IsZero(c) {
					delete(m.chunks, ci)
				}
			}
		}
		off += l
	}
}

// Discard implements Discarder: the range reads back as zeros.
func (m *Mem) Discard(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.writable("discard", off, n); err != nil {
		return err
	}
	m.zeroRange(off, n)
	return nil
}

// WriteZeroes implements ZeroWriter.
func (m *Mem) WriteZeroes(off, n int64, mayUnmap bool) error {
	return m.Discard(off, n)
}

// BlockStatus implements StatusReporter at chunk granularity: chunks that
// hold memory are data, the rest are zero holes.
func (m *Mem) BlockStatus(off, n int64) (Extent, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return Extent{}, ErrClosed
	}
	if err := CheckRange("block status", off, n, m.size); err != nil {
		return Extent{}, err
	}
	if n == 0 {
		return Extent{Start: off, Offset: -1}, nil
	}
	end := off + n
	first := m.chunks[off/memChunk] != nil
	var pos int64
	if first {
		// A data run is made of allocated chunks: bounded by their number.
		pos = off
		for pos < end && m.chunks[pos/memChunk] != nil {
			pos = chunkEnd(pos-pos%memChunk, end)
		}
	} else {
		pos = end
		if ci, to := m.nextChunk(off/memChunk+1, (end-1)/memChunk+1); ci < to {
			pos = ci * memChunk
		}
	}
	pos = min(pos, end)
	e := Extent{Start: off, Length: pos - off, Data: first, Zero: !first, Allocated: first, Offset: -1}
	if first {
		e.Offset = off
	}
	return e, nil
}

// nextChunk returns the first allocated chunk index in [from, to), or to,
// and to.
// It steps through the range when that is shorter than the chunk map and
// scans the map otherwise, so a huge hole costs O(allocated chunks).
func (m *Mem) nextChunk(from, to int64) (int64, int64) {
	if to-from <= int64(len(m.chunks)) {
		for ci := from; ci < to; ci++ {
			if m.chunks[ci] != nil {
				return ci, to
			}
		}
		return to, to
	}
	best := to
	for ci := range m.chunks {
		if ci >= from && ci < best {
			best = ci
		}
	}
	return best, to
}

// chunkEnd returns the end of the chunk starting at start, clipped to end
// (without overflowing near math.MaxInt64).
func chunkEnd(start, end int64) int64 {
	if start >= end-memChunk {
		return end
	}
	return start + memChunk
}

// Truncate implements Truncater. Growing adds zeros; shrinking drops data.
// Preallocation modes are accepted and have no effect in memory.
func (m *Mem) Truncate(size int64, prealloc Prealloc) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.readOnly {
		return ErrReadOnly
	}
	if size < 0 {
		return &InvalidError{What: "size", Value: size}
	}
	if size < m.size {
		// Zero the tail of the last kept chunk and drop the rest.
		if size%memChunk != 0 {
			if c := m.chunks[size/memChunk]; c != nil {
				clear(c[size%memChunk:])
			}
		}
		for ci := range m.chunks {
			if ci*memChunk >= size {
				delete(m.chunks, ci)
			}
		}
	}
	m.size = size
	return nil
}

// Flush implements Device; memory needs no flushing.
func (m *Mem) Flush() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	return nil
}

// Close implements Device. The contents are released.
func (m *Mem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.closed = true
	m.chunks = nil
	return nil
}

// Bytes returns a copy of the whole device content (for tests; the device
// must fit in memory).
func (m *Mem) Bytes() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b := make([]byte, m.size)
	for ci, c := range m.chunks {
		copy(b[ci*memChunk:], c)
	}
	return b
}

// Clone returns an independent copy of the device with the same size and
// content (sharing no memory). It fails with ErrClosed on a closed Mem.
func (m *Mem) Clone() (*Mem, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	c := &Mem{size: m.size, chunks: make(map[int64][]byte, len(m.chunks))}
	for ci, b := range m.chunks {
		c.chunks[ci] = append([]byte(nil), b...)
	}
	return c, nil
}
