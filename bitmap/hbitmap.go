package bitmap

import (
	"math/bits"
)

const (
	// MinGranularity is the smallest granularity New accepts (bytes).
	MinGranularity = 512
	// MaxGranularity is the largest granularity New accepts (bytes); it
	// keeps SerializationAlign (64 × granularity) within int64.
	MaxGranularity = 1 << 56
	// MaxBits is the largest number of stored bits (groups) a bitmap may
	// have: 2^41 like QEMU on 64-bit hosts (256 GiB of bitmap memory).
	MaxBits = 1 << 41
)

// HBitmap is a hierarchical bitmap over a device of Size bytes. One stored
// bit covers an aligned group of Granularity bytes. Above the stored bits
// ("the last level") sit summary levels: bit i of a summary level is set iff
// word i of the level below is non-zero, up to a single top word. Finding the
// next dirty group therefore skips 64, 4096, 262144... clean words per step,
// and Count is O(1).
//
// Byte ranges passed to Set, Reset and the queries are clipped to [0, Size);
// a range touching part of a group covers the whole group (Reset of a partial
// group therefore also forgets the untouched part — reset only ranges aligned
// to the granularity).
//
// An HBitmap is not safe for concurrent use: callers serialise access (the
// dirty-bitmap Set does so with its mutex). Read-only methods may run
// concurrently with each other.
type HBitmap struct {
	size   int64      // bytes covered
	shift  uint       // log2(granularity)
	nbits  uint64     // stored bits = ceil(size / granularity)
	levels [][]uint64 // levels[0] is the single top word, levels[len-1] the stored bits
	count  uint64     // set bits in the last level
	meta   *HBitmap   // optional change tracker, see CreateMeta
	// mod counts the changes to the stored bits; modLog[k%modLogLen] holds
	// the highest stored bit change k may have touched. Iterators use them
	// to tell whether the areas they decoded ahead are still exact.
	mod    uint64
	modLog [modLogLen]uint64
}

// New returns an empty bitmap for a device of size bytes at granularity
// bytes per bit. granularity must be a power of two in [MinGranularity,
// MaxGranularity]; size must be >= 0 and need at most MaxBits bits.
func New(size, granularity int64) (*HBitmap, error) {
	shift, err := checkGranularity(granularity)
	if err != nil {
		return nil, err
	}
	nbits, err := bitsFor(size, shift)
	if err != nil {
		return nil, err
	}
	h := &HBitmap{size: size, shift: shift, nbits: nbits}
	h.levels = allocLevels(nbits)
	return h, nil
}

func checkGranularity(g int64) (uint, error) {
	if g < MinGranularity || g > MaxGranularity || g&(g-1) != 0 {
		return 0, invalidf("granularity %d is not a power of two in [%d, 2^56]", g, MinGranularity)
	}
	return uint(bits.TrailingZeros64(uint64(g))), nil
}

func bitsFor(size int64, shift uint) (uint64, error) {
	if size < 0 {
		return 0, invalidf("negative size %d", size)
	}
	n := uint64(size) >> shift
	if uint64(size)&(1<<shift-1) != 0 {
		n++
	}
	if n > MaxBits {
		return 0, ErrTooLarge
	}
	return n, nil
}

// levelSizes returns the word count of every level, top first.
func levelSizes(nbits uint64) []int {
	n := max((nbits+63)/64, 1)
	sizes := []int{int(n)}
	for n > 1 {
		n = (n + 63) / 64
		sizes = append(sizes, int(n))
	}
	for i, j := 0, len(sizes)-1; i < j; i, j = i+1, j-1 {
		sizes[i], sizes[j] = sizes[j], sizes[i]
	}
	return sizes
}

func allocLevels(nbits uint64) [][]uint64 {
	sizes := levelSizes(nbits)
	total := 0
	for _, s := range sizes {
		total += s
	}
	// One backing array keeps the levels together in memory.
	backing := make([]uint64, total)
	levels := make([][]uint64, len(sizes))
	off := 0
	for i, s := range sizes {
		levels[i] = backing[off : off+s : off+s]
		off += s
	}
	return levels
}

// Size returns the number of bytes the bitmap covers.
func (h *HBitmap) Size() int64 { return h.size }

// Granularity returns the bytes covered by one bit.
func (h *HBitmap) Granularity() int64 { return 1 << h.shift }

// Count returns the number of dirty bytes: dirty groups × granularity, as
// QEMU reports it (a dirty partial last group counts whole). O(1).
func (h *HBitmap) Count() int64 { return int64(h.count << h.shift) }

// Empty reports whether no bit is set.
func (h *HBitmap) Empty() bool { return h.count == 0 }

// last returns the stored-bit level.
func (h *HBitmap) last() []uint64 { return h.levels[len(h.levels)-1] }

