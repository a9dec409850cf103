package blockio

import (
	"bytes"
	"encoding/binary"
)

// zeroBuf is a shared read-only buffer of zeros used by fallbacks.
var zeroBuf = make([]byte, 1<<20)

// Discard deallocates [off, off+n) when dev implements Discarder. A device
// without the capability ignores the request (discard is advisory); the
// range is still validated.
func Discard(dev Device, off, n int64) error {
	if d, ok := dev.(Discarder); ok {
		return d.Discard(off, n)
	}
	return CheckRange("discard", off, n, dev.Size())
}

// WriteZeroes makes [off, off+n) read as zeros, using the ZeroWriter
// capability when present and plain writes of zeros otherwise.
func WriteZeroes(dev Device, off, n int64, mayUnmap bool) error {
	if z, ok := dev.(ZeroWriter); ok {
		return z.WriteZeroes(off, n, mayUnmap)
	}
	if err := CheckRange("write zeroes", off, n, dev.Size()); err != nil {
		return err
	}
	for n > 0 {
		c := min(n, int64(len(zeroBuf)))
		if _, err := dev.WriteAt(zeroBuf[:c], off); err != nil {
			return err
		}
		off += c
		n -= c
	}
	return nil
}

// BlockStatus reports the extent at off using the StatusReporter
// capability when present; otherwise the whole range is reported as
// allocated data at depth 0 with an unknown host offset.
func BlockStatus(dev Device, off, n int64) (Extent, error) {
	if s, ok := dev.(StatusReporter); ok {
		return s.BlockStatus(off, n)
	}
	if err := CheckRange("block status", off, n, dev.Size()); err != nil {
		return Extent{}, err
	}
	return Extent{Start: off, Length: n, Data: true, Allocated: true, Offset: -1}, nil
}

// Truncate resizes dev when it implements Truncater, and fails with an
// error wrapping ErrUnsupported otherwise.
func Truncate(dev Device, size int64, prealloc Prealloc) error {
	if t, ok := dev.(Truncater); ok {
		return t.Truncate(size, prealloc)
	}
	return &UnsupportedError{Feature: "resizing this device"}
}

// zeroBlock is compared against by IsZero; small enough to stay in the L1
// cache next to the data being checked.
var zeroBlock [4096]byte

// IsZero reports whether every byte of p is zero. It is on the hot path
// of image conversion (zero detection of every buffer copied), so it tests
// the first word first (data rarely starts with zeros) and then compares p
// against a block of zeros with bytes.Equal, whose vectorised assembly in
// the standard library checks 32 or 64 bytes per step — about twice the
// speed of a loop over 64-bit words and ten times a byte loop.
func IsZero(p []byte) bool {
	if len(p) >= 8 && binary.LittleEndian.Uint64(p) != 0 {
		return false
	}
	for len(p) > len(zeroBlock) {
		if !bytes.Equal(p[:len(zeroBlock)], zeroBlock[:]) {
			return false
		}
		p = p[len(zeroBlock):]
	}
	return bytes.Equal(p, zeroBlock[:len(p)])
}
