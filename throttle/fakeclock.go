package throttle

import (
	"container/heap"
	"math"
	"sync"
	"time"
)

// FakeClock is a manually advanced Clock for deterministic tests of code
// that uses throttling: time stands still until Advance or AdvanceTo moves
// it, and due timers run synchronously inside those calls, in deadline
// order (ties in the order they were armed), each one seeing Now equal to
// its deadline. A FakeClock is safe for concurrent use; timer functions
// run without the clock's lock held, so they may arm new timers.
type FakeClock struct {
	mu   sync.Mutex
	now  time.Duration
	seq  uint64
	heap fakeTimers
}

// NewFakeClock returns a FakeClock reading start.
func NewFakeClock(start time.Duration) *FakeClock { return &FakeClock{now: start} }

// Now returns the clock's current reading.
func (c *FakeClock) Now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc arms a timer that runs f when the clock reaches Now()+d. A
// timer with d <= 0 runs at the next Advance (even Advance(0)).
func (c *FakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	when := c.now + max(d, 0)
	if when < c.now { // saturate instead of wrapping around
		when = math.MaxInt64
	}
	t := &fakeTimer{c: c, when: when, seq: c.seq, f: f, index: -1}
	heap.Push(&c.heap, t)
	return t
}

// Pending returns the number of armed timers.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.heap)
}

// Next returns the deadline of the earliest armed timer.
func (c *FakeClock) Next() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.heap) == 0 {
		return 0, false
	}
	return c.heap[0].when, true
}

// Advance moves the clock forward by d, running every timer that falls
// due on the way.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now + max(d, 0)
	if target < c.now {
		target = math.MaxInt64
	}
	c.mu.Unlock()
	c.AdvanceTo(target)
}

// AdvanceTo moves the clock to t (never backwards), running every timer
// due at or before t, including timers armed by those timers.
func (c *FakeClock) AdvanceTo(t time.Duration) {
	for {
		c.mu.Lock()
		if len(c.heap) == 0 || c.heap[0].when > t {
			if t > c.now {
				c.now = t
			}
			c.mu.Unlock()
			return
		}
		ft := heap.Pop(&c.heap).(*fakeTimer)
		if ft.when > c.now {
			c.now = ft.when
		}
		f := ft.f
		c.mu.Unlock()
		f()
	}
}

// RunNext advances to the earliest armed timer and runs it together with
// every other timer due at that instant. It reports false when no timer
// is armed.
func (c *FakeClock) RunNext() bool {
	when, ok := c.Next()
	if !ok {
		return false
	}
	c.AdvanceTo(when)
	return true
}

type fakeTimer struct {
	c     *FakeClock
	when  time.Duration
	seq   uint64
	f     func()
	index int
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&t.c.heap, t.index)
	return true
}

type fakeTimers []*fakeTimer

func (h fakeTimers) Len() int { return len(h) }
func (h fakeTimers) Less(i, j int) bool {
	if h[i].when != h[j].when {
		return h[i].when < h[j].when
	}
	return h[i].seq < h[j].seq
}
func (h fakeTimers) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *fakeTimers) Push(x any) {
	t := x.(*fakeTimer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *fakeTimers) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*h = old[:len(old)-1]
	return t
}
