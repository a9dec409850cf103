package qcow2

import (
	"encoding/binary"
	"strings"

	"github.com/blocklayer/blocklayer/blockio"
)

// InfoSpecific is the qcow2 member of ImageInfoSpecific (the schema's
// ImageInfoSpecificQCow2), as `qemu-img info --output=json` prints it.
type InfoSpecific struct {
	Compat          string       `json:"compat"`
	DataFile        string       `json:"data-file,omitempty"`
	DataFileRaw     *bool        `json:"data-file-raw,omitempty"`
	ExtendedL2      *bool        `json:"extended-l2,omitempty"`
	LazyRefcounts   *bool        `json:"lazy-refcounts,omitempty"`
	Corrupt         *bool        `json:"corrupt,omitempty"`
	RefcountBits    int64        `json:"refcount-bits"`
	Bitmaps         []BitmapInfo `json:"bitmaps,omitempty"`
	CompressionType string       `json:"compression-type"`
}

// BitmapInfo is the schema's Qcow2BitmapInfo.
type BitmapInfo struct {
	Name        string   `json:"name"`
	Granularity int64    `json:"granularity"`
	Flags       []string `json:"flags"`
}

func ptr[T any](v T) *T { return &v }

// Info describes the image as `qemu-img info --output=json` does, with
// BackingImage filled for the backing chain.
func (img *Image) Info() (blockio.ImageInfo, error) {
	if img.closed.Load() {
		return blockio.ImageInfo{}, blockio.ErrClosed
	}
	// The header's feature bits and table offsets change under the
	// metadata lock (dirty/corrupt bits, Truncate): read a copy.
	img.mu.Lock()
	hc := *img.h
	img.mu.Unlock()
	h := &hc
	info := blockio.ImageInfo{
		Filename:    img.opts.Filename,
		Format:      "qcow2",
		VirtualSize: img.vsize.Load(),
		ClusterSize: ptr(img.cs),
		DirtyFlag:   ptr(h.incompat&incDirty != 0),
	}
	info.ActualSize = actualSize(img.dev)
	if h.backingFile != "" {
		info.BackingFilename = h.backingFile
		info.FullBackingFilename = fullBackingName(img.opts.Filename, h.backingFile)
		info.BackingFilenameFormat = h.backingFormat
	}
	snaps, err := img.Snapshots()
	if err != nil {
		return info, err
	}
	for _, s := range snaps {
		si := blockio.SnapshotInfo{
			ID: s.ID, Name: s.Name, VMStateSize: s.VMStateSize,
			DateSec: s.DateSec, DateNsec: s.DateNsec,
			VMClockSec: s.VMClockNsec / 1e9, VMClockNsec: s.VMClockNsec % 1e9,
		}
		if s.ICount >= 0 {
			si.ICount = ptr(s.ICount)
		}
		info.Snapshots = append(info.Snapshots, si)
	}
	spec := InfoSpecific{
		RefcountBits:    int64(1) << img.rcOrder,
		CompressionType: "zlib",
	}
	if h.compressionType == compressionZstd {
		spec.CompressionType = "zstd"
	}
	if h.version == 2 {
		spec.Compat = "0.10"
	} else {
		spec.Compat = "1.1"
		spec.LazyRefcounts = ptr(h.compat&compatLazy != 0)
		spec.Corrupt = ptr(h.incompat&incCorrupt != 0)
		spec.ExtendedL2 = ptr(img.extL2)
		if img.hasData {
			spec.DataFile = h.dataFile
			spec.DataFileRaw = ptr(img.dataRaw)
		}
		if h.hasBitmapsExt && h.autoclear&acBitmaps != 0 {
			bms, err := img.Bitmaps()
			if err != nil {
				return info, err
			}
			for _, b := range bms {
				bi := BitmapInfo{Name: b.Name, Granularity: b.Granularity, Flags: []string{}}
				if b.InUse {
					bi.Flags = append(bi.Flags, "in-use")
				}
				if b.Auto {
					bi.Flags = append(bi.Flags, "auto")
				}
				spec.Bitmaps = append(spec.Bitmaps, bi)
			}
		}
	}
	info.FormatSpecific = &blockio.ImageInfoSpecific{Type: "qcow2", Data: spec}
	if b, ok := img.backing.(blockio.Informer); ok && img.backing != nil {
		bi, err := b.Info()
		if err == nil {
			info.BackingImage = &bi
		}
	} else if img.backing != nil {
		bi := blockio.ImageInfo{Filename: info.FullBackingFilename, Format: "raw", VirtualSize: img.backing.Size()}
		bi.ActualSize = actualSize(img.backing)
		info.BackingImage = &bi
	}
	return info, nil
}

