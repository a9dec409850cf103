package qcow2

import (
	"encoding/binary"
	"errors"

	"github.com/blocklayer/blocklayer/blockio"
)

const allAllocated = 0x00000000ffffffff
const allZero = 0xffffffff00000000

// beginWriteLocked checks that the image may be modified and performs the
// first-write header update (clearing autoclear bits we do not maintain).
func (img *Image) beginWriteLocked() error {
	if img.readOnly {
		return blockio.ErrReadOnly
	}
	if img.corrupt {
		return &blockio.CorruptError{Structure: "qcow2 image", Offset: -1, Reason: "image is marked corrupt; writes are refused"}
	}
	if img.written {
		return nil
	}
	if img.h.version >= 3 {
		keep := uint64(0)
		if img.hasData {
			keep = acDataFileRaw
		}
		if img.h.hasBitmapsExt && img.h.autoclear&acBitmaps != 0 {
			// Persistent bitmaps are not maintained by this package: mark
			// them in use (inconsistent), as QEMU does while it owns them,
			// so nobody trusts them after our writes. Their clusters stay
			// referenced.
			if err := img.markBitmapsInUseLocked(); err == nil {
				keep |= acBitmaps
			}
		}
		if img.h.autoclear&^keep != 0 {
			// Unknown autoclear bits: like any writer that does not know
			// them we clear them.
			img.h.autoclear &= keep
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], img.h.autoclear)
			if _, err := img.dev.WriteAt(b[:], 88); err != nil {
				return err
			}
			if err := img.dev.Flush(); err != nil {
				return err
			}
		}
	}
	if img.lazy && img.h.incompat&incDirty == 0 {
		if err := img.setIncompatLocked(img.h.incompat | incDirty); err != nil {
			return err
		}
	}
	img.written = true
	return nil
}

// WriteAt implements blockio.Device.
func (img *Image) WriteAt(p []byte, off int64) (int, error) {
	if img.closed.Load() {
		return 0, blockio.ErrClosed
	}
	if img.readOnly {
		return 0, blockio.ErrReadOnly
	}
	if err := blockio.CheckRange("write", off, int64(len(p)), img.vsize.Load()); err != nil {
		return 0, err
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		if pos&(img.cs-1) == 0 && int64(len(p)-done) >= 2*img.cs {
			n, err := img.writeRun(p[done:], pos)
			if err != nil {
				return done, err
			}
			if n > 0 {
				done += n
				continue
			}
		}
		chunk := p[done:min(len(p), done+int(img.cs-pos&(img.cs-1)))]
		sh := img.shard(pos)
		sh.Lock()
		err := img.writeCluster(chunk, pos)
		sh.Unlock()
		if err != nil {
			return done, err
		}
		done += len(chunk)
	}
	return done, nil
}

// lockShardsW write-locks (lock) or unlocks the shards of clusters
// first..last, which span fewer than nShards clusters, in the ascending
// shard order every multi-shard locker uses (see lockShards).
func (img *Image) lockShardsW(first, last int64, lock bool) {
	lo, hi := first&(nShards-1), last&(nShards-1)
	f := func(i int64) {
		if lock {
			img.shards[i].Lock()
		} else {
			img.shards[i].Unlock()
		}
	}
	if lo <= hi {
		for i := lo; i <= hi; i++ {
			f(i)
		}
		return
	}
	for i := int64(0); i <= hi; i++ {
		f(i)
	}
	for i := lo; i < nShards; i++ {
		f(i)
	}
}

