package bitmap

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// FuzzDeserialize feeds arbitrary bytes as serialized bitmap data (as read
// from a qcow2 bitmap cluster) at a fuzzed geometry and chunk. It must never
// panic, must refuse bad chunks with ErrInvalid, must keep every invariant,
// and must serialize the same bits back (bits past the end read as zero).
func FuzzDeserialize(f *testing.F) {
	qemuData, err := os.ReadFile("testdata/qemu-b512-cluster0-head.bin")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(int64(1<<30), uint8(0), int64(0), int64(1<<30), qemuData)
	f.Add(int64(4000*512+7), uint8(0), int64(0), int64(4000*512+7), qemuData)
	f.Add(int64(1<<20), uint8(3), int64(64*4096), int64(64*4096), qemuData[:8])
	f.Add(int64(100), uint8(0), int64(0), int64(100), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add(int64(1<<20), uint8(0), int64(512), int64(64*512), qemuData)
	f.Fuzz(func(t *testing.T, size int64, gbits uint8, off, n int64, data []byte) {
		g := int64(512) << (gbits % 8)
		size = max(size, 0) % (1 << 34)
		h, err := New(size, g)
		if err != nil {
			t.Fatal(err)
		}
		h.Set(size/3, size/5) // something to overwrite
		before := h.Clone()
		sz, serr := h.SerializationSize(off, n)
		err = h.DeserializePart(data, off, n)
		if serr != nil || int64(len(data)) < sz {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("bad chunk (%v, %d bytes of %d) accepted: %v", serr, len(data), sz, err)
			}
			if !h.Equal(before) {
				t.Fatal("refused chunk changed the bitmap")
			}
			return
		}
		if err != nil {
			t.Fatalf("DeserializePart: %v", err)
		}
		h.DeserializeFinish()
		if err := h.verify(); err != nil {
			t.Fatal(err)
		}
		out := make([]byte, sz)
		if err := h.SerializePart(out, off, n); err != nil {
			t.Fatal(err)
		}
		want := bytes.Clone(data[:sz])
		// Bits past the end of the device are dropped.
		first := uint64(off) / uint64(g)
		for j := uint64(0); j < uint64(sz)*8; j++ {
			if first+j >= h.nbits {
				want[j/8] &^= 1 << (j % 8)
			}
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("round trip differs")
		}
	})
}
