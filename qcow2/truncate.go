package qcow2

import (
	"encoding/binary"

	"github.com/blocklayer/blocklayer/blockio"
)

// Truncate implements blockio.Truncater: it changes the virtual disk size
// (qemu-img resize). size must be a multiple of 512.
//
// Growing enlarges the L1 table when needed (new table written and made
// durable, then the header switched to it in one write, then the old table
// freed) and makes the new area read as zeros even where a backing file is
// larger than the old size. Shrinking discards every cluster past the new
// end, like qemu-img resize --shrink; the new size reaches the header
// before the clusters are released so that a crash never exposes backing
// data in the discarded range. When growing, prealloc allocates the new
// whole clusters as qemu-img resize --preallocation does: metadata
// allocates them and zeroes them cheaply (hole punching where the file
// supports it), falloc reserves zeroed space, full writes zeros; the data
// is zeroed before the L2 entries that expose it become durable. Images
// with persistent bitmaps and version 2 images with internal snapshots
// cannot be resized (as in QEMU).
//
// Truncate waits for requests in flight and blocks new ones while it runs.
func (img *Image) Truncate(size int64, prealloc blockio.Prealloc) error {
	if img.closed.Load() {
		return blockio.ErrClosed
	}
	if img.readOnly {
		return blockio.ErrReadOnly
	}
	if prealloc < blockio.PreallocOff || prealloc > blockio.PreallocFull {
		return &blockio.InvalidError{What: "preallocation", Value: int(prealloc)}
	}
	if size < 0 || size&511 != 0 {
		return &blockio.InvalidError{What: "size", Value: size, Reason: "the new size must be a non-negative multiple of 512"}
	}
	if uint64(size) > 1<<62 {
		return &blockio.InvalidError{What: "size", Value: size, Reason: "too large for qcow2"}
	}
	img.lockAll()
	defer img.unlockAll()
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.beginWriteLocked(); err != nil {
		return err
	}
	old := img.vsize.Load()
	if size == old {
		return nil
	}
	if img.h.hasBitmapsExt && img.h.bitmaps.nbBitmaps > 0 {
		return &blockio.UnsupportedError{Feature: "resizing an image with persistent bitmaps"}
	}
	if img.h.version < 3 && img.h.nbSnapshots > 0 {
		return &blockio.UnsupportedError{Feature: "resizing a version 2 image with internal snapshots"}
	}
	if size > old {
		return img.growLocked(old, size, prealloc)
	}
	return img.shrinkLocked(old, size)
}

// lockAll write-locks every cluster shard in ascending order (the order
// readBatch uses), excluding every other request.
func (img *Image) lockAll() {
	for i := range img.shards {
		img.shards[i].Lock()
	}
}

func (img *Image) unlockAll() {
	for i := range img.shards {
		img.shards[i].Unlock()
	}
}

func (img *Image) writeSizeLocked(size int64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(size))
	if _, err := img.dev.WriteAt(b[:], 24); err != nil {
		return err
	}
	if err := img.barrier(); err != nil {
		return err
	}
	img.h.size = uint64(size)
	return nil
}

func (img *Image) growLocked(old, size int64, prealloc blockio.Prealloc) error {
	per := img.cs << img.l2Bits
	need := (size + per - 1) / per
	if need > int64(len(img.l1)) {
		if err := img.growL1Locked(need); err != nil {
			return err
		}
	}
	if img.dataRaw {
		if err := img.growData(size); err != nil {
			return err
		}
	}
	img.vsize.Store(size)
	// The new area must read as zeros: clear whatever a crash during an
	// earlier shrink left mapped past the old end, and hide a larger
	// backing file.
	if err := img.zeroTailLocked(old, size); err != nil {
		img.vsize.Store(old)
		return err
	}
	if prealloc != blockio.PreallocOff {
		if err := img.preallocRangeLocked((old+img.cs-1)&^(img.cs-1), size, prealloc); err != nil {
			img.vsize.Store(old)
			return err
		}
	}
	// L2 changes durable before the header exposes the new size.
	if err := img.flushLocked(); err != nil {
		img.vsize.Store(old)
		return err
	}
	if err := img.writeSizeLocked(size); err != nil {
		img.vsize.Store(old)
		return err
	}
	return nil
}

