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

// byteEnd returns the byte offset where stored bit e starts, clipped to the
// size (without overflowing when e is the bit after the last).
func (h *HBitmap) byteEnd(e uint64) int64 {
	if e >= h.nbits {
		return h.size
	}
	return int64(e << (h.shift & 63))
}
