package qcow2

import (
	"encoding/binary"

	"github.com/blocklayer/blocklayer/blockio"
)

// Flush implements blockio.Device: every completed write is durable on
// return. Metadata goes to disk in dependency order — refcount blocks,
// refcount table, L2 tables, L1 table — with a barrier between levels, and
// clusters released since the last flush are only returned to the free
// pool once nothing on disk references them, so a crash at any point
// leaves at most leaked clusters.
func (img *Image) Flush() error {
	if img.closed.Load() {
		return blockio.ErrClosed
	}
	if img.readOnly {
		return nil
	}
	img.mu.Lock()
	if img.l2c.ndirty != 0 || img.rbc.ndirty != 0 || img.l1AnyDirty || img.rtDirty || len(img.pending) != 0 {
		defer img.mu.Unlock()
		return img.flushLocked()
	}
	img.mu.Unlock()
	// No dirty metadata: every metadata write that needed ordering was
	// made with its barriers under the lock already, so the closing
	// barrier (the slow part, fdatasync) runs without blocking other
	// requests' metadata lookups.
	return img.barrier()
}

func (img *Image) flushLocked() error {
	// With lazy refcounts (image marked dirty) refcounts need not reach
	// the disk before the L2 tables that depend on them.
	if !img.lazy || img.h.incompat&incDirty == 0 {
		if err := img.syncRefcountsLocked(); err != nil {
			return err
		}
	}
	l2s := img.l2c.dirtyTables()
	if len(l2s) > 0 {
		if err := img.barrier(); err != nil {
			return err
		}
		for _, t := range l2s {
			if err := img.checkMetaWriteLocked("L2 table", t.off); err != nil {
				return err
			}
			if _, err := img.dev.WriteAt(t.buf, t.off); err != nil {
				return err
			}
			img.l2c.markClean(t)
		}
	}
	if img.l1AnyDirty {
		if err := img.barrier(); err != nil {
			return err
		}
		if err := img.writeL1Locked(); err != nil {
			return err
		}
	}
	if img.lazy {
		if err := img.syncRefcountsLocked(); err != nil {
			return err
		}
	}
	if err := img.barrier(); err != nil {
		return err
	}
	if len(img.pending) > 0 {
		if err := img.applyFreesLocked(); err != nil {
			return err
		}
		if err := img.syncRefcountsLocked(); err != nil {
			return err
		}
		if err := img.barrier(); err != nil {
			return err
		}
	}
	return nil
}

func (img *Image) writeL1Locked() error {
	base := int64(img.h.l1Offset)
	var buf [4096]byte
	for ci, d := range img.l1Dirty {
		if !d {
			continue
		}
		first := ci * 512
		last := min(len(img.l1), first+512)
		for i := first; i < last; i++ {
			binary.BigEndian.PutUint64(buf[(i-first)*8:], img.l1[i])
		}
		if _, err := img.dev.WriteAt(buf[:(last-first)*8], base+int64(first)*8); err != nil {
			return err
		}
		img.l1Dirty[ci] = false
	}
	img.l1AnyDirty = false
	return nil
}
