package bitmap

import (
	"math/bits"
	"slices"
)

// Iterator walks the dirty groups of an HBitmap in increasing order. It
// holds a position, not a snapshot: it stays valid while bits change, and
// across Truncate. Bits reset before the iterator reaches them are not
// returned; bits set ahead of its position are returned; bits set behind it
// are not (seek back, or loop until Count is 0, to catch them).
//
// To make a sparse walk cheap it decodes the next dirty areas in batches:
// one tight loop follows the two lowest summary levels (with short queues
// of non-empty words for the levels above) to the stored words and turns
// their runs into areas in a small buffer, which NextArea and NextAreas
// then hand out; a step served from the buffer is a handful of
// instructions instead of a descent through the levels. The buffer is
// trusted only while the bitmap is unchanged, or changed strictly behind
// the iterator's position (a job resetting the area it was just given);
// any other change makes the next step rebuild the walk from the position,
// in O(levels), and decode a small batch again. Batches grow while the
// bitmap stays quiet.
//
// An Iterator follows the goroutine-safety of its HBitmap: use it under the
// same lock as the writers (Set's DirtyIterator does that for you). Copies
// of an Iterator are independent (each has its own position and buffer).
type Iterator struct {
	h   *HBitmap
	pos int64 // next byte offset to examine

	// Decoded areas not yet returned: areas[ai:an], in stored bits, in
	// increasing order (areas[0] is the decoder's sentinel). open marks
	// the last one as a run that may continue past its end (the decoder
	// stopped inside a long run); fast excludes it: areas[ai:fast] are
	// served without further checks.
	ai, an int
	fast   int
	open   bool
	mod    uint64 // h.mod the areas and the walk state below are exact for
	areas  [areaCap]bitSpan

	// Walk state of the decoder, valid when ok. The stored words still to
	// decode, in order, are: word from>>6 from bit from when fresh; the set
	// bits of m1 (bits of level top-1 word s1); the words below the set
	// bits of m2 (bits of level top-2 word s2); the words below the words
	// queued in q[top-2], q[top-3], ... q[1].
	ok     bool
	fresh  bool
	from   uint64
	sum1   []uint64 // levels top-1 and top-2, when they exist
	sum2   []uint64
	m1, s1 uint64
	m2, s2 uint64
	top    int      // index of the stored level
	last   []uint64 // the stored level
	batch  int      // areas a decode aims for; grows while the state stays valid
	q      [maxLevels]wordQueue
}

// span is a dirty area [off, end) in bytes.
type span struct{ off, end int64 }

// bitSpan is a decoded dirty area [st, en) in stored bits.
type bitSpan struct{ st, en uint64 }

const (
	// maxLevels bounds the levels of an HBitmap: MaxBits = 2^41 bits
	// need 7.
	maxLevels = 8
	// areaCap is the area buffer's size (a power of two). One stored word
	// adds at most 32 areas, so a decode stops, after a word, once it
	// holds maxBatch areas.
	areaCap  = 64
	maxBatch = areaCap - 33
	// The decoder writes at most index maxBatch-1+32 < areaCap: never
	// over the sentinel at index 0 (a compile-time check).
	_ = uint(areaCap - 1 - (maxBatch - 1 + 32))
	// maxRunWords bounds the words one decode spends following a single
	// run; a longer run is handed out as an open area whose end NextArea
	// finds with a plain scan, limited by maxLen.
	maxRunWords = 64
	// queueCap is the capacity of one upper level's queue; decoding
	// writes four entries at a time, so a refill stops when fewer than
	// four slots are free.
	queueCap = 12
)

// wordQueue is one upper level's queue of word indices that may be
// non-empty: e[head:n], then the set bits of pend (bits of word src of the
// level above, not yet decoded).
type wordQueue struct {
	head, n uint8
	pend    uint64
	src     uint64
	e       [queueCap]uint64
}

