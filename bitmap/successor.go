package bitmap

// Successors implement incremental backup's life cycle:
//
//	bm.CreateSuccessor()  // bm frozen: a snapshot of "what to copy";
//	                      // new writes land in the successor
//	... the job reads bm (Get, NextDirtyArea, Iterator, Snapshot) ...
//	bm.Abdicate()         // success: bm now holds only writes since the start
//	bm.Reclaim()          // failure: bm holds old bits plus all new writes
//
// Both hand-over steps happen under the Set's lock, so a concurrent
// MarkDirty lands either in the frozen parent before CreateSuccessor or in
// the successor after it: no write is lost on either path.

// CreateSuccessor freezes bm: it creates an anonymous successor of the same
// granularity that records writes iff bm did, disables bm and marks it busy
// (status "frozen"). Refused when bm is already frozen (ErrFrozen), busy,
// read-only or inconsistent. Returns the successor (for inspection; it
// ends with its parent's Abdicate or Reclaim).
func (bm *DirtyBitmap) CreateSuccessor() (*DirtyBitmap, error) {
	defer bm.lock()()
	if err := bm.checkLocked("create-successor", false, false, false); err != nil {
		return nil, err
	}
	if bm.parent != nil {
		return nil, bm.stateErr("create-successor", ErrBusy)
	}
	hb, err := New(bm.hb.Size(), bm.hb.Granularity())
	if err != nil {
		return nil, err
	}
	child := &DirtyBitmap{set: bm.set, hb: hb, disabled: bm.disabled, parent: bm}
	bm.disabled = true
	bm.busy = true
	bm.successor = child
	bm.set.addLocked(child)
	return child, nil
}

// Abdicate is the success path: bm takes over its successor's bits and
// recording state (so bm now holds only the writes since CreateSuccessor),
// keeps its name and persistence, and stops being frozen and busy. The
// successor is released. O(1) (plus marking a meta bitmap, if bm has one,
// entirely dirty). ErrNoSuccessor if bm is not frozen.
func (bm *DirtyBitmap) Abdicate() error {
	defer bm.lock()()
	child, err := bm.endSuccessorLocked("abdicate")
	if err != nil {
		return err
	}
	if meta := bm.hb.meta; meta != nil {
		// Every bit may differ now: the meta bitmap moves over, all marked.
		child.hb.meta = meta
		meta.Set(0, meta.Size())
	}
	bm.hb = child.hb
	bm.disabled = child.disabled
	return nil
}

// Reclaim is the failure path: the successor's bits are merged back into
// bm (so bm holds everything dirty before plus everything written since),
// bm records writes iff the successor did, and stops being frozen and busy.
// The successor is released. O(size/granularity/64).
func (bm *DirtyBitmap) Reclaim() error {
	defer bm.lock()()
	child, err := bm.endSuccessorLocked("reclaim")
	if err != nil {
		return err
	}
	if err := bm.hb.Merge(child.hb); err != nil {
		return err // cannot happen: same size and granularity
	}
	bm.disabled = child.disabled
	return nil
}

// EnableSuccessor makes a frozen bitmap's successor record writes (for
// operations that froze a disabled bitmap).
func (bm *DirtyBitmap) EnableSuccessor() error {
	defer bm.lock()()
	if bm.released {
		return bm.stateErr("enable-successor", ErrReleased)
	}
	if bm.successor == nil {
		return bm.stateErr("enable-successor", ErrNoSuccessor)
	}
	bm.successor.disabled = false
	return nil
}

func (bm *DirtyBitmap) endSuccessorLocked(op string) (*DirtyBitmap, error) {
	if bm.released {
		return nil, bm.stateErr(op, ErrReleased)
	}
	child := bm.successor
	if child == nil {
		return nil, bm.stateErr(op, ErrNoSuccessor)
	}
	bm.set.dropLocked(child)
	child.parent = nil
	bm.successor = nil
	bm.busy = false
	return child, nil
}
