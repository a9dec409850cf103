package bitmap

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// MaxNameLen is the longest bitmap name accepted (QEMU's limit, and what
// qcow2's bitmap directory can store).
const MaxNameLen = 1023

// MaxDirtyGranularity is the largest granularity of a named dirty bitmap
// (the schema's granularity is a uint32; qcow2 stores at most 2^31).
const MaxDirtyGranularity = 1 << 31

// DefaultGranularity returns QEMU's default bitmap granularity for a node
// with the given cluster size: the cluster size clamped to [4 KiB, 64 KiB],
// or 64 KiB when it is unknown (<= 0).
func DefaultGranularity(clusterSize int64) int64 {
	if clusterSize <= 0 {
		return 64 << 10
	}
	return min(max(clusterSize, 4<<10), 64<<10)
}

// Set holds the dirty bitmaps of one device (one block node): named bitmaps
// with unique names, plus anonymous ones (internal bitmaps of jobs and the
// successors of frozen bitmaps).
//
// A Set and all its bitmaps share one mutex, so every method of Set,
// DirtyBitmap and DirtyIterator is safe for concurrent use: many writers may
// call MarkDirty while jobs iterate and reset bits, and no dirty bit is ever
// lost (each MarkDirty is applied atomically to every recording bitmap).
type Set struct {
	mu      sync.Mutex
	size    int64
	bitmaps []*DirtyBitmap // creation order
	// count mirrors len(bitmaps) (written under mu) so that MarkDirty on
	// a device without bitmaps — the common case — takes no lock.
	count atomic.Int32
}

// DirtyBitmap is one bitmap of a Set. Its methods lock the Set. A handle
// stays usable until the bitmap is removed or released; afterwards every
// changing method fails with ErrReleased, MarkDirty skips it and its
// iterators end (plain queries still answer from its last contents).
// Every method is safe for concurrent use (each locks the Set's mutex).
type DirtyBitmap struct {
	set          *Set
	hb           *HBitmap
	name         string
	disabled     bool
	persistent   bool
	busy         bool
	readOnly     bool
	inconsistent bool
	released     bool
	successor    *DirtyBitmap // non-nil: frozen
	parent       *DirtyBitmap // for a successor
}

// AddOptions configures Set.Add; the zero value is an enabled,
// non-persistent bitmap at DefaultGranularity(0) = 64 KiB.
// AddOptions is a plain value: safe to copy and to read from many
// goroutines; do not modify one another goroutine uses.
type AddOptions struct {
	Granularity int64 // bytes; power of two in [512, 2^31]; 0 = 64 KiB
	Persistent  bool  // stored in the image on close (qcow2 bitmaps)
	Disabled    bool  // do not record writes
	ReadOnly    bool  // loaded from a read-only image: may not be modified
	// Inconsistent marks a persistent bitmap loaded with qcow2's in_use
	// flag: unusable, may only be removed.
	Inconsistent bool
}

// NewSet returns an empty Set for a device of size bytes.
func NewSet(size int64) (*Set, error) {
	if size < 0 {
		return nil, invalidf("negative device size %d", size)
	}
	return &Set{size: size}, nil
}