func (img *Image) shrinkLocked(old, size int64) error {
	// Make everything durable, then the smaller size, then release the
	// tail: a crash in between leaves clusters mapped past the end, which
	// a later grow clears (zeroTailLocked), never backing data showing
	// through a still larger image.
	if err := img.flushLocked(); err != nil {
		return err
	}
	if err := img.writeSizeLocked(size); err != nil {
		return err
	}
	img.vsize.Store(size)
	from := (size + img.cs - 1) &^ (img.cs - 1)
	if err := img.unmapRangeLocked(from, old, false); err != nil {
		return err
	}
	if img.dataRaw {
		if err := blockio.Truncate(img.data, size, blockio.PreallocOff); err != nil {
			return err
		}
	}
	return img.flushLocked()
}

// zeroTailLocked makes guest range [old, size) (the area a grow adds)
// read as zeros. The caller holds every shard and img.mu; vsize is size.
func (img *Image) zeroTailLocked(old, size int64) error {
	cend := (old + img.cs - 1) &^ (img.cs - 1)
	if cend > old {
		// Partial last cluster of the old disk: bytes past the old end may
		// hold stale data (or backing data).
		show := false
		for pos := old; pos < min(cend, size); {
			m, err := img.lookupLocked(pos, min(cend, size)-pos)
			if err != nil {
				return err
			}
			switch m.kind {
			case kNormal, kCompressed:
				show = true
			case kUnalloc, kUnallocAlloc:
				show = show || (img.backing != nil && pos < img.backing.Size())
			}
			pos += m.n
		}
		if show {
			img.mu.Unlock()
			err := img.writeCluster(img.zbuf[:min(cend, size)-old], old)
			img.mu.Lock()
			if err != nil {
				return err
			}
		}
	}
	if cend >= size {
		return nil
	}
	return img.unmapRangeLocked(cend, size, true)
}