// decode appends the indices of pend's set bits until pend is empty or the
// queue has fewer than four free slots. Four entries are written per step
// whatever pend holds and the count advances by the bits actually present,
// so a sparse word costs one well-predicted step.
func (q *wordQueue) decode() {
	m, n := q.pend, int(q.n)
	base := q.src << 6
	for m != 0 && n <= queueCap-4 {
		c := min(bits.OnesCount64(m), 4)
		e := q.e[n : n+4 : n+4]
		e[0] = base | uint64(bits.TrailingZeros64(m))
		m &= m - 1
		e[1] = base | uint64(bits.TrailingZeros64(m))
		m &= m - 1
		e[2] = base | uint64(bits.TrailingZeros64(m))
		m &= m - 1
		e[3] = base | uint64(bits.TrailingZeros64(m))
		m &= m - 1
		n += c
	}
	q.pend, q.n = m, uint8(n)
}

// Iterator returns an iterator positioned at byte offset from.
func (h *HBitmap) Iterator(from int64) Iterator {
	return Iterator{h: h, pos: max(from, 0)}
}

// MoveTo moves the iterator to byte offset off.
func (it *Iterator) MoveTo(off int64) {
	it.pos = max(off, 0)
	it.invalidate()
}

// Pos returns the offset the next search starts from.
func (it *Iterator) Pos() int64 { return it.pos }

// invalidate drops the decoded areas and the walk state.
func (it *Iterator) invalidate() {
	it.ok, it.ai, it.an, it.fast, it.open = false, 0, 0, 0, false
}

// NextArea returns the next dirty run (see HBitmap.NextDirtyArea) and
// advances past it. When none is left it returns ok false and moves the
// position to the end (Size).
func (it *Iterator) NextArea(maxLen int64) (off, n int64, ok bool) {
	h := it.h
	if i := it.ai; i < it.fast && it.mod == h.mod {
		a := &it.areas[i&(areaCap-1)]
		off = max(it.pos, int64(a.st<<(h.shift&63)))
		end := h.byteEnd(a.en)
		if n = end - off; maxLen <= 0 || n <= maxLen {
			it.ai = i + 1
			it.pos = end
			return off, n, true
		}
	}
	return it.nextArea(maxLen)
}

// NextAreas appends to dst the next dirty runs exactly as successive
// NextArea(maxLen) calls would return them, filling dst's spare capacity
// (or appending one area when there is none), and advances past them; a
// batch shorter than that means the walk reached the end for now, and the
// position stays after its last area. When no dirty run is left it
// appends nothing (returning dst, grown when it had no spare capacity) and
// moves the position to the end, as NextArea does. A job that queues copy
// requests in batches pays NextArea's per-call cost once per batch.
func (it *Iterator) NextAreas(dst []Area, maxLen int64) []Area {
	start, limit := len(dst), cap(dst)
	if limit == len(dst) {
		dst, limit = slices.Grow(dst, 1), len(dst)+1
	}
	h := it.h
	for len(dst) < limit {
		// Hand out decoded areas while they are exact and complete.
		if i := it.ai; it.mod == h.mod && i < it.fast {
			shift, nbits, size, pos := h.shift&63, h.nbits, h.size, it.pos
			out := dst[len(dst):min(limit, len(dst)+it.fast-i)]
			k := 0
			for ; k < len(out); k++ {
				a := &it.areas[(i+k)&(areaCap-1)]
				off := max(pos, int64(a.st<<shift))
				end := int64(a.en << shift)
				if a.en >= nbits {
					end = size
				}
				if maxLen > 0 && end-off > maxLen {
					break
				}
				out[k] = Area{off, end - off}
				pos = end
			}
			dst, it.pos, it.ai = dst[:len(dst)+k], pos, i+k
			if k == len(out) {
				continue
			}
		}
		p := it.pos
		off, n, ok := it.nextArea(maxLen)
		if !ok {
			if len(dst) > start {
				// Stay after the last area handed out, as after
				// the NextArea call that returned it: bits set
				// later between there and the end are found.
				it.pos = p
			}
			break
		}
		dst = append(dst, Area{off, n})
	}
	return dst
}

// nextArea is NextArea's general path: a change since the areas were
// decoded, an empty buffer, an area longer than maxLen or an open one.
func (it *Iterator) nextArea(maxLen int64) (off, n int64, ok bool) {
	a, open, ok := it.current()
	if !ok {
		return 0, 0, false
	}
	h := it.h
	off = max(it.pos, a.off)
	if open && (maxLen <= 0 || a.end-off <= maxLen) {
		// The run may go on past the decoded part: find its end with a
		// plain scan bounded by maxLen, then restart decoding after it.
		e := h.nextClear(uint64(a.end)>>h.shift, h.areaLimit(off, maxLen))
		n = h.areaLen(off, e, maxLen)
		it.pos = off + n
		it.invalidate()
		return off, n, true
	}
	n = a.end - off
	if maxLen > 0 && n > maxLen {
		n = maxLen
	} else {
		it.ai++
	}
	it.pos = off + n
	return off, n, true
}

