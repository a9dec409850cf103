package vmdk

import (
	"sync"

	"github.com/blocklayer/blocklayer/blockio"
)

type extentKind int

const (
	kindFlat extentKind = iota
	kindSparse
	kindZero     // ZERO extents and NOACCESS lines: read as zeros
	kindSESparse // read-only seSparse
)

// extent is one piece of the guest address space.
type extent struct {
	start, size int64 // guest bytes
	kind        extentKind
	access      string
	typ         string // descriptor type for Info ("" for the image file itself)
	file        string // file name for Info
	dev         blockio.Device
	flatOff     int64 // bytes, FLAT/VMFS only
	sp          *sparseExtent
	se          *seSparseExtent
	readOnly    bool
	growMu      sync.Mutex  // serializes growing a flat extent's file
	back        backingFunc // reads the parent at extent-relative offsets; nil without a parent
}

func (e *extent) end() int64 { return e.start + e.size }

// flatRead reads extent-relative bytes of a flat extent; bytes beyond the
// end of the file read as zeros.
func (e *extent) flatRead(p []byte, off int64) error {
	return readPadded(e.dev, p, e.flatOff+off, e.dev.Size())
}

// readPadded reads p at off from dev, whose data ends at size: what lies
// beyond reads as zeros.
func readPadded(dev blockio.Device, p []byte, off, size int64) error {
	if off >= size {
		clear(p)
		return nil
	}
	n := min(int64(len(p)), size-off)
	if _, err := dev.ReadAt(p[:n], off); err != nil {
		return err
	}
	clear(p[n:])
	return nil
}

// flatGrow extends the file to at least end bytes. The check and the
// truncation are serialized: two racing writers past the end must not
// let the smaller truncation undo the larger one (and drop its data).
func (e *extent) flatGrow(end int64) error {
	if end <= e.dev.Size() {
		return nil
	}
	e.growMu.Lock()
	defer e.growMu.Unlock()
	if end <= e.dev.Size() {
		return nil
	}
	return blockio.Truncate(e.dev, end, blockio.PreallocOff)
}

func (e *extent) flatWrite(p []byte, off int64) error {
	host := e.flatOff + off
	if err := e.flatGrow(host + int64(len(p))); err != nil {
		return err
	}
	_, err := e.dev.WriteAt(p, host)
	return err
}

func (e *extent) flatZero(off, n int64) error {
	host := e.flatOff + off
	if err := e.flatGrow(host + n); err != nil {
		return err
	}
	return blockio.WriteZeroes(e.dev, host, n, false)
}

func (e *extent) flatStatus(off, n int64) (blockio.Extent, error) {
	host := e.flatOff + off
	fsize := e.dev.Size()
	if host >= fsize {
		return blockio.Extent{Length: n, Data: true, Zero: true, Allocated: true, Offset: host}, nil
	}
	st, err := blockio.BlockStatus(e.dev, host, min(n, fsize-host))
	if err != nil {
		return blockio.Extent{}, err
	}
	return blockio.Extent{Length: st.Length, Data: true, Zero: st.Zero, Allocated: true, Offset: host}, nil
}
