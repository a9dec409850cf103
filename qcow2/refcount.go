package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/blocklayer/blocklayer/blockio"
)

// Refcount bookkeeping and cluster allocation. Everything here runs with
// img.mu held.

func getRC(buf []byte, i int64, order uint) uint64 {
	switch order {
	case 0, 1, 2:
		w := int64(1) << order
		bit := i * w
		return uint64(buf[bit>>3]>>(bit&7)) & (1<<w - 1)
	case 3:
		return uint64(buf[i])
	case 4:
		return uint64(binary.BigEndian.Uint16(buf[i*2:]))
	case 5:
		return uint64(binary.BigEndian.Uint32(buf[i*4:]))
	default:
		return binary.BigEndian.Uint64(buf[i*8:])
	}
}

func putRC(buf []byte, i int64, order uint, v uint64) {
	switch order {
	case 0, 1, 2:
		w := int64(1) << order
		bit := i * w
		mask := byte((1<<w - 1) << (bit & 7))
		buf[bit>>3] = buf[bit>>3]&^mask | byte(v<<(bit&7))&mask
	case 3:
		buf[i] = byte(v)
	case 4:
		binary.BigEndian.PutUint16(buf[i*2:], uint16(v))
	case 5:
		binary.BigEndian.PutUint32(buf[i*4:], uint32(v))
	default:
		binary.BigEndian.PutUint64(buf[i*8:], v)
	}
}

func (img *Image) loadRBLocked(off int64) (*ctable, error) {
	if t := img.rbc.lookup(off); t != nil {
		return t, nil
	}
	if off&(img.cs-1) != 0 || off <= 0 || off+img.cs > img.dev.Size() {
		return nil, img.corruptLocked("refcount block", off, "refcount block offset %#x invalid (unaligned or outside the file)", off)
	}
	t, err := img.rbc.slot(off)
	if err != nil {
		return nil, err
	}
	if _, err := img.dev.ReadAt(t.buf, off); err != nil {
		return nil, err
	}
	img.rbc.insert(t)
	return t, nil
}

// refcountBlockOf returns the host offset of the refcount block that holds
// the refcount of host cluster c (0 when none is allocated) and c's index
// within that block.
func (img *Image) refcountBlockOf(c int64) (off, idx int64) {
	rti := c >> img.rbBits
	if rti >= int64(len(img.rt)) {
		return 0, 0
	}
	return int64(img.rt[rti] & rtOffsetMask), c & (1<<img.rbBits - 1)
}

// refcountLocked returns the refcount of host cluster c.
func (img *Image) refcountLocked(c int64) (uint64, error) {
	off, i := img.refcountBlockOf(c)
	if off == 0 {
		return 0, nil
	}
	t, err := img.loadRBLocked(off)
	if err != nil {
		return 0, err
	}
	return getRC(t.buf, i, img.rcOrder), nil
}

// updateRefcountLocked adds delta to the refcount of cluster c, creating
// refcount blocks and growing the refcount table as needed. Clusters in
// img.reserved are being allocated and are never used for new refcount
// blocks.
func (img *Image) updateRefcountLocked(c int64, delta int64) error {
	rti := c >> img.rbBits
	if rti >= int64(len(img.rt)) {
		if delta < 0 {
			return blockio.Corruptf("refcount table", int64(img.h.rtOffset), "decrement of cluster %#x beyond the refcount table", c<<img.cbits)
		}
		if err := img.growRefTableLocked(rti); err != nil {
			return err
		}
	}
	off := int64(img.rt[rti] & rtOffsetMask)
	var t *ctable
	if off == 0 {
		if delta < 0 {
			return blockio.Corruptf("refcount table", int64(img.h.rtOffset)+rti*8, "decrement of cluster %#x without refcount block", c<<img.cbits)
		}
		var err error
		if t, err = img.newRefBlockLocked(rti); err != nil {
			return err
		}
	} else {
		var err error
		if t, err = img.loadRBLocked(off); err != nil {
			return err
		}
	}
	i := c & (1<<img.rbBits - 1)
	v := getRC(t.buf, i, img.rcOrder)
	nv := uint64(int64(v) + delta)
	if delta < 0 && v < uint64(-delta) {
		return img.corruptLocked("refcount block", t.off, "refcount of cluster %#x would drop below zero", c<<img.cbits)
	}
	if delta > 0 && (nv > img.rcMax || nv < v) {
		return &blockio.InvalidError{What: "refcount", Value: nv, Reason: "exceeds the maximum for refcount_bits"}
	}
	putRC(t.buf, i, img.rcOrder, nv)
	img.rbc.markDirty(t)
	if nv == 0 && c < img.freeHint {
		img.freeHint = c
	}
	return nil
}