// fullBackingName resolves a backing file name the way QEMU reports
// full-backing-filename: relative names are taken relative to the
// directory part of the image's file name.
func fullBackingName(filename, backing string) string {
	if strings.HasPrefix(backing, "/") {
		return backing
	}
	i := strings.LastIndexByte(filename, '/')
	if i < 0 {
		return backing
	}
	return filename[:i+1] + backing
}

// Snapshot describes one internal snapshot.
type Snapshot struct {
	ID, Name         string
	L1Offset         int64
	L1Size           int64
	DateSec          int64
	DateNsec         int64
	VMClockNsec      int64
	VMStateSize      int64
	DiskSize         int64 // -1 when not recorded
	ICount           int64 // -1 when not recorded
	ExtraData        []byte
	TableEntryOffset int64
}

// Snapshots parses the snapshot table.
func (img *Image) Snapshots() ([]Snapshot, error) {
	h := img.h
	if h.nbSnapshots == 0 {
		return nil, nil
	}
	fsize := img.dev.Size()
	start := int64(h.snapshotsOffset)
	maxLen := min(int64(maxSnapTableBytes), fsize-start)
	if maxLen <= 0 {
		return nil, blockio.Corruptf("snapshot table", start, "outside the file")
	}
	be := binary.BigEndian
	var out []Snapshot
	pos := int64(0)
	hdr := make([]byte, 40)
	for i := uint32(0); i < h.nbSnapshots; i++ {
		if pos+40 > maxLen {
			return nil, blockio.Corruptf("snapshot table", start+pos, "snapshot %d header past the end of the table", i)
		}
		if _, err := img.dev.ReadAt(hdr, start+pos); err != nil {
			return nil, err
		}
		s := Snapshot{
			L1Offset:         int64(be.Uint64(hdr)),
			L1Size:           int64(be.Uint32(hdr[8:])),
			DateSec:          int64(be.Uint32(hdr[16:])),
			DateNsec:         int64(be.Uint32(hdr[20:])),
			VMClockNsec:      int64(be.Uint64(hdr[24:])),
			VMStateSize:      int64(be.Uint32(hdr[32:])),
			DiskSize:         -1,
			ICount:           -1,
			TableEntryOffset: start + pos,
		}
		idLen := int64(be.Uint16(hdr[12:]))
		nameLen := int64(be.Uint16(hdr[14:]))
		extra := int64(be.Uint32(hdr[36:]))
		if extra > 1024 {
			return nil, blockio.Corruptf("snapshot table", start+pos, "snapshot %d extra data too large (%d bytes)", i, extra)
		}
		total := 40 + extra + idLen + nameLen
		if pos+total > maxLen {
			return nil, blockio.Corruptf("snapshot table", start+pos, "snapshot %d past the end of the table", i)
		}
		rest := make([]byte, extra+idLen+nameLen)
		if _, err := img.dev.ReadAt(rest, start+pos+40); err != nil {
			return nil, err
		}
		s.ExtraData = rest[:extra]
		if extra >= 8 {
			s.VMStateSize = int64(be.Uint64(rest))
		}
		if extra >= 16 {
			s.DiskSize = int64(be.Uint64(rest[8:]))
		}
		if extra >= 24 {
			s.ICount = int64(be.Uint64(rest[16:]))
		}
		s.ID = string(rest[extra : extra+idLen])
		s.Name = string(rest[extra+idLen:])
		out = append(out, s)
		pos += (total + 7) &^ 7
	}
	return out, nil
}

// Bitmap describes one persistent dirty bitmap (directory entry).
type Bitmap struct {
	Name        string
	Granularity int64
	InUse, Auto bool
	TableOffset int64
	TableSize   int64
	Flags       uint32
	EntryOffset int64 // host offset of the directory entry
}

// Bitmaps parses the bitmap directory (empty when there is none).
func (img *Image) Bitmaps() ([]Bitmap, error) {
	h := img.h
	if !h.hasBitmapsExt {
		return nil, nil
	}
	dir := make([]byte, h.bitmaps.dirSize)
	if _, err := img.dev.ReadAt(dir, int64(h.bitmaps.dirOffset)); err != nil {
		return nil, err
	}
	be := binary.BigEndian
	var out []Bitmap
	pos := 0
	for i := uint32(0); i < h.bitmaps.nbBitmaps; i++ {
		at := int64(h.bitmaps.dirOffset) + int64(pos)
		if pos+24 > len(dir) {
			return nil, blockio.Corruptf("bitmap directory", at, "entry %d past the end of the directory", i)
		}
		e := dir[pos:]
		nameLen := int(be.Uint16(e[18:]))
		extra := int(be.Uint32(e[20:]))
		total := 24 + extra + nameLen
		if extra > len(dir) || pos+total > len(dir) {
			return nil, blockio.Corruptf("bitmap directory", at, "entry %d past the end of the directory", i)
		}
		gb := e[17]
		if gb > 63 {
			return nil, blockio.Corruptf("bitmap directory", at, "granularity bits %d", gb)
		}
		flags := be.Uint32(e[12:])
		out = append(out, Bitmap{
			Name:        string(e[24+extra : total]),
			Granularity: int64(1) << gb,
			InUse:       flags&1 != 0,
			Auto:        flags&2 != 0,
			TableOffset: int64(be.Uint64(e)),
			TableSize:   int64(be.Uint32(e[8:])),
			Flags:       flags,
			EntryOffset: at,
		})
		pos += (total + 7) &^ 7
	}
	return out, nil
}

