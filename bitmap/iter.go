package bitmap

import "math/bits"

// nextSet returns the first set stored bit >= pos using the summary levels:
// it climbs while the rest of the current word is empty and descends along
// the lowest set summary bit, so a clean run of any length costs O(levels).
func (h *HBitmap) nextSet(pos uint64) (uint64, bool) {
	if pos >= h.nbits {
		return 0, false
	}
	return h.nextSetAt(len(h.levels)-1, pos)
}

// nextSetAt returns the first set bit >= i of level lv, consulting only lv
// and the levels above it.
func (h *HBitmap) nextSetAt(lv int, i uint64) (uint64, bool) {
	bottom := lv
	for {
		words := h.levels[lv]
		wi := i >> 6
		if wi >= uint64(len(words)) {
			return 0, false
		}
		if w := words[wi] & maskFrom(i); w != 0 {
			i = wi<<6 | uint64(bits.TrailingZeros64(w))
			break
		}
		if lv == 0 {
			return 0, false
		}
		// The rest of word wi is clean: continue with word wi+1, whose
		// summary bit is bit wi+1 of the level above.
		i = wi + 1
		lv--
	}
	for lv < bottom {
		lv++
		w := h.levels[lv][i]
		if w == 0 { // cannot happen while the invariant holds
			return h.scanSet(i << 6)
		}
		i = i<<6 | uint64(bits.TrailingZeros64(w))
	}
	return i, true
}

// scanSet is the linear fallback of nextSet over the stored level.
func (h *HBitmap) scanSet(pos uint64) (uint64, bool) {
	words := h.last()
	for wi := pos >> 6; wi < uint64(len(words)); wi++ {
		w := words[wi]
		if wi == pos>>6 {
			w &= maskFrom(pos)
		}
		if w != 0 {
			b := wi<<6 | uint64(bits.TrailingZeros64(w))
			return b, b < h.nbits
		}
	}
	return 0, false
}

// nextClear returns the first clear stored bit in [pos, limit), or limit.
// It scans the stored level only (summaries say "non-empty", not "full").
func (h *HBitmap) nextClear(pos, limit uint64) uint64 {
	limit = min(limit, h.nbits)
	if pos >= limit {
		return limit
	}
	words := h.last()
	wi := pos >> 6
	w := ^words[wi] & maskFrom(pos)
	for w == 0 {
		wi++
		if wi<<6 >= limit {
			return limit
		}
		w = ^words[wi]
	}
	return min(wi<<6|uint64(bits.TrailingZeros64(w)), limit)
}

// NextDirty returns the first dirty byte offset >= from (from itself when
// its group is dirty), or -1 when there is none.
func (h *HBitmap) NextDirty(from int64) int64 {
	from = max(from, 0)
	if from >= h.size {
		return -1
	}
	b, ok := h.nextSet(uint64(from) >> h.shift)
	if !ok {
		return -1
	}
	return max(from, int64(b<<h.shift))
}

// NextClean returns the first clean byte offset >= from and < Size, or -1
// when there is none. It scans the stored level: O(distance/granularity/64).
func (h *HBitmap) NextClean(from int64) int64 {
	from = max(from, 0)
	if from >= h.size {
		return -1
	}
	b := h.nextClear(uint64(from)>>h.shift, h.nbits)
	if b >= h.nbits {
		return -1
	}
	return max(from, int64(b<<h.shift))
}

// NextDirtyArea returns the first run of dirty bytes at or after from:
// off >= from, the run clipped to Size and, when maxLen > 0, to at most
// maxLen bytes. ok is false when nothing at or after from is dirty. Mirror
// and backup use it to build large contiguous copy requests.
func (h *HBitmap) NextDirtyArea(from, maxLen int64) (off, n int64, ok bool) {
	from = max(from, 0)
	if from >= h.size {
		return 0, 0, false
	}
	b, found := h.nextSet(uint64(from) >> h.shift)
	if !found {
		return 0, 0, false
	}
	off = max(from, int64(b<<h.shift))
	limit := h.nbits
	if maxLen > 0 && maxLen < h.size-off {
		// Last group the capped area can touch, plus one.
		limit = (uint64(off+maxLen-1) >> h.shift) + 1
	}
	e := h.nextClear(b+1, limit)
	end := h.size
	if e < h.nbits && int64(e<<h.shift) < end {
		end = int64(e << h.shift)
	}
	n = end - off
	if maxLen > 0 && n > maxLen {
		n = maxLen
	}
	return off, n, true
}

