package bitmap

import (
	"fmt"
	"math/bits"
)

// Merge ORs other into h (h |= other); other is not modified.
//
// Both must cover the same Size (ErrSizeMismatch otherwise). With equal
// granularities every level is ORed word by word: O(Size/granularity/64).
// With different granularities the merge is sparse: each dirty run of other
// is Set into h, rounding outwards to h's groups, so h may become dirtier
// than other but never loses a dirty byte; cost grows with other's dirty
// runs. Merging a bitmap into itself is a no-op.
func (h *HBitmap) Merge(other *HBitmap) error {
	if other == nil || other == h {
		return nil
	}
	if h.size != other.size {
		return fmt.Errorf("%w: merge %d-byte bitmap into %d-byte bitmap", ErrSizeMismatch, other.size, h.size)
	}
	if other.count == 0 {
		return nil
	}
	if h.shift != other.shift {
		for off := int64(0); ; {
			o, n, ok := other.NextDirtyArea(off, 0)
			if !ok {
				return nil
			}
			h.Set(o, n)
			off = o + n
		}
	}
	dst, src := h.last(), other.last()
	runStart := -1
	for i, s := range src {
		old := dst[i]
		if nw := old | s; nw != old {
			h.count += uint64(bits.OnesCount64(nw &^ old))
			dst[i] = nw
			if runStart < 0 {
				runStart = i
			}
		} else if runStart >= 0 {
			h.markMetaWords(uint64(runStart), uint64(i-1))
			runStart = -1
		}
	}
	if runStart >= 0 {
		h.markMetaWords(uint64(runStart), uint64(len(src)-1))
	}
	h.changed(allBits)
	for lv := 0; lv < len(h.levels)-1; lv++ {
		d, s := h.levels[lv], other.levels[lv]
		for i := range d {
			d[i] |= s[i]
		}
	}
	return nil
}

// Truncate resizes the bitmap to newSize bytes. Groups wholly beyond the new
// end are dropped (a shrink then a grow leaves them clean); new groups are
// clean. Iterators stay valid. The meta bitmap, if any, is resized too.
// O(Size/granularity/64).
func (h *HBitmap) Truncate(newSize int64) error {
	nbits, err := bitsFor(newSize, h.shift)
	if err != nil {
		return err
	}
	if h.meta != nil {
		if err := h.meta.Truncate(newSize); err != nil {
			return err
		}
	}
	h.size = newSize
	h.changed(allBits) // iterators clip their areas to the size
	if nbits == h.nbits {
		return nil
	}
	levels := allocLevels(nbits)
	nl := levels[len(levels)-1]
	copy(nl, h.last())
	if nbits < h.nbits && nbits&63 != 0 {
		nl[nbits>>6] &= maskTo(nbits&63 - 1)
	}
	if nbits == 0 {
		nl[0] = 0
	}
	h.levels = levels
	h.changed(allBits)
	h.nbits = nbits
	h.rebuildSummary(0, uint64(len(nl)-1))
	h.recount()
	return nil
}
