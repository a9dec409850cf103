package bitmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// model is the obviously-correct reference: one bool per group.
type model struct {
	size int64
	g    int64
	b    []bool
}

func newModel(size, g int64) *model {
	return &model{size: size, g: g, b: make([]bool, (size+g-1)/g)}
}

func (m *model) clone() *model {
	return &model{size: m.size, g: m.g, b: append([]bool(nil), m.b...)}
}

// groups clips [off, off+n) like HBitmap.bitRange.
func (m *model) groups(off, n int64) (first, last int64, ok bool) {
	if n <= 0 || off >= m.size || m.size <= 0 {
		return 0, 0, false
	}
	if off < 0 {
		if n <= -off {
			return 0, 0, false
		}
		n += off
		off = 0
	}
	end := m.size
	if n < m.size-off {
		end = off + n
	}
	return off / m.g, (end - 1) / m.g, true
}

func (m *model) fill(off, n int64, v bool) {
	f, l, ok := m.groups(off, n)
	if !ok {
		return
	}
	for i := f; i <= l; i++ {
		m.b[i] = v
	}
}

func (m *model) get(off int64) bool {
	if off < 0 || off >= m.size {
		return false
	}
	return m.b[off/m.g]
}

func (m *model) count() int64 {
	c := int64(0)
	for _, v := range m.b {
		if v {
			c++
		}
	}
	return c * m.g
}

func (m *model) nextDirty(from int64) int64 {
	from = max(from, 0)
	for i := from / m.g; i < int64(len(m.b)) && from < m.size; i++ {
		if m.b[i] {
			return max(from, i*m.g)
		}
	}
	return -1
}

func (m *model) nextClean(from int64) int64 {
	from = max(from, 0)
	for i := from / m.g; i < int64(len(m.b)) && from < m.size; i++ {
		if !m.b[i] {
			return max(from, i*m.g)
		}
	}
	return -1
}

func (m *model) nextDirtyArea(from, maxLen int64) (int64, int64, bool) {
	from = max(from, 0)
	if from >= m.size {
		return 0, 0, false
	}
	i := from / m.g
	for i < int64(len(m.b)) && !m.b[i] {
		i++
	}
	if i >= int64(len(m.b)) {
		return 0, 0, false
	}
	off := max(from, i*m.g)
	e := i
	// Scan to the run's end, or far enough to cover maxLen (keeps walks
	// in small pieces linear).
	for e < int64(len(m.b)) && m.b[e] && (maxLen <= 0 || e*m.g < off+maxLen) {
		e++
	}
	end := min(e*m.g, m.size)
	n := end - off
	if maxLen > 0 && n > maxLen {
		n = maxLen
	}
	return off, n, true
}

// areas lists the areas successive nextDirtyArea(·, maxLen) calls from 0
// return, in one pass; ok is false when there would be more than limit.
func (m *model) areas(maxLen int64, limit int) (list []Area, ok bool) {
	for i := int64(0); i < int64(len(m.b)); {
		if !m.b[i] {
			i++
			continue
		}
		e := i
		for e < int64(len(m.b)) && m.b[e] {
			e++
		}
		for off, end := i*m.g, min(e*m.g, m.size); off < end; {
			n := end - off
			if maxLen > 0 && n > maxLen {
				n = maxLen
			}
			if len(list) == limit {
				return nil, false
			}
			list = append(list, Area{off, n})
			off += n
		}
		i = e
	}
	return list, true
}

func (m *model) truncate(size int64) {
	nb := make([]bool, (size+m.g-1)/m.g)
	copy(nb, m.b)
	m.b, m.size = nb, size
}

// mergeFrom ORs o (any granularity, same size) into m, rounding outwards.
func (m *model) mergeFrom(o *model) {
	for j, v := range o.b {
		if v {
			m.fill(int64(j)*o.g, o.g, true)
		}
	}
}

