// Package bitmap implements dirty tracking for block devices: HBitmap, a
// hierarchical bitmap in the style of QEMU's util/hbitmap.c, and Set, the
// named dirty bitmaps of one device with QEMU's states and the successor
// life cycle used by incremental backup (block/dirty-bitmap.c).
//
// # HBitmap
//
// New(size, granularity) tracks a device of size bytes with one bit per
// aligned group of granularity bytes (a power of two >= 512). All offsets
// are bytes; ranges are clipped to the device and widened to whole groups.
// Count is O(1). NextDirty, NextDirtyArea and Iterator skip clean regions
// through summary levels (bit i of a summary level is set iff word i of the
// level below is non-zero), so walking the dirty areas of a mostly clean
// 1 TiB device costs per dirty area, not per terabyte. NextClean scans the
// stored bits only (summaries cannot tell "full"), as QEMU's next_zero.
//
// Differences from QEMU, all deliberate:
//   - The number of levels adapts to the size (4 for 1 TiB at 64 KiB rather
//     than a fixed 7), and the end of the top level is found by bounds, not
//     by a sentinel bit.
//   - Offsets out of range are clipped, never asserted: no method panics
//     on bad arguments; the serialization methods return ErrInvalid.
//   - Summaries and Count stay exact during deserialization (QEMU leaves
//     them stale until hbitmap_deserialize_finish), so a half-loaded bitmap
//     can be queried safely; DeserializeFinish just re-verifies.
//   - Iterators hold a position plus a small buffer of areas decoded ahead
//     in batches, which a change counter and a short log of recent changes
//     validate: they stay valid across any change, including Truncate, and
//     also return bits set ahead of them (QEMU's iterator misses those and
//     is invalidated by truncation). A job that resets each area it is
//     given keeps the buffer (the change lies behind the position).
//     Iterator.NextAreas hands out a batch per call; AppendDirtyAreas uses
//     it.
//
// Why plain []uint64 levels rather than github.com/bits-and-blooms/bitset:
// the hot paths (Set/Reset of one write, the iterator's batch decoder)
// need word-level access with masks and zero-transition detection on
// several levels at once; bitset's API works bit by bit or by whole sets,
// grows implicitly, and would add a call and bounds check per level. All
// levels live in one allocation. bitset is used as the flat baseline in the
// benchmarks (bench/bitmap_bench_test.go).
//
// Memory: the summary levels add 1/64 + 1/4096 + ... ≈ 1.6 % to the flat
// bitmap (for 1 TiB at 64 KiB: 2 MiB stored + 32.5 KiB of summaries).
//
// # Serialization
//
// SerializePart/DeserializePart move the stored bits as QEMU's hbitmap
// serialization does and as the qcow2 bitmaps extension stores them: a
// little-endian bit string (bit j covers bytes [j×g, (j+1)×g) and is bit
// j%8 of byte j/8) in 64-bit words; chunks are aligned to
// SerializationAlign() = 64×g bytes of the device except the last one. Bits
// past the device end are always zero. A meta bitmap (CreateMeta) records
// which serialized chunks changed, for incremental persistence and
// migration.
//
// # Dirty bitmaps
//
// Set holds the named (and anonymous) bitmaps of one device. MarkDirty is
// the write hook: it sets the written range in every recording bitmap.
// Each bitmap is active, disabled, frozen (has a successor), locked (busy)
// or inconsistent; Info returns the schema's BlockDirtyInfo list. The backup
// life cycle is CreateSuccessor (freeze; new writes go to the successor),
// then Abdicate on success (keep only new writes) or Reclaim on failure
// (merge them back). Operations a state forbids fail with a *StateError
// wrapping ErrFrozen, ErrBusy, ErrInconsistent, ErrReadOnly, ...
//
// # Goroutine safety
//
// HBitmap and Iterator are not safe for concurrent use (read-only methods
// may run concurrently with each other). Set, DirtyBitmap and DirtyIterator
// are safe: all bitmaps of a Set share one mutex, MarkDirty updates every
// recording bitmap inside it, and iterators lock per step, so writers and
// jobs can run concurrently and no dirty bit is lost. AddOptions,
// BlockDirtyInfo, Status and StateError are plain values.
package bitmap
