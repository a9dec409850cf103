package qcow2

import "github.com/blocklayer/blocklayer/blockio"

// repairDirty rebuilds refcounts of an image whose dirty bit is set
// before it is written (as QEMU does on a read-write open).
func (img *Image) repairDirty() error {
	return &blockio.UnsupportedError{Feature: "read-write open of a dirty qcow2 image (open read-only)"}
}