// Size returns the device size the bitmaps cover.
func (s *Set) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Add creates a bitmap. name "" creates an anonymous bitmap (internal use:
// it is listed by Info without a name and freed with Release). Named
// bitmaps must be unique (ErrExists) and at most MaxNameLen bytes.
func (s *Set) Add(name string, opts AddOptions) (*DirtyBitmap, error) {
	g := opts.Granularity
	if g == 0 {
		g = DefaultGranularity(0)
	}
	if g < MinGranularity || g > MaxDirtyGranularity || g&(g-1) != 0 {
		return nil, invalidf("granularity %d must be a power of 2 in [512, 2^31]", g)
	}
	if len(name) > MaxNameLen {
		return nil, invalidf("bitmap name is %d bytes, at most %d allowed", len(name), MaxNameLen)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if name != "" && s.lookupLocked(name) != nil {
		return nil, &StateError{Op: "add", Name: name, Err: ErrExists}
	}
	hb, err := New(s.size, g)
	if err != nil {
		return nil, err
	}
	bm := &DirtyBitmap{
		set: s, hb: hb, name: name,
		disabled: opts.Disabled, persistent: opts.Persistent,
		readOnly: opts.ReadOnly, inconsistent: opts.Inconsistent,
	}
	s.addLocked(bm)
	return bm, nil
}

func (s *Set) lookupLocked(name string) *DirtyBitmap {
	for _, bm := range s.bitmaps {
		if bm.name == name {
			return bm
		}
	}
	return nil
}

// Lookup returns the named bitmap or a *StateError wrapping ErrNotFound.
func (s *Set) Lookup(name string) (*DirtyBitmap, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name != "" {
		if bm := s.lookupLocked(name); bm != nil {
			return bm, nil
		}
	}
	return nil, &StateError{Op: "lookup", Name: name, Err: ErrNotFound}
}

// Bitmaps returns the named bitmaps in creation order.
func (s *Set) Bitmaps() []*DirtyBitmap {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*DirtyBitmap
	for _, bm := range s.bitmaps {
		if bm.name != "" {
			out = append(out, bm)
		}
	}
	return out
}

// Remove deletes a named bitmap (block-dirty-bitmap-remove). Refused for
// frozen (ErrFrozen) and busy (ErrBusy) bitmaps; inconsistent ones may be
// removed.
func (s *Set) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	bm := s.lookupLocked(name)
	if name == "" || bm == nil {
		return &StateError{Op: "remove", Name: name, Err: ErrNotFound}
	}
	if err := bm.checkLocked("remove", false, true, true); err != nil {
		return err
	}
	s.dropLocked(bm)
	return nil
}

// Release frees a bitmap by handle — the owner's way to drop an anonymous
// (or any) bitmap. It is allowed while busy (the owner set that), refused
// while frozen (end the successor first).
func (bm *DirtyBitmap) Release() error {
	s := bm.set
	s.mu.Lock()
	defer s.mu.Unlock()
	if bm.released {
		return bm.stateErr("release", ErrReleased)
	}
	if bm.successor != nil {
		return bm.stateErr("release", ErrFrozen)
	}
	if bm.parent != nil {
		return bm.stateErr("release", ErrBusy) // a successor ends via its parent
	}
	s.dropLocked(bm)
	return nil
}

func (s *Set) addLocked(bm *DirtyBitmap) {
	s.bitmaps = append(s.bitmaps, bm)
	s.count.Store(int32(len(s.bitmaps)))
}

func (s *Set) dropLocked(bm *DirtyBitmap) {
	for i, b := range s.bitmaps {
		if b == bm {
			s.bitmaps = append(s.bitmaps[:i], s.bitmaps[i+1:]...)
			break
		}
	}
	s.count.Store(int32(len(s.bitmaps)))
	bm.released = true
}

// MarkDirty is the write-path hook: call it after every write,
// write-zeroes or discard of [off, off+n) on the device (whether or not it
// succeeded). Every recording bitmap (enabled, consistent, writable — which
// includes the successor of a frozen bitmap) gets the range set. Ranges are
// clipped to the device. One short critical section; no allocation; no
// lock at all while the Set has no bitmap (a call racing with Add is
// ordered before it).
func (s *Set) MarkDirty(off, n int64) {
	if s.count.Load() == 0 {
		return
	}
	s.mu.Lock()
	for _, bm := range s.bitmaps {
		if bm.recordingLocked() {
			bm.hb.Set(off, n)
		}
	}
	s.mu.Unlock()
}

// Info returns query-block's dirty-bitmaps list: newest bitmap first, as
// QEMU lists them, anonymous bitmaps included without a name.
func (s *Set) Info() []BlockDirtyInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]BlockDirtyInfo, 0, len(s.bitmaps))
	for i := len(s.bitmaps) - 1; i >= 0; i-- {
		out = append(out, s.bitmaps[i].infoLocked())
	}
	return out
}

// Truncate resizes every bitmap with the device. Refused (ErrBusy) while
// any bitmap is busy or frozen, as QEMU does.
func (s *Set) Truncate(newSize int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if newSize < 0 {
		return invalidf("negative device size %d", newSize)
	}
	for _, bm := range s.bitmaps {
		if bm.busy || bm.successor != nil || bm.parent != nil {
			return bm.stateErr("truncate", ErrBusy)
		}
	}
	// Validate first so a failure leaves every bitmap unchanged.
	for _, bm := range s.bitmaps {
		if _, err := bitsFor(newSize, bm.hb.shift); err != nil {
			return err
		}
	}
	for _, bm := range s.bitmaps {
		if err := bm.hb.Truncate(newSize); err != nil {
			return err
		}
	}
	s.size = newSize
	return nil
}

