package qcow2

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/blocklayer/blocklayer/blockio"
)

// RepairMode selects what Check repairs (qemu-img check -r).
type RepairMode int

const (
	// RepairNone only reports.
	RepairNone RepairMode = iota
	// RepairLeaks drops references nobody holds (-r leaks).
	RepairLeaks
	// RepairAll also fixes refcounts that are too low (by rebuilding the
	// refcount structure from the L1/L2 and snapshot tables) and COPIED
	// flags (-r all).
	RepairAll
)

// CheckOptions configures Check. The zero value only reports.
type CheckOptions struct {
	Repair RepairMode
	// Log receives one line per finding, worded like qemu-img check's
	// messages ("ERROR cluster 5 refcount=0 reference=1", "Leaked cluster
	// ..."). nil discards them.
	Log func(msg string)
}

// CheckResult is the schema's ImageCheck, as `qemu-img check
// --output=json` prints it (zero counters are omitted like qemu-img does).
type CheckResult struct {
	Filename           string `json:"filename"`
	Format             string `json:"format"`
	CheckErrors        int64  `json:"check-errors"`
	ImageEndOffset     int64  `json:"image-end-offset,omitempty"`
	Corruptions        int64  `json:"corruptions,omitempty"`
	Leaks              int64  `json:"leaks,omitempty"`
	CorruptionsFixed   int64  `json:"corruptions-fixed,omitempty"`
	LeaksFixed         int64  `json:"leaks-fixed,omitempty"`
	TotalClusters      int64  `json:"total-clusters,omitempty"`
	AllocatedClusters  int64  `json:"allocated-clusters,omitempty"`
	FragmentedClusters int64  `json:"fragmented-clusters,omitempty"`
	CompressedClusters int64  `json:"compressed-clusters,omitempty"`
}

// ExitCode returns qemu-img check's exit status for the result: 0 clean,
// 1 check errors, 2 corruptions, 3 leaks only.
func (r CheckResult) ExitCode() int {
	switch {
	case r.CheckErrors > 0:
		return 1
	case r.Corruptions > 0:
		return 2
	case r.Leaks > 0:
		return 3
	}
	return 0
}

// checkState is the working state of one check pass.
type checkState struct {
	img           *Image
	res           CheckResult
	refs          []uint64 // computed references per host cluster
	disk          []uint64 // stored refcounts per host cluster (first fsize/cs)
	fsize         int64
	log           func(string)
	rebuild       bool
	leaked        []int64 // clusters with refcount > references
	low           int64   // clusters with refcount < references
	copied        int64   // COPIED flag mismatches (fixable)
	zeroUnaligned int64   // preallocated zero clusters with an unaligned offset (fixable)
	maxRefs       int64
}

func (s *checkState) logf(format string, args ...any) {
	if s.log != nil {
		s.log(fmt.Sprintf(format, args...))
	}
}

// inc counts one reference to every cluster touched by [off, off+n).
func (s *checkState) inc(off, n int64) {
	if n <= 0 {
		return
	}
	img := s.img
	if off < 0 || off+n < off || off+n-s.fsize >= img.cs && off+n > s.fsize {
		s.logf("ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x%x size 0x%x", off, n)
		s.res.Corruptions++
		return
	}
	first, last := off>>img.cbits, (off+n-1)>>img.cbits
	if last >= int64(len(s.refs)) {
		if last >= s.maxRefs {
			s.res.CheckErrors++
			return
		}
		s.refs = append(s.refs, make([]uint64, last+1-int64(len(s.refs)))...)
	}
	for c := first; c <= last; c++ {
		s.refs[c]++
	}
}

// Check verifies the image's metadata like `qemu-img check` and
// optionally repairs it. It waits for requests in flight and holds every
// lock for its duration, so concurrent requests wait; pending metadata is
// flushed first.
func (img *Image) Check(ctx context.Context, o CheckOptions) (CheckResult, error) {
	if img.closed.Load() {
		return CheckResult{}, blockio.ErrClosed
	}
	if o.Repair != RepairNone && img.readOnly {
		return CheckResult{}, blockio.ErrReadOnly
	}
	// Requests in flight hold clusters allocated (refcount taken) but
	// not yet entered in an L2 table: wait for them, or a repair would
	// drop those refcounts and the write would then publish a reference
	// to a free cluster.
	img.lockAll()
	defer img.unlockAll()
	img.mu.Lock()
	defer img.mu.Unlock()
	return img.checkLocked(ctx, o)
}

