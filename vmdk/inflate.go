package vmdk

import (
	"encoding/binary"
	"errors"
	"hash/adler32"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
)

// inflater is a pooled raw-deflate reader with its input adapter; whole
// grains are inflated with it and their zlib checksum verified in one
// pass over the output.
type inflater struct {
	br byteReader
	fr io.ReadCloser
}

var inflaters = sync.Pool{New: func() any { return new(inflater) }}

var errZlibChecksum = errors.New("zlib: invalid checksum")

// inflateWhole inflates the zlib stream src into dst and returns the bytes
// stored (fewer when the stream is short). It behaves like reading
// src through a zlib reader into dst: a bad header is an error, the
// Adler-32 trailer is verified when the stream ends within dst and
// mismatches are errors, a missing trailer is tolerated, and output
// beyond len(dst) is ignored.
func inflateWhole(dst, src []byte) (int, error) {
	if len(src) < 2 {
		return 0, io.ErrUnexpectedEOF
	}
	h := uint(src[0])<<8 | uint(src[1])
	if src[0]&0x0f != 8 || src[0]>>4 > 7 || h%31 != 0 {
		return 0, errors.New("zlib: invalid header")
	}
	if src[1]&0x20 != 0 {
		return 0, errors.New("zlib: invalid dictionary")
	}
	inf := inflaters.Get().(*inflater)
	defer inflaters.Put(inf)
	inf.br = byteReader{b: src, i: 2}
	if inf.fr == nil {
		inf.fr = flate.NewReader(&inf.br)
	} else if err := inf.fr.(flate.Resetter).Reset(&inf.br, nil); err != nil {
		return 0, err
	}
	n := 0
	var err error
	for n < len(dst) && err == nil {
		var k int
		k, err = inf.fr.Read(dst[n:])
		n += k
		if k == 0 && err == nil {
			break // no progress: treat like an overlong stream
		}
	}
	if err == nil && n == len(dst) {
		// dst is full; the stream normally ends exactly here.
		var one [1]byte
		var k int
		k, err = inf.fr.Read(one[:])
		if k > 0 {
			err = nil // overlong stream: the tail is ignored
		}
	}
	switch err {
	case nil:
		return n, nil // stream did not end within dst: nothing to verify
	case io.EOF:
	case io.ErrUnexpectedEOF:
		return n, nil // truncated deflate data: keep what inflated
	default:
		return n, err
	}
	// The stream ended: check the Adler-32 trailer when it is there.
	if rest := inf.br.b[inf.br.i:]; len(rest) >= 4 && binary.BigEndian.Uint32(rest) != adler32.Checksum(dst[:n]) {
		return n, errZlibChecksum
	}
	return n, nil
}