func (bm *DirtyBitmap) stateErr(op string, err error) error {
	return &StateError{Op: op, Name: bm.name, Err: err}
}

// checkLocked refuses op on a released, frozen, busy (unless allowBusy),
// inconsistent (unless allowInconsistent) or read-only (unless allowRO)
// bitmap.
func (bm *DirtyBitmap) checkLocked(op string, allowBusy, allowRO, allowInconsistent bool) error {
	switch {
	case bm.released:
		return bm.stateErr(op, ErrReleased)
	case bm.successor != nil:
		return bm.stateErr(op, ErrFrozen)
	case bm.parent != nil && !allowBusy:
		// A successor belongs to its frozen parent's operation.
		return bm.stateErr(op, ErrBusy)
	case bm.busy && !allowBusy:
		return bm.stateErr(op, ErrBusy)
	case bm.inconsistent && !allowInconsistent:
		return bm.stateErr(op, ErrInconsistent)
	case bm.readOnly && !allowRO:
		return bm.stateErr(op, ErrReadOnly)
	}
	return nil
}

func (bm *DirtyBitmap) recordingLocked() bool {
	return !bm.disabled && !bm.inconsistent && !bm.readOnly && !bm.released
}

func (bm *DirtyBitmap) statusLocked() Status {
	switch {
	case bm.inconsistent:
		return StatusInconsistent
	case bm.successor != nil:
		return StatusFrozen
	case bm.busy:
		return StatusLocked
	case bm.disabled:
		return StatusDisabled
	}
	return StatusActive
}

func (bm *DirtyBitmap) infoLocked() BlockDirtyInfo {
	return BlockDirtyInfo{
		Name:        bm.name,
		Count:       bm.hb.Count(),
		Granularity: uint32(bm.hb.Granularity()),
		Status:      bm.statusLocked(),
	}
}

func (bm *DirtyBitmap) lock() func() {
	bm.set.mu.Lock()
	return bm.set.mu.Unlock
}

// Name returns the bitmap's name ("" for anonymous bitmaps).
func (bm *DirtyBitmap) Name() string { return bm.name }

// Info returns the bitmap's BlockDirtyInfo.
func (bm *DirtyBitmap) Info() BlockDirtyInfo {
	defer bm.lock()()
	return bm.infoLocked()
}

// Status returns the bitmap's status.
func (bm *DirtyBitmap) Status() Status {
	defer bm.lock()()
	return bm.statusLocked()
}

// Granularity returns bytes per bit.
func (bm *DirtyBitmap) Granularity() int64 {
	defer bm.lock()()
	return bm.hb.Granularity()
}

// Size returns the bytes covered.
func (bm *DirtyBitmap) Size() int64 {
	defer bm.lock()()
	return bm.hb.Size()
}

// Count returns the dirty bytes (dirty groups × granularity).
func (bm *DirtyBitmap) Count() int64 {
	defer bm.lock()()
	return bm.hb.Count()
}

// Recording reports whether writes are recorded (QMP's "recording").
func (bm *DirtyBitmap) Recording() bool {
	defer bm.lock()()
	return bm.recordingLocked()
}

// Enabled reports whether the bitmap is enabled (frozen bitmaps are not).
func (bm *DirtyBitmap) Enabled() bool {
	defer bm.lock()()
	return !bm.disabled
}

// Persistent reports the persistent flag.
func (bm *DirtyBitmap) Persistent() bool {
	defer bm.lock()()
	return bm.persistent
}

// Busy reports whether an operation uses the bitmap (set by SetBusy, or
// by CreateSuccessor until Abdicate/Reclaim).
func (bm *DirtyBitmap) Busy() bool {
	defer bm.lock()()
	return bm.busy || bm.parent != nil
}

// Inconsistent reports the inconsistent flag.
func (bm *DirtyBitmap) Inconsistent() bool {
	defer bm.lock()()
	return bm.inconsistent
}

// ReadOnly reports the read-only flag.
func (bm *DirtyBitmap) ReadOnly() bool {
	defer bm.lock()()
	return bm.readOnly
}

// Frozen reports whether the bitmap has a successor.
func (bm *DirtyBitmap) Frozen() bool {
	defer bm.lock()()
	return bm.successor != nil
}

// Successor returns the successor of a frozen bitmap, or nil.
func (bm *DirtyBitmap) Successor() *DirtyBitmap {
	defer bm.lock()()
	return bm.successor
}