// unmapRangeLocked resets the L2 entries of the clusters in [from, to)
// (from cluster aligned). With hide set (the range is part of the disk)
// clusters a backing file could show through become zero clusters;
// otherwise (the range is past the end) every entry is cleared.
func (img *Image) unmapRangeLocked(from, to int64, hide bool) error {
	var bsize int64
	if img.backing != nil && hide {
		bsize = img.backing.Size()
	}
	per := img.cs << img.l2Bits
	for c := from; c < to; c += img.cs {
		l1i, _ := img.l2Index(c)
		covered := c < bsize
		if (l1i >= int64(len(img.l1)) || img.l1[l1i]&l1OffsetMask == 0) && !covered {
			// Nothing mapped in this L2 range and nothing to hide.
			next := (l1i + 1) * per
			if next > c {
				c = next - img.cs
			}
			continue
		}
		if covered && img.h.version < 3 {
			// No zero clusters in version 2: write zeros.
			img.mu.Unlock()
			err := img.writeCluster(img.zbuf[:img.validLen(c)], c)
			img.mu.Lock()
			if err != nil {
				return err
			}
			continue
		}
		var e, bm uint64
		if !img.noL2Locked(c) {
			m, err := img.lookupLocked(c, img.cs)
			if err != nil {
				return err
			}
			e, bm = m.entry, m.bmap
		}
		switch {
		case covered && img.extL2:
			if e&^oflagCopied == 0 && bm == allZero {
				continue
			}
			if err := img.setEntryLocked(c, 0, allZero); err != nil {
				return err
			}
		case covered:
			if e == oflagZero {
				continue
			}
			if err := img.setEntryLocked(c, oflagZero, 0); err != nil {
				return err
			}
		default:
			if e == 0 && bm == 0 {
				continue
			}
			if err := img.setEntryLocked(c, 0, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

func (img *Image) noL2Locked(off int64) bool {
	l1i, _ := img.l2Index(off)
	return l1i >= int64(len(img.l1)) || img.l1[l1i]&l1OffsetMask == 0
}

// growL1Locked replaces the active L1 table by one of need entries: the
// current metadata is made durable, the new table is written to freshly
// allocated clusters (refcounts durable first), then the header is
// switched to it in a single write, and only then is the old table freed.
func (img *Image) growL1Locked(need int64) error {
	if need*8 > maxL1Bytes {
		return &blockio.InvalidError{What: "size", Value: need, Reason: "the L1 table would exceed QEMU's limit"}
	}
	if need*8+int64(len(img.rt))*8 > img.memLimit() {
		return &blockio.InvalidError{What: "qcow2 tables", Value: need * 8, Reason: "exceed the memory limit"}
	}
	if err := img.flushLocked(); err != nil {
		return err
	}
	k := (need*8 + img.cs - 1) >> img.cbits
	off, err := img.allocClustersLocked(k)
	if err != nil {
		return err
	}
	for i := range k {
		if img.overlapsMetadataLocked(off + i*img.cs) {
			return img.corruptLocked("refcount block", -1, "allocated cluster %#x overlaps metadata (refcounts are wrong)", off+i*img.cs)
		}
	}
	if err := img.syncRefcountsLocked(); err != nil {
		return err
	}
	buf := make([]byte, k*img.cs)
	for i, e := range img.l1 {
		binary.BigEndian.PutUint64(buf[i*8:], e)
	}
	if _, err := img.dev.WriteAt(buf, off); err != nil {
		return err
	}
	if err := img.barrier(); err != nil {
		return err
	}
	var hb [12]byte
	binary.BigEndian.PutUint32(hb[:], uint32(need))
	binary.BigEndian.PutUint64(hb[4:], uint64(off))
	if _, err := img.dev.WriteAt(hb[:], 36); err != nil {
		return err
	}
	if err := img.barrier(); err != nil {
		return err
	}
	oldOff, oldN := int64(img.h.l1Offset), int64(len(img.l1))
	nl1 := make([]uint64, need)
	copy(nl1, img.l1)
	img.l1 = nl1
	img.l1Dirty = make([]bool, (len(nl1)*8+4095)/4096)
	img.l1AnyDirty = false
	img.h.l1Offset = uint64(off)
	img.h.l1Size = uint32(need)
	if oldN > 0 && oldOff > 0 {
		img.freeLocked(oldOff, oldN*8)
	}
	return nil
}

// preallocRangeLocked allocates a host cluster for every guest cluster in
// [from, to) (from cluster aligned), zeroes it according to mode and
// enters it in the L2 tables (COPIED set). Contiguous runs are allocated
// per L2 table.
func (img *Image) preallocRangeLocked(from, to int64, mode blockio.Prealloc) error {
	per := img.cs << img.l2Bits
	d := img.data
	for g := from; g < to; {
		n := (min(to, (g/per+1)*per) - g + img.cs - 1) >> img.cbits
		host := g
		if !img.hasData {
			var err error
			if host, err = img.allocClustersLocked(n); err != nil {
				return err
			}
			for i := range n {
				if img.overlapsMetadataLocked(host + i*img.cs) {
					return img.corruptLocked("refcount block", -1, "allocated cluster %#x overlaps metadata (refcounts are wrong)", host+i*img.cs)
				}
			}
		} else if err := img.growData(host + n*img.cs); err != nil {
			return err
		}
		// Recycled clusters may hold old data: zero them first.
		switch mode {
		case blockio.PreallocFull:
			for o := host; o < host+n*img.cs; o += img.cs {
				if _, err := d.WriteAt(img.zbuf, o); err != nil {
					return err
				}
			}
		default:
			if err := blockio.WriteZeroes(d, host, n*img.cs, mode == blockio.PreallocMetadata); err != nil {
				return err
			}
		}
		for i := range n {
			if err := img.setEntryLocked(g+i*img.cs, uint64(host+i*img.cs)|oflagCopied, allAllocated); err != nil {
				return err
			}
		}
		g += n * img.cs
	}
	return nil
}