// writeRun writes a run of whole guest clusters starting at the cluster
// aligned offset off with a single data write. It handles two cases: a
// run of clusters that all need a newly allocated host cluster (one
// contiguous allocation, one refcount update pass, one data write, then
// the L2 entries), and a run of clusters already allocated in place
// (COPIED) at contiguous host offsets (one data write, no metadata). It
// returns 0 without doing anything when fewer than two clusters qualify;
// the caller then writes cluster by cluster. The on-disk ordering is the
// same as for single-cluster writes: refcounts are raised in the cache
// before the data is written, and the L2 entries are set only after the
// data write returned, so flush/writeback (refcounts, barrier, L2) never
// lets an L2 entry reach the disk before its data and refcounts.
func (img *Image) writeRun(p []byte, off int64) (int, error) {
	if img.extL2 || img.hasData {
		return 0, nil
	}
	first := off >> img.cbits
	n := int64(len(p)) >> img.cbits
	n = min(n, maxBatch)
	// Stay within one L2 table.
	n = min(n, img.l2Ent-first&(img.l2Ent-1))
	// Leave every refcount block range at least one cluster outside the
	// run, where newRefBlockLocked can place a missing refcount block.
	n = min(n, int64(1)<<img.rbBits-1)
	// Whole clusters only (the last cluster of the disk may be partial).
	n = min(n, img.vsize.Load()>>img.cbits-first)
	if n < 2 {
		return 0, nil
	}
	last := first + n - 1
	img.lockShardsW(first, last, true)
	defer img.lockShardsW(first, last, false)

	img.mu.Lock()
	if err := img.beginWriteLocked(); err != nil {
		img.mu.Unlock()
		return 0, err
	}
	if (last+1)<<img.cbits > img.vsize.Load() {
		// The image shrank while this request waited.
		img.mu.Unlock()
		return 0, nil
	}
	// needAlloc reports whether a write to the cluster with L2 entry e
	// takes a new host cluster (writeCluster's !reuse && !in-place case).
	needAlloc := func(m mapping) bool {
		e := m.entry
		return !(e&oflagCompress == 0 && e&oflagCopied != 0 && e&l2OffsetMask != 0)
	}
	inPlace := func(m mapping) bool {
		return m.kind == kNormal && m.entry&oflagCopied != 0 && m.n == img.cs
	}
	m0, err := img.lookupLocked(off, img.cs)
	if err != nil {
		img.mu.Unlock()
		return 0, err
	}
	alloc := needAlloc(m0)
	if !alloc && !inPlace(m0) {
		img.mu.Unlock()
		return 0, nil
	}
	k := int64(1)
	for ; k < n; k++ {
		m, err := img.lookupLocked(off+k<<img.cbits, img.cs)
		if err != nil {
			img.mu.Unlock()
			return 0, err
		}
		if alloc {
			if !needAlloc(m) {
				break
			}
		} else if !inPlace(m) || m.host != m0.host+k<<img.cbits {
			break
		}
	}
	if k < 2 {
		img.mu.Unlock()
		return 0, nil
	}
	size := k << img.cbits
	if !alloc {
		img.mu.Unlock()
		if _, err := img.data.WriteAt(p[:size], m0.host); err != nil {
			return 0, err
		}
		return int(size), nil
	}
	host, err := img.allocClustersLocked(k)
	if err != nil {
		img.mu.Unlock()
		return 0, err
	}
	for i := range k {
		if img.overlapsMetadataLocked(host + i<<img.cbits) {
			err := img.corruptLocked("refcount block", -1, "allocated cluster %#x overlaps metadata (refcounts are wrong)", host+i<<img.cbits)
			img.mu.Unlock()
			return 0, err
		}
	}
	img.mu.Unlock()

	if _, err := img.data.WriteAt(p[:size], host); err != nil {
		img.mu.Lock()
		img.freeLocked(host, size)
		img.mu.Unlock()
		return 0, err
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	for i := range k {
		if err := img.setEntryLocked(off+i<<img.cbits, uint64(host+i<<img.cbits)|oflagCopied, allAllocated); err != nil {
			// Release the clusters not entered (nothing references them;
			// the release is applied after the next metadata flush).
			img.freeLocked(host+i<<img.cbits, (k-i)<<img.cbits)
			return int(i << img.cbits), err
		}
	}
	return int(size), nil
}

// validLen is the number of guest bytes in the cluster starting at cstart.
func (img *Image) validLen(cstart int64) int64 { return min(img.cs, img.vsize.Load()-cstart) }

// writeCluster writes p (within one guest cluster) at off. The caller
// holds the cluster's shard lock exclusively.
func (img *Image) writeCluster(p []byte, off int64) error {
	cstart := off &^ (img.cs - 1)
	vlen := img.validLen(cstart)
	img.mu.Lock()
	if err := img.beginWriteLocked(); err != nil {
		img.mu.Unlock()
		return err
	}
	if off+int64(len(p)) > img.vsize.Load() {
		// The image shrank while this request waited.
		img.mu.Unlock()
		return blockio.CheckRange("write", off, int64(len(p)), img.vsize.Load())
	}
	m, err := img.lookupLocked(off, int64(len(p)))
	if err != nil {
		img.mu.Unlock()
		return err
	}
	if m.kind == kNormal && m.n >= int64(len(p)) && (m.entry&oflagCopied != 0 || img.hasData) {
		img.mu.Unlock()
		_, err := img.data.WriteAt(p, m.host)
		return err
	}
	// Allocating write: decide the target host cluster.
	old := m.entry
	oldHost := int64(old & l2OffsetMask)
	reuse := old&oflagCompress == 0 && old&oflagCopied != 0 && (oldHost != 0 || img.hasData)
	var host int64
	switch {
	case img.hasData:
		host = cstart
	case reuse:
		host = oldHost
	default:
		host, err = img.allocClustersLocked(1)
		if err != nil {
			img.mu.Unlock()
			return err
		}
		if img.overlapsMetadataLocked(host) {
			err := img.corruptLocked("refcount block", -1, "allocated cluster %#x overlaps metadata (refcounts are wrong)", host)
			img.mu.Unlock()
			return err
		}
	}
	img.mu.Unlock()

	if img.extL2 && old&oflagCompress == 0 && (reuse || (oldHost == 0 && old&oflagCopied == 0)) {
		// Subcluster allocation: write only the touched subclusters; the
		// others keep their state (backing, zero or allocated in place).
		return img.writeSubclusters(p, off, cstart, host, m.bmap, reuse)
	}

	bp := img.getBuf()
	defer img.putBuf(bp)
	buf := *bp
	if off == cstart && int64(len(p)) == vlen {
		copy(buf, p)
	} else {
		if err := img.readCluster(buf[:vlen], cstart); err != nil {
			img.abandonLocked(host, reuse)
			return err
		}
		copy(buf[off-cstart:], p)
	}
	clear(buf[vlen:])
	wlen := img.cs
	if img.hasData {
		wlen = vlen
		if err := img.growData(host + wlen); err != nil {
			return err
		}
	}
	if _, err := img.data.WriteAt(buf[:wlen], host); err != nil {
		img.abandonLocked(host, reuse)
		return err
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	return img.setEntryLocked(cstart, uint64(host)|oflagCopied, allAllocated)
}

func (img *Image) writeSubclusters(p []byte, off, cstart, host int64, bm uint64, reused bool) error {
	sc := img.scSize
	s0 := (off - cstart) / sc
	s1 := (off + int64(len(p)) - 1 - cstart) / sc
	a := cstart + s0*sc
	b := min(cstart+(s1+1)*sc, img.vsize.Load())
	bp := img.getBuf()
	defer img.putBuf(bp)
	buf := (*bp)[:b-a]
	if off != a || off+int64(len(p)) != b {
		if err := img.readCluster(buf, a); err != nil {
			img.abandonLocked(host, reused)
			return err
		}
	}
	copy(buf[off-a:], p)
	if img.hasData {
		if err := img.growData(host + (b - cstart)); err != nil {
			return err
		}
	}
	if _, err := img.data.WriteAt(buf, host+(a-cstart)); err != nil {
		img.abandonLocked(host, reused)
		return err
	}
	mask := uint64(1)<<(s1+1) - uint64(1)<<s0
	nbm := (bm | mask) &^ (mask << 32)
	img.mu.Lock()
	defer img.mu.Unlock()
	return img.setEntryLocked(cstart, uint64(host)|oflagCopied, nbm)
}

// growData makes the external data file at least end bytes long. The
// size check and the resize are one step under dataMu: two writers
// growing it at once must never shrink it below the other's data.
func (img *Image) growData(end int64) error {
	img.dataMu.Lock()
	defer img.dataMu.Unlock()
	if end <= img.data.Size() {
		return nil
	}
	return blockio.Truncate(img.data, end, blockio.PreallocOff)
}

// abandonLocked releases a cluster allocated for a write that failed.
func (img *Image) abandonLocked(host int64, reused bool) {
	if reused || img.hasData {
		return
	}
	img.mu.Lock()
	img.freeLocked(host, img.cs)
	img.mu.Unlock()
}

// setEntryLocked stores a new L2 entry (and extended-L2 bitmap) for the
// guest cluster at cstart and releases what the old entry referenced
// (unless it is the same host cluster).
func (img *Image) setEntryLocked(cstart int64, e, bm uint64) error {
	t, eo, err := img.l2ForWriteLocked(cstart)
	if err != nil {
		return err
	}
	old := binary.BigEndian.Uint64(t.buf[eo:])
	binary.BigEndian.PutUint64(t.buf[eo:], e)
	if img.extL2 {
		binary.BigEndian.PutUint64(t.buf[eo+8:], bm)
	}
	img.l2c.markDirty(t)
	if old != 0 && (old&oflagCompress != 0 || old&l2OffsetMask != e&l2OffsetMask || e&oflagCompress != 0) {
		img.freeEntryLocked(old)
	}
	return nil
}

func (img *Image) markL1DirtyLocked(i int64) {
	img.l1Dirty[i*8/4096] = true
	img.l1AnyDirty = true
}

// l2ForWriteLocked returns the (writable, refcount 1) L2 table for guest
// offset off and the entry's byte offset in it, allocating or copying the
// table as needed.
func (img *Image) l2ForWriteLocked(off int64) (*ctable, int64, error) {
	l1i, l2i := img.l2Index(off)
	if l1i >= int64(len(img.l1)) {
		return nil, 0, blockio.Corruptf("L1 table", int64(img.h.l1Offset), "guest offset %#x beyond L1 table", off)
	}
	eo := l2i * img.entSize
	l1e := img.l1[l1i]
	l2off := int64(l1e & l1OffsetMask)
	if l2off == 0 {
		noff, err := img.allocClustersLocked(1)
		if err != nil {
			return nil, 0, err
		}
		t, err := img.l2c.slot(noff)
		if err != nil {
			img.freeLocked(noff, img.cs)
			return nil, 0, err
		}
		clear(t.buf)
		img.l2c.insert(t)
		img.l2c.markDirty(t)
		img.l1[l1i] = uint64(noff) | oflagCopied
		img.markL1DirtyLocked(l1i)
		img.setMeta(noff)
		return t, eo, nil
	}
	if l1e&oflagCopied == 0 {
		rc, err := img.refcountLocked(l2off >> img.cbits)
		if err != nil {
			return nil, 0, err
		}
		if rc == 1 {
			img.l1[l1i] |= oflagCopied
			img.markL1DirtyLocked(l1i)
		} else {
			// Shared (snapshot) table: copy on write.
			old, err := img.loadL2Locked(l2off)
			if err != nil {
				return nil, 0, err
			}
			bp := img.getBuf()
			copy(*bp, old.buf)
			noff, err := img.allocClustersLocked(1)
			if err != nil {
				img.putBuf(bp)
				return nil, 0, err
			}
			t, err := img.l2c.slot(noff)
			if err != nil {
				img.putBuf(bp)
				return nil, 0, err
			}
			copy(t.buf, *bp)
			img.putBuf(bp)
			img.l2c.insert(t)
			img.l2c.markDirty(t)
			img.l1[l1i] = uint64(noff) | oflagCopied
			img.markL1DirtyLocked(l1i)
			img.freeLocked(l2off, img.cs)
			img.l2c.drop(l2off)
			img.clearMeta(l2off)
			img.setMeta(noff)
			return t, eo, nil
		}
	}
	t, err := img.loadL2Locked(l2off)
	if err != nil {
		return nil, 0, err
	}
	return t, eo, nil
}

// WriteZeroes implements blockio.ZeroWriter.
func (img *Image) WriteZeroes(off, n int64, mayUnmap bool) error {
	return img.zeroOrDiscard(off, n, mayUnmap, false)
}

// Discard implements blockio.Discarder. Whole clusters are deallocated
// and read back as zeros (or, on a version 2 image without backing file,
// as zeros because they are unallocated); partial clusters are ignored.
func (img *Image) Discard(off, n int64) error {
	return img.zeroOrDiscard(off, n, true, true)
}

func (img *Image) zeroOrDiscard(off, n int64, mayUnmap, discard bool) error {
	if img.closed.Load() {
		return blockio.ErrClosed
	}
	op := "write zeroes"
	if discard {
		op = "discard"
	}
	if err := blockio.CheckRange(op, off, n, img.vsize.Load()); err != nil {
		return err
	}
	if img.readOnly {
		return blockio.ErrReadOnly
	}
	end := off + n
	for off < end {
		cstart := off &^ (img.cs - 1)
		vlen := img.validLen(cstart)
		l := min(end, cstart+vlen) - off
		whole := off == cstart && l == vlen
		sh := img.shard(off)
		sh.Lock()
		var err error
		switch {
		case whole:
			err = img.zeroCluster(cstart, mayUnmap, discard)
		case discard:
		default:
			err = img.writeCluster(img.zbuf[:l], off)
		}
		sh.Unlock()
		if err != nil {
			return err
		}
		off += l
	}
	return nil
}

// zeroCluster makes the whole guest cluster at cstart read as zeros.
func (img *Image) zeroCluster(cstart int64, mayUnmap, discard bool) error {
	img.mu.Lock()
	if err := img.beginWriteLocked(); err != nil {
		img.mu.Unlock()
		return err
	}
	if cstart >= img.vsize.Load() {
		img.mu.Unlock()
		return blockio.CheckRange("write zeroes", cstart, img.cs, img.vsize.Load())
	}
	m, err := img.lookupLocked(cstart, img.cs)
	if err != nil {
		img.mu.Unlock()
		return err
	}
	e := m.entry
	host := int64(e & l2OffsetMask)
	copied := e&oflagCopied != 0
	if img.dataRaw {
		// The data file must stay a valid raw image: zero (or punch) the
		// range there and keep the identity mapping.
		mapped := m.kind == kNormal && e&oflagCopied != 0
		img.mu.Unlock()
		if !mapped {
			return img.writeCluster(img.zbuf[:img.validLen(cstart)], cstart)
		}
		return blockio.WriteZeroes(img.data, cstart, img.validLen(cstart), mayUnmap)
	}
	if img.h.version < 3 {
		if img.backing != nil {
			img.mu.Unlock()
			if discard {
				return nil
			}
			return img.writeCluster(img.zbuf[:img.validLen(cstart)], cstart)
		}
		defer img.mu.Unlock()
		if m.noL2 || (e == 0 && m.kind == kUnalloc) {
			return nil
		}
		if !mayUnmap && m.kind == kNormal && copied {
			img.mu.Unlock()
			err := img.writeCluster(img.zbuf[:img.validLen(cstart)], cstart)
			img.mu.Lock()
			return err
		}
		return img.setEntryLocked(cstart, 0, 0)
	}
	defer img.mu.Unlock()
	if m.noL2 && img.backing == nil {
		return nil
	}
	if !img.extL2 && m.kind == kZeroPlain {
		return nil
	}
	keep := !mayUnmap && copied && host != 0 && e&oflagCompress == 0 && !img.hasData
	if img.extL2 {
		ne := uint64(0)
		if keep {
			ne = uint64(host) | oflagCopied
		}
		if m.kind == kUnalloc && m.noL2 && img.backing == nil {
			return nil
		}
		return img.setEntryLocked(cstart, ne, allZero)
	}
	if keep {
		return img.setEntryLocked(cstart, uint64(host)|oflagCopied|oflagZero, 0)
	}
	return img.setEntryLocked(cstart, oflagZero, 0)
}

// WriteCompressed writes whole clusters compressed (deflate or zstd per
// the image's compression type). off must be cluster aligned and len(p) a
// multiple of the cluster size, except that the last cluster of the disk
// may be partial. Clusters that do not compress are written normally.
func (img *Image) WriteCompressed(p []byte, off int64) error {
	if img.closed.Load() {
		return blockio.ErrClosed
	}
	if img.readOnly {
		return blockio.ErrReadOnly
	}
	if err := blockio.CheckRange("write compressed", off, int64(len(p)), img.vsize.Load()); err != nil {
		return err
	}
	if off&(img.cs-1) != 0 || (int64(len(p))&(img.cs-1) != 0 && off+int64(len(p)) != img.vsize.Load()) {
		return &blockio.InvalidError{What: "compressed write", Value: off, Reason: "must cover whole clusters"}
	}
	if img.hasData {
		return &blockio.UnsupportedError{Feature: "compressed writes to images with an external data file"}
	}
	for len(p) > 0 {
		n := min(int64(len(p)), img.cs)
		if err := img.writeCompressedCluster(p[:n], off); err != nil {
			return err
		}
		p = p[n:]
		off += n
	}
	return nil
}

func (img *Image) writeCompressedCluster(p []byte, off int64) error {
	src := p
	var sp *[]byte
	if int64(len(p)) < img.cs {
		sp = img.getBuf()
		copy(*sp, p)
		clear((*sp)[len(p):])
		src = *sp
	}
	dp := img.getBuf()
	defer img.putBuf(dp)
	n, err := img.compress(*dp, src)
	if sp != nil {
		img.putBuf(sp)
	}
	sh := img.shard(off)
	sh.Lock()
	defer sh.Unlock()
	if errors.Is(err, errIncompressible) {
		return img.writeCluster(p, off)
	}
	if err != nil {
		return err
	}
	img.mu.Lock()
	if err := img.beginWriteLocked(); err != nil {
		img.mu.Unlock()
		return err
	}
	if off >= img.vsize.Load() {
		img.mu.Unlock()
		return blockio.CheckRange("write compressed", off, int64(len(p)), img.vsize.Load())
	}
	host, err := img.allocCompressedLocked(int64(n))
	img.mu.Unlock()
	if err != nil {
		return err
	}
	if _, err := img.dev.WriteAt((*dp)[:n], host); err != nil {
		img.mu.Lock()
		img.freeLocked(host, int64(n))
		img.mu.Unlock()
		return err
	}
	nsec := (int64(n) + 511) / 512
	e := uint64(host) | uint64(nsec-1)<<img.cShift | oflagCompress
	img.mu.Lock()
	defer img.mu.Unlock()
	return img.setEntryLocked(off, e, 0)
}

func (img *Image) markBitmapsInUseLocked() error {
	bms, err := img.Bitmaps()
	if err != nil {
		return err
	}
	changed := false
	for _, b := range bms {
		if b.InUse {
			continue
		}
		var f [4]byte
		binary.BigEndian.PutUint32(f[:], b.Flags|1)
		if _, err := img.dev.WriteAt(f[:], b.EntryOffset+12); err != nil {
			return err
		}
		changed = true
	}
	if changed {
		return img.dev.Flush()
	}
	return nil
}