// check compares h with m completely and verifies h's internal invariants.
func check(t testing.TB, h *HBitmap, m *model, ctx string) {
	t.Helper()
	if err := h.verify(); err != nil {
		t.Fatalf("%s: invariant: %v", ctx, err)
	}
	if h.Size() != m.size || h.Granularity() != m.g {
		t.Fatalf("%s: size/gran %d/%d, model %d/%d", ctx, h.Size(), h.Granularity(), m.size, m.g)
	}
	if h.Count() != m.count() {
		t.Fatalf("%s: count %d, model %d", ctx, h.Count(), m.count())
	}
	words := h.last()
	for i, v := range m.b {
		if (words[i>>6]>>(i&63)&1 == 1) != v {
			t.Fatalf("%s: group %d is %v in bitmap, %v in model", ctx, i, !v, v)
		}
	}
}

// verify checks the summary invariant, tail bits and count.
func (h *HBitmap) verify() error {
	want := levelSizes(h.nbits)
	if len(want) != len(h.levels) {
		return fmt.Errorf("%d levels, want %d", len(h.levels), len(want))
	}
	for i, l := range h.levels {
		if len(l) != want[i] {
			return fmt.Errorf("level %d has %d words, want %d", i, len(l), want[i])
		}
	}
	last := h.last()
	var c uint64
	for i, w := range last {
		c += uint64(bits.OnesCount64(w))
		for b := 0; b < 64; b++ {
			if w>>b&1 == 1 && uint64(i*64+b) >= h.nbits {
				return fmt.Errorf("tail bit %d set beyond %d bits", i*64+b, h.nbits)
			}
		}
	}
	if c != h.count {
		return fmt.Errorf("count %d, popcount %d", h.count, c)
	}
	for lv := len(h.levels) - 1; lv > 0; lv-- {
		below, above := h.levels[lv], h.levels[lv-1]
		for i := range len(above) * 64 {
			set := above[i>>6]>>(i&63)&1 == 1
			nonzero := i < len(below) && below[i] != 0
			if set != nonzero {
				return fmt.Errorf("level %d bit %d = %v, word below non-zero = %v", lv-1, i, set, nonzero)
			}
		}
	}
	return nil
}

// opReader decodes an op stream from bytes (fuzz input or seeded random).
type opReader struct {
	data []byte
	rng  *rand.Rand // when non-nil, used instead of data
}

func (r *opReader) more() bool { return r.rng != nil || len(r.data) > 0 }

func (r *opReader) u8() uint8 {
	if r.rng != nil {
		return uint8(r.rng.Uint32())
	}
	if len(r.data) == 0 {
		return 0
	}
	v := r.data[0]
	r.data = r.data[1:]
	return v
}

func (r *opReader) u32() uint32 {
	if r.rng != nil {
		return r.rng.Uint32()
	}
	var b [4]byte
	for i := range b {
		b[i] = r.u8()
	}
	return binary.LittleEndian.Uint32(b[:])
}

// offset picks a byte offset with bias towards interesting places.
func (r *opReader) offset(size, g int64) int64 {
	switch r.u8() % 8 {
	case 0:
		return 0
	case 1: // near a word boundary of the stored level
		w := int64(r.u32()) % (size/(64*g) + 1)
		return w*64*g + int64(int8(r.u8()))*g/4
	case 2: // near the end
		return size - int64(r.u8())*g/8
	case 3:
		return -int64(r.u8()) * g / 4
	default:
		if size == 0 {
			return 0
		}
		return int64(r.u32()) % (size + 1)
	}
}

func (r *opReader) length(size, g int64) int64 {
	switch r.u8() % 8 {
	case 0:
		return int64(r.u8()%4) * g / 2
	case 1:
		return int64(r.u32()%8192) * g
	case 2:
		return size + int64(r.u8())*g
	case 3:
		return 1<<62 + int64(r.u8())
	case 4:
		return -int64(r.u8())
	default:
		return 1 + int64(r.u32())%(max(size/8, 1))
	}
}

