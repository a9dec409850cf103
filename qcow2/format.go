package qcow2

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/blocklayer/blocklayer/blockio"
)

// On-disk constants (docs/interop/qcow2.rst, restated in shared/docs/qcow2-format.md).
const (
	magic = 0x514649FB

	v2HeaderLen = 72
	v3HeaderLen = 104
	// newHeaderLen is the header length this package writes (with the
	// compression_type field and padding).
	newHeaderLen = 112

	minClusterBits = 9
	maxClusterBits = 21

	maxBackingNameLen = 1023
	maxL1Bytes        = 32 << 20 // QCOW_MAX_L1_SIZE
	maxRefTableBytes  = 8 << 20  // QCOW_MAX_REFTABLE_SIZE
	maxSnapshots      = 65536
	maxSnapTableBytes = 64 << 20
	maxBitmaps        = 65535
	maxBitmapDirBytes = 1024 * 65535

	// Incompatible feature bits.
	incDirty       = 1 << 0
	incCorrupt     = 1 << 1
	incDataFile    = 1 << 2
	incCompression = 1 << 3
	incExtL2       = 1 << 4
	incKnown       = incDirty | incCorrupt | incDataFile | incCompression | incExtL2

	// Compatible feature bits.
	compatLazy = 1 << 0

	// Autoclear feature bits.
	acBitmaps     = 1 << 0
	acDataFileRaw = 1 << 1

	// Header extension types.
	extEnd           = 0x00000000
	extBackingFormat = 0xE2792ACA
	extFeatureTable  = 0x6803F857
	extBitmaps       = 0x23852875
	extCrypto        = 0x0537BE77
	extDataFile      = 0x44415441

	// Table entry bits.
	l1OffsetMask  = 0x00fffffffffffe00
	l2OffsetMask  = 0x00fffffffffffe00
	rtOffsetMask  = 0xfffffffffffffe00
	oflagCopied   = uint64(1) << 63
	oflagCompress = uint64(1) << 62
	oflagZero     = uint64(1) << 0
	l1Reserved    = 0x7f000000000001ff
	l2Reserved    = 0x3f000000000001fe

	maxHostOffset = int64(1) << 56

	compressionDeflate = 0
	compressionZstd    = 1
)

// header is the decoded qcow2 header plus its extensions.
type header struct {
	version         uint32
	backingOffset   uint64
	backingSize     uint32
	clusterBits     uint32
	size            uint64
	cryptMethod     uint32
	l1Size          uint32
	l1Offset        uint64
	rtOffset        uint64
	rtClusters      uint32
	nbSnapshots     uint32
	snapshotsOffset uint64
	incompat        uint64
	compat          uint64
	autoclear       uint64
	refcountOrder   uint32
	headerLength    uint32
	compressionType uint8

	// Extensions.
	backingFormat string
	dataFile      string
	features      []featureName
	hasBitmapsExt bool
	bitmaps       bitmapsExt
	hasCrypto     bool
	unknownExts   []rawExt

	// extraHeader holds header fields past newHeaderLen that this package
	// does not know (kept verbatim when the header is rewritten).
	extraHeader []byte

	backingFile string
}

type featureName struct {
	typ  uint8 // 0 incompatible, 1 compatible, 2 autoclear
	bit  uint8
	name string
}

type bitmapsExt struct {
	nbBitmaps uint32
	dirSize   uint64
	dirOffset uint64
}

type rawExt struct {
	typ  uint32
	data []byte
}

func herr(off int64, format string, args ...any) error {
	return blockio.Corruptf("qcow2 header", off, format, args...)
}

