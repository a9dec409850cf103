package vmdk

import (
	"encoding/binary"

	"github.com/blocklayer/blocklayer/blockio"
)

// On-disk constants of hosted sparse extents (VMDK4) and COWD extents.
const (
	sectorSize = 512

	magicKDMV = 0x564d444b // "KDMV" read as a little-endian u32
	magicCOWD = 0x44574f43 // "COWD" read as a little-endian u32

	flagNLDetect   = 1 << 0
	flagRGD        = 1 << 1
	flagZeroGrain  = 1 << 2
	flagCompressed = 1 << 16
	flagMarker     = 1 << 17

	compressNone    = 0
	compressDeflate = 1

	// gdAtEnd in gdOffset means the real header is the footer at the end
	// of a stream-optimized file.
	gdAtEnd = ^uint64(0)

	// Marker types (metadata markers have size 0).
	markerEOS    = 0
	markerGT     = 1
	markerGD     = 2
	markerFooter = 3

	// Limits QEMU enforces (origin: CVE-2014-0143/0144).
	maxGTEsPerGT     = 512
	maxGrainSectors  = 0x200000 // 1 GiB
	maxGDEntries     = 32 << 20 // "L1 size too big"
	maxDescriptor    = 1<<20 - 1
	maxExtentSectors = 1 << 32 // grain sector numbers are u32

	// COWD (vmfsSparse) grain tables have a fixed size.
	cowdGTEs = 4096

	headerSize = 512
)

// sparseHeader is the 512-byte header of a hosted sparse extent.
type sparseHeader struct {
	Version           uint32
	Flags             uint32
	Capacity          uint64 // sectors
	GrainSize         uint64 // sectors
	DescOffset        uint64 // sectors
	DescSize          uint64 // sectors
	NumGTEsPerGT      uint32
	RGDOffset         uint64 // sectors
	GDOffset          uint64 // sectors
	OverHead          uint64 // sectors
	UncleanShutdown   uint8
	CompressAlgorithm uint16

	nlBad bool // new-line detection bytes damaged (parse only)
}

// marshal encodes the header into a 512-byte sector.
func (h *sparseHeader) marshal() []byte {
	b := make([]byte, headerSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], magicKDMV)
	le.PutUint32(b[4:], h.Version)
	le.PutUint32(b[8:], h.Flags)
	le.PutUint64(b[12:], h.Capacity)
	le.PutUint64(b[20:], h.GrainSize)
	le.PutUint64(b[28:], h.DescOffset)
	le.PutUint64(b[36:], h.DescSize)
	le.PutUint32(b[44:], h.NumGTEsPerGT)
	le.PutUint64(b[48:], h.RGDOffset)
	le.PutUint64(b[56:], h.GDOffset)
	le.PutUint64(b[64:], h.OverHead)
	b[72] = h.UncleanShutdown
	b[73], b[74], b[75], b[76] = '\n', ' ', '\r', '\n'
	le.PutUint16(b[77:], h.CompressAlgorithm)
	return b
}

// parseSparseHeader decodes a KDMV header. It checks only the magic and
// the new-line detection bytes; semantic checks are done by openSparse.
func parseSparseHeader(b []byte, off int64) (sparseHeader, error) {
	var h sparseHeader
	if len(b) < headerSize {
		return h, blockio.Corruptf("vmdk sparse header", off, "truncated (%d bytes)", len(b))
	}
	le := binary.LittleEndian
	if le.Uint32(b) != magicKDMV {
		return h, blockio.Corruptf("vmdk sparse header", off, "bad magic %#x", le.Uint32(b))
	}
	h.Version = le.Uint32(b[4:])
	h.Flags = le.Uint32(b[8:])
	h.Capacity = le.Uint64(b[12:])
	h.GrainSize = le.Uint64(b[20:])
	h.DescOffset = le.Uint64(b[28:])
	h.DescSize = le.Uint64(b[36:])
	h.NumGTEsPerGT = le.Uint32(b[44:])
	h.RGDOffset = le.Uint64(b[48:])
	h.GDOffset = le.Uint64(b[56:])
	h.OverHead = le.Uint64(b[64:])
	h.UncleanShutdown = b[72]
	h.CompressAlgorithm = le.Uint16(b[77:])
	h.nlBad = h.Flags&flagNLDetect != 0 && (b[73] != '\n' || b[74] != ' ' || b[75] != '\r' || b[76] != '\n')
	return h, nil
}

// cowdHeader is the header of a VMDK3 "COWD" (vmfsSparse) extent.
type cowdHeader struct {
	Version     uint32
	Flags       uint32
	Capacity    uint32 // sectors
	GrainSize   uint32 // sectors
	GDOffset    uint32 // sectors
	GDEntries   uint32
	FreeSector  uint32
	Cylinders   uint32
	Heads       uint32
	SectorsPerT uint32
}

func (h *cowdHeader) marshal() []byte {
	b := make([]byte, headerSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], magicCOWD)
	for i, v := range []uint32{h.Version, h.Flags, h.Capacity, h.GrainSize, h.GDOffset, h.GDEntries, h.FreeSector, h.Cylinders, h.Heads, h.SectorsPerT} {
		le.PutUint32(b[4+4*i:], v)
	}
	return b
}

func parseCOWDHeader(b []byte) (cowdHeader, error) {
	var h cowdHeader
	if len(b) < 44 {
		return h, blockio.Corruptf("vmdk COWD header", 0, "truncated (%d bytes)", len(b))
	}
	le := binary.LittleEndian
	if le.Uint32(b) != magicCOWD {
		return h, blockio.Corruptf("vmdk COWD header", 0, "bad magic")
	}
	v := func(i int) uint32 { return le.Uint32(b[4+4*i:]) }
	h = cowdHeader{v(0), v(1), v(2), v(3), v(4), v(5), v(6), v(7), v(8), v(9)}
	return h, nil
}

// grainMarker is the 12-byte prefix of a compressed grain in a
// stream-optimized extent; metadataMarker is a full sector with size 0.
const grainMarkerSize = 12

func putGrainMarker(b []byte, lba uint64, size uint32) {
	binary.LittleEndian.PutUint64(b, lba)
	binary.LittleEndian.PutUint32(b[8:], size)
}

func metadataMarker(sectors uint64, typ uint32) []byte {
	b := make([]byte, sectorSize)
	binary.LittleEndian.PutUint64(b, sectors)
	binary.LittleEndian.PutUint32(b[12:], typ)
	return b
}

// Probe reports whether header (the first bytes of a file, at least 4)
// looks like a VMDK: the sparse magic "KDMV", the COWD magic, or a text
// descriptor whose first significant line is version=1, 2 or 3.
func Probe(header []byte) bool {
	if len(header) < 4 {
		return false
	}
	m := binary.LittleEndian.Uint32(header)
	if m == magicKDMV || m == magicCOWD {
		return true
	}
	p := header
	for len(p) > 0 {
		// skip blank lines and whitespace
		for len(p) > 0 && (p[0] == ' ' || p[0] == '\t' || p[0] == '\r' || p[0] == '\n') {
			p = p[1:]
		}
		if len(p) == 0 {
			return false
		}
		end := 0
		for end < len(p) && p[end] != '\n' {
			end++
		}
		line := p[:end]
		if line[0] == '#' {
			if end == len(p) {
				return false
			}
			p = p[end:]
			continue
		}
		if end == len(p) {
			// Line cut by the probe buffer: only accept a complete line.
			return false
		}
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		s := string(line)
		return s == "version=1" || s == "version=2" || s == "version=3"
	}
	return false
}
