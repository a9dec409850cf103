package qcow2

import (
	"encoding/binary"
	"fmt"

	"github.com/blocklayer/blocklayer/blockio"
)

// kind classifies a guest cluster or subcluster (QEMU's cluster types).
type kind uint8

const (
	kUnalloc      kind = iota // read from backing (or zeros)
	kZeroPlain                // reads zeros, no host cluster
	kZeroAlloc                // reads zeros, host cluster preallocated
	kNormal                   // data at host offset
	kCompressed               // compressed data
	kUnallocAlloc             // extended L2: unallocated subcluster of an allocated cluster
)

// mapping describes the guest range [off, off+n) of uniform kind within
// one cluster.
type mapping struct {
	kind  kind
	host  int64  // host offset of the first byte (kNormal, kZeroAlloc, kUnallocAlloc)
	n     int64  // bytes
	entry uint64 // raw first L2 word
	bmap  uint64 // extended L2 bitmap
	noL2  bool   // no L2 table for this range
}

func (img *Image) l2Index(off int64) (l1i, l2i int64) {
	c := off >> img.cbits
	return c >> img.l2Bits, c & (img.l2Ent - 1)
}

// loadL2Locked returns the cached L2 table at host offset off, reading it
// on a miss.
func (img *Image) loadL2Locked(off int64) (*ctable, error) {
	if t := img.l2c.lookup(off); t != nil {
		return t, nil
	}
	if off&(img.cs-1) != 0 || off <= 0 || off+img.cs > img.dev.Size() {
		return nil, img.corruptLocked("L2 table", off, "L2 table offset %#x invalid (unaligned or outside the file)", off)
	}
	t, err := img.l2c.slot(off)
	if err != nil {
		return nil, err
	}
	if _, err := img.dev.ReadAt(t.buf, off); err != nil {
		return nil, err
	}
	img.l2c.insert(t)
	return t, nil
}

// lookupLocked maps guest offset off (limited to max bytes and to its
// cluster).
func (img *Image) lookupLocked(off, max int64) (mapping, error) {
	inCl := off & (img.cs - 1)
	n := min(max, img.cs-inCl)
	l1i, l2i := img.l2Index(off)
	if l1i >= int64(len(img.l1)) {
		return mapping{kind: kUnalloc, n: n, noL2: true}, nil
	}
	l1e := img.l1[l1i]
	l2off := int64(l1e & l1OffsetMask)
	if l2off == 0 {
		return mapping{kind: kUnalloc, n: n, noL2: true}, nil
	}
	t, err := img.loadL2Locked(l2off)
	if err != nil {
		return mapping{}, err
	}
	eo := l2i * img.entSize
	e := binary.BigEndian.Uint64(t.buf[eo:])
	m := mapping{entry: e, n: n}
	if e&oflagCompress != 0 {
		m.kind = kCompressed
		if img.hasData {
			return m, img.corruptLocked("L2 table", l2off+eo, "compressed cluster in an image with an external data file")
		}
		return m, nil
	}
	host := int64(e & l2OffsetMask)
	if host != 0 && host&(img.cs-1) != 0 {
		return m, img.corruptLocked("L2 table", l2off+eo, "cluster offset %#x unaligned (guest offset %#x)", host, off)
	}
	if host != 0 && !img.hasData && img.overlapsMetadataLocked(host) {
		return m, img.corruptLocked("L2 table", l2off+eo, "data cluster %#x for guest offset %#x overlaps metadata", host, off)
	}
	if !img.extL2 {
		switch {
		case e&oflagZero != 0 && host == 0 && (!img.hasData || e&oflagCopied == 0):
			m.kind = kZeroPlain
		case e&oflagZero != 0:
			m.kind, m.host = kZeroAlloc, host+inCl
		case host == 0 && !(img.hasData && e&oflagCopied != 0):
			m.kind = kUnalloc
		default:
			m.kind, m.host = kNormal, host+inCl
		}
		return m, nil
	}
	bm := binary.BigEndian.Uint64(t.buf[eo+8:])
	m.bmap = bm
	sc := inCl / img.scSize
	k := img.subKind(e, bm, sc)
	if k == kNormal && host == 0 && !img.hasData {
		return m, img.corruptLocked("L2 table", l2off+eo, "allocated subcluster without host offset (guest offset %#x)", off)
	}
	if bm&(bm>>32)&0xffffffff != 0 {
		return m, img.corruptLocked("L2 table", l2off+eo, "subcluster both allocated and zero (guest offset %#x)", off)
	}
	end := sc + 1
	for end < 32 && img.subKind(e, bm, end) == k {
		end++
	}
	m.kind = k
	m.n = min(n, end*img.scSize-inCl)
	if host != 0 || img.hasData && e&oflagCopied != 0 {
		m.host = host + inCl
	}
	return m, nil
}