// Next returns the offset of the next dirty group (its first byte, or the
// iterator position when that lies inside the group) and advances past the
// group. It returns -1, and moves the position to the end, when no dirty
// group remains.
func (it *Iterator) Next() int64 {
	a, _, ok := it.current()
	if !ok {
		return -1
	}
	h := it.h
	off := max(it.pos, a.off)
	end := h.byteEnd(uint64(off)>>h.shift + 1)
	if end >= a.end {
		// The last group of the area; an open area continues in the
		// next decode, which resumes right after it.
		it.ai++
	}
	it.pos = end
	return off
}

// current returns the area holding or following the position, decoding
// when needed, and whether it is open. ok is false (and the position
// moved to the end) when nothing at or after the position is dirty.
func (it *Iterator) current() (a span, open, ok bool) {
	h := it.h
	if it.mod != h.mod && !it.catchUp() {
		it.invalidate()
	}
	for {
		if it.pos >= h.size {
			it.pos = h.size
			return span{}, false, false
		}
		if !it.ok {
			it.rebuild(uint64(it.pos) >> h.shift)
		}
		if it.ai == it.an {
			if it.decode(); it.ai == it.an {
				it.pos = h.size
				return span{}, false, false
			}
		}
		b := it.areas[it.ai&(areaCap-1)]
		if a = (span{int64(b.st << h.shift), h.byteEnd(b.en)}); a.end > it.pos {
			return a, it.open && it.ai == it.an-1, true
		}
		it.ai++ // passed (the position moved by a partial step)
	}
}

// catchUp reports whether every change since the areas were decoded lies
// strictly before the group holding the position, so that the areas and
// the walk state (all at or after that group) are still exact; it then
// adopts the current mod.
func (it *Iterator) catchUp() bool {
	h := it.h
	if !it.ok || h.mod-it.mod > modLogLen {
		return false
	}
	b := uint64(it.pos) >> h.shift
	for k := it.mod + 1; k != h.mod+1; k++ {
		if h.modLog[k%modLogLen] >= b {
			return false
		}
	}
	it.mod = h.mod
	return true
}

// rebuild sets the walk state to start at stored bit b (< nbits) from the
// live levels, with an empty area buffer and a small first batch.
func (it *Iterator) rebuild(b uint64) {
	h := it.h
	top := len(h.levels) - 1
	wi := b >> 6
	it.top, it.last, it.mod, it.ok = top, h.levels[top], h.mod, true
	it.fresh, it.from = true, b
	it.ai, it.an, it.fast, it.open, it.batch = 0, 0, 0, false, 1
	it.m1, it.m2, it.sum1, it.sum2 = 0, 0, nil, nil
	if top >= 1 {
		it.sum1, it.s1 = h.levels[top-1], wi>>6
		it.m1 = it.sum1[it.s1] & (^uint64(0) << (wi & 63) << 1)
	}
	if top >= 2 {
		it.sum2, it.s2 = h.levels[top-2], wi>>12
		it.m2 = it.sum2[it.s2] & (^uint64(0) << (wi >> 6 & 63) << 1)
	}
	idx := wi >> 12 // index at level lv of the path word
	for lv := top - 2; lv >= 1; lv-- {
		q := &it.q[lv]
		q.head, q.n = 0, 0
		q.src = idx >> 6
		q.pend = h.levels[lv-1][idx>>6] & (^uint64(0) << (idx & 63) << 1)
		idx >>= 6
	}
}

// pop returns the next queued word of upper level lv (1 <= lv <= top-2).
func (it *Iterator) pop(lv int) (uint64, bool) {
	q := &it.q[lv&(maxLevels-1)]
	if q.head == q.n && !it.refill(lv) {
		return 0, false
	}
	v := q.e[q.head%queueCap]
	q.head++
	return v, true
}