func (img *Image) checkLocked(ctx context.Context, o CheckOptions) (CheckResult, error) {
	if !img.readOnly {
		if err := img.flushLocked(); err != nil {
			return CheckResult{}, err
		}
	}
	s, err := img.checkPass(ctx, o.Log)
	if err != nil {
		return s.res, err
	}
	if o.Repair == RepairNone || (s.res.Corruptions == 0 && s.res.Leaks == 0 && !s.rebuild) {
		if o.Repair == RepairAll && img.h.incompat&(incCorrupt|incDirty) != 0 {
			if err := img.markConsistentLocked(); err != nil {
				return s.res, err
			}
		}
		return s.res, nil
	}
	before := s.res
	fixAll := o.Repair == RepairAll
	if fixAll && s.zeroUnaligned > 0 {
		// Turn preallocated zero clusters with an unaligned offset into
		// plain zero clusters, then count again.
		if err := img.fixUnalignedZeroLocked(); err != nil {
			return s.res, err
		}
		if s, err = img.checkPass(ctx, nil); err != nil {
			return s.res, err
		}
	}
	switch {
	case fixAll && (s.rebuild || s.low > 0):
		if err := img.rebuildRefcountsLocked(s.refs); err != nil {
			return s.res, err
		}
	case len(s.leaked) > 0:
		for _, c := range s.leaked {
			if err := img.setRefcountLocked(c, s.refs[c]); err != nil {
				return s.res, err
			}
		}
	}
	if fixAll {
		if err := img.fixCopiedLocked(); err != nil {
			return s.res, err
		}
	}
	if err := img.flushLocked(); err != nil {
		return s.res, err
	}
	s2, err := img.checkPass(ctx, nil)
	if err != nil {
		return s2.res, err
	}
	res := s2.res
	res.LeaksFixed = max(0, before.Leaks-res.Leaks)
	res.CorruptionsFixed = max(0, before.Corruptions-res.Corruptions)
	if fixAll && res.Corruptions == 0 {
		if err := img.markConsistentLocked(); err != nil {
			return res, err
		}
	}
	return res, nil
}

// markConsistentLocked clears the dirty and corrupt bits.
func (img *Image) markConsistentLocked() error {
	if img.h.version < 3 {
		return nil
	}
	if err := img.setIncompatLocked(img.h.incompat &^ (incCorrupt | incDirty)); err != nil {
		return err
	}
	img.corrupt = false
	img.written = false // a later write marks a lazy-refcount image dirty again
	return nil
}

