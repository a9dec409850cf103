package throttle

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/blocklayer/blocklayer/blockio"
)

// TestExtremeRequestSizes: byte counts of 0, MaxInt64 and negative with
// every bucket set to QEMU's largest accepted values never panic, and a
// request of MaxInt64 bytes makes the next one wait "forever" (until
// SetLimits resets the buckets) instead of overflowing into no wait.
func TestExtremeRequestSizes(t *testing.T) {
	for _, l := range []Limits{
		{BPS: 1},
		{BPS: ValueMax, IOPS: ValueMax, IOPSSize: math.MaxInt64},
		{BPSRead: 1, BPSReadMax: ValueMax, IOPSWrite: 1, IOPSWriteMax: ValueMax, IOPSSize: 1},
		{BPS: 1, BPSMax: 1, BPSMaxLength: ValueMax},
		{BPSWrite: 1, BPSWriteMax: 2, BPSWriteMaxLength: ValueMax / 2, IOPSRead: 1, IOPSReadMax: 2, IOPSReadMaxLength: 3},
	} {
		t.Run(fmt.Sprintf("%+v", l), func(t *testing.T) {
			g, clk := newFakeGroup(t, l)
			m := g.Join("m")
			bg := context.Background()
			var e *blockio.InvalidError
			if err := m.Wait(bg, true, -1); !errors.As(err, &e) {
				t.Fatalf("negative size: %v", err)
			}
			if err := m.Wait(bg, false, 0); err != nil {
				t.Fatal(err)
			}
			if err := m.Wait(bg, true, math.MaxInt64); err != nil {
				t.Fatal(err)
			}
			// The buckets are now hopelessly over: the next request waits
			// (a timer far in the future), and cancelling it works.
			ctx, cancel := context.WithCancel(bg)
			done := goQueue(t, ctx, m, true, 1)
			if when, ok := clk.Next(); !ok || when-clk.Now() < time.Hour {
				t.Fatalf("timer at %v (now %v), want far in the future", when, clk.Now())
			}
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
			// A queued request is released by SetLimits, which empties the
			// buckets.
			done = goQueue(t, bg, m, true, 1)
			if err := g.SetLimits(l); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			st := m.Stats()
			if st.Reads+st.Writes != 3 {
				t.Fatalf("stats %+v, want 3 admitted", st)
			}
			clk.Advance(time.Hour)
		})
	}
}

// TestAlreadyCancelled: a ctx that is done before Wait is reported only
// when the request would have to wait; a request that may go at once is
// admitted and accounted (documented behaviour), one that must wait is
// neither queued nor accounted.
func TestAlreadyCancelled(t *testing.T) {
	g, clk := newFakeGroup(t, Limits{IOPS: 10})
	m := g.Join("m")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Wait(ctx, false, 512); err != nil {
		t.Fatalf("admissible request: %v", err)
	}
	// Admissible requests go; the first that must wait is refused.
	for i := 0; ; i++ {
		before := m.Stats()
		err := m.Wait(ctx, false, 512)
		if err == nil {
			if i > 10 {
				t.Fatal("IOPS 10 never throttles")
			}
			continue
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("must-wait request: %v", err)
		}
		if st := m.Stats(); st != before {
			t.Fatalf("cancelled request changed stats: %+v -> %+v", before, st)
		}
		break
	}
	clk.Advance(time.Minute)
	if clk.Pending() != 0 {
		t.Fatal("timer left armed")
	}
}

