package throttle

import (
	"context"

	"github.com/blocklayer/blocklayer/blockio"
)

// Member is one user of a Group's limits: a device, a BlockBackend, a
// throttle filter node. Its requests queue FIFO, reads and writes
// separately.
//
// All methods are safe for concurrent use; Wait may be called from many
// goroutines at once.
type Member struct {
	g       *Group
	name    string
	idx     int // position in g.members, -1 once left
	q       [2]waitQueue
	pending [2]int
	drain   int      // BeginDrain nesting: limits bypassed while > 0
	ops     [2]int64 // accounted requests, per direction
	bytes   [2]int64 // accounted bytes, per direction
}

// MemberStats are a member's counters: requests and bytes admitted (see
// Member.Stats) and requests queued right now. A plain value, safe to copy.
type MemberStats struct {
	Reads, Writes             int64
	ReadBytes, WriteBytes     int64
	QueuedReads, QueuedWrites int
}

// Name returns the member's name.
func (m *Member) Name() string { return m.name }

// Group returns the member's group.
func (m *Member) Group() *Group { return m.g }

// Stats returns m's counters. Every request for which Wait returned nil
// is counted once, including requests released by Leave or by SetLimits;
// requests cancelled while queued are not, nor are requests made after
// Leave or while the group's limits enable nothing (they are not
// throttled at all).
func (m *Member) Stats() MemberStats {
	m.g.mu.Lock()
	defer m.g.mu.Unlock()
	return MemberStats{
		Reads: m.ops[dirRead], Writes: m.ops[dirWrite],
		ReadBytes: m.bytes[dirRead], WriteBytes: m.bytes[dirWrite],
		QueuedReads: m.pending[dirRead], QueuedWrites: m.pending[dirWrite],
	}
}

// Wait blocks until a request of bytes bytes (a write when write is true)
// may be issued under the group's limits, then accounts it and returns
// nil. If ctx is done first, Wait returns ctx.Err() and the request is
// not accounted; ctx is only consulted when the request has to wait. A
// request that is admitted at the same moment as ctx is cancelled returns
// nil (it has been accounted and should be issued).
//
// As in QEMU a request is admitted when the buckets are not over their
// size before it is counted, then charged in full: one large request may
// overshoot and the following requests pay its debt.
//
// Wait on a member that has left, or in a group whose limits enable
// nothing, returns nil at once. A negative bytes is refused with an error
// wrapping blockio.ErrInvalid.
func (m *Member) Wait(ctx context.Context, write bool, bytes int64) error {
	if bytes < 0 {
		return &blockio.InvalidError{What: "request size", Value: bytes, Reason: "negative"}
	}
	g := m.g
	if !g.enabled.Load() {
		return nil
	}
	d := dirRead
	if write {
		d = dirWrite
	}
	g.mu.Lock()
	if m.tryAdmit(d, uint64(bytes)) {
		g.mu.Unlock()
		return nil
	}
	if err := ctx.Err(); err != nil {
		g.mu.Unlock()
		return err
	}
	w := waiterPool.Get().(*waiter)
	w.bytes = uint64(bytes)
	m.enqueue(d, w)
	g.mu.Unlock()

	select {
	case <-w.ch:
		waiterPool.Put(w)
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	if w.state == waitQueued {
		m.dequeue(d, w)
		g.mu.Unlock()
		waiterPool.Put(w)
		return ctx.Err()
	}
	g.mu.Unlock()
	<-w.ch // granted concurrently: consume the signal
	waiterPool.Put(w)
	return nil
}

// tryAdmit runs the first half of QEMU's
// throttle_group_co_io_limits_intercept with g.mu held: when the request
// may go now it is accounted, the next queued request is scheduled and
// tryAdmit returns true; otherwise the caller must queue it.
func (m *Member) tryAdmit(d int, bytes uint64) bool {
	g := m.g
	if !g.on || m.idx < 0 {
		return true
	}
	if m.drain > 0 {
		// Limits are off for a draining member; its requests still
		// count against the group (QEMU's io_limits_disabled).
		g.account(m, d, bytes)
		return true
	}
	token := g.nextToken(m, d)
	mustWait := g.scheduleTimer(token, d)
	if mustWait || m.pending[d] > 0 {
		return false
	}
	g.account(m, d, bytes)
	g.scheduleNext(m, d, true)
	return true
}

// enqueue queues w at the tail of m's queue for direction d (g.mu held).
func (m *Member) enqueue(d int, w *waiter) {
	g := m.g
	w.state = waitQueued
	m.q[d].push(w)
	if m.pending[d] == 0 {
		g.npending[d]++
	}
	m.pending[d]++
	if g.armed[d] == nil {
		// Nobody would wake the queue. This cannot happen while the
		// group's invariant holds (queued requests imply an armed
		// timer); make sure the request is not stranded anyway.
		g.scheduleNext(m, d, true)
	}
}

// dequeue removes a still-queued w (g.mu held).
func (m *Member) dequeue(d int, w *waiter) {
	m.q[d].remove(w)
	w.state = waitCancelled
	m.pending[d]--
	if m.pending[d] == 0 {
		m.g.npending[d]--
	}
}

// Leave removes m from its group. Requests of m still queued are released
// at once (accounted, but no longer throttled, like QEMU draining a member
// before unregistering it); the round-robin turn and any timer armed for m
// pass to the next member. Later Waits on m return immediately. Leave is
// idempotent.
func (m *Member) Leave() {
	g := m.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if m.idx < 0 {
		return
	}
	for d := range 2 {
		m.releaseLocked(d)
		if g.tokens[d] == m {
			next := g.next(m)
			if next == m {
				next = nil
			}
			g.tokens[d] = next
		}
	}
	i := m.idx
	copy(g.members[i:], g.members[i+1:])
	g.members[len(g.members)-1] = nil
	g.members = g.members[:len(g.members)-1]
	for j := i; j < len(g.members); j++ {
		g.members[j].idx = j
	}
	m.idx = -1
	for d := range 2 {
		if g.on && g.armed[d] == nil && g.npending[d] > 0 {
			g.scheduleNext(g.tokens[d], d, false)
		}
	}
}

// BeginDrain makes m bypass the limits until the matching EndDrain, as
// QEMU does while draining a throttled device (bdrv_drained_begin): m's
// queued requests are released at once and its new requests go without
// waiting. Both still count against the group's buckets, so the other
// members pay for them. Calls nest.
func (m *Member) BeginDrain() {
	g := m.g
	g.mu.Lock()
	defer g.mu.Unlock()
	m.drain++
	if m.drain > 1 || m.idx < 0 {
		return
	}
	for d := range 2 {
		if m.releaseLocked(d) {
			// The timer would have fired into an empty queue; pass the
			// turn now.
			g.scheduleNext(m, d, false)
		}
	}
}

// releaseLocked admits every queued request of m in direction d (charged
// to the group while its limits are on) and disarms the direction's timer
// if it was armed for m, reporting whether it was (g.mu held).
func (m *Member) releaseLocked(d int) bool {
	g := m.g
	for m.q[d].head != nil {
		g.grant(m, d, g.on)
	}
	if t := g.armed[d]; t != nil && t.owner == m {
		t.t.Stop()
		g.armed[d] = nil
		return true
	}
	return false
}

// EndDrain ends a BeginDrain; when the last one ends, m is throttled
// again.
func (m *Member) EndDrain() {
	g := m.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if m.drain > 0 {
		m.drain--
	}
}