// checkPass computes references from every table and compares them with
// the stored refcounts.
func (img *Image) checkPass(ctx context.Context, log func(string)) (*checkState, error) {
	fsize := img.dev.Size()
	n := (fsize + img.cs - 1) >> img.cbits
	if n*8 > img.memLimit() {
		return &checkState{}, &blockio.InvalidError{What: "check", Value: n, Reason: "cluster count exceeds the memory limit"}
	}
	s := &checkState{img: img, fsize: fsize, refs: make([]uint64, n), log: log,
		maxRefs: max(n, img.memLimit()/8)}
	s.res.Filename = img.opts.Filename
	s.res.Format = "qcow2"
	s.res.TotalClusters = (img.vsize.Load() + img.cs - 1) >> img.cbits
	s.disk = make([]uint64, n)
	s.loadDiskRefcounts()

	s.inc(0, img.cs)
	if err := s.walkL1(ctx, int64(img.h.l1Offset), int64(img.h.l1Size), true); err != nil {
		return s, err
	}
	snaps, err := img.Snapshots()
	if err != nil {
		s.logf("ERROR snapshot table: %v", err)
		s.res.Corruptions++
	}
	if img.h.nbSnapshots > 0 {
		tbl := int64(0)
		for _, sn := range snaps {
			tbl = sn.TableEntryOffset - int64(img.h.snapshotsOffset)
			tbl += (40 + int64(len(sn.ExtraData)) + int64(len(sn.ID)) + int64(len(sn.Name)) + 7) &^ 7
		}
		s.inc(int64(img.h.snapshotsOffset), tbl)
		for _, sn := range snaps {
			if sn.L1Offset&(img.cs-1) != 0 || sn.L1Size*8 > maxL1Bytes || sn.L1Offset+sn.L1Size*8 > fsize {
				s.logf("ERROR snapshot %s (%s) L1 table is invalid (offset %#x, %d entries)", sn.ID, sn.Name, sn.L1Offset, sn.L1Size)
				s.res.Corruptions++
				continue
			}
			if err := s.walkL1(ctx, sn.L1Offset, sn.L1Size, false); err != nil {
				return s, err
			}
		}
	}
	s.inc(int64(img.h.rtOffset), int64(img.h.rtClusters)*img.cs)
	if img.h.hasBitmapsExt && img.h.autoclear&acBitmaps != 0 {
		s.checkBitmaps()
	}
	// Refcount blocks.
	for i, e := range img.rt {
		off := int64(e & rtOffsetMask)
		if off == 0 {
			continue
		}
		if int64(e)&(img.cs-1) != 0 {
			s.logf("ERROR refcount block %d is not cluster aligned; refcount table entry corrupted", i)
			s.res.Corruptions++
			s.rebuild = true
			continue
		}
		c := off >> img.cbits
		if off < 0 || off >= fsize {
			s.logf("ERROR refcount block %d is outside image", i)
			s.res.Corruptions++
			s.rebuild = true
			continue
		}
		s.inc(off, img.cs)
		if s.refs[c] != 1 {
			s.logf("ERROR refcount block %d refcount=%d", i, s.refs[c])
			s.res.Corruptions++
			s.rebuild = true
		}
	}
	if err := ctx.Err(); err != nil {
		return s, err
	}
	// Compare.
	highest := int64(-1)
	for c := int64(0); c < int64(len(s.refs)); c++ {
		rc1 := s.diskRC(c)
		rc2 := s.refs[c]
		if rc1 != rc2 {
			if rc1 < rc2 {
				s.logf("ERROR cluster %d refcount=%d reference=%d", c, rc1, rc2)
				s.res.Corruptions++
				s.low++
			} else {
				s.logf("Leaked cluster %d refcount=%d reference=%d", c, rc1, rc2)
				s.res.Leaks++
				s.leaked = append(s.leaked, c)
			}
		}
		if rc1 > 0 || rc2 > 0 {
			highest = c
		}
	}
	s.res.ImageEndOffset = (highest + 1) << img.cbits
	s.res.Corruptions += s.copied
	return s, nil
}

// walkL1 counts an L1 table, its L2 tables and their clusters.
func (s *checkState) walkL1(ctx context.Context, off, n int64, active bool) error {
	img := s.img
	s.inc(off, n*8)
	if n == 0 {
		return nil
	}
	var l1 []uint64
	if active && off == int64(img.h.l1Offset) {
		l1 = img.l1
	} else {
		l1 = make([]uint64, n)
		if err := img.readTable(off, l1); err != nil {
			s.res.CheckErrors++
			return nil
		}
	}
	buf := make([]byte, img.cs)
	for i, e := range l1 {
		if i&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		l2 := int64(e & l1OffsetMask)
		if l2 == 0 {
			continue
		}
		if active {
			if rc := s.diskRC(l2 >> img.cbits); (rc == 1) != (e&oflagCopied != 0) {
				s.logf("ERROR OFLAG_COPIED L2 cluster: l1_index=%d l1_entry=%x refcount=%d", i, e, rc)
				s.copied++
			}
		}
		s.inc(l2, img.cs)
		if l2&(img.cs-1) != 0 {
			// Counted, and (like qemu-img) the table is still walked at
			// the offset given, so the verdict counts what it holds.
			s.logf("ERROR l2_offset=%x: Table is not cluster aligned; L1 entry corrupted", l2)
			s.res.Corruptions++
		}
		if l2+img.cs > s.fsize {
			continue // already reported by inc
		}
		if _, err := img.dev.ReadAt(buf, l2); err != nil {
			s.logf("ERROR: I/O error in check_refcounts_l2")
			s.res.CheckErrors++
			continue
		}
		s.walkL2(buf, active)
	}
	return nil
}

