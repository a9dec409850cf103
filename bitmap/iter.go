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
	return off, h.areaLen(off, h.nextClear(b+1, h.areaLimit(off, maxLen)), maxLen), true
}

// areaLimit returns the group after the last one an area starting at byte
// off may reach: nbits, or less when maxLen > 0 caps the area.
func (h *HBitmap) areaLimit(off, maxLen int64) uint64 {
	if maxLen > 0 && maxLen < h.size-off {
		return (uint64(off+maxLen-1) >> h.shift) + 1
	}
	return h.nbits
}

// areaLen returns the length of the dirty area starting at byte off whose
// first clean group is e, clipped to Size and to maxLen when maxLen > 0.
func (h *HBitmap) areaLen(off int64, e uint64, maxLen int64) int64 {
	end := h.size
	if e < h.nbits && int64(e<<h.shift) < end {
		end = int64(e << h.shift)
	}
	n := end - off
	if maxLen > 0 && n > maxLen {
		n = maxLen
	}
	return n
}

// Iterator walks the dirty groups of an HBitmap in increasing order. It
// holds a position, not a snapshot: it stays valid while bits change, and
// across Truncate. Bits reset before the iterator reaches them are not
// returned; bits set ahead of its position are returned; bits set behind it
// are not (seek back, or loop until Count is 0, to catch them).
//
// Besides the position it caches a cursor into the summary levels (as
// QEMU's iterator does): for every summary level, the bits of the word on
// the current path that lie after it. While no summary bit changes (the
// bitmap's gen counter is unchanged) the next non-empty stored word is found
// from the cursor without re-reading the levels above, so a sparse walk
// touches about one summary word and one stored word per dirty area. Any
// change that may alter a summary bit invalidates the cursor, which is then
// rebuilt from the position in O(levels).
//
// An Iterator follows the goroutine-safety of its HBitmap: use it under the
// same lock as the writers (Set's DirtyIterator does that for you). Copies
// of an Iterator are independent (each has its own position and cursor).
type Iterator struct {
	h   *HBitmap
	pos int64 // next byte offset to examine

	// Cursor, valid when ok && gen == h.gen: wi is the stored word the
	// walk is in (the one containing pos, or one the walk has moved to
	// past empty words) and cur[lv], for each summary level lv < L-1, holds
	// the bits of level lv's path word strictly after the path. Visiting a
	// word never clears cur bits of words not yet visited, so set bits
	// ahead of the walk are always found.
	ok   bool
	gen  uint64
	wi   uint64
	top  int      // index of the stored level
	last []uint64 // the stored level
	cur  [maxLevels]uint64
	sink uint64 // keeps prefetching loads alive
}

// maxLevels bounds the levels of an HBitmap: MaxBits = 2^41 bits need 7.
const maxLevels = 8

// Iterator returns an iterator positioned at byte offset from.
func (h *HBitmap) Iterator(from int64) Iterator {
	return Iterator{h: h, pos: max(from, 0)}
}

// MoveTo moves the iterator to byte offset off.
func (it *Iterator) MoveTo(off int64) {
	it.pos, it.ok = max(off, 0), false
}

// Pos returns the offset the next search starts from.
func (it *Iterator) Pos() int64 { return it.pos }

// initCursor builds the cursor for stored word wi from the live summaries.
func (it *Iterator) initCursor(wi uint64) {
	h := it.h
	top := len(h.levels) - 1
	idx := wi // index at level lv+1 of the path word
	for lv := top - 1; lv >= 0; lv-- {
		it.cur[lv] = h.levels[lv][idx>>6] & (^uint64(0) << (idx & 63) << 1)
		idx >>= 6
	}
	it.wi, it.gen, it.ok = wi, h.gen, true
	it.top, it.last = top, h.levels[top]
}

// emptyNext reports whether the cursor (valid, not at the top level) knows
// that stored word wi, the one after the cursor's word, is empty: it lies
// under the same summary word and its summary bit is clear.
func (it *Iterator) emptyNext(wi uint64) bool {
	return it.top > 0 && wi == it.wi+1 && wi&63 != 0 && it.cur[it.top-1]&(1<<(wi&63)) == 0
}

// nextWord advances the cursor to the next non-empty stored word after
// it.wi and returns its index; false when there is none.
func (it *Iterator) nextWord() (uint64, bool) {
	top := it.top
	// Fast path: another non-empty word under the same summary word.
	if c := it.cur[top-1]; c != 0 {
		it.cur[top-1] = c & (c - 1)
		it.wi = it.wi&^63 | uint64(bits.TrailingZeros64(c))
		return it.wi, true
	}
	h := it.h
	lv := top - 2
	for lv >= 0 && it.cur[lv] == 0 {
		lv--
	}
	if lv < 0 {
		return 0, false
	}
	c := it.cur[lv]
	idx := it.wi>>(6*uint(top-lv-1))&^63 | uint64(bits.TrailingZeros64(c))
	it.cur[lv] = c & (c - 1)
	for lv++; lv < top; lv++ {
		w := h.levels[lv][idx]
		if w == 0 { // cannot happen while the invariant holds
			return it.slowNext(idx << (6 * uint(top-lv)))
		}
		it.cur[lv] = w & (w - 1)
		if lv == top-2 {
			it.prefetch(idx<<6, w&(w-1))
		}
		idx = idx<<6 | uint64(bits.TrailingZeros64(w))
	}
	it.wi = idx
	return idx, true
}

