package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"

	"github.com/blocklayer/blocklayer/blockio"
)

var (
	zstdDecOnce sync.Once
	zstdDec     *zstd.Decoder
	zstdEncOnce sync.Once
	zstdEnc     *zstd.Encoder
	inflaters   sync.Pool // *inflater
	deflaters   sync.Pool // *flate.Writer
)

type inflater struct {
	r  io.ReadCloser
	br bytes.Reader
}

func getZstdDec() *zstd.Decoder {
	zstdDecOnce.Do(func() {
		zstdDec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(64<<20))
	})
	return zstdDec
}

func getZstdEnc() *zstd.Encoder {
	zstdEncOnce.Do(func() {
		zstdEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false))
	})
	return zstdEnc
}

var errIncompressible = errors.New("qcow2: cluster does not compress")

// zstdFrameLen returns the length of the first zstd frame in b.
func zstdFrameLen(b []byte) (int, error) {
	if len(b) < 6 || binary.LittleEndian.Uint32(b) != 0xFD2FB528 {
		return 0, errors.New("no zstd frame magic")
	}
	fhd := b[4]
	pos := 5
	single := fhd&0x20 != 0
	if !single {
		pos++
	}
	pos += [4]int{0, 1, 2, 4}[fhd&3]
	switch fhd >> 6 {
	case 0:
		if single {
			pos++
		}
	case 1:
		pos += 2
	case 2:
		pos += 4
	case 3:
		pos += 8
	}
	for {
		if pos+3 > len(b) {
			return 0, errors.New("truncated zstd frame")
		}
		bh := uint32(b[pos]) | uint32(b[pos+1])<<8 | uint32(b[pos+2])<<16
		pos += 3
		size := int(bh >> 3)
		switch (bh >> 1) & 3 {
		case 1:
			size = 1
		case 3:
			return 0, errors.New("reserved zstd block type")
		}
		pos += size
		if pos > len(b) {
			return 0, errors.New("truncated zstd block")
		}
		if bh&1 != 0 {
			break
		}
	}
	if fhd&4 != 0 {
		pos += 4
		if pos > len(b) {
			return 0, errors.New("truncated zstd checksum")
		}
	}
	return pos, nil
}

// decompress inflates one cluster from src into dst (len(dst) == cluster).
func (img *Image) decompress(dst, src []byte) error {
	if img.h.compressionType == compressionZstd {
		n, err := zstdFrameLen(src)
		if err != nil {
			return err
		}
		out, err := getZstdDec().DecodeAll(src[:n], dst[:0])
		if err != nil {
			return err
		}
		if len(out) != len(dst) {
			return errors.New("zstd frame does not hold one cluster")
		}
		if &out[0] != &dst[0] {
			copy(dst, out)
		}
		return nil
	}
	inf, _ := inflaters.Get().(*inflater)
	if inf == nil {
		inf = &inflater{}
		inf.br.Reset(src)
		inf.r = flate.NewReader(&inf.br)
	} else {
		inf.br.Reset(src)
		inf.r.(flate.Resetter).Reset(&inf.br, nil)
	}
	_, err := io.ReadFull(inf.r, dst)
	inflaters.Put(inf)
	return err
}

type fixedWriter struct {
	b []byte
	n int
}

func (w *fixedWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > len(w.b) {
		return 0, errIncompressible
	}
	copy(w.b[w.n:], p)
	w.n += len(p)
	return len(p), nil
}

// compress compresses src into dst, returning the compressed length or
// errIncompressible when the result would not be smaller than dst.
func (img *Image) compress(dst, src []byte) (int, error) {
	if img.h.compressionType == compressionZstd {
		out := getZstdEnc().EncodeAll(src, dst[:0])
		if len(out) >= len(dst) || &out[0] != &dst[0] {
			return 0, errIncompressible
		}
		return len(out), nil
	}
	w := &fixedWriter{b: dst}
	fw, _ := deflaters.Get().(*flate.Writer)
	if fw == nil {
		var err error
		// QEMU inflates with a 4 KiB window (window bits 12): matches must
		// not reach further back than that.
		if fw, err = flate.NewWriterWindow(w, 4096); err != nil {
			return 0, err
		}
	} else {
		fw.Reset(w)
	}
	_, err := fw.Write(src)
	if err == nil {
		err = fw.Close()
	}
	deflaters.Put(fw)
	if err != nil {
		return 0, err
	}
	if w.n >= len(dst) {
		return 0, errIncompressible
	}
	return w.n, nil
}

// readCompressed decompresses the cluster described by L2 entry e into dst.
func (img *Image) readCompressed(dst []byte, e uint64) error {
	off := int64(e & img.cOffMask)
	nsec := int64((e>>img.cShift)&img.cMask) + 1
	maxBytes := nsec*512 - (off & 511)
	fsize := img.dev.Size()
	if off >= fsize || off < img.cs {
		return blockio.Corruptf("compressed cluster", off, "data offset outside the file")
	}
	maxBytes = min(maxBytes, fsize-off)
	bp := img.getBuf()
	defer img.putBuf(bp)
	var src []byte
	if maxBytes <= int64(len(*bp)) {
		src = (*bp)[:maxBytes]
	} else {
		src = make([]byte, maxBytes)
	}
	if _, err := img.dev.ReadAt(src, off); err != nil {
		return err
	}
	if err := img.decompress(dst, src); err != nil {
		return blockio.Corruptf("compressed cluster", off, "cannot decompress: %v", err)
	}
	return nil
}
