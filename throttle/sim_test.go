package throttle

import (
	"testing"
	"time"
)

// A deterministic, single-goroutine simulation of members issuing
// requests against a Group on a FakeClock. Requests take no time to
// execute; a closed-loop client re-issues a request as soon as one is
// admitted, keeping depth requests outstanding.

type grantEvent struct {
	c         *simClient
	write     bool
	bytes     int64
	submitted time.Duration
	at        time.Duration
}

type simClient struct {
	name       string
	m          *Member
	size       int64
	depth      int              // requests kept outstanding (closed loop)
	closedLoop bool             // re-issue after each admission
	write      func(i int) bool // direction of the i-th request (nil: reads)
	n          int
	stopAt     time.Duration // no new submissions from then on (0: never)
}

type simulator struct {
	t       testing.TB
	clk     *FakeClock
	g       *Group
	granted []grantEvent // admitted, not yet processed by run
	log     []grantEvent
}

func newSim(t testing.TB, l Limits) *simulator {
	t.Helper()
	clk := NewFakeClock(0)
	g, err := NewGroup("sim", l, WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	return &simulator{t: t, clk: clk, g: g}
}

func (s *simulator) client(name string, size int64, depth int) *simClient {
	return &simClient{name: name, m: s.g.Join(name), size: size, depth: depth, closedLoop: true}
}

// submit issues c's next request now.
func (s *simulator) submit(c *simClient) {
	write := false
	if c.write != nil {
		write = c.write(c.n)
	}
	c.n++
	s.submitReq(c, write, c.size)
}

func (s *simulator) submitReq(c *simClient, write bool, size int64) {
	now := s.clk.Now()
	ev := grantEvent{c: c, write: write, bytes: size, submitted: now}
	d := dirRead
	if write {
		d = dirWrite
	}
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.m.tryAdmit(d, uint64(size)) {
		ev.at = now
		s.granted = append(s.granted, ev)
		return
	}
	w := &waiter{bytes: uint64(size)}
	w.cb = func() {
		ev.at = s.clk.Now()
		s.granted = append(s.granted, ev)
	}
	c.m.enqueue(d, w)
}

// start issues the initial depth requests of each client.
func (s *simulator) start(cs ...*simClient) {
	for _, c := range cs {
		for range c.depth {
			s.submit(c)
		}
	}
}

// at schedules f at simulated time t.
func (s *simulator) at(t time.Duration, f func()) {
	s.clk.AfterFunc(t-s.clk.Now(), f)
}

// run processes events until simulated time until.
func (s *simulator) run(until time.Duration) {
	for {
		for len(s.granted) > 0 {
			ev := s.granted[0]
			s.granted = s.granted[1:]
			s.log = append(s.log, ev)
			c := ev.c
			now := s.clk.Now()
			if c.closedLoop && now < until && (c.stopAt == 0 || now < c.stopAt) {
				s.submit(c)
			}
		}
		next, ok := s.clk.Next()
		if !ok || next >= until {
			s.clk.AdvanceTo(until)
			if len(s.granted) == 0 {
				return
			}
			continue
		}
		s.clk.AdvanceTo(next)
	}
}

// totals sums admissions of c (nil: everybody) in [from, to).
func (s *simulator) totals(c *simClient, from, to time.Duration) (bytes int64, ops int) {
	for _, ev := range s.log {
		if (c == nil || ev.c == c) && ev.at >= from && ev.at < to {
			bytes += ev.bytes
			ops++
		}
	}
	return
}

func (s *simulator) times(c *simClient, write bool) []time.Duration {
	var ts []time.Duration
	for _, ev := range s.log {
		if ev.c == c && ev.write == write {
			ts = append(ts, ev.at)
		}
	}
	return ts
}
