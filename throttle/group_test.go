package throttle

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blocklayer/blocklayer/blockio"
)

// waitFor polls cond (goroutines need real time to reach their blocking
// point); it is a synchronisation helper, not a timing assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func queued(m *Member) int {
	st := m.Stats()
	return st.QueuedReads + st.QueuedWrites
}

func newFakeGroup(t *testing.T, l Limits) (*Group, *FakeClock) {
	t.Helper()
	clk := NewFakeClock(time.Hour)
	g, err := NewGroup("g", l, WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	return g, clk
}

func goWait(ctx context.Context, m *Member, write bool, n int64) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- m.Wait(ctx, write, n) }()
	return ch
}

// goQueue is goWait for a request that must queue: it returns once m has
// one more queued request than before.
func goQueue(t *testing.T, ctx context.Context, m *Member, write bool, n int64) <-chan error {
	t.Helper()
	want := queued(m) + 1
	ch := goWait(ctx, m, write, n)
	waitFor(t, m.Name()+" queued", func() bool { return queued(m) == want })
	return ch
}

func TestNewGroupRefusesInvalid(t *testing.T) {
	_, err := NewGroup("g", Limits{BPSMax: 1})
	var le *LimitsError
	if !errors.As(err, &le) || le.Msg != msgMaxNoAvg {
		t.Fatalf("err = %v", err)
	}
}

