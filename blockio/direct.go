package blockio

import (
	"sync"
	"unsafe"
)

// Bounce buffers for O_DIRECT. Every buffer is bounceSize bytes and
// aligned to bounceAlign, which satisfies the memory alignment of any
// logical block size up to 4 KiB (and of larger ones that divide it).
const (
	bounceSize  = 1 << 20
	bounceAlign = 4096
	maxAlign    = 64 << 10 // largest logical block size we accept
)

type bounceBuf struct{ b []byte }

var bouncePool = sync.Pool{New: func() any { return &bounceBuf{b: alignedBuf(bounceSize, bounceAlign)} }}

func getBounce() *bounceBuf  { return bouncePool.Get().(*bounceBuf) }
func putBounce(b *bounceBuf) { bouncePool.Put(b) }

// alignedBuf returns n bytes whose first byte's address is a multiple of
// align (a power of two).
func alignedBuf(n, align int) []byte {
	b := make([]byte, n+align)
	skip := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) & uintptr(align-1)); r != 0 {
		skip = align - r
	}
	return b[skip : skip+n : skip+n]
}

// isAligned reports whether an O_DIRECT transfer of p at off needs no
// bounce buffer.
func isAligned(p []byte, off, align int64) bool {
	if off%align != 0 || int64(len(p))%align != 0 {
		return false
	}
	if len(p) == 0 {
		return true
	}
	return int64(uintptr(unsafe.Pointer(&p[0])))%min(align, bounceAlign) == 0
}

func alignDown(x, a int64) int64 { return x - x%a }
func alignUp(x, a int64) int64   { return alignDown(x+a-1, a) }

// rangeTracker serialises read-modify-write cycles against every other
// mutation touching the same aligned blocks, the way QEMU marks unaligned
// requests as serialising. Non-serialising entries only wait for
// overlapping serialising ones, so aligned writes still run in parallel.
type rangeTracker struct {
	mu     sync.Mutex
	cond   sync.Cond
	active map[*trackedRange]struct{}
}

type trackedRange struct {
	start, end  int64
	serialising bool
}

func newRangeTracker() *rangeTracker {
	t := &rangeTracker{active: make(map[*trackedRange]struct{})}
	t.cond.L = &t.mu
	return t
}

func (t *rangeTracker) conflicts(r *trackedRange) bool {
	for o := range t.active {
		if (r.serialising || o.serialising) && o.start < r.end && r.start < o.end {
			return true
		}
	}
	return false
}

// begin waits until [start, end) can proceed and registers it.
func (t *rangeTracker) begin(start, end int64, serialising bool) *trackedRange {
	r := trackedPool.Get().(*trackedRange)
	*r = trackedRange{start: start, end: end, serialising: serialising}
	t.mu.Lock()
	for t.conflicts(r) {
		t.cond.Wait()
	}
	t.active[r] = struct{}{}
	t.mu.Unlock()
	return r
}

func (t *rangeTracker) end(r *trackedRange) {
	t.mu.Lock()
	delete(t.active, r)
	t.cond.Broadcast()
	t.mu.Unlock()
	trackedPool.Put(r)
}

var trackedPool = sync.Pool{New: func() any { return new(trackedRange) }}