// TestSetLimitsWithManyQueued changes the limits again and again while
// hundreds of requests of several members are queued in both directions:
// every request is admitted exactly once, none is lost, at most one timer
// per direction is armed.
func TestSetLimitsWithManyQueued(t *testing.T) {
	g, clk := newFakeGroup(t, Limits{IOPS: 1})
	const members, per = 4, 50
	ms := make([]*Member, members)
	for i := range ms {
		ms[i] = g.Join(fmt.Sprint(i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, members*per)
	for i, m := range ms {
		for k := range per {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := m.Wait(context.Background(), (i+k)%2 == 0, 4096); err != nil {
					errs <- err
				}
			}()
		}
	}
	total := func() (q, adm int64) {
		for _, m := range ms {
			st := m.Stats()
			q += int64(st.QueuedReads + st.QueuedWrites)
			adm += st.Reads + st.Writes
		}
		return
	}
	waitFor(t, "all queued", func() bool { q, a := total(); return q+a == members*per })
	configs := []Limits{{IOPS: 2}, {BPSRead: 8192, IOPSWrite: 3}, {IOPS: 1, IOPSMax: 5, IOPSMaxLength: 3}, {BPS: 1 << 20}}
	for step := 0; ; step++ {
		if _, a := total(); a == members*per {
			break
		}
		if step > 100000 {
			t.Fatal("requests stuck")
		}
		if step%7 == 0 {
			if err := g.SetLimits(configs[(step/7)%len(configs)]); err != nil {
				t.Fatal(err)
			}
		}
		if n := clk.Pending(); n > 2 {
			t.Fatalf("%d timers armed", n)
		}
		clk.Advance(50 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if q, a := total(); q != 0 || a != members*per {
		t.Fatalf("queued %d admitted %d", q, a)
	}
}

// TestLeaveDuringWaitRace: Leave racing with Waits that are queuing,
// cancelling and being granted never loses or double-counts a request.
func TestLeaveDuringWaitRace(t *testing.T) {
	for round := range 20 {
		g, clk := newFakeGroup(t, Limits{IOPS: 5})
		a, b := g.Join("a"), g.Join("b")
		var wg sync.WaitGroup
		var okA, okB sync.Map
		for k := range 20 {
			for _, m := range []*Member{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					if k%5 == round%5 {
						cancel()
					}
					if m.Wait(ctx, k%2 == 0, 1) == nil {
						if m == a {
							okA.Store(k, true)
						} else {
							okB.Store(k, true)
						}
					}
				}()
			}
		}
		clk.Advance(300 * time.Millisecond)
		a.Leave()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
	loop:
		for {
			select {
			case <-done:
				break loop
			default:
				clk.Advance(100 * time.Millisecond)
				time.Sleep(10 * time.Microsecond)
			}
		}
		count := func(m *sync.Map) (n int64) {
			m.Range(func(any, any) bool { n++; return true })
			return
		}
		if st := b.Stats(); st.Reads+st.Writes != count(&okB) || st.QueuedReads+st.QueuedWrites != 0 {
			t.Fatalf("round %d: b stats %+v, %d admitted", round, st, count(&okB))
		}
		if st := a.Stats(); st.Reads+st.Writes > count(&okA) || st.QueuedReads+st.QueuedWrites != 0 {
			t.Fatalf("round %d: a stats %+v, %d admitted", round, st, count(&okA))
		}
		clk.Advance(time.Hour)
		if clk.Pending() != 0 {
			t.Fatalf("round %d: %d timers left", round, clk.Pending())
		}
	}
}

// TestRateLimiterHugeAccounting: accounting MaxInt64 bytes several times
// must not wrap the counter around into "no delay".
func TestRateLimiterHugeAccounting(t *testing.T) {
	for _, n := range []int64{math.MaxInt64, 1 << 62} {
		r, _ := newFakeLimiter(t, 1)
		for range 4 {
			r.Account(n)
		}
		if d := r.Delay(); d < 100*365*24*time.Hour {
			t.Fatalf("delay %v after accounting 4 x %d bytes at 1 B/s", d, n)
		}
	}
	r, _ := newFakeLimiter(t, 1)
	r.Account(-5) // ignored
	if _, err := NewRateLimiter(math.MaxInt64); err != nil {
		t.Fatal(err)
	}
}