// prefetch touches the summary words below the set bits of m (a word of
// level L-3 whose bit 0 stands for summary word base) and the first stored
// word below each, so that the cache misses of the next several dirty
// areas overlap instead of being paid one after another.
func (it *Iterator) prefetch(base, m uint64) {
	h := it.h
	sum, last := h.levels[len(h.levels)-2], h.last()
	var s uint64
	for ; m != 0; m &= m - 1 {
		i := base | uint64(bits.TrailingZeros64(m))
		w := sum[i]
		s += last[i<<6|uint64(bits.TrailingZeros64(w|1<<63))]
	}
	it.sink += s
}

// slowNext is the fallback should the summaries ever disagree with the
// stored words: a plain search from stored bit pos.
func (it *Iterator) slowNext(pos uint64) (uint64, bool) {
	it.ok = false
	b, ok := it.h.scanSet(pos)
	return b >> 6, ok
}

// seek returns the first dirty stored bit >= b (b < nbits) and the live
// stored word containing it, positioning the cursor on that word.
func (it *Iterator) seek(b uint64) (bit, w uint64, ok bool) {
	h := it.h
	wi := b >> 6
	if !it.ok || it.gen != h.gen {
		it.initCursor(wi)
	} else if wi != it.wi {
		if wi == it.wi+1 && wi&63 != 0 {
			// The next word under the same summary word: it is now
			// visited, so drop it from the cursor.
			it.cur[it.top-1] &^= 1 << (wi & 63)
			it.wi = wi
		} else {
			it.initCursor(wi)
		}
	}
	last := it.last
	w = last[wi] & maskFrom(b)
	if w == 0 {
		if it.top == 0 {
			return 0, 0, false
		}
		if wi, ok = it.nextWord(); !ok {
			return 0, 0, false
		}
		if w = last[wi]; w == 0 { // cannot happen while the invariant holds
			b, ok := h.scanSet(wi << 6)
			if !ok {
				return 0, 0, false
			}
			it.ok = false
			return b, last[b>>6], true
		}
	}
	return wi<<6 | uint64(bits.TrailingZeros64(w)), w, true
}

// Next returns the offset of the next dirty group (its first byte, or the
// iterator position when that lies inside the group) and advances past the
// group. It returns -1 when no dirty group remains.
func (it *Iterator) Next() int64 {
	h := it.h
	if it.pos >= h.size {
		return -1
	}
	b, _, ok := it.seek(uint64(it.pos) >> h.shift)
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
	b := uint64(pos) >> h.shift
	var start, w uint64
	if wi := b >> 6; it.ok && it.gen == h.gen && it.top > 0 && (wi == it.wi || it.emptyNext(wi)) {
		// Fast path (the cursor is on pos's word, or pos is in the next
		// word and the cursor knows that word is empty): the rest of
		// the word, else the next non-empty word under the same
		// summary word, else the general search.
		last := it.last
		if wi != it.wi {
			wi, w = it.wi, 0
		} else {
			w = last[wi] & maskFrom(b)
		}
		if w == 0 {
			t1 := (it.top - 1) & (maxLevels - 1)
			if c := it.cur[t1]; c != 0 {
				// Next non-empty word under the same summary word.
				it.cur[t1] = c & (c - 1)
				wi = wi&^63 | uint64(bits.TrailingZeros64(c))
				it.wi = wi
			} else if c := it.cur[(t1-1)&(maxLevels-1)]; t1 > 0 && c != 0 {
				// Next non-empty summary word under the same word
				// two levels up.
				it.cur[(t1-1)&(maxLevels-1)] = c & (c - 1)
				si := wi>>6&^63 | uint64(bits.TrailingZeros64(c))
				sw := h.levels[t1][si]
				if sw == 0 { // cannot happen while the invariant holds
					it.ok = false
					return it.NextArea(maxLen)
				}
				it.cur[t1] = sw & (sw - 1)
				wi = si<<6 | uint64(bits.TrailingZeros64(sw))
				it.wi = wi
			} else if wi, ok = it.nextWord(); !ok {
				it.pos = h.size
				return 0, 0, false
			}
			w = last[wi]
		}
		if w != 0 {
			start = wi<<6 | uint64(bits.TrailingZeros64(w))
			ok = true
		}
	}
	if !ok {
		if start, w, ok = it.seek(b); !ok {
			it.pos = h.size
			return 0, 0, false
		}
	}
	off = max(pos, int64(start<<h.shift))
	// Find its end: usually inside the same word.
	var e uint64
	if rest := ^w & maskFrom(start); rest != 0 {
		e = start&^63 | uint64(bits.TrailingZeros64(rest))
	} else if wi := start >> 6; it.ok && it.wi == wi && it.emptyNext(wi+1) {
		// The run reaches the end of its word and the summary says
		// the next word is clean: no need to load it.
		e = (wi + 1) << 6
	} else {
		e = h.nextClear(start&^63+64, h.areaLimit(off, maxLen))
	}
	n = h.areaLen(off, e, maxLen)
	it.pos = off + n
	return off, n, true
}
