package bitmap

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

const (
	tGran = 64 << 10
	tSize = 1 << 30
)

func newTestSet(t *testing.T) *Set {
	t.Helper()
	s, err := NewSet(tSize)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustAdd(t *testing.T, s *Set, name string, o AddOptions) *DirtyBitmap {
	t.Helper()
	bm, err := s.Add(name, o)
	if err != nil {
		t.Fatalf("Add(%q): %v", name, err)
	}
	return bm
}

func wantErr(t *testing.T, err, sentinel error, what string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: got %v, want %v", what, err, sentinel)
	}
	var se *StateError
	if sentinel != ErrInvalid && !errors.As(err, &se) {
		t.Fatalf("%s: %v is not a *StateError", what, err)
	}
}

func TestAddValidation(t *testing.T) {
	s := newTestSet(t)
	for _, g := range []int64{-1, 1, 256, 511, 513, 3 << 10, 1 << 32} {
		if _, err := s.Add("x", AddOptions{Granularity: g}); !errors.Is(err, ErrInvalid) {
			t.Errorf("granularity %d: %v", g, err)
		}
	}
	long := make([]byte, MaxNameLen+1)
	for i := range long {
		long[i] = 'a'
	}
	if _, err := s.Add(string(long), AddOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("long name: %v", err)
	}
	bm := mustAdd(t, s, "b0", AddOptions{})
	if bm.Granularity() != 64<<10 {
		t.Errorf("default granularity %d", bm.Granularity())
	}
	_, err := s.Add("b0", AddOptions{Granularity: 512})
	wantErr(t, err, ErrExists, "duplicate")
	_, err = s.Lookup("nope")
	wantErr(t, err, ErrNotFound, "lookup")
	wantErr(t, s.Remove("nope"), ErrNotFound, "remove")
	if _, err := NewSet(-1); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewSet(-1): %v", err)
	}
	for cs, want := range map[int64]int64{0: 65536, 512: 4096, 4096: 4096, 65536: 65536, 2 << 20: 65536, 32768: 32768} {
		if got := DefaultGranularity(cs); got != want {
			t.Errorf("DefaultGranularity(%d) = %d, want %d", cs, got, want)
		}
	}
}

func TestMarkDirtyAndStates(t *testing.T) {
	s := newTestSet(t)
	a := mustAdd(t, s, "a", AddOptions{Granularity: 4096})
	d := mustAdd(t, s, "d", AddOptions{Disabled: true})
	inc := mustAdd(t, s, "inc", AddOptions{Inconsistent: true, Persistent: true})
	ro := mustAdd(t, s, "ro", AddOptions{ReadOnly: true})
	s.MarkDirty(5000, 10)
	if a.Count() != 4096 || !a.Get(4096) || a.Get(0) {
		t.Fatalf("a: count %d", a.Count())
	}
	for _, bm := range []*DirtyBitmap{d, inc, ro} {
		if bm.Count() != 0 {
			t.Errorf("%s recorded a write", bm.Name())
		}
	}
	want := map[string]Status{"a": StatusActive, "d": StatusDisabled, "inc": StatusInconsistent, "ro": StatusActive}
	for _, bm := range s.Bitmaps() {
		if got := bm.Status(); got != want[bm.Name()] {
			t.Errorf("%s: status %s, want %s", bm.Name(), got, want[bm.Name()])
		}
	}
	// Inconsistent bitmaps may only be removed.
	wantErr(t, inc.Clear(), ErrInconsistent, "clear inconsistent")
	wantErr(t, inc.Enable(), ErrInconsistent, "enable inconsistent")
	wantErr(t, a.Merge(inc), ErrInconsistent, "merge from inconsistent")
	_, err := inc.CreateSuccessor()
	wantErr(t, err, ErrInconsistent, "successor of inconsistent")
	if err := s.Remove("inc"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, inc.Clear(), ErrReleased, "clear removed")
	// Read-only: no changes.
	wantErr(t, ro.Clear(), ErrReadOnly, "clear ro")
	wantErr(t, ro.ResetDirty(0, 1), ErrReadOnly, "reset ro")
	// Enable/disable.
	if err := d.Enable(); err != nil {
		t.Fatal(err)
	}
	s.MarkDirty(0, 1)
	if d.Count() != 64<<10 || d.Status() != StatusActive {
		t.Fatalf("enabled d: count %d status %s", d.Count(), d.Status())
	}
	// Busy ("locked").
	if err := a.SetBusy(true); err != nil {
		t.Fatal(err)
	}
	wantErr(t, a.SetBusy(true), ErrBusy, "busy twice")
	if a.Status() != StatusLocked {
		t.Fatalf("busy status %s", a.Status())
	}
	wantErr(t, a.Clear(), ErrBusy, "clear busy")
	wantErr(t, s.Remove("a"), ErrBusy, "remove busy")
	wantErr(t, a.Merge(d), ErrBusy, "merge into busy")
	wantErr(t, d.Merge(a), ErrBusy, "merge from busy")
	wantErr(t, s.Truncate(1<<20), ErrBusy, "truncate with busy")
	if err := a.ResetDirty(0, 1<<20); err != nil { // the owner may consume
		t.Fatal(err)
	}
	if err := a.SetBusy(false); err != nil {
		t.Fatal(err)
	}
	// Merge with different granularities.
	s.MarkDirty(1<<20, 1)
	if err := a.Merge(d); err != nil {
		t.Fatal(err)
	}
	if !a.Get(0) || !a.Get(4095) || a.Get(64<<10) {
		t.Fatal("merge 64k into 4k did not round to 64k groups")
	}
	// Truncate.
	if err := s.Truncate(1 << 20); err != nil {
		t.Fatal(err)
	}
	if a.Size() != 1<<20 || a.Get(1<<20) {
		t.Fatal("truncate")
	}
}