// newRefBlockLocked creates the refcount block for table index rti. The
// block is placed in the first cluster of the range it covers (outside
// the reserved range), so it covers itself and needs no other block.
func (img *Image) newRefBlockLocked(rti int64) (*ctable, error) {
	first := rti << img.rbBits
	last := first + 1<<img.rbBits
	c := max(first, 1)
	for ; c < last; c++ {
		if img.isReservedLocked(c) || img.overlapsMetaLocked(c) {
			continue
		}
		break
	}
	if c >= last {
		return nil, &blockio.InvalidError{What: "refcount block", Value: rti, Reason: "no room for a refcount block"}
	}
	off := c << img.cbits
	if off >= maxHostOffset {
		return nil, blockio.ErrNoSpace
	}
	if err := img.growFileLocked(off + img.cs); err != nil {
		return nil, err
	}
	t, err := img.rbc.slot(off)
	if err != nil {
		return nil, err
	}
	clear(t.buf)
	img.rbc.insert(t)
	putRC(t.buf, c-first, img.rcOrder, 1)
	img.rbc.markDirty(t)
	img.rt[rti] = uint64(off)
	img.rtDirty = true
	img.setMeta(off)
	return t, nil
}

// overlapsMetaLocked reports whether cluster c holds fixed metadata
// (header, L1, refcount table, snapshot table).
func (img *Image) overlapsMetaLocked(c int64) bool {
	off := c << img.cbits
	in := func(start, n int64) bool { return n > 0 && off+img.cs > start && off < start+n }
	return c == 0 ||
		in(int64(img.h.l1Offset), int64(len(img.l1))*8) ||
		in(int64(img.h.rtOffset), int64(len(img.rt))*8) ||
		in(int64(img.h.snapshotsOffset), int64(min(img.h.nbSnapshots, 1))*img.cs)
}

const (
	growStep    = 4 << 20
	maxGrowStep = 64 << 20
)

// growFileLocked makes the file at least end bytes long.
func (img *Image) growFileLocked(end int64) error {
	if end > img.dev.Size() {
		// Grow in steps (the sparse tail is trimmed back on Close) so that
		// sequential allocation does not resize the file for every cluster:
		// a quarter of the size, at least growStep, at most maxGrowStep.
		target := end + max(min(end/4, maxGrowStep), growStep, img.cs)
		if err := blockio.Truncate(img.dev, target, blockio.PreallocOff); err != nil {
			if errors.Is(err, blockio.ErrUnsupported) {
				return fmt.Errorf("qcow2: image file cannot grow to %d bytes: %w", end, blockio.ErrNoSpace)
			}
			return err
		}
	}
	if end > img.fileEnd {
		img.fileEnd = end
	}
	return nil
}

// findFreeLocked returns the first run of n free clusters at or after
// start.
func (img *Image) findFreeLocked(start, n int64) (int64, error) {
	c := max(start, 1)
	run := int64(0)
	for run < n {
		if (c+1)<<img.cbits > maxHostOffset {
			return 0, blockio.ErrNoSpace
		}
		rc, err := img.refcountLocked(c)
		if err != nil {
			return 0, err
		}
		if rc != 0 || img.overlapsMetaLocked(c) || img.isReservedLocked(c) {
			run = 0
		} else {
			run++
		}
		c++
	}
	return c - n, nil
}

