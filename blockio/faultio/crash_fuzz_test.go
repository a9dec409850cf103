package faultio_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/blocklayer/blocklayer/blockio/faultio"
)

// FuzzCrashOps drives a CrashDevice with writes, zero writes, discards,
// flushes and crashes, and checks every crash image against a model: each
// sector holds its durable content or one of the versions written since
// the last flush; KeepNone is exactly the durable content and KeepAll the
// current content.
func FuzzCrashOps(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 0, 0, 2, 5, 1, 0, 0, 0, 0, 0, 4, 0, 3, 9})
	f.Add([]byte{0, 0x10, 0, 0, 0x10, 0, 0x40, 7, 0, 0x11, 0, 0, 0x02, 0, 0x20, 8, 3, 1, 4, 0, 0, 0, 0, 0, 0, 3, 2})
	f.Add(bytes.Repeat([]byte{0, 0xff, 0x01, 0, 0x03, 0, 1, 0xaa, 3, 7}, 6))
	f.Fuzz(func(t *testing.T, data []byte) {
		const size = 64 << 10
		const sec = faultio.SectorSize
		c := faultio.NewCrashMem(size)
		cur := make([]byte, size)
		durable := make([]byte, size)
		versions := map[int][][]byte{} // sector -> contents written since flush
		next := func() byte {
			if len(data) == 0 {
				return 0
			}
			v := data[0]
			data = data[1:]
			return v
		}
		u16 := func() int { return int(binary.LittleEndian.Uint16([]byte{next(), next()})) }
		record := func(off, n int) {
			for s := off / sec; s*sec < off+n; s++ {
				versions[s] = append(versions[s], bytes.Clone(cur[s*sec:(s+1)*sec]))
			}
		}
		for steps := 0; steps < 48 && len(data) > 0; steps++ {
			op := next()
			off := u16() % size
			n := 1 + u16()%(size-off)
			switch op % 5 {
			case 0:
				p := bytes.Repeat([]byte{next() | 1}, n)
				if _, err := c.WriteAt(p, int64(off)); err != nil {
					t.Fatal(err)
				}
				copy(cur[off:], p)
				record(off, n)
			case 1:
				if err := c.WriteZeroes(int64(off), int64(n), op&8 != 0); err != nil {
					t.Fatal(err)
				}
				clear(cur[off : off+n])
				record(off, n)
			case 2:
				if err := c.Discard(int64(off), int64(n)); err != nil {
					t.Fatal(err)
				}
				clear(cur[off : off+n]) // Mem discards to zeros
				record(off, n)
			case 3:
				if err := c.Flush(); err != nil {
					t.Fatal(err)
				}
				copy(durable, cur)
				clear(versions)
				if c.Unflushed() != 0 {
					t.Fatalf("Unflushed() = %d after Flush", c.Unflushed())
				}
			case 4:
				img, err := c.Crash(rand.New(rand.NewPCG(uint64(off), uint64(n))))
				if err != nil {
					t.Fatal(err)
				}
				got := img.Bytes()
				for s := 0; s < size/sec; s++ {
					g := got[s*sec : (s+1)*sec]
					ok := bytes.Equal(g, durable[s*sec:(s+1)*sec])
					for _, v := range versions[s] {
						ok = ok || bytes.Equal(g, v)
					}
					if !ok {
						t.Fatalf("crash image sector %d is neither durable nor a written version", s)
					}
				}
			}
		}
		none, err := c.CrashKeepNone()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(none.Bytes(), durable) {
			t.Fatal("KeepNone differs from the durable content")
		}
		all, _ := c.CrashKeepAll()
		if !bytes.Equal(all.Bytes(), cur) {
			t.Fatal("KeepAll differs from the current content")
		}
		if c.UnflushedSectors() != len(versions) {
			t.Fatalf("UnflushedSectors() = %d, model %d", c.UnflushedSectors(), len(versions))
		}
	})
}