func TestInfoJSON(t *testing.T) {
	s := newTestSet(t)
	mustAdd(t, s, "first", AddOptions{Granularity: 65536})
	b := mustAdd(t, s, "second", AddOptions{Granularity: 512, Disabled: true})
	anon := mustAdd(t, s, "", AddOptions{})
	s.MarkDirty(0, 100000)
	if _, err := b.CreateSuccessor(); err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(s.Info())
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"count":0,"granularity":512,"status":"disabled"},` + // successor of a disabled bitmap
		`{"count":131072,"granularity":65536,"status":"active"},` + // anonymous
		`{"name":"second","count":0,"granularity":512,"status":"frozen"},` +
		`{"name":"first","count":131072,"granularity":65536,"status":"active"}]`
	if string(got) != want {
		t.Fatalf("Info JSON\n got %s\nwant %s", got, want)
	}
	if err := anon.Release(); err != nil {
		t.Fatal(err)
	}
	if err := b.Reclaim(); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Info()); n != 2 {
		t.Fatalf("%d bitmaps after release and reclaim", n)
	}
}

func TestFrozenRefusesChanges(t *testing.T) {
	s := newTestSet(t)
	bm := mustAdd(t, s, "b", AddOptions{Persistent: true})
	other := mustAdd(t, s, "o", AddOptions{})
	succ, err := bm.CreateSuccessor()
	if err != nil {
		t.Fatal(err)
	}
	if bm.Status() != StatusFrozen || !bm.Frozen() || !bm.Busy() || bm.Enabled() {
		t.Fatalf("status %s", bm.Status())
	}
	_, err = bm.CreateSuccessor()
	wantErr(t, err, ErrFrozen, "second successor")
	wantErr(t, bm.Clear(), ErrFrozen, "clear")
	wantErr(t, bm.Enable(), ErrFrozen, "enable")
	wantErr(t, bm.Disable(), ErrFrozen, "disable")
	wantErr(t, bm.ResetDirty(0, 1), ErrFrozen, "reset")
	wantErr(t, bm.SetDirty(0, 1), ErrFrozen, "set")
	_, _, _, err = bm.TakeDirtyArea(0, 0)
	wantErr(t, err, ErrFrozen, "take")
	wantErr(t, bm.Merge(other), ErrFrozen, "merge into")
	wantErr(t, other.Merge(bm), ErrFrozen, "merge from")
	wantErr(t, s.Remove("b"), ErrFrozen, "remove")
	wantErr(t, bm.Release(), ErrFrozen, "release")
	wantErr(t, bm.SetPersistent(false), ErrFrozen, "set-persistent")
	wantErr(t, bm.SetBusy(false), ErrFrozen, "clear busy")
	wantErr(t, bm.Update(func(*HBitmap) error { return nil }), ErrFrozen, "update")
	wantErr(t, s.Truncate(1), ErrBusy, "truncate")
	wantErr(t, succ.Release(), ErrBusy, "release successor")
	_, err = succ.CreateSuccessor()
	wantErr(t, err, ErrBusy, "successor of successor")
	wantErr(t, other.Abdicate(), ErrNoSuccessor, "abdicate without successor")
	wantErr(t, other.Reclaim(), ErrNoSuccessor, "reclaim without successor")
	if err := bm.Abdicate(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, bm.Abdicate(), ErrNoSuccessor, "abdicate twice")
	if bm.Status() != StatusActive || !bm.Persistent() || bm.Name() != "b" {
		t.Fatalf("after abdicate: %+v persistent %v", bm.Info(), bm.Persistent())
	}
	wantErr(t, succ.Clear(), ErrReleased, "released successor")
}

// TestSuccessorLifeCycle runs writers continuously while a "backup"
// freezes the bitmap, reads it, and ends with Abdicate (success) or Reclaim
// (failure). Every write must end up where the life cycle says.
func TestSuccessorLifeCycle(t *testing.T) {
	for _, success := range []bool{true, false} {
		name := "reclaim"
		if success {
			name = "abdicate"
		}
		t.Run(name, func(t *testing.T) { successorRun(t, success) })
	}
}

func successorRun(t *testing.T, success bool) {
	const writers = 4
	const gran = 64 << 10
	s, _ := NewSet(1 << 34)
	bm := mustAdd(t, s, "inc", AddOptions{Granularity: gran})
	size := s.Size()
	groups := size / gran
	// Pre-existing dirt.
	for i := int64(0); i < groups; i += 97 {
		s.MarkDirty(i*gran, 1)
	}
	before := bm.Snapshot()

	// Each writer dirties its own groups (writer w owns groups = w mod
	// writers) in order and publishes how far it got: ok[w] groups done.
	var phase atomic.Int32 // 0: before successor, 1: successor exists
	var stop atomic.Bool
	var wg sync.WaitGroup
	type rec struct {
		group int64
		after bool // write started after CreateSuccessor returned
	}
	logs := make([][]rec, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for n := 0; !stop.Load() || n < 50; n++ {
				g := (rng.Int64N(groups/writers))*writers + int64(w)
				after := phase.Load() == 1
				s.MarkDirty(g*gran+rng.Int64N(gran), 1+rng.Int64N(gran))
				logs[w] = append(logs[w], rec{g, after})
				if n > 20000 {
					break
				}
			}
		}()
	}
	succ, err := bm.CreateSuccessor()
	if err != nil {
		t.Fatal(err)
	}
	phase.Store(1)
	// The job reads the frozen bitmap while writes continue.
	it := bm.Iterator(0)
	copied := 0
	for {
		_, _, ok := it.NextArea(1 << 20)
		if !ok {
			break
		}
		copied++
	}
	frozen := bm.Snapshot()
	stop.Store(true)
	wg.Wait()
	if copied == 0 {
		t.Fatal("job saw no dirty areas")
	}
	// The frozen bitmap did not change while frozen.
	if !frozen.Equal(bm.Snapshot()) {
		t.Fatal("frozen bitmap changed")
	}
	// It contains all pre-existing dirt.
	for off := before.NextDirty(0); off >= 0; off = before.NextDirty(off + gran) {
		if !frozen.Get(off) {
			t.Fatalf("pre-existing dirty group at %d missing from frozen bitmap", off)
		}
	}
	if succ.Count() == 0 {
		t.Fatal("successor recorded nothing")
	}
	if success {
		err = bm.Abdicate()
	} else {
		err = bm.Reclaim()
	}
	if err != nil {
		t.Fatal(err)
	}
	if bm.Status() != StatusActive {
		t.Fatalf("status after: %s", bm.Status())
	}
	final := bm.Snapshot()
	for w := range writers {
		for _, r := range logs[w] {
			off := r.group * gran
			switch {
			case !success && !final.Get(off):
				t.Fatalf("reclaim lost write to group %d", r.group)
			case success && r.after && !final.Get(off):
				t.Fatalf("abdicate lost write to group %d made after the successor existed", r.group)
			case !r.after && !frozen.Get(off) && !final.Get(off):
				t.Fatalf("write to group %d lost from both frozen and final bitmaps", r.group)
			}
		}
	}
	if !success {
		for off := frozen.NextDirty(0); off >= 0; off = frozen.NextDirty(off + gran) {
			if !final.Get(off) {
				t.Fatalf("reclaim dropped frozen dirt at %d", off)
			}
		}
	}
	// Recording continues after the life cycle ends.
	s.MarkDirty(0, 1)
	if !bm.Get(0) {
		t.Fatal("bitmap not recording after the life cycle")
	}
}

// TestConcurrentMarkDirtyNeverLosesBits: writers mark distinct groups
// (each group written exactly once) while a job repeatedly takes (finds and
// resets) dirty areas until the writers are done and the bitmap is clean.
// A lost bit would leave its group never taken; a spurious bit would make
// the job take a group nobody wrote.
func TestConcurrentMarkDirtyNeverLosesBits(t *testing.T) {
	const gran = 4096
	s, _ := NewSet(1 << 32)
	bm := mustAdd(t, s, "mirror", AddOptions{Granularity: gran})
	other := mustAdd(t, s, "other", AddOptions{Granularity: 65536})
	if err := bm.SetBusy(true); err != nil { // the job owns it
		t.Fatal(err)
	}
	const writers = 4
	perWriter := int64(5000)
	if testing.Short() || raceEnabled {
		perWriter = 1500
	}
	groupOf := func(w, k int64) int64 { return (k*13*writers + w) % (s.Size() / gran) }
	var done atomic.Int32
	var wg sync.WaitGroup
	for w := range int64(writers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer done.Add(1)
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for k := range perWriter {
				g := groupOf(w, k)
				// A write somewhere inside the group, never crossing it.
				o := rng.Int64N(gran)
				s.MarkDirty(g*gran+o, 1+rng.Int64N(gran-o))
			}
		}()
	}
	takes := make(map[int64]int)
	passes := 0
	for {
		finished := done.Load() == writers
		it := int64(0)
		for {
			off, n, ok, err := bm.TakeDirtyArea(it, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if off%gran != 0 || n%gran != 0 {
				t.Fatalf("unaligned take %d+%d", off, n)
			}
			for g := off / gran; g < (off+n)/gran; g++ {
				takes[g]++
			}
			it = off + n
		}
		passes++
		if finished && bm.Count() == 0 {
			break
		}
	}
	wg.Wait()
	total := 0
	for w := range int64(writers) {
		for k := range perWriter {
			g := groupOf(w, k)
			if takes[g] != 1 {
				t.Fatalf("group %d written once, taken %d times", g, takes[g])
			}
			if !other.Get(g * gran) {
				t.Fatalf("other bitmap lost group %d", g)
			}
			total++
		}
	}
	if len(takes) != total {
		t.Fatalf("job took %d groups, %d written", len(takes), total)
	}
	if want := int64(total) * gran; other.Count() > want*16 || other.Count() == 0 {
		t.Fatalf("other count %d", other.Count())
	}
	t.Logf("%d writes drained in %d passes", total, passes)
}

func TestDirtyIteratorSurvivesChanges(t *testing.T) {
	s := newTestSet(t)
	bm := mustAdd(t, s, "b", AddOptions{Granularity: 65536})
	for i := int64(0); i < 10; i++ {
		s.MarkDirty(i<<24, 1)
	}
	it := bm.Iterator(0)
	if off := it.Next(); off != 0 {
		t.Fatalf("first %d", off)
	}
	if err := bm.ResetDirty(1<<24, 65536); err != nil { // ahead of it: skipped
		t.Fatal(err)
	}
	s.MarkDirty(3<<23, 1) // ahead of it: found
	var got []int64
	for off := it.Next(); off >= 0; off = it.Next() {
		got = append(got, off)
	}
	want := []int64{3 << 23, 2 << 24, 3 << 24, 4 << 24, 5 << 24, 6 << 24, 7 << 24, 8 << 24, 9 << 24}
	if len(got) != len(want) {
		t.Fatalf("got %v want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %v want %v", got, want)
		}
	}
	it.MoveTo(0)
	if err := s.Truncate(1 << 24); err != nil {
		t.Fatal(err)
	}
	if off := it.Next(); off != 0 {
		t.Fatalf("after truncate: %d", off)
	}
	if off := it.Next(); off != -1 {
		t.Fatalf("after truncate: %d", off)
	}
	if err := bm.Release(); err != nil {
		t.Fatal(err)
	}
	it.MoveTo(0)
	if it.Next() != -1 {
		t.Fatal("iterator of released bitmap")
	}
}

func TestAbdicateKeepsMeta(t *testing.T) {
	s := newTestSet(t)
	bm := mustAdd(t, s, "p", AddOptions{Persistent: true})
	var meta *HBitmap
	if err := bm.Update(func(h *HBitmap) (err error) { meta, err = h.CreateMeta(4096); return err }); err != nil {
		t.Fatal(err)
	}
	s.MarkDirty(0, 1)
	if !meta.Get(0) {
		t.Fatal("write not in meta")
	}
	meta.ResetAll()
	if _, err := bm.CreateSuccessor(); err != nil {
		t.Fatal(err)
	}
	if err := bm.Abdicate(); err != nil {
		t.Fatal(err)
	}
	if meta.NextClean(0) != -1 {
		t.Fatalf("meta after abdicate: clean at %d", meta.NextClean(0))
	}
	meta.ResetAll()
	s.MarkDirty(1<<29, 1)
	if !meta.Get(1<<29) || meta.Count() == 0 {
		t.Fatal("meta not attached after abdicate")
	}
}

// TestDirtyIteratorBatches walks a DirtyBitmap with NextAreas while writers
// mark it dirty: every batch is sorted, aligned and inside the device, and
// once the writers stop a batched walk lists exactly the bitmap's areas.
func TestDirtyIteratorBatches(t *testing.T) {
	const gran = 65536
	s, _ := NewSet(1 << 36)
	bm := mustAdd(t, s, "b", AddOptions{Granularity: gran})
	var wg sync.WaitGroup
	var done atomic.Int32
	writes := 20000
	if testing.Short() || raceEnabled {
		writes = 4000
	}
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer done.Add(1)
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for range writes {
				s.MarkDirty(rng.Int64N(s.Size()), 1+rng.Int64N(4*gran))
			}
		}()
	}
	for pass := 0; pass < 5 || done.Load() < 3; pass++ {
		it := bm.Iterator(0)
		prevEnd := int64(-1)
		buf := make([]Area, 0, 1+pass*3)
		for {
			areas := it.NextAreas(buf[:0], int64(pass%4)*gran)
			if len(areas) == 0 {
				break
			}
			for _, a := range areas {
				if a.Off <= prevEnd || a.Off%gran != 0 || a.Len <= 0 || a.Off+a.Len > s.Size() {
					t.Fatalf("pass %d: area %+v after %d", pass, a, prevEnd)
				}
				prevEnd = a.Off + a.Len - 1
			}
		}
	}
	wg.Wait()
	want := bm.Snapshot().AppendDirtyAreas(nil, 0, 0)
	var got []Area
	it := bm.Iterator(0)
	for {
		n := len(got)
		if got = it.NextAreas(slices.Grow(got, 7), 0); len(got) == n {
			break
		}
	}
	if !slices.Equal(got, want) || len(got) == 0 {
		t.Fatalf("batched walk %d areas, snapshot %d", len(got), len(want))
	}
	if err := bm.Release(); err != nil {
		t.Fatal(err)
	}
	if got := bm.Iterator(0).NextAreas(nil, 0); len(got) != 0 {
		t.Fatalf("released bitmap yields %v", got)
	}
}