// allocClustersLocked allocates n contiguous clusters (refcount 1) and
// returns the host byte offset of the first.
func (img *Image) allocClustersLocked(n int64) (int64, error) {
	c, err := img.findFreeLocked(img.freeHint, n)
	if err != nil {
		return 0, err
	}
	for i := range n {
		if img.isMeta(c + i) {
			return 0, img.corruptLocked("refcount block", -1, "cluster %#x has refcount 0 but holds an L2 table or refcount block", (c+i)<<img.cbits)
		}
	}
	if c == img.freeHint || n == 1 {
		img.freeHint = c + n
	}
	if err := img.growFileLocked((c + n) << img.cbits); err != nil {
		return 0, err
	}
	img.reserved = append(img.reserved, [2]int64{c, c + n})
	defer func() { img.reserved = img.reserved[:len(img.reserved)-1] }()
	for i := range n {
		if err := img.updateRefcountLocked(c+i, 1); err != nil {
			return 0, err
		}
	}
	return c << img.cbits, nil
}

// growRefTableLocked grows the refcount table to cover index rti.
func (img *Image) growRefTableLocked(rti int64) error {
	per := img.cs / 8
	entries := max(rti+1, int64(len(img.rt))*3/2)
	var start, k int64
	for {
		entries = (entries + per - 1) / per * per
		k = entries / per
		if k*img.cs > maxRefTableBytes {
			return blockio.ErrNoSpace
		}
		var err error
		start, err = img.findFreeLocked(img.fileEnd>>img.cbits, k)
		if err != nil {
			return err
		}
		lastRti := (start + k - 1) >> img.rbBits
		if lastRti < entries {
			break
		}
		entries = lastRti + 1
	}
	oldOff, oldClusters := int64(img.h.rtOffset), int64(img.h.rtClusters)
	nrt := make([]uint64, entries)
	copy(nrt, img.rt)
	img.rt = nrt
	if err := img.growFileLocked((start + k) << img.cbits); err != nil {
		return err
	}
	img.reserved = append(img.reserved, [2]int64{start, start + k})
	defer func() { img.reserved = img.reserved[:len(img.reserved)-1] }()
	for i := range k {
		if err := img.updateRefcountLocked(start+i, 1); err != nil {
			return err
		}
	}
	// Blocks first, then the new table, then the header.
	if err := img.writeRBsLocked(); err != nil {
		return err
	}
	if err := img.barrier(); err != nil {
		return err
	}
	buf := make([]byte, k*img.cs)
	for i, e := range img.rt {
		binary.BigEndian.PutUint64(buf[i*8:], e)
	}
	if _, err := img.dev.WriteAt(buf, start<<img.cbits); err != nil {
		return err
	}
	if err := img.barrier(); err != nil {
		return err
	}
	var hb [12]byte
	binary.BigEndian.PutUint64(hb[:], uint64(start<<img.cbits))
	binary.BigEndian.PutUint32(hb[8:], uint32(k))
	if _, err := img.dev.WriteAt(hb[:], 48); err != nil {
		return err
	}
	if err := img.barrier(); err != nil {
		return err
	}
	img.h.rtOffset = uint64(start << img.cbits)
	img.h.rtClusters = uint32(k)
	img.rtDirty = false
	img.pending = append(img.pending, pendingFree{oldOff, oldClusters * img.cs})
	return nil
}

// barrier makes all writes so far durable.
func (img *Image) barrier() error {
	if img.data != img.dev {
		if err := img.data.Flush(); err != nil {
			return err
		}
	}
	return img.dev.Flush()
}

func (img *Image) writeRBsLocked() error {
	for _, t := range img.rbc.dirtyTables() {
		if err := img.writebackRB(t); err != nil {
			return err
		}
	}
	return nil
}

func (img *Image) writebackRB(t *ctable) error {
	if err := img.checkMetaWriteLocked("refcount block", t.off); err != nil {
		return err
	}
	if _, err := img.dev.WriteAt(t.buf, t.off); err != nil {
		return err
	}
	img.rbc.markClean(t)
	return nil
}

