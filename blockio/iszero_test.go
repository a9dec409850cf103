package blockio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
)

// isZeroRef is the obviously correct definition.
func isZeroRef(p []byte) bool { return bytes.Count(p, []byte{0}) == len(p) }

func TestIsZero(t *testing.T) {
	if !IsZero(nil) || !IsZero([]byte{}) {
		t.Fatal("empty input must be zero")
	}
	buf := make([]byte, 4096+64)
	// Every length up to 600 and every position of a single set byte, at
	// several misalignments of the slice start.
	for start := range 9 {
		for n := range 600 {
			p := buf[start : start+n]
			if !IsZero(p) {
				t.Fatalf("zero slice [%d:+%d] reported non-zero", start, n)
			}
			for i := range n {
				for _, v := range []byte{1, 0x80} {
					p[i] = v
					if IsZero(p) {
						t.Fatalf("byte %d of [%d:+%d] = %#x not detected", i, start, n, v)
					}
					p[i] = 0
				}
			}
		}
	}
	// Long buffers: a set byte around every 4 KiB block boundary.
	long := make([]byte, 3*4096+100)
	for _, n := range []int{4096, 4097, 8192, len(long)} {
		p := long[:n]
		if !IsZero(p) {
			t.Fatalf("zero buffer of %d bytes reported non-zero", n)
		}
		for _, i := range []int{8, 4095, 4096, 4097, 8191, 8192, 12287, 12288, n - 1} {
			if i >= n {
				continue
			}
			p[i] = 4
			if IsZero(p) {
				t.Fatalf("byte %d of %d not detected", i, n)
			}
			p[i] = 0
		}
	}
	// Bytes just outside the slice must not count.
	buf[100] = 1
	if !IsZero(buf[101:400]) || !IsZero(buf[:100]) {
		t.Fatal("byte outside the slice counted")
	}
}

func FuzzIsZero(f *testing.F) {
	f.Add([]byte{}, uint16(0))
	f.Add(make([]byte, 300), uint16(299))
	f.Add(make([]byte, 4096), uint16(7))
	f.Fuzz(func(t *testing.T, p []byte, at uint16) {
		if len(p) > 0 && at%2 == 0 {
			clear(p)
			p[int(at)%len(p)] = byte(at>>8) | 1
		}
		if got, want := IsZero(p), isZeroRef(p); got != want {
			t.Fatalf("IsZero(%d bytes) = %v, want %v", len(p), got, want)
		}
	})
}

// isZeroWords ORs four 64-bit words per step: the obvious fast loop,
// kept as a baseline.
func isZeroWords(p []byte) bool {
	for len(p) >= 32 {
		if binary.LittleEndian.Uint64(p)|binary.LittleEndian.Uint64(p[8:])|
			binary.LittleEndian.Uint64(p[16:])|binary.LittleEndian.Uint64(p[24:]) != 0 {
			return false
		}
		p = p[32:]
	}
	return isZeroBytewise(p)
}

// isZeroBytewise is the original implementation, kept as the baseline.
func isZeroBytewise(p []byte) bool {
	for len(p) >= 8 {
		if p[0]|p[1]|p[2]|p[3]|p[4]|p[5]|p[6]|p[7] != 0 {
			return false
		}
		p = p[8:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

// BenchmarkIsZero: a zero buffer (the whole buffer is scanned), a buffer
// whose only set byte is the last one, and a data buffer (random bytes:
// the first word decides). "bytewise" is the original byte-OR loop,
// "words" a loop over 64-bit words, "iszero" the implementation.
func BenchmarkIsZero(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{4 << 10, 64 << 10, 2 << 20} {
		zero := make([]byte, size)
		last := make([]byte, size)
		last[size-1] = 1
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		for _, c := range []struct {
			name string
			p    []byte
			want bool
		}{{"zero", zero, true}, {"last", last, false}, {"data", data, false}} {
			for _, impl := range []struct {
				name string
				fn   func([]byte) bool
			}{{"iszero", IsZero}, {"words", isZeroWords}, {"bytewise", isZeroBytewise}} {
				b.Run(fmt.Sprintf("%s/%dKiB/%s", c.name, size>>10, impl.name), func(b *testing.B) {
					b.SetBytes(int64(size))
					b.ReportAllocs()
					for b.Loop() {
						if impl.fn(c.p) != c.want {
							b.Fatal("wrong answer")
						}
					}
				})
			}
		}
	}
}