func TestWaitBlocksUntilTimer(t *testing.T) {
	g, clk := newFakeGroup(t, Limits{BPS: 1000})
	m := g.Join("a")
	ctx := context.Background()
	for range 2 {
		if err := m.Wait(ctx, false, 100); err != nil {
			t.Fatal(err)
		}
	}
	done := goQueue(t, ctx, m, false, 100)
	clk.Advance(99 * ms)
	select {
	case err := <-done:
		t.Fatalf("admitted early: %v", err)
	default:
	}
	clk.Advance(ms)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Reads != 3 || st.ReadBytes != 300 || st.QueuedReads != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWaitUnlimitedAndInvalid(t *testing.T) {
	g, _ := newFakeGroup(t, Limits{})
	m := g.Join("a")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 1000 {
		if err := m.Wait(ctx, true, 1<<30); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Wait(ctx, true, -1); !errors.Is(err, blockio.ErrInvalid) {
		t.Fatalf("negative size: %v", err)
	}
}

func TestCancelIsNotAccounted(t *testing.T) {
	g, clk := newFakeGroup(t, Limits{BPS: 1000})
	m := g.Join("a")
	bg := context.Background()
	_ = m.Wait(bg, true, 100)
	_ = m.Wait(bg, true, 100)
	level := func() float64 {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.st.b[bpsTotal].level
	}
	before := level()
	ctx, cancel := context.WithCancel(bg)
	done := goQueue(t, ctx, m, true, 100)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if l := level(); l != before {
		t.Fatalf("cancelled request was accounted: level %v -> %v", before, l)
	}
	if st := m.Stats(); st.Writes != 2 || st.QueuedWrites != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The timer armed for it fires into an empty queue and disarms.
	clk.Advance(time.Second)
	if n := clk.Pending(); n != 0 {
		t.Fatalf("%d timers armed after the queue emptied", n)
	}
	// The next request is not stuck behind the cancelled one.
	if err := m.Wait(bg, true, 100); err != nil {
		t.Fatal(err)
	}
}

func TestCancelKeepsFIFO(t *testing.T) {
	g, clk := newFakeGroup(t, Limits{IOPS: 10})
	m := g.Join("a")
	bg := context.Background()
	_ = m.Wait(bg, false, 1)
	_ = m.Wait(bg, false, 1) // level 2 > 1: the next must wait
	var order []int
	var mu sync.Mutex
	ctxs := make([]context.CancelFunc, 5)
	var wg sync.WaitGroup
	for i := range 5 {
		ctx, cancel := context.WithCancel(bg)
		ctxs[i] = cancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			if m.Wait(ctx, false, 1) == nil {
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
			}
		}()
		waitFor(t, "queued", func() bool { return queued(m) == i+1 })
	}
	ctxs[0]()
	ctxs[2]()
	waitFor(t, "cancellations", func() bool { return queued(m) == 3 })
	for queued(m) > 0 {
		clk.Advance(10 * ms)
		runtime.Gosched()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(order) != "[1 3 4]" {
		t.Fatalf("admission order %v, want [1 3 4]", order)
	}
}

func TestLeaveReleasesQueued(t *testing.T) {
	g, clk := newFakeGroup(t, Limits{BPS: 1000})
	a, b := g.Join("a"), g.Join("b")
	bg := context.Background()
	_ = a.Wait(bg, false, 100)
	_ = a.Wait(bg, false, 100)
	// a owns the timer; b queues behind it.
	var as, bs []<-chan error
	for range 3 {
		as = append(as, goQueue(t, bg, a, false, 100))
	}
	for range 2 {
		bs = append(bs, goQueue(t, bg, b, false, 100))
	}
	a.Leave()
	for _, ch := range as {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if st := a.Stats(); st.Reads != 5 || st.QueuedReads != 0 {
		t.Fatalf("a stats %+v", st)
	}
	a.Leave() // idempotent
	// Waits on a left member are not throttled.
	for range 10 {
		if err := a.Wait(bg, false, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	// b is not stranded: a timer was armed for it.
	if clk.Pending() != 1 {
		t.Fatalf("%d timers armed, want 1 (b's)", clk.Pending())
	}
	for _, ch := range bs {
		for {
			select {
			case err := <-ch:
				if err != nil {
					t.Fatal(err)
				}
			default:
				clk.Advance(50 * ms)
				runtime.Gosched()
				continue
			}
			break
		}
	}
	b.Leave()
	if clk.Pending() != 0 {
		t.Fatalf("%d timers armed after everyone left", clk.Pending())
	}
}

// TestRealClock exercises the system clock's timers (no timing checks).
func TestRealClock(t *testing.T) {
	g, err := NewGroup("real", Limits{IOPS: 2000})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		m := g.Join(fmt.Sprint("m", i))
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 25 {
					if err := m.Wait(context.Background(), i%2 == 0, 512); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
}

// TestConcurrentStress: many goroutines per member, random directions,
// sizes and cancellations, limit changes and members leaving, under a
// fake clock. Every Wait returns; a nil return is accounted exactly once
// and a cancelled request never; at most one timer per direction is ever
// armed and none is left at the end.
func TestConcurrentStress(t *testing.T) {
	members, perMember, reqs := 6, 8, 60
	if testing.Short() {
		members, perMember, reqs = 4, 4, 25
	}
	limits := []Limits{
		{BPS: 4 << 20, IOPS: 4000},
		{BPSRead: 2 << 20, BPSWrite: 3 << 20, IOPSWrite: 2000},
		{IOPS: 3000, IOPSMax: 6000, IOPSMaxLength: 2, IOPSSize: 8192},
	}
	g, clk := newFakeGroup(t, limits[0])
	ms := make([]*Member, members)
	for i := range ms {
		ms[i] = g.Join(fmt.Sprint("m", i))
	}
	type tally struct{ ok, okBytes, cancelled, afterLeave atomic.Int64 }
	tallies := make([]tally, members)
	left := make([]atomic.Bool, members)
	var wg sync.WaitGroup
	for i, m := range ms {
		for k := range perMember {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(i), uint64(k)))
				for range reqs {
					ctx, cancel := context.Background(), context.CancelFunc(func() {})
					if r.IntN(5) == 0 {
						ctx, cancel = context.WithCancel(ctx)
						if r.IntN(2) == 0 {
							cancel()
						} else {
							time.AfterFunc(time.Duration(r.IntN(200))*time.Microsecond, cancel)
						}
					}
					size := int64(512 << r.IntN(6))
					wasLeft := left[i].Load()
					err := m.Wait(ctx, r.IntN(2) == 0, size)
					cancel()
					switch {
					case err == nil && wasLeft:
						tallies[i].afterLeave.Add(1)
					case err == nil:
						tallies[i].ok.Add(1)
						tallies[i].okBytes.Add(size)
					case errors.Is(err, context.Canceled):
						tallies[i].cancelled.Add(1)
					default:
						t.Error(err)
					}
				}
			}()
		}
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	step := 0
	maxTimers := 0
loop:
	for {
		select {
		case <-finished:
			break loop
		default:
		}
		maxTimers = max(maxTimers, clk.Pending())
		clk.Advance(2 * time.Millisecond)
		step++
		if step%500 == 0 {
			if err := g.SetLimits(limits[(step/500)%len(limits)]); err != nil {
				t.Fatal(err)
			}
		}
		if step == 1500 {
			ms[members-1].Leave()
			left[members-1].Store(true)
		}
		runtime.Gosched()
	}
	clk.Advance(time.Minute)
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers still armed", n)
	}
	if maxTimers > 2 {
		t.Errorf("%d timers armed at once, want <= 2", maxTimers)
	}
	var total, cancelled int64
	for i, m := range ms {
		st := m.Stats()
		acct := st.Reads + st.Writes
		ok := tallies[i].ok.Load()
		after := tallies[i].afterLeave.Load()
		if i == members-1 {
			// A Wait in flight when Leave ran (at most one per
			// goroutine) may or may not have been accounted.
			if acct > ok+after || acct < ok-int64(perMember) {
				t.Errorf("member %d (left): accounted %d, nil returns %d (+%d around Leave)", i, acct, ok, after)
			}
		} else if acct != ok || st.ReadBytes+st.WriteBytes != tallies[i].okBytes.Load() {
			t.Errorf("member %d: accounted %d requests / %d bytes, Wait returned nil %d times / %d bytes",
				i, acct, st.ReadBytes+st.WriteBytes, ok, tallies[i].okBytes.Load())
		}
		if st.QueuedReads+st.QueuedWrites != 0 {
			t.Errorf("member %d still has queued requests: %+v", i, st)
		}
		total += ok + after
		cancelled += tallies[i].cancelled.Load()
	}
	if want := int64(members * perMember * reqs); total+cancelled != want {
		t.Errorf("%d admitted + %d cancelled != %d requests", total, cancelled, want)
	}
	t.Logf("%d requests admitted, %d cancelled, %d clock steps, max %d timers", total, cancelled, step, maxTimers)
}

func TestDrain(t *testing.T) {
	g, clk := newFakeGroup(t, Limits{IOPS: 10})
	a, b := g.Join("a"), g.Join("b")
	bg := context.Background()
	_ = a.Wait(bg, true, 1)
	_ = a.Wait(bg, true, 1)
	ra := goQueue(t, bg, a, true, 1)
	rb := goQueue(t, bg, b, true, 1)

	a.BeginDrain()
	a.BeginDrain() // nests
	if err := <-ra; err != nil {
		t.Fatal(err)
	}
	for range 20 { // no waiting while draining
		if err := a.Wait(bg, true, 1); err != nil {
			t.Fatal(err)
		}
	}
	if st := a.Stats(); st.Writes != 23 {
		t.Fatalf("a stats %+v", st)
	}
	// b was not released: the drain is a's only, and a's requests were
	// charged, so b waits for them to drain from the bucket.
	select {
	case err := <-rb:
		t.Fatalf("b released by a's drain: %v", err)
	default:
	}
	if clk.Pending() != 1 {
		t.Fatalf("%d timers armed, want b's", clk.Pending())
	}
	clk.Advance(3 * time.Second)
	if err := <-rb; err != nil {
		t.Fatal(err)
	}
	a.EndDrain()
	a.EndDrain()
	// Throttled again: within a few requests one has to queue.
	for i := 0; ; i++ {
		if i > 20 {
			t.Fatal("never throttled after EndDrain")
		}
		done := goWait(bg, a, true, 1)
		waitFor(t, "admission or queueing", func() bool { return queued(a) == 1 || len(done) == 1 })
		if queued(a) == 1 {
			clk.Advance(time.Second)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			break
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
