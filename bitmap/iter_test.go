package bitmap

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestIteratorCursor checks the iterator's cached summary cursor against
// NextDirtyArea (which searches from the top every time) on bitmaps of 1 to
// 5 levels, with areas placed at word and summary-word boundaries and with
// Set/Reset calls between steps that do and do not change summary bits.
func TestIteratorCursor(t *testing.T) {
	const g = 64 << 10
	for _, size := range []int64{
		100 * g,              // 2 levels
		64 * 64 * 10 * g,     // 3 levels
		1 << 40,              // 4 levels
		16<<40 + 12345,       // 5 levels, partial last group
		63*g + 1,             // 1 level
		64 * 64 * 64 * 3 * g, // 4 levels, exact words
	} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(size), 7))
			h, err := New(size, g)
			if err != nil {
				t.Fatal(err)
			}
			nbits := (size + g - 1) / g
			randBit := func() int64 {
				switch rng.IntN(4) {
				case 0: // last bit of a word
					return (rng.Int64N(nbits/64+1)*64 + 63) % nbits
				case 1: // last bit of a summary word's span
					return (rng.Int64N(nbits/4096+1)*4096 + 4095) % nbits
				default:
					return rng.Int64N(nbits)
				}
			}
			areaGroups := max(1, min(100, nbits/400))
			for range min(300, nbits/4) {
				h.Set(randBit()*g, rng.Int64N(areaGroups)*g+1)
			}
			rounds := 40
			if testing.Short() || raceEnabled {
				rounds = 10
			}
			total := 0
			for round := range rounds {
				for range min(20, nbits/8) { // refill what earlier rounds consumed
					h.Set(randBit()*g, g)
				}
				maxLen := int64(0)
				if round%3 == 1 {
					maxLen = rng.Int64N(200)*g + 1
				}
				it := h.Iterator(rng.Int64N(size))
				if round%2 == 0 {
					it.MoveTo(0)
				}
				for steps := 0; steps < 400; steps++ {
					pos := it.Pos()
					wo, wn, wok := h.NextDirtyArea(pos, maxLen)
					var o, n int64
					var ok bool
					if steps%7 == 6 {
						// A batch: every area must match the
						// reference walk from the previous one.
						batch := it.NextAreas(make([]Area, 0, 1+rng.IntN(70)), maxLen)
						p := pos
						for k, a := range batch {
							wo, wn, wok := h.NextDirtyArea(p, maxLen)
							if !wok || a.Off != wo || a.Len != wn {
								t.Fatalf("round %d step %d: NextAreas[%d] from %d = %+v, NextDirtyArea %d+%d %v",
									round, steps, k, p, a, wo, wn, wok)
							}
							p = wo + wn
						}
						if len(batch) > 0 && it.Pos() != p {
							t.Fatalf("round %d step %d: position %d after a batch ending at %d", round, steps, it.Pos(), p)
						}
						if _, _, wok := h.NextDirtyArea(p, maxLen); len(batch) < cap(batch) && wok {
							t.Fatalf("round %d step %d: short batch of %d/%d but more areas from %d", round, steps, len(batch), cap(batch), p)
						}
						if len(batch) == 0 {
							break
						}
						total += len(batch) - 1
						last := batch[len(batch)-1]
						o, n, ok = last.Off, last.Len, true
						wo, wn, wok = o, n, true
					} else if steps%5 == 4 {
						if x := it.Next(); x >= 0 {
							// Next steps one group: compare the
							// start; the length is the group's
							// rest, capped like the reference.
							o, n, ok = x, min(g-x%g, size-x), true
							if wok {
								n = min(wn, n)
								wn = n
							}
						}
					} else {
						o, n, ok = it.NextArea(maxLen)
					}
					if o != wo || n != wn || ok != wok {
						t.Fatalf("round %d step %d from %d: iterator %d+%d %v, NextDirtyArea %d+%d %v",
							round, steps, pos, o, n, ok, wo, wn, wok)
					}
					if !ok {
						break
					}
					total++
					switch rng.IntN(6) {
					case 0: // consume the area (clears summary bits)
						h.Reset(o, n)
					case 1: // a write ahead of the iterator
						h.Set(o+n+rng.Int64N(64*64*g), rng.Int64N(3*g)+1)
					case 2: // a reset ahead of the iterator
						h.Reset(o+n+rng.Int64N(64*64*g), rng.Int64N(70*g))
					case 3: // a write into an already dirty word
						h.Set(o, 1)
					case 4: // a write behind the iterator (or across its position)
						h.Set(max(0, o-rng.Int64N(64*64*g)), rng.Int64N(3*g)+1)
					}
				}
			}
			if total < rounds*3 {
				t.Fatalf("only %d areas visited in %d rounds", total, rounds)
			}
		})
	}
}
