package bitmap

import "slices"

// Area is one run of dirty bytes: [Off, Off+Len).
type Area struct {
	Off, Len int64
}

// ForEachDirtyArea calls fn for every dirty area at or after byte offset
// from, in increasing order, until fn returns false. The areas are those an
// Iterator positioned at from returns with NextArea(maxLen): clipped to
// Size, the first starting no earlier than from, and, when maxLen > 0, a
// longer run split into consecutive pieces of at most maxLen bytes.
//
// It runs an Iterator, so fn may change h (Reset the area it was given,
// Set bits ahead or behind, Truncate) with the Iterator's rules: bits set
// ahead of the walk are visited, bits set behind it are not. It follows
// h's goroutine safety (callers hold the same lock as the writers).
func (h *HBitmap) ForEachDirtyArea(from, maxLen int64, fn func(off, n int64) bool) {
	it := h.Iterator(from)
	for {
		off, n, ok := it.NextArea(maxLen)
		if !ok || !fn(off, n) {
			return
		}
	}
}

// AppendDirtyAreas appends to dst the areas ForEachDirtyArea(from, maxLen)
// visits and returns the extended slice. It decodes them in batches
// (Iterator.NextAreas), without a call per area.
func (h *HBitmap) AppendDirtyAreas(dst []Area, from, maxLen int64) []Area {
	it := h.Iterator(from)
	for {
		if cap(dst)-len(dst) < 64 {
			dst = slices.Grow(dst, max(64, len(dst)))
		}
		n := len(dst)
		if dst = it.NextAreas(dst, maxLen); len(dst) == n {
			return dst
		}
	}
}
