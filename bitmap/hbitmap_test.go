package bitmap

import (
	"errors"
	"math"
	"testing"
)

func TestNewValidation(t *testing.T) {
	for _, c := range []struct {
		size, gran int64
		err        error
	}{
		{1 << 30, 0, ErrInvalid},
		{1 << 30, 256, ErrInvalid},
		{1 << 30, 1000, ErrInvalid},
		{1 << 30, -512, ErrInvalid},
		{1 << 30, 1 << 57, ErrInvalid},
		{-1, 512, ErrInvalid},
		{1 << 62, 512, ErrTooLarge},
		{MaxBits*512 + 1, 512, ErrTooLarge},
		{0, 512, nil},
		{1<<63 - 1, 1 << 56, nil},
	} {
		h, err := New(c.size, c.gran)
		if !errors.Is(err, c.err) || (err == nil) != (h != nil) {
			t.Errorf("New(%d, %d) = %v, want %v", c.size, c.gran, err, c.err)
		}
	}
	// Ranges starting at the most negative offset clip instead of
	// overflowing.
	small, _ := New(1<<20, 512)
	small.Set(math.MinInt64, 1<<62)
	small.Set(math.MinInt64, math.MaxInt64)
	small.Reset(math.MinInt64, math.MaxInt64)
	if !small.Empty() {
		t.Fatalf("MinInt64 ranges: count %d", small.Count())
	}
	// A maximal-size bitmap: every method clips without overflowing.
	h, _ := New(1<<63-1, 1<<56)
	h.Set(1<<63-2, 1<<63-1)
	h.Set(-5, 10)
	if h.Count() != 2<<56 || !h.Get(1<<63-2) || !h.Get(0) || h.NextDirty(1) != 1 {
		t.Fatalf("huge bitmap: count %d", h.Count())
	}
	if off, n, ok := h.NextDirtyArea(1<<62, 0); !ok || off != 127<<56 || n != 1<<63-1-off {
		t.Fatalf("huge area %d+%d %v", off, n, ok)
	}
	it := h.Iterator(0)
	if it.Next() != 0 || it.Next() != 127<<56 || it.Next() != -1 {
		t.Fatal("huge iteration")
	}
	if sz, err := h.SerializationSize(0, 1<<63-1); err != nil || sz != 16 {
		t.Fatalf("huge serialization size %d %v", sz, err)
	}
}

func TestEmptyAndTiny(t *testing.T) {
	h, _ := New(0, 512)
	h.Set(0, 100)
	h.Reset(-1, 2)
	if h.Count() != 0 || h.NextDirty(0) != -1 || h.NextClean(0) != -1 || h.Get(0) {
		t.Fatal("empty bitmap")
	}
	if _, _, ok := h.NextDirtyArea(0, 0); ok {
		t.Fatal("empty area")
	}
	if sz, err := h.SerializationSize(0, 0); sz != 0 || err != nil {
		t.Fatal("empty chunk")
	}
	if err := h.DeserializeOnes(0, 512); !errors.Is(err, ErrInvalid) {
		t.Fatalf("chunk beyond an empty bitmap: %v", err)
	}
	h.DeserializeFinish()
	if err := h.Truncate(1000); err != nil || h.Count() != 0 {
		t.Fatal(err)
	}
	h.Set(999, 1)
	if h.Count() != 512 || h.NextDirty(0) != 512 || h.NextClean(512) != -1 {
		t.Fatalf("tiny: count %d", h.Count())
	}
	if err := h.Truncate(-1); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
}

func TestMergeAndMeta(t *testing.T) {
	a, _ := New(1<<30, 4096)
	b, _ := New(1<<30, 4096)
	c, _ := New(1<<29, 4096)
	if err := a.Merge(c); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("merge of different sizes: %v", err)
	}
	meta, err := a.CreateMeta(512) // one meta bit per 512 bytes of serialized data = 4096 groups
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateMeta(512); !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	if meta.Granularity() != 4096*4096 || a.Meta() != meta {
		t.Fatalf("meta granularity %d", meta.Granularity())
	}
	b.Set(100<<20, 1)
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	if !meta.Get(100<<20) || meta.Count() != 16<<20 {
		t.Fatalf("meta after merge: %d", meta.Count())
	}
	meta.ResetAll()
	a.Set(100<<20, 1) // no change: nothing marked
	if meta.Count() != 0 {
		t.Fatal("unchanged bit marked")
	}
	a.Reset(100<<20, 4096)
	if !meta.Get(100 << 20) {
		t.Fatal("reset not marked")
	}
	a.FreeMeta()
	if a.Meta() != nil {
		t.Fatal("FreeMeta")
	}
	for _, cs := range []int64{0, -8, 3, 12} {
		if _, err := a.CreateMeta(cs); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateMeta(%d): %v", cs, err)
		}
	}
	big, _ := New(1<<40, 1<<50)
	if _, err := big.CreateMeta(1 << 10); !errors.Is(err, ErrInvalid) {
		t.Errorf("meta granularity overflow: %v", err)
	}
}
