package qcow2

import (
	"github.com/blocklayer/blocklayer/blockio"
)

// Deallocate makes the whole guest clusters in [off, off+n) unallocated,
// so that they read through to the backing file (as zeros without one),
// and releases their host clusters: QEMU's full discard, which qemu-img
// commit uses to empty an image into its backing file. Partial clusters at
// either end are left as they are. The L2 entries are cleared first and the
// host clusters return to the free pool only after the cleared entries are
// durable (at the next Flush), so a crash leaves at most leaked clusters.
// Clusters shared with internal snapshots only lose this image's
// reference. An image whose external data file is raw (data_file_raw)
// cannot drop its identity mapping: ErrUnsupported.
func (img *Image) Deallocate(off, n int64) error {
	if img.closed.Load() {
		return blockio.ErrClosed
	}
	if err := blockio.CheckRange("deallocate", off, n, img.vsize.Load()); err != nil {
		return err
	}
	if img.readOnly {
		return blockio.ErrReadOnly
	}
	if img.dataRaw {
		return &blockio.UnsupportedError{Feature: "deallocating clusters of an image with a raw external data file"}
	}
	end := off + n
	for off < end {
		cstart := off &^ (img.cs - 1)
		vlen := img.validLen(cstart)
		l := min(end, cstart+vlen) - off
		if off == cstart && l == vlen {
			sh := img.shard(off)
			sh.Lock()
			err := img.deallocCluster(cstart)
			sh.Unlock()
			if err != nil {
				return err
			}
		}
		off += l
	}
	return nil
}

// deallocCluster clears the L2 entry of the guest cluster at cstart.
func (img *Image) deallocCluster(cstart int64) error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.beginWriteLocked(); err != nil {
		return err
	}
	m, err := img.lookupLocked(cstart, img.cs)
	if err != nil {
		return err
	}
	if m.noL2 || (m.entry == 0 && (!img.extL2 || m.bmap == 0)) {
		return nil // already unallocated
	}
	return img.setEntryLocked(cstart, 0, 0)
}
