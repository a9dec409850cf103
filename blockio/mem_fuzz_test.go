package blockio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
)

// opReader decodes a fuzz input into a stream of small integers.
type opReader struct{ b []byte }

func (r *opReader) u8() (byte, bool) {
	if len(r.b) == 0 {
		return 0, false
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v, true
}

func (r *opReader) u32() uint32 {
	var x [4]byte
	n := copy(x[:], r.b)
	r.b = r.b[n:]
	return binary.LittleEndian.Uint32(x[:])
}

// FuzzMemOps runs a sequence of writes, reads, zero writes, discards,
// truncations and status queries on a Mem and on a plain byte slice and
// checks that they agree.
func FuzzMemOps(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0x10, 0, 0, 0, 9, 4, 0, 0, 0, 0, 0, 0, 1, 0})
	f.Add([]byte{0, 0xf0, 0xff, 0, 0, 0x20, 0x00, 0x01, 0, 7, 2, 0, 0, 1, 0, 0, 0, 2, 0, 3, 0, 0, 0, 0, 0xff, 0xff, 0, 0})
	f.Add([]byte{4, 0x00, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x01, 0, 0xff, 0x00, 0, 0, 5, 0, 0, 0, 0, 6, 0, 0, 0, 0})
	f.Add(bytes.Repeat([]byte{0, 0xff, 0xfe, 0, 0, 0x01, 0x10, 0, 0, 3}, 8))
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxSize = 300 << 10
		size := int64(200 << 10)
		m := blockio.NewMem(size)
		model := make([]byte, size)
		r := &opReader{b: data}
		for steps := 0; steps < 64; steps++ {
			op, ok := r.u8()
			if !ok {
				break
			}
			off := int64(int32(r.u32())) % (size + 1024) // may be negative or past the end
			n := int64(r.u32() % (130 << 10))
			inRange := off >= 0 && off+n <= size
			switch op % 7 {
			case 0: // write
				v, _ := r.u8()
				p := bytes.Repeat([]byte{v | 1}, int(n))
				k, err := m.WriteAt(p, off)
				if inRange != (err == nil) || (err == nil && k != len(p)) || (err != nil && k != 0) {
					t.Fatalf("WriteAt(%d, %d) = %d, %v", off, n, k, err)
				}
				if err == nil {
					copy(model[off:], p)
				} else if !errors.Is(err, blockio.ErrOutOfRange) {
					t.Fatalf("WriteAt error %v", err)
				}
			case 1: // read
				p := make([]byte, n)
				_, err := m.ReadAt(p, off)
				if inRange != (err == nil) {
					t.Fatalf("ReadAt(%d, %d) = %v", off, n, err)
				}
				if err == nil && !bytes.Equal(p, model[off:off+n]) {
					t.Fatalf("ReadAt(%d, %d) differs from the model", off, n)
				}
			case 2, 3: // zero, discard
				var err error
				if op%7 == 2 {
					err = m.WriteZeroes(off, n, op&8 != 0)
				} else {
					err = m.Discard(off, n)
				}
				if inRange != (err == nil) {
					t.Fatalf("zero/discard(%d, %d) = %v", off, n, err)
				}
				if err == nil {
					clear(model[off : off+n])
				}
			case 4: // truncate
				ns := int64(r.u32() % maxSize)
				if err := m.Truncate(ns, blockio.PreallocOff); err != nil {
					t.Fatal(err)
				}
				if ns < size {
					model = model[:ns]
				} else {
					model = append(model, make([]byte, ns-size)...)
				}
				size = ns
			case 5: // status: extents tile the range and zero extents read zero
				if !inRange {
					if _, err := m.BlockStatus(off, n); err == nil && !(off >= 0 && off <= size && n == 0) {
						t.Fatalf("BlockStatus(%d, %d) out of range succeeded", off, n)
					}
					continue
				}
				for pos := off; pos < off+n; {
					e, err := m.BlockStatus(pos, off+n-pos)
					if err != nil || e.Start != pos || e.Length <= 0 || e.End() > off+n {
						t.Fatalf("BlockStatus(%d, %d) = %+v, %v", pos, off+n-pos, e, err)
					}
					if e.Zero && !blockio.IsZero(model[e.Start:e.End()]) {
						t.Fatalf("extent %+v reported zero over data", e)
					}
					pos = e.End()
				}
			case 6:
				if err := m.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			if m.Size() != size {
				t.Fatalf("Size() = %d, want %d", m.Size(), size)
			}
		}
		if got := m.Bytes(); !bytes.Equal(got, model) {
			t.Fatal("final content differs from the model")
		}
	})
}
