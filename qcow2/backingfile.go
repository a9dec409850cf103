package qcow2

import (
	"fmt"

	"github.com/blocklayer/blocklayer/blockio"
)

// ChangeBackingFile rewrites the backing file name and format stored in the
// image header, as `qemu-img rebase -u` does: name "" removes the backing
// file reference (and its format). Every other header field and extension
// (external data file, bitmaps directory, unknown extensions) is kept; the
// header is re-encoded in QEMU's layout, so the result is byte-identical to
// the header QEMU writes for the same change.
//
// Only the header changes: the backing device this Image opened stays in
// use until the image is reopened, and no data is copied (a safe rebase
// copies the clusters that differ first; see cmd/blockimg). Writes made
// before the call are flushed first, so the new backing reference never
// reaches the disk ahead of them; then the header cluster is written in
// one write followed by a flush. That write is the
// one metadata update not ordered against a power cut: QEMU rewrites the
// header the same way, and a device that tears a write inside the first
// cluster can leave a mixed header (the old backing reference or a mangled
// one), never damage to data or allocation metadata.
func (img *Image) ChangeBackingFile(name, format string) error {
	if img.closed.Load() {
		return blockio.ErrClosed
	}
	if img.readOnly {
		return blockio.ErrReadOnly
	}
	if name == "" {
		format = ""
	}
	if len(name) > maxBackingNameLen {
		return &blockio.InvalidError{What: "backing file name", Value: len(name), Reason: fmt.Sprintf("longer than %d bytes", maxBackingNameLen)}
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	if img.corrupt {
		return &blockio.CorruptError{Structure: "qcow2 image", Offset: -1, Reason: "image is marked corrupt; writes are refused"}
	}
	// Everything written before (a safe rebase's copied data above all)
	// must be durable before the header names another backing file;
	// otherwise a crash could leave clusters reading through to the new
	// backing file's different data.
	if err := img.flushLocked(); err != nil {
		return err
	}
	// Start from the header as it is on disk (header fields are always
	// written through), not from the in-memory copy.
	fileSize := img.dev.Size()
	buf := make([]byte, min(img.cs, max(fileSize, 0)))
	if _, err := img.dev.ReadAt(buf, 0); err != nil {
		return fmt.Errorf("qcow2: read header: %w", err)
	}
	h, err := parseHeader(buf, fileSize)
	if err != nil {
		return err
	}
	if name != "" && h.autoclear&acDataFileRaw != 0 {
		// The raw data file alone must stay the disk's contents.
		return &blockio.InvalidError{What: "backing file", Value: name, Reason: "an image whose external data file is raw cannot have a backing file"}
	}
	h.backingFile, h.backingFormat = name, format
	// Like any writer, drop the autoclear features this package does not
	// know: their data may no longer be valid (QEMU does the same when it
	// opens an image read-write).
	h.autoclear &= acBitmaps | acDataFileRaw
	nb, err := h.encode(int(img.cs))
	if err != nil {
		return fmt.Errorf("qcow2: change backing file: %w", err)
	}
	if _, err := img.dev.WriteAt(nb, 0); err != nil {
		return fmt.Errorf("qcow2: write header: %w", err)
	}
	if err := img.dev.Flush(); err != nil {
		return fmt.Errorf("qcow2: write header: %w", err)
	}
	nh, err := parseHeader(nb, max(fileSize, int64(len(nb))))
	if err != nil {
		return err
	}
	img.h.backingFile, img.h.backingFormat = name, format
	img.h.backingOffset, img.h.backingSize = nh.backingOffset, nh.backingSize
	img.h.headerLength, img.h.features = nh.headerLength, nh.features
	return nil
}