func (r *opReader) geometry() (size, g int64) {
	g = 512 << (r.u8() % 4)
	switch r.u8() % 16 {
	case 0, 1, 2:
		size = int64(r.u8()) * 37 // tiny, often a partial group, may be 0
	case 3:
		size = int64(262144+r.u32()%20000)*g + int64(r.u8()) // 4 levels
	default:
		size = int64(r.u32()%20000)*g + int64(r.u8()%3)*100
	}
	return size, g
}

// runOps interprets an op stream against HBitmap and the model. maxOps
// bounds the work.
func runOps(t testing.TB, r *opReader, maxOps int) {
	size, g := r.geometry()
	h, err := New(size, g)
	if err != nil {
		t.Fatalf("New(%d, %d): %v", size, g, err)
	}
	m := newModel(size, g)
	var meta *HBitmap
	if r.u8()%3 == 0 {
		if meta, err = h.CreateMeta(int64(8) << (r.u8() % 4)); err != nil {
			t.Fatal(err)
		}
	}
	for op := 0; op < maxOps && r.more(); op++ {
		before := m.clone()
		code := r.u8() % 16
		ctx := fmt.Sprintf("op %d (code %d) size %d gran %d", op, code, m.size, m.g)
		switch code {
		case 0, 1, 2:
			off, n := r.offset(m.size, g), r.length(m.size, g)
			h.Set(off, n)
			m.fill(off, n, true)
		case 3, 4:
			off, n := r.offset(m.size, g), r.length(m.size, g)
			h.Reset(off, n)
			m.fill(off, n, false)
		case 5:
			off := r.offset(m.size, g)
			if h.Get(off) != m.get(off) {
				t.Fatalf("%s: Get(%d) = %v", ctx, off, h.Get(off))
			}
			if got, want := h.NextDirty(off), m.nextDirty(off); got != want {
				t.Fatalf("%s: NextDirty(%d) = %d, want %d", ctx, off, got, want)
			}
			if got, want := h.NextClean(off), m.nextClean(off); got != want {
				t.Fatalf("%s: NextClean(%d) = %d, want %d", ctx, off, got, want)
			}
		case 6:
			off, ml := r.offset(m.size, g), r.length(m.size, g)
			o1, n1, ok1 := h.NextDirtyArea(off, ml)
			o2, n2, ok2 := m.nextDirtyArea(off, ml)
			if o1 != o2 || n1 != n2 || ok1 != ok2 {
				t.Fatalf("%s: NextDirtyArea(%d, %d) = %d,%d,%v want %d,%d,%v", ctx, off, ml, o1, n1, ok1, o2, n2, ok2)
			}
		case 7: // full iteration, both styles, with interleaved resets
			it := h.Iterator(0)
			var got []int64
			for x := it.Next(); x >= 0; x = it.Next() {
				got = append(got, x)
			}
			var want []int64
			for i, v := range m.b {
				if v {
					want = append(want, int64(i)*g)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s: iteration %v, want %v", ctx, got, want)
			}
			ml := r.length(m.size, g)
			if want, ok := m.areas(ml, 1<<16); ok {
				if got := h.AppendDirtyAreas(nil, 0, ml); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("%s: AppendDirtyAreas(0, %d) = %v, want %v", ctx, ml, got, want)
				}
			}
			it2 := h.Iterator(0)
			for {
				prev := it2.Pos()
				switch r.u8() % 8 {
				case 0: // mix group steps into the area walk
					if got, want := it2.Next(), m.nextDirty(prev); got != want {
						t.Fatalf("%s: Next from %d = %d, want %d", ctx, prev, got, want)
					}
					prev = it2.Pos()
				case 1: // and batches
					batch := it2.NextAreas(make([]Area, 0, 1+int(r.u8()%40)), ml)
					for _, a := range batch {
						mo, mn, mok := m.nextDirtyArea(prev, ml)
						if !mok || a.Off != mo || a.Len != mn {
							t.Fatalf("%s: batch area %+v from %d, model %d+%d %v", ctx, a, prev, mo, mn, mok)
						}
						prev = mo + mn
					}
					if len(batch) < cap(batch) {
						if _, _, mok := m.nextDirtyArea(prev, ml); mok {
							t.Fatalf("%s: batch ended early at %d", ctx, prev)
						}
					}
				}
				o, n, ok := it2.NextArea(ml)
				mo, mn, mok := m.nextDirtyArea(prev, ml)
				if !ok {
					if mok {
						t.Fatalf("%s: area iteration ended early at %d", ctx, prev)
					}
					break
				}
				if !mok || mo != o || mn != n {
					t.Fatalf("%s: area %d+%d, model %d+%d", ctx, o, n, mo, mn)
				}
				switch r.u8() % 4 { // the iterator stays valid across changes
				case 0: // consume as a job would
					h.Reset(o, n)
					m.fill(o, n, false)
				case 1: // a write somewhere (ahead of or behind the iterator)
					wo, wn := r.offset(m.size, g), r.length(m.size, g)/(1+int64(r.u8()))
					h.Set(wo, wn)
					m.fill(wo, wn, true)
				case 2: // a reset somewhere
					wo, wn := r.offset(m.size, g), r.length(m.size, g)/(1+int64(r.u8()))
					h.Reset(wo, wn)
					m.fill(wo, wn, false)
				}
			}
		case 8:
			if r.u8()%4 == 0 {
				h.ResetAll()
				for i := range m.b {
					m.b[i] = false
				}
			}
		case 9: // merge, same or different granularity
			og := g
			if r.u8()%2 == 0 {
				og = 512 << (r.u8() % 6)
			}
			o, _ := New(m.size, og)
			om := newModel(m.size, og)
			for range int(r.u8() % 8) {
				off, n := r.offset(m.size, og), r.length(m.size, og)/int64(1+r.u8()%64)
				o.Set(off, n)
				om.fill(off, n, true)
			}
			if err := h.Merge(o); err != nil {
				t.Fatalf("%s: merge: %v", ctx, err)
			}
			m.mergeFrom(om)
			check(t, o, om, ctx+" merge source")
		case 10: // truncate
			ns := max(m.size+int64(int32(r.u32()))%(m.size/2+g), 0)
			if err := h.Truncate(ns); err != nil {
				t.Fatalf("%s: truncate %d: %v", ctx, ns, err)
			}
			m.truncate(ns)
			before.truncate(ns)
			if meta != nil && meta.Size() != ns {
				t.Fatalf("%s: meta not truncated", ctx)
			}
		case 11: // clone is independent
			c := h.Clone()
			if !c.Equal(h) {
				t.Fatalf("%s: clone differs", ctx)
			}
			c.Set(0, m.size)
			check(t, h, m, ctx+" after clone write")
		case 12, 13: // serialization round trip of a random chunk
			serializeRoundTrip(t, r, h, m, ctx)
		case 14: // deserialize zeroes/ones
			off, n, valid := r.chunk(h)
			ones := r.u8()%2 == 0
			var err error
			if ones {
				err = h.DeserializeOnes(off, n)
			} else {
				err = h.DeserializeZeroes(off, n)
			}
			if !valid {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("%s: invalid chunk %d+%d: err %v", ctx, off, n, err)
				}
				break
			}
			if err != nil {
				t.Fatalf("%s: chunk %d+%d: %v", ctx, off, n, err)
			}
			fw := off / g / 64
			lw := (off + n - 1) / g / 64
			for i := fw * 64; i < (lw+1)*64 && i < int64(len(m.b)); i++ {
				m.b[i] = ones
			}
			h.DeserializeFinish()
			before = m.clone() // deserialization does not mark meta
		case 15:
			if meta != nil && r.u8()%2 == 0 {
				meta.ResetAll()
			}
		}
		check(t, h, m, ctx)
		if meta != nil {
			for i := range min(len(m.b), len(before.b)) {
				if m.b[i] != before.b[i] && !meta.Get(int64(i)*g) {
					t.Fatalf("%s: group %d changed but meta not marked", ctx, i)
				}
			}
		}
	}
}

