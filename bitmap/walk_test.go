package bitmap

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// modelAreas lists the areas the model's nextDirtyArea yields from from on.
func modelAreas(m *model, from, maxLen int64) []Area {
	var out []Area
	for pos := from; ; {
		off, n, ok := m.nextDirtyArea(pos, maxLen)
		if !ok {
			return out
		}
		out = append(out, Area{off, n})
		pos = off + n
	}
}

// iterAreas lists the areas an Iterator at from yields with NextArea(maxLen).
func iterAreas(h *HBitmap, from, maxLen int64) []Area {
	var out []Area
	it := h.Iterator(from)
	for {
		off, n, ok := it.NextArea(maxLen)
		if !ok {
			return out
		}
		out = append(out, Area{off, n})
	}
}

func sameAreas(t *testing.T, ctx string, got, want []Area) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d areas, want %d (got %v, want %v)", ctx, len(got), len(want), head(got), head(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: area %d = %+v, want %+v", ctx, i, got[i], want[i])
		}
	}
}

func head(a []Area) []Area { return a[:min(len(a), 8)] }

// TestForEachDirtyAreaModel compares ForEachDirtyArea and AppendDirtyAreas
// with the []bool model on bitmaps of 1 to 4 levels, with runs placed
// across word and summary-word boundaries, random starting offsets (also
// inside groups and inside runs) and maxLen splitting.
func TestForEachDirtyAreaModel(t *testing.T) {
	const g = 512
	for _, size := range []int64{
		1, g - 1, 63*g + 1, 64 * g, // 1 level
		100 * g, 64*64*g - 7, // 2 levels
		64*64*10*g + 3, // 3 levels
		64*64*64*g + g, // 4 levels
	} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(size), 11))
			nbits := (size + g - 1) / g
			rounds := 60
			if testing.Short() || raceEnabled {
				rounds = 15
			}
			for round := range rounds {
				h, err := New(size, g)
				if err != nil {
					t.Fatal(err)
				}
				m := newModel(size, g)
				areas := 1 + rng.IntN(40)
				if round%4 == 0 {
					areas = 0
				}
				for range areas {
					var bit int64
					switch rng.IntN(4) {
					case 0: // end of a word
						bit = (rng.Int64N(nbits/64+1)*64 + 60 + rng.Int64N(4)) % nbits
					case 1: // end of a summary word's span
						bit = (rng.Int64N(nbits/4096+1)*4096 + 4090 + rng.Int64N(6)) % nbits
					default:
						bit = rng.Int64N(nbits)
					}
					n := rng.Int64N(200)*g + rng.Int64N(g) + 1
					if rng.IntN(8) == 0 {
						n = rng.Int64N(9000) * g // long runs across summary words
					}
					reset := rng.IntN(5) == 0
					if reset {
						h.Reset(bit*g, n)
						m.fill(bit*g, n, false)
					} else {
						h.Set(bit*g, n)
						m.fill(bit*g, n, true)
					}
				}
				for range 4 {
					from := int64(0)
					if rng.IntN(2) == 0 {
						from = rng.Int64N(size + 2*g)
					}
					maxLen := int64(0)
					switch rng.IntN(4) {
					case 1:
						maxLen = rng.Int64N(100)*g + 1
					case 2:
						maxLen = rng.Int64N(3*g) + 1
					}
					ctx := fmt.Sprintf("round %d from %d maxLen %d", round, from, maxLen)
					want := modelAreas(m, from, maxLen)
					var got []Area
					h.ForEachDirtyArea(from, maxLen, func(off, n int64) bool {
						got = append(got, Area{off, n})
						return true
					})
					sameAreas(t, ctx+" ForEach", got, want)
					sameAreas(t, ctx+" Append", h.AppendDirtyAreas(nil, from, maxLen), want)
					sameAreas(t, ctx+" Iterator", iterAreas(h, from, maxLen), want)
					// Stopping early returns exactly a prefix.
					if len(want) > 0 {
						k := rng.IntN(len(want)) + 1
						got = got[:0]
						h.ForEachDirtyArea(from, maxLen, func(off, n int64) bool {
							got = append(got, Area{off, n})
							return len(got) < k
						})
						sameAreas(t, ctx+" stop", got, want[:k])
					}
				}
			}
		})
	}
}

// TestForEachDirtyAreaLarge checks the walk against the Iterator on large
// sparse bitmaps (5 levels, a partial last group) where a model is too big.
func TestForEachDirtyAreaLarge(t *testing.T) {
	const g = 64 << 10
	size := int64(16<<40 + 12345)
	h, err := New(size, g)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	nbits := (size + g - 1) / g
	for range 2000 {
		h.Set(rng.Int64N(nbits)*g, rng.Int64N(300)*g+1)
	}
	h.Set(size-1, 1) // the partial last group
	for _, maxLen := range []int64{0, 1 << 20, 3*g + 5} {
		for _, from := range []int64{0, rng.Int64N(size), size - 1} {
			ctx := fmt.Sprintf("from %d maxLen %d", from, maxLen)
			sameAreas(t, ctx, h.AppendDirtyAreas(nil, from, maxLen), iterAreas(h, from, maxLen))
		}
	}
}

// TestForEachDirtyAreaReset: the callback may Reset the area it was given
// (the backup pattern) and Set bits ahead of the walk; the walk visits every
// area once, including the one set ahead, and leaves a clean bitmap.
func TestForEachDirtyAreaReset(t *testing.T) {
	const g = 4096
	size := int64(64*64*64*3*g + 100)
	h, _ := New(size, g)
	rng := rand.New(rand.NewPCG(8, 9))
	for range 500 {
		h.Set(rng.Int64N(size), rng.Int64N(100*g)+1)
	}
	ahead := size/g*g - 4*g // group-aligned, clean after the Reset below
	h.Reset(ahead-10*g, size)
	want := append(h.AppendDirtyAreas(nil, 0, 5*g), Area{ahead, 2 * g})
	var got []Area
	h.ForEachDirtyArea(0, 5*g, func(off, n int64) bool {
		if len(got) == 0 {
			h.Set(ahead, 2*g) // ahead of the walk: visited
		}
		got = append(got, Area{off, n})
		h.Reset(off, n)
		return true
	})
	sameAreas(t, "reset walk", got, want)
	if !h.Empty() {
		t.Fatalf("Count = %d after resetting every area", h.Count())
	}
	if err := h.verify(); err != nil {
		t.Fatal(err)
	}
}
