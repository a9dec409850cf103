package bitmap

import (
	"testing"

	"github.com/bits-and-blooms/bitset"
)

// TestMemoryOverhead checks that the summary levels add at most 5 % to a
// flat bitset of the same bits (for bitmaps of at least 4096 bits; smaller
// ones add at most two words).
func TestMemoryOverhead(t *testing.T) {
	cases := []struct{ size, gran int64 }{
		{1 << 40, 64 << 10}, // the 1 TiB at 64 KiB
		{1 << 40, 512},
		{1 << 44, 64 << 10},
		{4097 * 512, 512}, // worst case just above one summary word
		{262145 * 512, 512},
		{100 << 30, 4096},
		{65 * 512, 512},
		{512, 512},
	}
	for _, c := range cases {
		h, err := New(c.size, c.gran)
		if err != nil {
			t.Fatal(err)
		}
		nbits := uint(h.nbits)
		flat := int64(len(bitset.New(nbits).Words())) * 8
		if flat != h.FlatBytes() {
			t.Fatalf("flat bytes %d, bitset %d", h.FlatBytes(), flat)
		}
		extra := h.MemoryBytes() - flat
		pct := 100 * float64(extra) / float64(flat)
		t.Logf("size %d gran %d: %d levels, flat %d B, summaries %d B (%.2f %%)", c.size, c.gran, h.Levels(), flat, extra, pct)
		if nbits >= 4096 && pct > 5 {
			t.Errorf("summaries add %.2f %% over the flat bitset", pct)
		}
		if nbits < 4096 && extra > 16 {
			t.Errorf("summaries of a small bitmap add %d bytes", extra)
		}
	}
}