func (s *checkState) walkL2(buf []byte, frag bool) {
	img := s.img
	next := int64(0)
	be := binary.BigEndian
	for j := int64(0); j < img.l2Ent; j++ {
		e := be.Uint64(buf[j*img.entSize:])
		var bm uint64
		if img.extL2 {
			bm = be.Uint64(buf[j*img.entSize+8:])
		}
		if e&oflagCompress != 0 {
			if e&oflagCopied != 0 {
				s.logf("ERROR: cluster %d: copied flag must never be set for compressed clusters", int64(e&^oflagCopied)>>img.cbits)
				s.copied++
			}
			if img.hasData {
				s.logf("ERROR compressed cluster with an external data file")
				s.res.Corruptions++
			}
			if img.extL2 && bm != 0 {
				s.logf("ERROR compressed cluster %d has a non-zero subcluster bitmap %x", j, bm)
				s.res.Corruptions++
			}
			off := int64(e&img.cOffMask) &^ 511
			nsec := int64((e>>img.cShift)&img.cMask) + 1
			s.inc(off, nsec*512)
			if frag {
				s.res.AllocatedClusters++
				s.res.CompressedClusters++
				s.res.FragmentedClusters++
			}
			continue
		}
		if e&l2StdReserved != 0 {
			s.logf("ERROR found l2 entry with reserved bits set: %x", e)
			s.res.Corruptions++
		}
		host := int64(e & l2OffsetMask)
		if img.extL2 && bm&(bm>>32)&0xffffffff != 0 {
			s.logf("ERROR invalid subcluster bitmap %x (allocated and zero)", bm)
			s.res.Corruptions++
		}
		allocated := host != 0 || (img.hasData && e&oflagCopied != 0)
		if !allocated {
			if img.extL2 && uint32(bm) != 0 && !img.hasData {
				s.logf("ERROR unallocated cluster with allocated subclusters (bitmap %x)", bm)
				s.res.Corruptions++
			}
			continue
		}
		if frag {
			s.res.AllocatedClusters++
			if next != 0 && host != next {
				s.res.FragmentedClusters++
			}
			next = host + img.cs
		}
		if !img.hasData {
			s.inc(host, img.cs)
			if frag { // active table: COPIED must match the stored refcount
				if rc := s.diskRC(host >> img.cbits); (rc == 1) != (e&oflagCopied != 0) {
					s.logf("ERROR OFLAG_COPIED data cluster: l2_entry=%x refcount=%d", e, rc)
					s.copied++
				}
			}
		}
		if host&(img.cs-1) != 0 {
			s.res.Corruptions++
			hasData := e&oflagZero == 0
			if img.extL2 {
				hasData = uint32(bm) != 0
			}
			if hasData {
				s.logf("ERROR offset=%x: Data cluster is not properly aligned; L2 entry corrupted.", host)
			} else {
				// No data is lost by dropping the offset (QEMU repairs
				// these too).
				s.logf("ERROR offset=%x: Preallocated cluster is not properly aligned; L2 entry corrupted.", host)
				s.zeroUnaligned++
			}
		}
	}
}

func (s *checkState) checkBitmaps() {
	img := s.img
	s.inc(int64(img.h.bitmaps.dirOffset), int64(img.h.bitmaps.dirSize))
	bms, err := img.Bitmaps()
	if err != nil {
		s.logf("ERROR bitmap directory: %v", err)
		s.res.Corruptions++
		return
	}
	for _, b := range bms {
		// QEMU's limit is 2^27 table entries (BME_MAX_TABLE_SIZE).
		if b.TableOffset&(img.cs-1) != 0 || b.TableSize > 1<<27 || b.TableSize*8 > s.fsize || b.TableOffset+b.TableSize*8 > s.fsize {
			s.logf("ERROR bitmap %s table is invalid", b.Name)
			s.res.Corruptions++
			continue
		}
		s.inc(b.TableOffset, b.TableSize*8)
		if b.TableSize*8 > img.memLimit() {
			s.logf("ERROR bitmap %s table exceeds the memory limit", b.Name)
			s.res.CheckErrors++
			continue
		}
		tbl := make([]uint64, b.TableSize)
		if err := img.readTable(b.TableOffset, tbl); err != nil {
			s.res.CheckErrors++
			continue
		}
		for _, e := range tbl {
			if off := int64(e & l2OffsetMask); off != 0 {
				s.inc(off, img.cs)
			}
		}
	}
}

// refcountNoCacheLocked reads a refcount without loading the block into
// the cache (check must not be disturbed by bad offsets).
func (img *Image) refcountNoCacheLocked(c int64) (uint64, error) {
	off, i := img.refcountBlockOf(c)
	if off == 0 {
		return 0, nil
	}
	if off < 0 || off&(img.cs-1) != 0 || off+img.cs > img.dev.Size() {
		return 0, blockio.Corruptf("refcount table", int64(img.h.rtOffset)+(c>>img.rbBits)*8, "bad refcount block offset %#x", off)
	}
	if t := img.rbc.lookup(off); t != nil {
		return getRC(t.buf, i, img.rcOrder), nil
	}
	w := int64(1) << img.rcOrder // bits per entry
	byteOff := i * w / 8
	var b [8]byte
	n := max(1, w/8)
	if _, err := img.dev.ReadAt(b[:n], off+byteOff); err != nil {
		return 0, err
	}
	if w < 8 {
		return uint64(b[0]>>((i*w)&7)) & (1<<w - 1), nil
	}
	return getRC(b[:n], 0, img.rcOrder), nil
}