// Iterator walks the dirty groups of an HBitmap in increasing order. It
// holds only a position, not a snapshot: it stays valid while bits change,
// and across Truncate. Bits reset before the iterator reaches them are not
// returned; bits set ahead of its position are returned; bits set behind it
// are not (seek back, or loop until Count is 0, to catch them).
//
// An Iterator follows the goroutine-safety of its HBitmap: use it under the
// same lock as the writers (Set's DirtyIterator does that for you).
type Iterator struct {
	h   *HBitmap
	pos int64 // next byte offset to examine
	// wi is pos's stored-word index when wiOK. Keeping it separately (it
	// comes from the summary levels, not from the stored word's contents)
	// lets the CPU start the search for the next area before the current
	// stored word has arrived from memory.
	wi   uint64
	wiOK bool
	// Look-ahead: the first non-empty stored word after word aheadFrom is
	// aheadW (aheadOK: there is one), valid while h.gen == aheadGen. The
	// iterator touches that word early so its cache miss overlaps the
	// current area's work.
	aheadFrom, aheadW, aheadGen uint64
	aheadOK, aheadSet           bool
	sink                        uint64
}

// Iterator returns an iterator positioned at byte offset from.
func (h *HBitmap) Iterator(from int64) Iterator {
	return Iterator{h: h, pos: max(from, 0)}
}

// MoveTo moves the iterator to byte offset off.
func (it *Iterator) MoveTo(off int64) {
	it.pos, it.wiOK, it.aheadSet = max(off, 0), false, false
}

// Pos returns the offset the next search starts from.
func (it *Iterator) Pos() int64 { return it.pos }

// Next returns the offset of the next dirty group (its first byte, or the
// iterator position when that lies inside the group) and advances past the
// group. It returns -1 when no dirty group remains.
func (it *Iterator) Next() int64 {
	h := it.h
	it.wiOK = false
	if it.pos >= h.size {
		return -1
	}
	b, ok := h.nextSet(uint64(it.pos) >> h.shift)
	if !ok {
		it.pos = h.size
		return -1
	}
	off := max(it.pos, int64(b<<h.shift))
	if b+1 >= h.nbits {
		it.pos = h.size
	} else {
		it.pos = int64((b + 1) << h.shift)
	}
	return off
}

// NextArea returns the next dirty run (see HBitmap.NextDirtyArea) and
// advances past it.
func (it *Iterator) NextArea(maxLen int64) (off, n int64, ok bool) {
	h := it.h
	pos := it.pos
	if pos >= h.size {
		return 0, 0, false
	}
	last := h.levels[len(h.levels)-1]
	b := uint64(pos) >> h.shift
	wi := b >> 6
	if it.wiOK && it.wi < uint64(len(last)) {
		wi = it.wi // == wi; see the field's comment
	}
	it.wiOK = false
	// Find the run's first word: the rest of the current word, else the
	// next non-empty word through the summary levels.
	w := last[wi] & maskFrom(b)
	if w == 0 {
		if len(h.levels) == 1 {
			it.pos = h.size
			return 0, 0, false
		}
		var next uint64
		var found bool
		if it.aheadSet && it.aheadFrom == wi && it.aheadGen == h.gen {
			next, found = it.aheadW, it.aheadOK
		} else {
			next, found = h.nextSetAt(len(h.levels)-2, wi+1)
		}
		if !found {
			it.pos = h.size
			return 0, 0, false
		}
		wi = next
		w = last[wi]
		if w == 0 { // cannot happen while the invariant holds
			it.pos = h.size
			return 0, 0, false
		}
	}
	if len(h.levels) > 1 && (!it.aheadSet || it.aheadFrom != wi || it.aheadGen != h.gen) {
		it.aheadW, it.aheadOK = h.nextSetAt(len(h.levels)-2, wi+1)
		it.aheadFrom, it.aheadGen, it.aheadSet = wi, h.gen, true
		if it.aheadOK {
			it.sink += last[it.aheadW]
		}
	}
	start := wi<<6 | uint64(bits.TrailingZeros64(w))
	off = max(pos, int64(start<<h.shift))
	// Find its end: usually inside the same word.
	var e uint64
	if rest := ^w & maskFrom(start); rest != 0 {
		e = wi<<6 | uint64(bits.TrailingZeros64(rest))
	} else {
		limit := h.nbits
		if maxLen > 0 && maxLen < h.size-off {
			limit = (uint64(off+maxLen-1) >> h.shift) + 1
		}
		e = h.nextClear((wi+1)<<6, limit)
	}
	end := h.size
	if e < h.nbits && int64(e<<h.shift) < end {
		end = int64(e << h.shift)
	}
	n = end - off
	if maxLen > 0 && n > maxLen {
		n = maxLen
	}
	it.pos = off + n
	if e>>6 == wi && n == end-off {
		// The run ended inside word wi, so the new position is in it.
		it.wi, it.wiOK = wi, true
	}
	return off, n, true
}
