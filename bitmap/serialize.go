package bitmap

import (
	"encoding/binary"
	"math/bits"
)

// Serialization: the stored bits as a little-endian bit string — bit j
// (covering bytes [j×granularity, (j+1)×granularity)) is bit j%8 of byte
// j/8 — written and read in little-endian 64-bit words. That is QEMU's
// hbitmap serialization and the data layout of qcow2's bitmaps extension,
// so a qcow2 bitmap cluster can be fed straight to DeserializePart and
// SerializePart output written straight into one. Bits past the end of the
// device are always zero, as qcow2 requires.
//
// Byte ranges [off, off+n) name the device bytes a chunk covers. off must be
// a multiple of SerializationAlign; so must n, unless the chunk reaches the
// last group of the bitmap. Chunks are whole 64-bit words: a chunk's size is
// SerializationSize(off, n) bytes.

// SerializationAlign returns the alignment of serialization chunks in
// device bytes: 64 × granularity.
func (h *HBitmap) SerializationAlign() int64 { return 64 << h.shift }

// chunkWords validates a chunk and returns its word range [fw, fw+nw).
func (h *HBitmap) chunkWords(off, n int64) (fw, nw uint64, err error) {
	if n == 0 {
		return 0, 0, nil
	}
	align := h.SerializationAlign()
	if off < 0 || n < 0 || off%align != 0 {
		return 0, 0, invalidf("serialization chunk at %d: offset not a multiple of %d", off, align)
	}
	last := uint64(off+n-1) >> h.shift
	if off+n < off || last >= h.nbits {
		return 0, 0, invalidf("serialization chunk [%d, +%d) beyond bitmap end %d", off, n, h.size)
	}
	if last != h.nbits-1 && n%align != 0 {
		return 0, 0, invalidf("serialization chunk [%d, +%d): length not a multiple of %d", off, n, align)
	}
	fw = uint64(off) >> h.shift >> 6
	return fw, last>>6 - fw + 1, nil
}

// SerializationSize returns the size in bytes of the serialized chunk
// covering [off, off+n).
func (h *HBitmap) SerializationSize(off, n int64) (int64, error) {
	_, nw, err := h.chunkWords(off, n)
	return int64(nw) * 8, err
}

// SerializationCoverage returns the device bytes covered by a serialized
// chunk of chunkBytes bytes (a multiple of 8), e.g. one qcow2 cluster.
func (h *HBitmap) SerializationCoverage(chunkBytes int64) int64 {
	return chunkBytes * 8 << h.shift
}

// SerializePart writes the chunk covering [off, off+n) into buf, which must
// hold SerializationSize(off, n) bytes.
func (h *HBitmap) SerializePart(buf []byte, off, n int64) error {
	fw, nw, err := h.chunkWords(off, n)
	if err != nil {
		return err
	}
	if uint64(len(buf)) < nw*8 {
		return invalidf("serialization buffer of %d bytes, need %d", len(buf), nw*8)
	}
	for i, w := range h.last()[fw : fw+nw] {
		binary.LittleEndian.PutUint64(buf[i*8:], w)
	}
	return nil
}

// DeserializePart loads the chunk covering [off, off+n) from buf (which
// must hold SerializationSize(off, n) bytes). Bits past the device end are
// ignored. Unlike QEMU, summaries and Count are kept exact after every
// chunk; DeserializeFinish is still provided for QEMU-shaped callers.
func (h *HBitmap) DeserializePart(buf []byte, off, n int64) error {
	fw, nw, err := h.chunkWords(off, n)
	if err != nil {
		return err
	}
	if uint64(len(buf)) < nw*8 {
		return invalidf("deserialization buffer of %d bytes, need %d", len(buf), nw*8)
	}
	if nw == 0 {
		return nil
	}
	words := h.last()[fw : fw+nw]
	for i := range words {
		h.storeWord(fw+uint64(i), binary.LittleEndian.Uint64(buf[i*8:]))
	}
	h.rebuildSummary(fw, fw+nw-1)
	return nil
}

// DeserializeZeroes clears the chunk covering [off, off+n).
func (h *HBitmap) DeserializeZeroes(off, n int64) error { return h.fillChunk(off, n, 0) }

// DeserializeOnes sets every bit of the chunk covering [off, off+n).
func (h *HBitmap) DeserializeOnes(off, n int64) error { return h.fillChunk(off, n, ^uint64(0)) }

func (h *HBitmap) fillChunk(off, n int64, v uint64) error {
	fw, nw, err := h.chunkWords(off, n)
	if err != nil || nw == 0 {
		return err
	}
	for i := fw; i < fw+nw; i++ {
		h.storeWord(i, v)
	}
	h.rebuildSummary(fw, fw+nw-1)
	return nil
}

// storeWord replaces stored word i (masking bits past the end) and keeps
// count exact; the caller rebuilds the summaries.
func (h *HBitmap) storeWord(i, v uint64) {
	if end := (i + 1) << 6; end > h.nbits {
		if i<<6 >= h.nbits {
			v = 0
		} else {
			v &= maskTo(h.nbits&63 - 1)
		}
	}
	words := h.last()
	old := words[i]
	h.count += uint64(bits.OnesCount64(v))
	h.count -= uint64(bits.OnesCount64(old))
	words[i] = v
}

// DeserializeFinish completes a deserialization. The summaries and Count
// are already exact after every DeserializePart/Zeroes/Ones, so this only
// re-verifies them (O(Size/granularity/64)); it exists so QEMU-shaped
// code ports one to one.
func (h *HBitmap) DeserializeFinish() {
	h.rebuildSummary(0, uint64(len(h.last())-1))
	h.recount()
}