// setRefcountLocked stores refcount v for cluster c.
func (img *Image) setRefcountLocked(c int64, v uint64) error {
	cur, err := img.refcountLocked(c)
	if err != nil {
		return err
	}
	if v > cur {
		return img.updateRefcountLocked(c, int64(v-cur))
	}
	if v < cur {
		return img.updateRefcountLocked(c, -int64(cur-v))
	}
	return nil
}

// rebuildRefcountsLocked writes a fresh refcount table and blocks
// describing refs at the end of the file and switches the header to them.
func (img *Image) rebuildRefcountsLocked(refs []uint64) error {
	// The old table and blocks are dropped: remove their references.
	refs = append([]uint64(nil), refs...)
	drop := func(off int64) {
		if c := off >> img.cbits; off > 0 && c < int64(len(refs)) && refs[c] > 0 {
			refs[c]--
		}
	}
	for i := int64(0); i < int64(img.h.rtClusters); i++ {
		drop(int64(img.h.rtOffset) + i*img.cs)
	}
	for _, e := range img.rt {
		if off := int64(e & rtOffsetMask); off > 0 && int64(e)&(img.cs-1) == 0 && off < img.dev.Size() {
			drop(off)
		}
	}
	end := int64(len(refs))
	for end > 1 && refs[end-1] == 0 {
		end--
	}
	rbEnt := int64(1) << img.rbBits
	var nb, nt int64
	for {
		total := end + nb + nt
		nb2 := (total + rbEnt - 1) / rbEnt
		nt2 := (nb2*8 + img.cs - 1) / img.cs
		if nb2 == nb && nt2 == nt {
			break
		}
		nb, nt = nb2, nt2
	}
	if nt*img.cs > maxRefTableBytes {
		return blockio.ErrNoSpace
	}
	total := end + nb + nt
	all := make([]uint64, total)
	copy(all, refs[:end])
	for c := end; c < total; c++ {
		all[c] = 1
	}
	for c, v := range all {
		if v > img.rcMax {
			return &blockio.InvalidError{What: "refcount", Value: v, Reason: fmt.Sprintf("cluster %d needs a wider refcount_bits", c)}
		}
	}
	if err := img.growFileLocked(total << img.cbits); err != nil {
		return err
	}
	rt := make([]uint64, nt*img.cs/8)
	blk := make([]byte, img.cs)
	for i := range nb {
		clear(blk)
		for j := int64(0); j < rbEnt && i*rbEnt+j < total; j++ {
			putRC(blk, j, img.rcOrder, all[i*rbEnt+j])
		}
		off := (end + i) << img.cbits
		if _, err := img.dev.WriteAt(blk, off); err != nil {
			return err
		}
		rt[i] = uint64(off)
	}
	if err := img.barrier(); err != nil {
		return err
	}
	tb := make([]byte, nt*img.cs)
	for i, e := range rt {
		binary.BigEndian.PutUint64(tb[i*8:], e)
	}
	rtOff := (end + nb) << img.cbits
	if _, err := img.dev.WriteAt(tb, rtOff); err != nil {
		return err
	}
	if err := img.barrier(); err != nil {
		return err
	}
	var hb [12]byte
	binary.BigEndian.PutUint64(hb[:], uint64(rtOff))
	binary.BigEndian.PutUint32(hb[8:], uint32(nt))
	if _, err := img.dev.WriteAt(hb[:], 48); err != nil {
		return err
	}
	if err := img.barrier(); err != nil {
		return err
	}
	img.h.rtOffset = uint64(rtOff)
	img.h.rtClusters = uint32(nt)
	for _, e := range img.rt {
		img.clearMeta(int64(e & rtOffsetMask))
	}
	img.rt = rt
	for _, e := range rt {
		img.setMeta(int64(e))
	}
	img.rtDirty = false
	img.rbc = newTableCache(img.rbc.max, int(img.cs))
	img.rbc.writeback = img.writebackRB
	img.freeHint = 1
	img.cmpTail, img.cmpTailEnd = 0, 0
	img.pending = nil
	return nil
}