func (img *Image) writeRTLocked() error {
	buf := make([]byte, len(img.rt)*8)
	for i, e := range img.rt {
		binary.BigEndian.PutUint64(buf[i*8:], e)
	}
	if _, err := img.dev.WriteAt(buf, int64(img.h.rtOffset)); err != nil {
		return err
	}
	img.rtDirty = false
	return nil
}

// writebackL2 writes one dirty L2 table, after making the refcounts
// (and data) it depends on durable.
func (img *Image) writebackL2(t *ctable) error {
	if !img.lazy {
		if err := img.syncRefcountsLocked(); err != nil {
			return err
		}
	}
	if err := img.barrier(); err != nil {
		return err
	}
	if err := img.checkMetaWriteLocked("L2 table", t.off); err != nil {
		return err
	}
	if _, err := img.dev.WriteAt(t.buf, t.off); err != nil {
		return err
	}
	img.l2c.markClean(t)
	return nil
}

// syncRefcountsLocked writes dirty refcount blocks and, after a barrier,
// the refcount table.
func (img *Image) syncRefcountsLocked() error {
	if err := img.writeRBsLocked(); err != nil {
		return err
	}
	if img.rtDirty {
		if err := img.barrier(); err != nil {
			return err
		}
		if err := img.writeRTLocked(); err != nil {
			return err
		}
	}
	return nil
}

// freeLocked schedules one reference drop for every cluster touched by
// host range [off, off+n), applied after the next metadata flush.
func (img *Image) freeLocked(off, n int64) {
	img.pending = append(img.pending, pendingFree{off, n})
}

// freeEntryLocked releases the host storage referenced by an L2 entry.
func (img *Image) freeEntryLocked(e uint64) {
	if e&oflagCompress != 0 {
		off := int64(e&img.cOffMask) &^ 511
		nsec := int64((e>>img.cShift)&img.cMask) + 1
		img.freeLocked(off, nsec*512)
		return
	}
	if img.hasData {
		return
	}
	if host := int64(e & l2OffsetMask); host != 0 {
		img.freeLocked(host, img.cs)
	}
}

// applyFreesLocked drops the references scheduled by freeLocked. Call
// only once the metadata that stopped referencing them is durable.
func (img *Image) applyFreesLocked() error {
	p := img.pending
	img.pending = nil
	for _, f := range p {
		first := f.off >> img.cbits
		last := (f.off + f.n - 1) >> img.cbits
		for c := first; c <= last; c++ {
			if err := img.updateRefcountLocked(c, -1); err != nil {
				return err
			}
			if img.cmpTail != 0 && c == (img.cmpTail-1)>>img.cbits {
				if rc, _ := img.refcountLocked(c); rc == 0 {
					img.cmpTail, img.cmpTailEnd = 0, 0
				}
			}
		}
	}
	return nil
}

// allocCompressedLocked reserves n bytes (sector aligned) for compressed
// data, packing several compressed clusters into one host cluster.
func (img *Image) allocCompressedLocked(n int64) (int64, error) {
	size := (n + 511) &^ 511
	if img.cmpTail != 0 && img.cmpTail+size <= img.cmpTailEnd {
		c := img.cmpTail >> img.cbits
		rc, err := img.refcountLocked(c)
		if err != nil {
			return 0, err
		}
		if rc > 0 && rc < img.rcMax {
			if err := img.updateRefcountLocked(c, 1); err != nil {
				return 0, err
			}
			off := img.cmpTail
			img.cmpTail += size
			return off, nil
		}
	}
	off, err := img.allocClustersLocked(1)
	if err != nil {
		return 0, err
	}
	img.cmpTail = off + size
	img.cmpTailEnd = off + img.cs
	return off, nil
}

// isReservedLocked reports whether cluster c is being allocated by an
// allocation in progress (so it cannot hold a new refcount block).
func (img *Image) isReservedLocked(c int64) bool {
	for _, r := range img.reserved {
		if c >= r[0] && c < r[1] {
			return true
		}
	}
	return false
}
