// Package blocktest is the conformance suite every blockio.Device
// implementation runs.
//
// A package tests its device with one call:
//
//	func TestConformance(t *testing.T) {
//		blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
//			return blockio.NewMem(size)
//		}, blocktest.Options{})
//	}
//
// Run checks read-after-write (aligned, unaligned, across sector and
// cluster boundaries) against a model, concurrent writers at random
// disjoint offsets against a model, overlapping concurrent writes for
// sector atomicity, ErrOutOfRange for requests outside the device and
// negative offsets, zero-length requests, agreement between WriteZeroes,
// Discard, BlockStatus and the data, Truncate when supported, errors (not
// panics) after Close, and, when Options.OnBase is set, Flush durability
// under the faultio crash simulator. All randomness is seeded.
package blocktest