func (img *Image) subKind(e, bm uint64, sc int64) kind {
	host := e & l2OffsetMask
	allocated := host != 0 || (img.hasData && e&oflagCopied != 0)
	switch {
	case bm&(1<<sc) != 0:
		return kNormal
	case bm&(1<<(32+sc)) != 0:
		if allocated {
			return kZeroAlloc
		}
		return kZeroPlain
	case allocated:
		return kUnallocAlloc
	}
	return kUnalloc
}

// corruptLocked marks the image corrupt (when writable), reports the
// event and returns a CorruptError.
func (img *Image) corruptLocked(structure string, off int64, format string, args ...any) error {
	err := blockio.Corruptf(structure, off, format, args...)
	img.markCorruptLocked(err.Error(), off, -1)
	return err
}

func (img *Image) markCorruptLocked(msg string, off, size int64) {
	fatal := !img.readOnly
	if fatal && !img.corrupt && img.h.version >= 3 {
		img.corrupt = true
		img.h.incompat |= incCorrupt
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], img.h.incompat)
		if _, err := img.dev.WriteAt(b[:], 72); err == nil {
			img.dev.Flush()
		}
	}
	if fatal {
		img.corrupt = true
	}
	if img.opts.OnCorrupt != nil {
		img.opts.OnCorrupt(CorruptEvent{Msg: msg, Offset: off, Size: size, Fatal: fatal})
	}
}

// overlapsMetadataLocked reports whether the host cluster at off holds
// metadata, per Options.OverlapCheck: "constant" checks the header, the
// active L1 table, the refcount table, the snapshot table and the bitmap
// directory; "cached" (the default) also cached L2 tables and refcount
// blocks; "all" also every L2 table and refcount block; "none" nothing.
func (img *Image) overlapsMetadataLocked(off int64) bool {
	mode := img.opts.OverlapCheck
	if mode == "none" {
		return false
	}
	h := img.h
	in := func(start, n int64) bool { return n > 0 && off+img.cs > start && off < start+n }
	if off < img.cs ||
		in(int64(h.l1Offset), int64(h.l1Size)*8) ||
		in(int64(h.rtOffset), int64(h.rtClusters)*img.cs) ||
		(h.nbSnapshots > 0 && in(int64(h.snapshotsOffset), img.cs)) ||
		(h.hasBitmapsExt && in(int64(h.bitmaps.dirOffset), int64(h.bitmaps.dirSize))) {
		return true
	}
	if mode == "constant" {
		return false
	}
	if img.l2c.m[off] != nil || img.rbc.m[off] != nil {
		return true
	}
	if mode == "all" {
		for _, e := range img.l1 {
			if int64(e&l1OffsetMask) == off {
				return true
			}
		}
		for _, e := range img.rt {
			if int64(e&rtOffsetMask) == off {
				return true
			}
		}
	}
	return false
}

// checkMetaWriteLocked refuses (and marks the image corrupt) a metadata
// table write that would land on other fixed metadata.
func (img *Image) checkMetaWriteLocked(what string, off int64) error {
	if img.opts.OverlapCheck == "none" {
		return nil
	}
	h := img.h
	in := func(start, n int64) bool { return n > 0 && off+img.cs > start && off < start+n }
	if off < img.cs || in(int64(h.l1Offset), int64(h.l1Size)*8) || in(int64(h.rtOffset), int64(h.rtClusters)*img.cs) ||
		(h.nbSnapshots > 0 && in(int64(h.snapshotsOffset), img.cs)) {
		msg := fmt.Sprintf("Preventing invalid write on metadata (overlaps with fixed metadata): %s at %#x", what, off)
		img.markCorruptLocked(msg, off, img.cs)
		return blockio.Corruptf(what, off, "write would overlap fixed metadata")
	}
	return nil
}