// parseHeader decodes and validates the header found in the first cluster
// of an image. buf must hold at least the first min(cluster, file size)
// bytes; fileSize bounds table offsets.
func parseHeader(buf []byte, fileSize int64) (*header, error) {
	if len(buf) < v2HeaderLen {
		return nil, herr(0, "file too short for a qcow2 header (%d bytes)", len(buf))
	}
	be := binary.BigEndian
	if be.Uint32(buf) != magic {
		return nil, herr(0, "bad magic %#x", be.Uint32(buf))
	}
	h := &header{
		version:         be.Uint32(buf[4:]),
		backingOffset:   be.Uint64(buf[8:]),
		backingSize:     be.Uint32(buf[16:]),
		clusterBits:     be.Uint32(buf[20:]),
		size:            be.Uint64(buf[24:]),
		cryptMethod:     be.Uint32(buf[32:]),
		l1Size:          be.Uint32(buf[36:]),
		l1Offset:        be.Uint64(buf[40:]),
		rtOffset:        be.Uint64(buf[48:]),
		rtClusters:      be.Uint32(buf[56:]),
		nbSnapshots:     be.Uint32(buf[60:]),
		snapshotsOffset: be.Uint64(buf[64:]),
	}
	if h.version != 2 && h.version != 3 {
		return nil, &blockio.UnsupportedError{Feature: fmt.Sprintf("qcow2 version %d", h.version)}
	}
	if h.clusterBits < minClusterBits || h.clusterBits > maxClusterBits {
		return nil, herr(20, "cluster_bits %d outside %d..%d", h.clusterBits, minClusterBits, maxClusterBits)
	}
	cs := uint64(1) << h.clusterBits
	h.refcountOrder = 4
	h.headerLength = v2HeaderLen
	if h.version == 3 {
		if len(buf) < v3HeaderLen {
			return nil, herr(0, "file too short for a version 3 header")
		}
		h.incompat = be.Uint64(buf[72:])
		h.compat = be.Uint64(buf[80:])
		h.autoclear = be.Uint64(buf[88:])
		h.refcountOrder = be.Uint32(buf[96:])
		h.headerLength = be.Uint32(buf[100:])
		if h.headerLength < v3HeaderLen {
			return nil, herr(100, "header_length %d too small", h.headerLength)
		}
		if uint64(h.headerLength) > cs || int(h.headerLength) > len(buf) {
			return nil, herr(100, "header_length %d larger than cluster", h.headerLength)
		}
		if h.headerLength > 104 {
			h.compressionType = buf[104]
		}
		if h.headerLength > newHeaderLen {
			h.extraHeader = append([]byte(nil), buf[newHeaderLen:h.headerLength]...)
		}
	}
	if h.refcountOrder > 6 {
		return nil, herr(96, "refcount_order %d > 6", h.refcountOrder)
	}
	if h.size > uint64(1)<<62 {
		return nil, herr(24, "virtual size %d too large", h.size)
	}
	// Extensions.
	extStart := int(h.headerLength)
	extEndLimit := int(min(cs, uint64(len(buf))))
	if h.backingOffset != 0 && h.backingOffset < uint64(extEndLimit) {
		extEndLimit = int(h.backingOffset)
	}
	if err := h.parseExtensions(buf, extStart, extEndLimit); err != nil {
		return nil, err
	}
	if h.backingOffset != 0 {
		if h.backingSize > maxBackingNameLen {
			return nil, herr(16, "backing file name length %d > %d", h.backingSize, maxBackingNameLen)
		}
		end := h.backingOffset + uint64(h.backingSize)
		if end > cs || end > uint64(len(buf)) || end < h.backingOffset {
			return nil, herr(8, "backing file name at %#x+%d outside first cluster", h.backingOffset, h.backingSize)
		}
		h.backingFile = string(buf[h.backingOffset:end])
	}
	if h.version == 3 {
		if unk := h.incompat &^ incKnown; unk != 0 {
			return nil, &blockio.UnsupportedError{Feature: "qcow2 feature(s): " + h.featureNames(0, unk)}
		}
		if h.incompat&incCompression != 0 {
			if h.headerLength <= 104 {
				return nil, herr(72, "compression type bit set but header has no compression_type field")
			}
			if h.compressionType > compressionZstd {
				return nil, &blockio.UnsupportedError{Feature: fmt.Sprintf("qcow2 compression type %d", h.compressionType)}
			}
		} else if h.compressionType != compressionDeflate {
			return nil, herr(104, "compression_type %d without the compression type feature bit", h.compressionType)
		}
		if h.incompat&incExtL2 != 0 && h.clusterBits < 14 {
			return nil, herr(20, "extended L2 entries need clusters of at least 16 KiB")
		}
		if h.autoclear&acDataFileRaw != 0 && h.incompat&incDataFile == 0 {
			// QEMU ignores (clears) the bit in this case.
			h.autoclear &^= acDataFileRaw
		}
	}
	if h.cryptMethod > 2 {
		return nil, herr(32, "unknown encryption method %d", h.cryptMethod)
	}
	if h.cryptMethod != 0 {
		return nil, &blockio.UnsupportedError{Feature: "encrypted qcow2 images"}
	}
	// Table offsets and sizes.
	if h.rtClusters == 0 {
		return nil, herr(56, "image does not contain a reference count table")
	}
	if uint64(h.rtClusters)*cs > maxRefTableBytes {
		return nil, herr(56, "reference count table too large (%d clusters)", h.rtClusters)
	}
	if err := validateTable(h.rtOffset, uint64(h.rtClusters)*cs, cs, fileSize, "refcount table", 48); err != nil {
		return nil, err
	}
	if uint64(h.l1Size)*8 > maxL1Bytes {
		return nil, herr(36, "active L1 table too large (%d entries)", h.l1Size)
	}
	l2Entries := cs / 8
	if h.incompat&incExtL2 != 0 {
		l2Entries = cs / 16
	}
	need := (h.size + cs*l2Entries - 1) / (cs * l2Entries)
	if uint64(h.l1Size) < need {
		return nil, herr(36, "L1 table is too small (%d entries, %d needed)", h.l1Size, need)
	}
	if h.l1Size > 0 {
		if err := validateTable(h.l1Offset, uint64(h.l1Size)*8, cs, fileSize, "L1 table", 40); err != nil {
			return nil, err
		}
	}
	if h.nbSnapshots > maxSnapshots {
		return nil, herr(60, "too many snapshots (%d)", h.nbSnapshots)
	}
	if h.nbSnapshots > 0 {
		if err := validateTable(h.snapshotsOffset, uint64(h.nbSnapshots)*40, cs, fileSize, "snapshot table", 64); err != nil {
			return nil, err
		}
	}
	if h.hasBitmapsExt {
		b := h.bitmaps
		if b.nbBitmaps == 0 || b.nbBitmaps > maxBitmaps || b.dirSize > maxBitmapDirBytes {
			return nil, herr(-1, "bitmaps extension: bad count %d or directory size %d", b.nbBitmaps, b.dirSize)
		}
		if err := validateTable(b.dirOffset, b.dirSize, cs, fileSize, "bitmap directory", -1); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// validateTable checks that a table is cluster aligned and lies within
// the file (QEMU's validate_table_offset, plus a file-size bound).
func validateTable(off, size, cs uint64, fileSize int64, what string, hdrOff int64) error {
	if off%cs != 0 {
		return herr(hdrOff, "%s offset %#x not cluster aligned", what, off)
	}
	if off == 0 {
		return herr(hdrOff, "%s at offset 0 overlaps the header", what)
	}
	end := off + size
	if end < off || end > uint64(maxHostOffset) {
		return herr(hdrOff, "%s at %#x size %d overflows", what, off, size)
	}
	if fileSize >= 0 && end > uint64(fileSize) {
		return herr(hdrOff, "%s at %#x size %d extends past the end of the file (%d bytes)", what, off, size, fileSize)
	}
	return nil
}

func (h *header) parseExtensions(buf []byte, start, limit int) error {
	be := binary.BigEndian
	off := start
	seen := map[uint32]bool{}
	for {
		if off+8 > limit {
			// Less than one extension header left: the area ends here.
			return nil
		}
		typ := be.Uint32(buf[off:])
		length := int(be.Uint32(buf[off+4:]))
		if typ == extEnd {
			return nil
		}
		dataOff := off + 8
		if length < 0 || length > limit-dataOff {
			return herr(int64(off), "header extension %#x too large (%d bytes)", typ, length)
		}
		data := buf[dataOff : dataOff+length]
		if seen[typ] && typ != extEnd {
			return herr(int64(off), "duplicate header extension %#x", typ)
		}
		seen[typ] = true
		switch typ {
		case extBackingFormat:
			h.backingFormat = string(data)
		case extDataFile:
			h.dataFile = string(data)
		case extFeatureTable:
			for i := 0; i+48 <= len(data); i += 48 {
				e := data[i : i+48]
				name := string(e[2:])
				if j := strings.IndexByte(name, 0); j >= 0 {
					name = name[:j]
				}
				h.features = append(h.features, featureName{typ: e[0], bit: e[1], name: name})
			}
		case extBitmaps:
			if length < 24 {
				return herr(int64(off), "bitmaps extension too short (%d bytes)", length)
			}
			if be.Uint32(data[4:]) != 0 {
				return herr(int64(off), "bitmaps extension reserved field not zero")
			}
			h.hasBitmapsExt = true
			h.bitmaps = bitmapsExt{
				nbBitmaps: be.Uint32(data),
				dirSize:   be.Uint64(data[8:]),
				dirOffset: be.Uint64(data[16:]),
			}
		case extCrypto:
			h.hasCrypto = true
		default:
			h.unknownExts = append(h.unknownExts, rawExt{typ: typ, data: append([]byte(nil), data...)})
		}
		off = dataOff + (length+7)&^7
	}
}

// featureNames names the set bits of mask of the given feature type using
// the image's feature table.
func (h *header) featureNames(typ uint8, mask uint64) string {
	var parts []string
	for bit := range 64 {
		if mask&(1<<bit) == 0 {
			continue
		}
		name := ""
		for _, f := range h.features {
			if f.typ == typ && int(f.bit) == bit {
				name = f.name
			}
		}
		if name == "" {
			name = fmt.Sprintf("Unknown incompatible feature: %x", uint64(1)<<bit)
		}
		parts = append(parts, name)
	}
	return strings.Join(parts, ", ")
}

// defaultFeatureTable is the table QEMU writes into every v3 image.
var defaultFeatureTable = []featureName{
	{0, 0, "dirty bit"},
	{0, 1, "corrupt bit"},
	{0, 2, "external data file"},
	{0, 3, "compression type"},
	{0, 4, "extended L2 entries"},
	{1, 0, "lazy refcounts"},
	{2, 0, "bitmaps"},
	{2, 1, "raw external data"},
}

// encode writes a complete header cluster: the fields, then the extensions
// in QEMU's order (backing format, external data file, feature table,
// bitmaps, unknown ones kept verbatim), the end marker and the backing file
// name. Create uses it for new images and ChangeBackingFile to rewrite the
// header of an existing one.
func (h *header) encode(cs int) ([]byte, error) {
	be := binary.BigEndian
	buf := make([]byte, cs)
	be.PutUint32(buf[0:], magic)
	be.PutUint32(buf[4:], h.version)
	be.PutUint32(buf[20:], h.clusterBits)
	be.PutUint64(buf[24:], h.size)
	be.PutUint32(buf[32:], h.cryptMethod)
	be.PutUint32(buf[36:], h.l1Size)
	be.PutUint64(buf[40:], h.l1Offset)
	be.PutUint64(buf[48:], h.rtOffset)
	be.PutUint32(buf[56:], h.rtClusters)
	be.PutUint32(buf[60:], h.nbSnapshots)
	be.PutUint64(buf[64:], h.snapshotsOffset)
	off := v2HeaderLen
	if h.version == 3 {
		be.PutUint64(buf[72:], h.incompat)
		be.PutUint64(buf[80:], h.compat)
		be.PutUint64(buf[88:], h.autoclear)
		be.PutUint32(buf[96:], h.refcountOrder)
		if newHeaderLen+len(h.extraHeader) > cs/2 {
			return nil, &blockio.InvalidError{What: "qcow2 header", Value: len(h.extraHeader), Reason: "header fields do not fit in the first cluster"}
		}
		be.PutUint32(buf[100:], uint32(newHeaderLen+len(h.extraHeader)))
		buf[104] = h.compressionType
		copy(buf[newHeaderLen:], h.extraHeader)
		off = newHeaderLen + len(h.extraHeader)
	}
	putExt := func(typ uint32, data []byte) error {
		n := 8 + (len(data)+7)&^7
		if off+n+8 > cs {
			return &blockio.InvalidError{What: "qcow2 header", Value: typ, Reason: "header extensions do not fit in the first cluster"}
		}
		be.PutUint32(buf[off:], typ)
		be.PutUint32(buf[off+4:], uint32(len(data)))
		copy(buf[off+8:], data)
		off += n
		return nil
	}
	if h.version == 3 {
		if h.backingFormat != "" {
			if err := putExt(extBackingFormat, []byte(h.backingFormat)); err != nil {
				return nil, err
			}
		}
		if h.dataFile != "" {
			if err := putExt(extDataFile, []byte(h.dataFile)); err != nil {
				return nil, err
			}
		}
		ft := make([]byte, 48*len(defaultFeatureTable))
		for i, f := range defaultFeatureTable {
			ft[i*48] = f.typ
			ft[i*48+1] = f.bit
			copy(ft[i*48+2:i*48+48], f.name)
		}
		// The feature table is optional: like qemu-img 7.2, write it
		// only with clusters larger than 4 KiB, where it cannot crowd
		// out the backing file name (checked byte for byte against
		// qemu-img create and rebase -u).
		if cs > 4096 {
			if err := putExt(extFeatureTable, ft); err != nil {
				return nil, err
			}
		}
	} else if h.backingFormat != "" {
		if err := putExt(extBackingFormat, []byte(h.backingFormat)); err != nil {
			return nil, err
		}
	}
	if h.hasBitmapsExt {
		var b [24]byte
		be.PutUint32(b[0:], h.bitmaps.nbBitmaps)
		be.PutUint64(b[8:], h.bitmaps.dirSize)
		be.PutUint64(b[16:], h.bitmaps.dirOffset)
		if err := putExt(extBitmaps, b[:]); err != nil {
			return nil, err
		}
	}
	// QEMU keeps unknown extensions in a list it prepends to while
	// reading, so each rewrite stores them in reverse order: do the same.
	for i := range h.unknownExts {
		e := h.unknownExts[len(h.unknownExts)-1-i]
		if err := putExt(e.typ, e.data); err != nil {
			return nil, err
		}
	}
	off += 8 // end marker
	if h.backingFile != "" {
		if len(h.backingFile) > maxBackingNameLen || off+len(h.backingFile) > cs {
			return nil, &blockio.InvalidError{What: "backing file name", Value: h.backingFile, Reason: "too long"}
		}
		be.PutUint64(buf[8:], uint64(off))
		be.PutUint32(buf[16:], uint32(len(h.backingFile)))
		copy(buf[off:], h.backingFile)
	}
	return buf, nil
}

// Probe reports whether header looks like the start of a qcow2 image.
func Probe(header []byte) bool {
	if len(header) < 8 {
		return false
	}
	v := binary.BigEndian.Uint32(header[4:])
	return binary.BigEndian.Uint32(header) == magic && (v == 2 || v == 3)
}