// bitRange clips the byte range [off, off+n) to the device and returns the
// first and last stored bit it touches.
func (h *HBitmap) bitRange(off, n int64) (first, last uint64, ok bool) {
	if n <= 0 || off >= h.size || h.size <= 0 {
		return 0, 0, false
	}
	if off < 0 {
		if off+n <= 0 { // (n > 0: no overflow, unlike -off for MinInt64)
			return 0, 0, false
		}
		n += off
		off = 0
	}
	end := h.size
	if n < h.size-off {
		end = off + n
	}
	return uint64(off) >> h.shift, uint64(end-1) >> h.shift, true
}

// Get reports whether the group containing byte off is dirty. Offsets
// outside [0, Size) are clean.
func (h *HBitmap) Get(off int64) bool {
	if off < 0 || off >= h.size {
		return false
	}
	b := uint64(off) >> h.shift
	return h.last()[b>>6]&(1<<(b&63)) != 0
}

// Set marks the groups touching [off, off+n) dirty. O(n/granularity/64).
func (h *HBitmap) Set(off, n int64) {
	first, last, ok := h.bitRange(off, n)
	if !ok {
		return
	}
	if h.setBits(first, last) && h.meta != nil {
		h.markMeta(first, last)
	}
}

// Reset marks the groups touching [off, off+n) clean.
func (h *HBitmap) Reset(off, n int64) {
	first, last, ok := h.bitRange(off, n)
	if !ok {
		return
	}
	if h.resetBits(first, last) && h.meta != nil {
		h.markMeta(first, last)
	}
}

// ResetAll marks the whole bitmap clean. O(Size/granularity/64).
func (h *HBitmap) ResetAll() {
	if h.count == 0 {
		return
	}
	for _, l := range h.levels {
		clear(l)
	}
	h.count = 0
	h.changed(allBits)
	if h.meta != nil && h.nbits > 0 {
		h.markMeta(0, h.nbits-1)
	}
}

// maskFrom returns bits [lo, 63]; maskTo bits [0, hi]; lo, hi in [0, 63].
func maskFrom(lo uint64) uint64 { return ^uint64(0) << (lo & 63) }
func maskTo(hi uint64) uint64   { return ^uint64(0) >> (63 - hi&63) }

// orRange sets bits [first, last] of words. It returns how many bits were
// newly set and whether any touched word was zero before (its summary bit
// above must then be set).
func orRange(words []uint64, first, last uint64) (added int, fromZero bool) {
	fw, lw := first>>6, last>>6
	if fw == lw {
		return orWord(words, first, last)
	}
	old := words[fw]
	m := maskFrom(first)
	added = bits.OnesCount64(m &^ old)
	words[fw] = old | m
	fromZero = old == 0
	mid := words[fw+1 : lw]
	for i, o := range mid {
		added += 64 - bits.OnesCount64(o)
		fromZero = fromZero || o == 0
		mid[i] = ^uint64(0)
	}
	old = words[lw]
	m = maskTo(last)
	added += bits.OnesCount64(m &^ old)
	words[lw] = old | m
	return added, fromZero || old == 0
}

// orWord is orRange for first and last in the same word (small enough to
// inline on the Set hot path).
func orWord(words []uint64, first, last uint64) (added int, fromZero bool) {
	m := maskFrom(first) & maskTo(last)
	old := words[first>>6]
	words[first>>6] = old | m
	return bits.OnesCount64(m &^ old), old == 0
}

// clearRange clears bits [first, last] of words. It returns how many set
// bits were cleared, whether a touched word became zero, and the range of
// word indices [upFirst, upLast] that are now zero — the summary bits above
// that may be cleared (empty when upFirst > upLast).
func clearRange(words []uint64, first, last uint64) (removed int, toZero bool, upFirst, upLast uint64) {
	fw, lw := first>>6, last>>6
	if fw == lw {
		return clearWord(words, first, last)
	}
	upFirst, upLast = fw, lw
	old := words[fw]
	nw := old &^ maskFrom(first)
	removed = bits.OnesCount64(old ^ nw)
	words[fw] = nw
	toZero = nw == 0 && old != 0
	if nw != 0 {
		upFirst++
	}
	mid := words[fw+1 : lw]
	for i, o := range mid {
		if o != 0 {
			removed += bits.OnesCount64(o)
			toZero = true
			mid[i] = 0
		}
	}
	old = words[lw]
	nw = old &^ maskTo(last)
	removed += bits.OnesCount64(old ^ nw)
	words[lw] = nw
	toZero = toZero || (nw == 0 && old != 0)
	if nw != 0 {
		upLast--
	}
	return removed, toZero, upFirst, upLast
}

