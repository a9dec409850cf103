package throttle

import (
	"sync"
	"sync/atomic"
	"time"
)

// Group is a throttle group: one set of Limits shared by all its members
// (QEMU's ThrottleGroup with its ThrottleState). The limits apply to the
// sum of the members' I/O. When several members have throttled requests
// queued, they are served round-robin one request per turn (QEMU's token
// passing), separately for reads and writes.
//
// All methods are safe for concurrent use.
type Group struct {
	name    string
	clock   Clock
	enabled atomic.Bool // mirrors on; read without the lock on the hot path

	mu       sync.Mutex
	on       bool // limits enable throttling
	limits   Limits
	st       state
	members  []*Member // round-robin order; new members go first, as in QEMU
	tokens   [2]*Member
	armed    [2]*groupTimer // the (at most one) armed timer per direction
	npending [2]int         // members with queued requests, per direction
}

// NewGroup returns a group named name with limits l (which must pass
// Validate). Options: WithClock.
func NewGroup(name string, l Limits, opts ...Option) (*Group, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	o := buildOptions(opts)
	g := &Group{name: name, clock: o.clock}
	g.mu.Lock()
	g.setLimitsLocked(l)
	g.mu.Unlock()
	return g, nil
}

// Name returns the group's name.
func (g *Group) Name() string { return g.name }

// Limits returns the limits in force, as last set (never modified by the
// group: burst lengths of 0 stay 0).
func (g *Group) Limits() Limits {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.limits
}

// SetLimits replaces the limits of the whole group atomically, as
// block_set_io_throttle does: all bucket levels restart from empty, and
// requests waiting for a timer are re-examined at once under the new
// limits. Limits that enable nothing release every queued request. An
// invalid l is refused with a *LimitsError and changes nothing.
//
// Re-applying the same limits also empties the buckets, so a client that
// does it in a loop escapes throttling (as with QEMU).
func (g *Group) SetLimits(l Limits) error {
	if err := l.Validate(); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.setLimitsLocked(l)
	for d := range 2 {
		var owner *Member
		if t := g.armed[d]; t != nil {
			t.t.Stop()
			g.armed[d] = nil
			owner = t.owner
		}
		switch {
		case !g.on:
			for _, m := range g.members {
				for m.q[d].head != nil {
					g.grant(m, d, false)
				}
			}
		case owner != nil:
			// Fire the pending timer now (QEMU's throttle_group_restart_tgm).
			g.restart(owner, d)
		case g.npending[d] > 0:
			g.scheduleNext(g.tokens[d], d, false)
		}
	}
	return nil
}

func (g *Group) setLimitsLocked(l Limits) {
	g.limits = l
	g.st.configure(l, g.now())
	g.on = l.Enabled()
	g.enabled.Store(g.on)
}

// Join adds a member named name to the group and returns it. The name is
// informational (several members may share one).
func (g *Group) Join(name string) *Member {
	m := &Member{g: g, name: name}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.members = append(g.members, nil)
	copy(g.members[1:], g.members)
	g.members[0] = m
	for i, x := range g.members {
		x.idx = i
	}
	for d := range 2 {
		if g.tokens[d] == nil {
			g.tokens[d] = m
		}
	}
	return m
}

// account charges an admitted request of m to the group's buckets.
func (g *Group) account(m *Member, d int, bytes uint64) {
	g.st.account(d, bytes)
	m.ops[d]++
	m.bytes[d] += int64(bytes)
}

func (g *Group) now() int64 { return int64(g.clock.Now()) }

// next returns the member after m in round-robin order (circular).
func (g *Group) next(m *Member) *Member {
	i := m.idx + 1
	if i == len(g.members) {
		i = 0
	}
	return g.members[i]
}

// nextToken returns the member whose turn it is in direction d: the next
// one after the current token with queued requests, or m if none has any
// (QEMU's next_throttle_token).
func (g *Group) nextToken(m *Member, d int) *Member {
	if g.npending[d] == 0 {
		return m
	}
	start := g.tokens[d]
	if start == nil {
		return m
	}
	tok := g.next(start)
	for tok != start && tok.pending[d] == 0 {
		tok = g.next(tok)
	}
	if tok == start && tok.pending[d] == 0 {
		tok = m
	}
	return tok
}

// scheduleTimer reports whether token's next request in direction d must
// wait; if so and no timer is armed yet, it arms one for token and makes
// token the current turn (QEMU's throttle_group_schedule_timer).
func (g *Group) scheduleTimer(token *Member, d int) bool {
	if g.armed[d] != nil {
		return true
	}
	wait := g.st.computeWait(d, g.now())
	if wait == 0 {
		return false
	}
	gt := &groupTimer{g: g, d: d, owner: token}
	g.armed[d] = gt
	g.tokens[d] = token
	gt.t = g.clock.AfterFunc(time.Duration(wait), gt.fire)
	return true
}

// scheduleNext hands the turn to the next member with queued requests in
// direction d after a request of m was admitted (QEMU's
// schedule_next_request, with the timer that QEMU arms to fire "now"
// replaced by an immediate grant). preferSelf is true when m itself was
// just admitted: then m's own queue goes first if no wait is needed.
func (g *Group) scheduleNext(m *Member, d int, preferSelf bool) {
	for {
		token := g.nextToken(m, d)
		if token.pending[d] == 0 {
			return
		}
		if g.scheduleTimer(token, d) {
			return
		}
		if preferSelf && m.pending[d] > 0 {
			token = m
		}
		g.tokens[d] = token
		g.grant(token, d, true)
		m, preferSelf = token, true
	}
}

// restart is what happens when the timer armed for m fires: m's first
// queued request goes, and the turn moves on.
func (g *Group) restart(m *Member, d int) {
	if m.q[d].head != nil {
		g.grant(m, d, true)
		g.scheduleNext(m, d, true)
		return
	}
	g.scheduleNext(m, d, false)
}

// grant admits the first queued request of m in direction d (g.mu held).
func (g *Group) grant(m *Member, d int, account bool) {
	w := m.q[d].pop()
	m.pending[d]--
	if m.pending[d] == 0 {
		g.npending[d]--
	}
	if account {
		g.account(m, d, w.bytes)
	} else {
		m.ops[d]++
		m.bytes[d] += int64(w.bytes)
	}
	w.state = waitGranted
	if w.cb != nil {
		w.cb()
		return
	}
	w.ch <- struct{}{}
}

// groupTimer is one arming of a direction's timer. A stale timer (stopped
// too late, or replaced) finds itself no longer in g.armed and does
// nothing.
type groupTimer struct {
	g     *Group
	d     int
	owner *Member
	t     Timer
}

func (gt *groupTimer) fire() {
	g := gt.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.armed[gt.d] != gt {
		return
	}
	g.armed[gt.d] = nil
	g.restart(gt.owner, gt.d)
}