// chunk picks a serialization chunk; valid reports whether it should be
// accepted.
func (r *opReader) chunk(h *HBitmap) (off, n int64, valid bool) {
	a := h.SerializationAlign()
	nw := int64(len(h.last()))
	k := int64(r.u32()) % nw
	off = k * a
	switch r.u8() % 6 {
	case 0: // to the end of the bitmap
		n = h.Size() - off
		if n <= 0 {
			return off, a, false
		}
		return off, n, true
	case 1: // misaligned start
		return off + h.Granularity(), a, false
	case 2: // beyond the end
		return off, int64(nw-k)*a + a, false
	default:
		words := 1 + int64(r.u8())%(nw-k)
		n = words * a
		if off+n > h.Size() { // must end at the bitmap end instead
			n = h.Size() - off
			if n <= 0 {
				return off, a, false
			}
		}
		return off, n, true
	}
}

func serializeRoundTrip(t testing.TB, r *opReader, h *HBitmap, m *model, ctx string) {
	t.Helper()
	off, n, valid := r.chunk(h)
	sz, err := h.SerializationSize(off, n)
	if !valid {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("%s: SerializationSize(%d, %d) accepted an invalid chunk: %v", ctx, off, n, err)
		}
		if err := h.SerializePart(make([]byte, 1<<16), off, n); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%s: SerializePart invalid chunk: %v", ctx, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: SerializationSize(%d, %d): %v", ctx, off, n, err)
	}
	buf := make([]byte, sz)
	if err := h.SerializePart(buf[:sz-1], off, n); !errors.Is(err, ErrInvalid) {
		t.Fatalf("%s: short buffer accepted: %v", ctx, err)
	}
	if err := h.SerializePart(buf, off, n); err != nil {
		t.Fatalf("%s: SerializePart: %v", ctx, err)
	}
	// Bit j of the chunk is bit j%8 of byte j/8 (qcow2 layout).
	base := off / m.g
	for j := int64(0); j < sz*8; j++ {
		bit := buf[j/8]>>(j%8)&1 == 1
		want := base+j < int64(len(m.b)) && m.b[base+j]
		if bit != want {
			t.Fatalf("%s: serialized bit %d of chunk at %d = %v, model %v", ctx, j, off, bit, want)
		}
	}
	// Load it into a bitmap with different content elsewhere.
	o, _ := New(m.size, m.g)
	om := newModel(m.size, m.g)
	o.Set(0, m.size)
	om.fill(0, m.size, true)
	if err := o.DeserializePart(buf, off, n); err != nil {
		t.Fatalf("%s: DeserializePart: %v", ctx, err)
	}
	for j := base; j < base+sz*8 && j < int64(len(om.b)); j++ {
		om.b[j] = m.b[j]
	}
	o.DeserializeFinish()
	check(t, o, om, ctx+" deserialized")
}

func TestModelRandomOps(t *testing.T) {
	seeds, ops := 150, 150
	if testing.Short() || raceEnabled {
		seeds = 30
	}
	for seed := range seeds {
		r := &opReader{rng: rand.New(rand.NewPCG(uint64(seed), 0x6b17))}
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runOps(t, r, ops) })
	}
}

func FuzzOps(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 0, 0, 4, 5, 6, 7, 8, 9, 10})
	for seed := range 8 {
		rng := rand.New(rand.NewPCG(uint64(seed), 1))
		b := make([]byte, 64+seed*32)
		for i := range b {
			b[i] = uint8(rng.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runOps(t, &opReader{data: data}, 64)
	})
}