// Enable makes the bitmap record writes (block-dirty-bitmap-enable).
// Refused when frozen, busy or inconsistent.
func (bm *DirtyBitmap) Enable() error {
	defer bm.lock()()
	if err := bm.checkLocked("enable", false, true, false); err != nil {
		return err
	}
	bm.disabled = false
	return nil
}

// Disable stops recording (block-dirty-bitmap-disable). Refused when
// frozen, busy or inconsistent.
func (bm *DirtyBitmap) Disable() error {
	defer bm.lock()()
	if err := bm.checkLocked("disable", false, true, false); err != nil {
		return err
	}
	bm.disabled = true
	return nil
}

// Clear resets every bit (block-dirty-bitmap-clear). Refused when frozen,
// busy, read-only or inconsistent.
func (bm *DirtyBitmap) Clear() error {
	defer bm.lock()()
	if err := bm.checkLocked("clear", false, false, false); err != nil {
		return err
	}
	bm.hb.ResetAll()
	return nil
}

// SetPersistent sets the persistent flag. Refused when frozen, busy or
// inconsistent.
func (bm *DirtyBitmap) SetPersistent(p bool) error {
	defer bm.lock()()
	if err := bm.checkLocked("set-persistent", false, true, false); err != nil {
		return err
	}
	bm.persistent = p
	return nil
}

// SetBusy marks the bitmap in use by an operation (status "locked") or
// releases it. Taking a busy, frozen or inconsistent bitmap fails;
// releasing a frozen one fails (use Abdicate/Reclaim).
func (bm *DirtyBitmap) SetBusy(busy bool) error {
	defer bm.lock()()
	if busy {
		if err := bm.checkLocked("set-busy", false, true, false); err != nil {
			return err
		}
	} else if err := bm.checkLocked("clear-busy", true, true, true); err != nil {
		return err
	}
	bm.busy = busy
	return nil
}

// SetReadOnly sets the read-only flag (a read-only bitmap neither records
// writes nor accepts changes).
func (bm *DirtyBitmap) SetReadOnly(ro bool) error {
	defer bm.lock()()
	if bm.released {
		return bm.stateErr("set-readonly", ErrReleased)
	}
	bm.readOnly = ro
	return nil
}

// SetDirty marks [off, off+n) dirty in this bitmap only — the owner's
// operation (e.g. a job seeding its copy bitmap). Allowed while busy;
// refused when frozen, read-only or inconsistent.
func (bm *DirtyBitmap) SetDirty(off, n int64) error {
	defer bm.lock()()
	if err := bm.checkLocked("set", true, false, false); err != nil {
		return err
	}
	bm.hb.Set(off, n)
	return nil
}

// ResetDirty marks [off, off+n) clean — the owner's operation (a job
// consuming bits it copied). Allowed while busy; refused when frozen,
// read-only or inconsistent. Only granularity-aligned ranges are safe: a
// partial group is cleared whole.
func (bm *DirtyBitmap) ResetDirty(off, n int64) error {
	defer bm.lock()()
	if err := bm.checkLocked("reset", true, false, false); err != nil {
		return err
	}
	bm.hb.Reset(off, n)
	return nil
}

// Merge ORs src into bm (block-dirty-bitmap-merge); see HBitmap.Merge for
// different granularities. bm must be modifiable (not frozen, busy,
// read-only or inconsistent); src must not be busy or inconsistent (it may
// be read-only).
func (bm *DirtyBitmap) Merge(src *DirtyBitmap) error {
	if src.set != bm.set {
		return fmt.Errorf("%w: merge across devices", ErrInvalid)
	}
	defer bm.lock()()
	if err := bm.checkLocked("merge", false, false, false); err != nil {
		return err
	}
	if err := src.checkLocked("merge-source", false, true, false); err != nil {
		return err
	}
	return bm.hb.Merge(src.hb)
}

// Get reports whether the group containing off is dirty.
func (bm *DirtyBitmap) Get(off int64) bool {
	defer bm.lock()()
	return bm.hb.Get(off)
}

// NextDirty: see HBitmap.NextDirty.
func (bm *DirtyBitmap) NextDirty(from int64) int64 {
	defer bm.lock()()
	return bm.hb.NextDirty(from)
}

// NextClean: see HBitmap.NextClean.
func (bm *DirtyBitmap) NextClean(from int64) int64 {
	defer bm.lock()()
	return bm.hb.NextClean(from)
}

// NextDirtyArea: see HBitmap.NextDirtyArea.
func (bm *DirtyBitmap) NextDirtyArea(from, maxLen int64) (off, n int64, ok bool) {
	defer bm.lock()()
	return bm.hb.NextDirtyArea(from, maxLen)
}