// refill decodes the next words of upper level lv into its (empty) queue:
// the rest of the pending source word, then further source words taken from
// the queue above, until it is full or nothing is left.
func (it *Iterator) refill(lv int) bool {
	q := &it.q[lv&(maxLevels-1)]
	q.head, q.n = 0, 0
	above := it.h.levels[lv-1]
	for {
		if q.pend != 0 {
			if q.decode(); q.pend != 0 {
				break // full
			}
		}
		if lv == 1 {
			break // level 0 is a single word
		}
		j, ok := it.pop(lv - 1)
		if !ok {
			break
		}
		q.src, q.pend = j, above[j]
	}
	return q.n > 0
}

// nextUpper returns the next non-empty word of level top-2 after s2 and
// its index (0, 0 when none is left, or when level top-2 is the top).
func (it *Iterator) nextUpper() (m2, s2 uint64) {
	for it.top >= 3 {
		j, ok := it.pop(it.top - 2)
		if !ok {
			break
		}
		if m2 = it.sum2[j]; m2 != 0 {
			return m2, j
		}
	}
	return 0, 0
}

// decode fills the (empty) area buffer with the next dirty areas after the
// walk state: about it.batch of them, fewer at the end of the bitmap, and
// never stopping inside a run unless the run is longer than maxRunWords
// words (the area is then marked open and placed last).
func (it *Iterator) decode() {
	const none = ^uint64(0)
	last, sum1 := it.last, it.sum1
	areas := &it.areas
	// Runs go straight into the buffer, from index 1: a run that
	// continues the previous one extends it; areas[0] is a sentinel that
	// nothing continues.
	areas[0].en = none
	n := 1
	open := false
	m1, s1 := it.m1, it.s1
	fresh := it.fresh
	it.fresh = false
	for {
		// The next word: the fresh one (from bit from), else the next
		// one that may be dirty.
		var wi, w uint64
		if fresh {
			fresh = false
			wi = it.from >> 6
			w = last[wi] & maskFrom(it.from)
		} else {
			for m1 == 0 {
				if it.m2 == 0 {
					if it.m2, it.s2 = it.nextUpper(); it.m2 == 0 {
						goto end
					}
				}
				m2 := it.m2
				s1 = it.s2<<6 | uint64(bits.TrailingZeros64(m2))
				it.m2 = m2 & (m2 - 1)
				m1 = sum1[s1]
			}
			wi = s1<<6 | uint64(bits.TrailingZeros64(m1))
			m1 &= m1 - 1
			w = last[wi]
		}
		base := wi << 6
		// The usual word of a sparse bitmap holds a single run touching
		// neither end: it neither continues the previous area nor goes
		// on into the next word.
		if low := w & -w; w&(1|1<<63) == 0 && w != 0 && (w+low)&w == 0 {
			areas[n&(areaCap-1)] = bitSpan{base + uint64(bits.TrailingZeros64(w)), base + 64 - uint64(bits.LeadingZeros64(w))}
			if n++; n > it.batch {
				break
			}
		} else {
			for w != 0 {
				s := uint64(bits.TrailingZeros64(w))
				rest := ^w & (^uint64(0) << (s & 63))
				e := uint64(64)
				if rest != 0 {
					e = uint64(bits.TrailingZeros64(rest))
				}
				if a := &areas[(n-1)&(areaCap-1)]; a.en == base|s {
					a.en = base + e
				} else {
					areas[n&(areaCap-1)] = bitSpan{base | s, base + e}
					n++
				}
				if rest == 0 {
					break
				}
				w &= ^uint64(0) << (e & 63) // e < 64 here
			}
			// The last run goes on only if it reaches the end of this word
			// and the next word starts dirty.
			if a := &areas[(n-1)&(areaCap-1)]; n == 1 {
				// nothing yet (an empty word: reset since the summaries were read)
			} else if a.en < base+64 || wi+1 >= uint64(len(last)) || last[wi+1]&1 == 0 {
				if n > it.batch {
					break
				}
			} else if n > maxBatch || wi-a.st>>6 >= maxRunWords {
				open = true
				break
			}
		}
	}
end:
	it.m1, it.s1 = m1, s1
	it.ai, it.an, it.fast, it.open = 1, n, n, false
	if open {
		it.fast, it.open = n-1, true
	}
	if it.batch < maxBatch {
		it.batch = min(2*it.batch, maxBatch)
	}
}