// clearWord is clearRange for first and last in the same word (small
// enough to inline on the Reset hot path).
func clearWord(words []uint64, first, last uint64) (removed int, toZero bool, upFirst, upLast uint64) {
	w := first >> 6
	old := words[w]
	nw := old &^ (maskFrom(first) & maskTo(last))
	words[w] = nw
	if nw != 0 {
		return bits.OnesCount64(old ^ nw), false, w + 1, w
	}
	return bits.OnesCount64(old), old != 0, w, w
}

// setBits sets stored bits [first, last] and propagates to the summaries:
// a summary bit is set when its word below went from zero to non-zero. It
// reports whether any stored bit changed.
func (h *HBitmap) setBits(first, last uint64) bool {
	lv := len(h.levels) - 1
	var added int
	var fromZero bool
	if first>>6 == last>>6 { // the common small write, inlined
		added, fromZero = orWord(h.levels[lv], first, last)
	} else {
		added, fromZero = orRange(h.levels[lv], first, last)
	}
	h.count += uint64(added)
	if added != 0 {
		h.changed(last)
	}
	if fromZero && lv > 0 {
		for fromZero && lv > 0 {
			first, last, lv = first>>6, last>>6, lv-1
			if first>>6 == last>>6 {
				_, fromZero = orWord(h.levels[lv], first, last)
			} else {
				_, fromZero = orRange(h.levels[lv], first, last)
			}
		}
	}
	return added != 0
}

// resetBits clears stored bits [first, last] and propagates to the
// summaries: a summary bit is cleared only when its word below became
// entirely zero. It reports whether any stored bit changed.
func (h *HBitmap) resetBits(first, last uint64) bool {
	lv := len(h.levels) - 1
	var removed int
	var toZero bool
	var upFirst, upLast uint64
	if first>>6 == last>>6 { // the common small write, inlined
		removed, toZero, upFirst, upLast = clearWord(h.levels[lv], first, last)
	} else {
		removed, toZero, upFirst, upLast = clearRange(h.levels[lv], first, last)
	}
	h.count -= uint64(removed)
	if removed != 0 {
		h.changed(last)
	}
	if toZero && lv > 0 && upFirst <= upLast {
		for toZero && lv > 0 && upFirst <= upLast {
			lv--
			if upFirst>>6 == upLast>>6 {
				_, toZero, upFirst, upLast = clearWord(h.levels[lv], upFirst, upLast)
			} else {
				_, toZero, upFirst, upLast = clearRange(h.levels[lv], upFirst, upLast)
			}
		}
	}
	return removed != 0
}

// rebuildSummary recomputes the summary bits for the stored words
// [fw, lw] (after they were overwritten directly) at every level above.
func (h *HBitmap) rebuildSummary(fw, lw uint64) {
	h.changed(allBits)
	for lv := len(h.levels) - 1; lv > 0; lv-- {
		below := h.levels[lv]
		above := h.levels[lv-1]
		for i := fw; i <= lw; i++ {
			if below[i] != 0 {
				above[i>>6] |= 1 << (i & 63)
			} else {
				above[i>>6] &^= 1 << (i & 63)
			}
		}
		fw, lw = fw>>6, lw>>6
	}
}

// modLogLen is how many recent changes an HBitmap remembers for its
// iterators.
const modLogLen = 4

// allBits is the change-log entry of a change that may touch any bit.
const allBits = ^uint64(0)

// changed records a change to the stored bits, the highest touched being
// last.
func (h *HBitmap) changed(last uint64) {
	h.mod++
	h.modLog[h.mod%modLogLen] = last
}

// recount recomputes count from the stored words.
func (h *HBitmap) recount() {
	var c uint64
	for _, w := range h.last() {
		c += uint64(bits.OnesCount64(w))
	}
	h.count = c
}

// Equal reports whether h and o have the same size, granularity and bits.
func (h *HBitmap) Equal(o *HBitmap) bool {
	if h.size != o.size || h.shift != o.shift || h.count != o.count {
		return false
	}
	a, b := h.last(), o.last()
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Clone returns an independent copy of h (without its meta bitmap).
func (h *HBitmap) Clone() *HBitmap {
	c := &HBitmap{size: h.size, shift: h.shift, nbits: h.nbits, count: h.count}
	c.levels = allocLevels(h.nbits)
	for i := range h.levels {
		copy(c.levels[i], h.levels[i])
	}
	return c
}

// MemoryBytes returns the bytes used by all levels; FlatBytes the bytes a
// flat bitmap of the same bits needs (the stored level alone).
func (h *HBitmap) MemoryBytes() int64 {
	var n int64
	for _, l := range h.levels {
		n += int64(len(l)) * 8
	}
	return n
}

// FlatBytes returns the size of the stored level alone: what a flat bitmap
// of the same bits needs.
func (h *HBitmap) FlatBytes() int64 { return int64(len(h.last())) * 8 }

// Levels returns the number of levels including the stored one.
func (h *HBitmap) Levels() int { return len(h.levels) }