// TakeDirtyArea atomically finds the first dirty area at or after from and
// resets it — mirror's "pick the next chunk to copy". The area is
// granularity aligned (it starts at the group containing the first dirty
// byte >= from, which may lie before from) and is at most maxLen bytes
// rounded down to whole groups (at least one group; maxLen <= 0 = no cap).
// Writes that land after the take set the bits again, so nothing is lost.
// Same permissions as ResetDirty.
func (bm *DirtyBitmap) TakeDirtyArea(from, maxLen int64) (off, n int64, ok bool, err error) {
	defer bm.lock()()
	if err := bm.checkLocked("take", true, false, false); err != nil {
		return 0, 0, false, err
	}
	h := bm.hb
	g := h.Granularity()
	from = max(from, 0) &^ (g - 1)
	if maxLen > 0 {
		maxLen = max(maxLen&^(g-1), g)
	}
	off, n, ok = h.NextDirtyArea(from, maxLen)
	if ok {
		h.Reset(off, n)
	}
	return off, n, ok, nil
}

// Snapshot returns a copy of the bitmap's bits (e.g. to serialize it
// without holding the lock).
func (bm *DirtyBitmap) Snapshot() *HBitmap {
	defer bm.lock()()
	return bm.hb.Clone()
}

// View runs fn with the underlying HBitmap under the Set's lock (fn must
// not retain it or call other methods of this Set).
func (bm *DirtyBitmap) View(fn func(*HBitmap)) {
	defer bm.lock()()
	fn(bm.hb)
}

// Update runs fn with the underlying HBitmap under the Set's lock for
// direct modification, e.g. loading a persistent bitmap with
// DeserializePart. Refused when frozen, read-only or released (allowed
// while busy or inconsistent: loading comes first).
func (bm *DirtyBitmap) Update(fn func(*HBitmap) error) error {
	defer bm.lock()()
	if err := bm.checkLocked("update", true, false, true); err != nil {
		return err
	}
	return fn(bm.hb)
}

// DirtyIterator walks a DirtyBitmap, locking the Set for each step, so it
// may run while writers call MarkDirty. It keeps a position (and the
// Iterator's buffer of areas decoded ahead, checked against changes) and
// never becomes invalid (not even by Abdicate, Truncate or Release: a released
// bitmap just ends the walk). Bits set behind its position are picked up by
// another pass; loop until Count is 0 to converge.
// A DirtyIterator is safe for concurrent use with the Set's writers and jobs
// (each step locks the Set); one iterator should be driven by one goroutine
// at a time, as its position is shared.
type DirtyIterator struct {
	bm *DirtyBitmap
	it Iterator
}

// Iterator returns an iterator starting at byte offset from.
func (bm *DirtyBitmap) Iterator(from int64) *DirtyIterator {
	defer bm.lock()()
	return &DirtyIterator{bm: bm, it: bm.hb.Iterator(from)}
}

// current returns the inner iterator bound to the bitmap's current bits
// (Abdicate replaces them). Called with the lock held.
func (it *DirtyIterator) current() *Iterator {
	if it.it.h != it.bm.hb {
		it.it = it.bm.hb.Iterator(it.it.pos)
	}
	return &it.it
}

// MoveTo moves the iterator to byte offset off.
func (it *DirtyIterator) MoveTo(off int64) {
	defer it.bm.lock()()
	it.current().MoveTo(off)
}

// Next returns the next dirty group's offset, or -1; see Iterator.Next.
func (it *DirtyIterator) Next() int64 {
	defer it.bm.lock()()
	if it.bm.released {
		return -1
	}
	return it.current().Next()
}

// NextArea returns the next dirty run, see Iterator.NextArea.
func (it *DirtyIterator) NextArea(maxLen int64) (off, n int64, ok bool) {
	defer it.bm.lock()()
	if it.bm.released {
		return 0, 0, false
	}
	return it.current().NextArea(maxLen)
}

// NextAreas appends the next dirty runs to dst under one lock, see
// Iterator.NextAreas. Writers wait for the whole batch, so keep cap(dst)
// moderate (tens of areas) when they must not stall.
func (it *DirtyIterator) NextAreas(dst []Area, maxLen int64) []Area {
	defer it.bm.lock()()
	if it.bm.released {
		return dst
	}
	return it.current().NextAreas(dst, maxLen)
}