// fixCopiedLocked sets COPIED flags in the active L1 and L2 tables to
// match the refcounts, and clears it on compressed entries.
func (img *Image) fixCopiedLocked() error {
	return img.eachActiveL2Locked(func(i int, l2 int64, t *ctable) error {
		rc, err := img.refcountLocked(l2 >> img.cbits)
		if err != nil {
			return err
		}
		e := img.l1[i]
		want := e &^ oflagCopied
		if rc == 1 {
			want |= oflagCopied
		}
		if want != e {
			img.l1[i] = want
			img.markL1DirtyLocked(int64(i))
		}
		for j := int64(0); j < img.l2Ent; j++ {
			eo := j * img.entSize
			le := binary.BigEndian.Uint64(t.buf[eo:])
			var nl uint64
			switch host := int64(le & l2OffsetMask); {
			case le&oflagCompress != 0:
				nl = le &^ oflagCopied
			case host == 0 || img.hasData:
				continue
			default:
				rc, err := img.refcountLocked(host >> img.cbits)
				if err != nil {
					return err
				}
				nl = le &^ oflagCopied
				if rc == 1 {
					nl |= oflagCopied
				}
			}
			if nl != le {
				binary.BigEndian.PutUint64(t.buf[eo:], nl)
				img.l2c.markDirty(t)
			}
		}
		return nil
	})
}

// eachActiveL2Locked calls fn for every L2 table the active L1 table
// points to, with the L1 index, the table's host offset and the loaded
// table. Offsets that are unaligned or beyond the end of the file are
// skipped: check reports those, no repair can use them.
func (img *Image) eachActiveL2Locked(fn func(i int, l2 int64, t *ctable) error) error {
	for i, e := range img.l1 {
		l2 := int64(e & l1OffsetMask)
		if l2 == 0 || l2&(img.cs-1) != 0 || l2+img.cs > img.dev.Size() {
			continue
		}
		t, err := img.loadL2Locked(l2)
		if err != nil {
			return err
		}
		if err := fn(i, l2, t); err != nil {
			return err
		}
	}
	return nil
}

// loadDiskRefcounts reads the stored refcount of every cluster in the file.
func (s *checkState) loadDiskRefcounts() {
	img := s.img
	per := int64(1) << img.rbBits
	blk := make([]byte, img.cs)
	for rti := int64(0); rti < int64(len(img.rt)) && rti*per < int64(len(s.disk)); rti++ {
		off := int64(img.rt[rti] & rtOffsetMask)
		if off <= 0 || off&(img.cs-1) != 0 || off+img.cs > s.fsize {
			continue
		}
		if _, err := img.dev.ReadAt(blk, off); err != nil {
			s.res.CheckErrors++
			continue
		}
		for j := int64(0); j < per && rti*per+j < int64(len(s.disk)); j++ {
			s.disk[rti*per+j] = getRC(blk, j, img.rcOrder)
		}
	}
}

// diskRC returns the stored refcount of cluster c.
func (s *checkState) diskRC(c int64) uint64 {
	if c < int64(len(s.disk)) {
		return s.disk[c]
	}
	rc, err := s.img.refcountNoCacheLocked(c)
	if err != nil {
		return 0
	}
	return rc
}

// l2StdReserved are the bits of a standard (not compressed) L2 entry
// that must be zero: 1-8 and 56-61.
const l2StdReserved = 0x3f000000000001fe

// fixUnalignedZeroLocked rewrites the active L2 entries of preallocated
// zero clusters whose host offset is not cluster aligned as plain zero
// clusters (with extended L2 entries: no host offset, bitmap kept), as
// qemu-img check -r all does. Entries that hold data are left alone: no
// repair can tell where their data is.
func (img *Image) fixUnalignedZeroLocked() error {
	err := img.eachActiveL2Locked(func(_ int, _ int64, t *ctable) error {
		for j := int64(0); j < img.l2Ent; j++ {
			eo := j * img.entSize
			le := binary.BigEndian.Uint64(t.buf[eo:])
			host := int64(le & l2OffsetMask)
			if le&oflagCompress != 0 || host == 0 || host&(img.cs-1) == 0 {
				continue
			}
			var ne uint64
			if img.extL2 {
				if uint32(binary.BigEndian.Uint64(t.buf[eo+8:])) != 0 {
					continue
				}
			} else {
				if le&oflagZero == 0 {
					continue
				}
				ne = oflagZero
			}
			binary.BigEndian.PutUint64(t.buf[eo:], ne)
			img.l2c.markDirty(t)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return img.flushLocked()
}
