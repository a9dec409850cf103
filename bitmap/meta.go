package bitmap

import "fmt"

// CreateMeta attaches and returns a meta bitmap: an HBitmap over the same
// bytes whose one bit covers chunkBytes bytes of h's serialized form
// (chunkBytes × 8 groups of h). From now on every Set, Reset, ResetAll,
// Merge or Truncate of h that actually changes a bit marks the covering
// meta range dirty ("changed ⇒ marked"; a marked chunk may be unchanged).
// Deserialization does not mark. Callers consume the meta bitmap by
// serializing the marked chunks and Resetting them in the meta bitmap.
//
// chunkBytes must be a power of two; h may have only one meta bitmap.
func (h *HBitmap) CreateMeta(chunkBytes int64) (*HBitmap, error) {
	if h.meta != nil {
		return nil, fmt.Errorf("%w: bitmap already has a meta bitmap", ErrExists)
	}
	if chunkBytes <= 0 || chunkBytes&(chunkBytes-1) != 0 || chunkBytes > MaxGranularity>>3 {
		return nil, invalidf("meta chunk size %d is not a power of two", chunkBytes)
	}
	g := h.Granularity()
	if g > MaxGranularity/(chunkBytes*8) {
		return nil, invalidf("meta granularity %d×%d×8 exceeds 2^56", g, chunkBytes)
	}
	m, err := New(h.size, g*chunkBytes*8)
	if err != nil {
		return nil, err
	}
	h.meta = m
	return m, nil
}

// Meta returns the meta bitmap, or nil.
func (h *HBitmap) Meta() *HBitmap { return h.meta }

// FreeMeta detaches the meta bitmap.
func (h *HBitmap) FreeMeta() { h.meta = nil }

// markMeta marks the bytes of stored bits [first, last] in the meta bitmap.
func (h *HBitmap) markMeta(first, last uint64) {
	off := int64(first << h.shift)
	n := h.size - off
	if last+1 < h.nbits {
		n = int64((last+1)<<h.shift) - off
	}
	h.meta.Set(off, n)
}

// markMetaWords marks stored words [fw, lw].
func (h *HBitmap) markMetaWords(fw, lw uint64) {
	if h.meta != nil {
		h.markMeta(fw<<6, min(lw<<6|63, h.nbits-1))
	}
}
