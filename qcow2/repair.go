package qcow2

import (
	"context"

	"github.com/blocklayer/blocklayer/blockio"
)

// repairDirty rebuilds the refcounts of an image whose dirty bit is set
// (lazy refcounts, unclean shutdown) before it is written, as QEMU does on
// a read-write open, and clears the bit.
func (img *Image) repairDirty() error {
	img.mu.Lock()
	defer img.mu.Unlock()
	res, err := img.checkLocked(context.Background(), CheckOptions{Repair: RepairAll})
	if err != nil {
		return err
	}
	if res.Corruptions > 0 {
		return &blockio.CorruptError{Structure: "qcow2 image", Offset: -1,
			Reason: "dirty image could not be repaired; run check -r all"}
	}
	return nil
}