// BlockStatus implements blockio.StatusReporter with the semantics of
// `qemu-img map --output=json`: Allocated is "present", Depth the layer
// that provides the data, Offset the host offset in the image's (data)
// file when known.
func (img *Image) BlockStatus(off, n int64) (blockio.Extent, error) {
	if img.closed.Load() {
		return blockio.Extent{}, blockio.ErrClosed
	}
	if err := blockio.CheckRange("block status", off, n, img.vsize.Load()); err != nil {
		return blockio.Extent{}, err
	}
	if n == 0 {
		return blockio.Extent{Start: off, Offset: -1}, nil
	}
	end := off + n
	ext, err := img.pieceStatus(off, n)
	if err != nil {
		return ext, err
	}
	for ext.End() < end {
		nx, err := img.pieceStatus(ext.End(), end-ext.End())
		if err != nil {
			return ext, err
		}
		if nx.Data != ext.Data || nx.Zero != ext.Zero || nx.Allocated != ext.Allocated || nx.Depth != ext.Depth {
			break
		}
		if (ext.Offset < 0) != (nx.Offset < 0) || (ext.Offset >= 0 && ext.Offset+ext.Length != nx.Offset) {
			break
		}
		ext.Length += nx.Length
	}
	return ext, nil
}

// statusRun bounds the clusters one BlockStatus piece maps under one
// hold of the metadata lock.
const statusRun = 1024

func (img *Image) pieceStatus(off, n int64) (blockio.Extent, error) {
	img.mu.Lock()
	m, err := img.lookupLocked(off, n)
	img.mu.Unlock()
	if err != nil {
		return blockio.Extent{}, err
	}
	l := m.n
	if m.noL2 {
		per := img.cs << img.l2Bits
		l = min(n, (off/per+1)*per-off)
	}
	e := blockio.Extent{Start: off, Length: l, Offset: -1}
	switch m.kind {
	case kNormal:
		e.Data, e.Allocated, e.Offset = true, true, m.host
		if !img.extL2 && m.n == img.cs-(off&(img.cs-1)) {
			// Extend over following clusters that continue the host range
			// (bounded, to keep the metadata lock short), so that the data
			// file is probed once per contiguous run, not per cluster.
			img.mu.Lock()
			for k := 0; k < statusRun && l < n; k++ {
				nm, err := img.lookupLocked(off+l, n-l)
				if err != nil || nm.kind != kNormal || nm.host != m.host+l {
					break
				}
				l += nm.n
			}
			img.mu.Unlock()
			e.Length = l
		}
		img.mu.Lock()
		recurse := img.metaPreallocLocked()
		img.mu.Unlock()
		if sr, ok := img.data.(blockio.StatusReporter); ok && recurse && !img.hasData && m.host+l <= img.data.Size() {
			if fe, err := sr.BlockStatus(m.host, l); err == nil && fe.Length > 0 {
				e.Length = fe.Length
				if fe.Zero {
					e.Zero = true
				}
			}
		}
	case kZeroAlloc:
		e.Zero, e.Allocated, e.Offset = true, true, m.host
	case kZeroPlain:
		e.Zero, e.Allocated = true, true
	case kCompressed:
		e.Data, e.Allocated = true, true
	case kUnalloc, kUnallocAlloc:
		if img.backing != nil {
			bs := img.backing.Size()
			if off >= bs {
				e.Zero = true
				e.Depth = img.chainLen()
				return e, nil
			}
			be, err := blockio.BlockStatus(img.backing, off, min(l, bs-off))
			if err != nil {
				return e, err
			}
			be.Depth++
			return be, nil
		}
		e.Zero = true
		if m.kind == kUnallocAlloc {
			e.Offset = m.host
		}
	}
	return e, nil
}

// chainLen is the number of images in the chain below this one.
func (img *Image) chainLen() int {
	n := 0
	var d blockio.Device = img
	for {
		q, ok := d.(*Image)
		if !ok || q.backing == nil {
			return n
		}
		n++
		d = q.backing
	}
}

// actualSize returns the storage a device's file occupies, when known.
func actualSize(d blockio.Device) *int64 {
	if a, ok := d.(interface{ AllocatedSize() (int64, error) }); ok {
		if n, err := a.AllocatedSize(); err == nil {
			return &n
		}
	}
	return nil
}
