package vmdk

import (
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/blocklayer/blocklayer/blockio"
)

// Image is an open VMDK disk: a descriptor plus its extents. It implements
// blockio.Device, blockio.StatusReporter, blockio.ZeroWriter and
// blockio.Informer.
//
// Image is safe for concurrent use by multiple goroutines: reads and
// writes to different grains proceed in parallel; racing first writes to
// one grain allocate it once. An image created with subformat
// streamOptimized is the exception: it accepts writes only in increasing
// offset order (see CreateFile), so concurrent writers must coordinate.
type Image struct {
	opts     Options
	filename string
	desc     *Descriptor
	extents  []*extent
	size     int64
	readOnly bool
	streamRO bool  // has compressed extents: read-only
	metaUsed int64 // metadata memory charged at open (see limits)

	descDev        blockio.Device
	descStandalone bool
	descOff        int64
	descCap        int64

	parent     blockio.Device
	parentPath string
	parentOnce sync.Once
	parentErr  error

	cidMu      sync.Mutex
	cidUpdated atomic.Bool // set once the first write has renewed the CID (under cidMu)

	stream *streamWriter // non-nil for a stream-optimized image being written

	closeMu sync.RWMutex
	closed  bool
}

var (
	_ blockio.Device         = (*Image)(nil)
	_ blockio.StatusReporter = (*Image)(nil)
	_ blockio.ZeroWriter     = (*Image)(nil)
	_ blockio.Informer       = (*Image)(nil)
)

// Size returns the virtual disk size in bytes.
func (img *Image) Size() int64 { return img.size }

// CID returns the current content ID.
func (img *Image) CID() uint32 {
	img.cidMu.Lock()
	defer img.cidMu.Unlock()
	return img.desc.CID
}

// ParentCID returns the parent content ID (0xffffffff without a parent).
func (img *Image) ParentCID() uint32 { return img.desc.ParentCID }

// CreateType returns the descriptor's createType.
func (img *Image) CreateType() string { return img.desc.CreateType }

// Descriptor returns a copy of the parsed descriptor.
func (img *Image) Descriptor() Descriptor {
	img.cidMu.Lock()
	defer img.cidMu.Unlock()
	d := *img.desc
	d.Extents = append([]ExtentLine(nil), d.Extents...)
	d.DDB = append([]KV(nil), d.DDB...)
	return d
}

// Parent returns the opened parent device or nil.
func (img *Image) Parent() blockio.Device { return img.parent }

func (img *Image) extentAt(off int64) int {
	return sort.Search(len(img.extents), func(i int) bool { return img.extents[i].end() > off })
}

// backing returns e's reader of the parent (nil without a parent). It is
// built once when the parent is opened, not per request.
func (img *Image) backing(e *extent) backingFunc { return e.back }

func (img *Image) checkParent() error {
	img.parentOnce.Do(func() {
		p, ok := img.parent.(*Image)
		switch {
		case ok && p.CID() != img.desc.ParentCID:
			img.parentErr = &blockio.InvalidError{What: "parent CID", Value: p.CID(),
				Reason: "the parent was modified after this delta was created (parentCID mismatch)"}
		case !ok && img.opts.ParentOpener == nil:
			img.parentErr = &blockio.InvalidError{What: "parent", Value: img.parentPath, Reason: "backing file is not in vmdk format"}
		}
	})
	return img.parentErr
}

func (img *Image) readParent(p []byte, off int64) error {
	if err := img.checkParent(); err != nil {
		return err
	}
	return readPadded(img.parent, p, off, img.parent.Size())
}

func (img *Image) begin() error {
	img.closeMu.RLock()
	if img.closed {
		img.closeMu.RUnlock()
		return blockio.ErrClosed
	}
	return nil
}

func (img *Image) end() { img.closeMu.RUnlock() }

// ReadAt implements blockio.Device.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	if err := img.begin(); err != nil {
		return 0, err
	}
	defer img.end()
	if err := blockio.CheckRange("read", off, int64(len(p)), img.size); err != nil {
		return 0, err
	}
	if img.stream != nil {
		return 0, &blockio.UnsupportedError{Feature: "reading a stream-optimized image while it is being written"}
	}
	done := 0
	for i := img.extentAt(off); done < len(p); i++ {
		e := img.extents[i]
		rel := off + int64(done) - e.start
		n := int(min(int64(len(p)-done), e.size-rel))
		q := p[done : done+n]
		var err error
		switch e.kind {
		case kindZero:
			clear(q)
		case kindFlat:
			err = e.flatRead(q, rel)
		case kindSparse:
			err = e.sp.readAt(q, rel, img.backing(e))
		case kindSESparse:
			err = e.se.readAt(q, rel, img.backing(e))
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// WriteAt implements blockio.Device.
func (img *Image) WriteAt(p []byte, off int64) (int, error) {
	if err := img.begin(); err != nil {
		return 0, err
	}
	defer img.end()
	if err := img.writable("write", off, int64(len(p))); err != nil {
		return 0, err
	}
	if img.stream != nil {
		return img.stream.writeAt(p, off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := img.updateCID(); err != nil {
		return 0, err
	}
	done := 0
	for i := img.extentAt(off); done < len(p); i++ {
		e := img.extents[i]
		rel := off + int64(done) - e.start
		n := int(min(int64(len(p)-done), e.size-rel))
		q := p[done : done+n]
		var err error
		switch {
		case e.readOnly:
			err = blockio.ErrReadOnly
		case e.kind == kindZero:
			err = &blockio.UnsupportedError{Feature: "writing a ZERO or NOACCESS vmdk extent"}
		case e.kind == kindFlat:
			err = e.flatWrite(q, rel)
		default:
			err = e.sp.writeAt(q, rel, img.backing(e))
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

func (img *Image) writable(op string, off, n int64) error {
	if img.readOnly {
		return blockio.ErrReadOnly
	}
	if err := blockio.CheckRange(op, off, n, img.size); err != nil {
		return err
	}
	if img.streamRO {
		return &blockio.UnsupportedError{Feature: "writing to an existing stream-optimized (compressed) vmdk"}
	}
	return nil
}

// WriteZeroes implements blockio.ZeroWriter. In sparse extents with the
// zeroed-grain feature whole grains become zeroed-grain entries; ranges
// that already read as zeros are left alone; the rest is written.
func (img *Image) WriteZeroes(off, n int64, mayUnmap bool) error {
	if err := img.begin(); err != nil {
		return err
	}
	defer img.end()
	if err := img.writable("write zeroes", off, n); err != nil {
		return err
	}
	if img.stream != nil {
		return img.stream.writeZeroes(off, n)
	}
	if n == 0 {
		return nil
	}
	if err := img.updateCID(); err != nil {
		return err
	}
	for i := img.extentAt(off); n > 0; i++ {
		e := img.extents[i]
		rel := off - e.start
		l := min(n, e.size-rel)
		var err error
		switch {
		case e.readOnly:
			err = blockio.ErrReadOnly
		case e.kind == kindZero:
			err = &blockio.UnsupportedError{Feature: "writing a ZERO or NOACCESS vmdk extent"}
		case e.kind == kindFlat:
			err = e.flatZero(rel, l)
		default:
			err = e.sp.writeZeroes(rel, l, mayUnmap, img.backing(e))
		}
		if err != nil {
			return err
		}
		off += l
		n -= l
	}
	return nil
}

// BlockStatus implements blockio.StatusReporter with qemu-img map's
// semantics: Offset is the host offset inside the extent's own file (use
// ExtentFileAt to learn which file), unknown (-1) for compressed grains.
// Unallocated ranges report the parent's status with Depth+1.
func (img *Image) BlockStatus(off, n int64) (blockio.Extent, error) {
	if err := img.begin(); err != nil {
		return blockio.Extent{}, err
	}
	defer img.end()
	if err := blockio.CheckRange("block status", off, n, img.size); err != nil {
		return blockio.Extent{}, err
	}
	if n == 0 {
		return blockio.Extent{Start: off, Offset: -1}, nil
	}
	if img.stream != nil {
		return blockio.Extent{Start: off, Length: n, Data: true, Allocated: true, Offset: -1}, nil
	}
	e := img.extents[img.extentAt(off)]
	rel := off - e.start
	n = min(n, e.size-rel)
	switch e.kind {
	case kindZero:
		return blockio.Extent{Start: off, Length: n, Zero: true, Allocated: true, Offset: -1}, nil
	case kindFlat:
		st, err := e.flatStatus(rel, n)
		st.Start = off
		return st, err
	}
	var r statusRun
	var err error
	if e.kind == kindSESparse {
		r, err = e.se.status(rel, n)
	} else {
		r, err = e.sp.status(rel, n)
	}
	if err != nil {
		return blockio.Extent{}, err
	}
	switch r.kind {
	case 1:
		return blockio.Extent{Start: off, Length: r.length, Zero: true, Allocated: true, Offset: -1}, nil
	case 2:
		return blockio.Extent{Start: off, Length: r.length, Data: true, Allocated: true, Offset: r.host}, nil
	}
	if img.parent == nil {
		return blockio.Extent{Start: off, Length: r.length, Zero: true, Offset: -1}, nil
	}
	psize := img.parent.Size()
	if off >= psize {
		return blockio.Extent{Start: off, Length: r.length, Zero: true, Offset: -1, Depth: 1}, nil
	}
	st, err := blockio.BlockStatus(img.parent, off, min(r.length, psize-off))
	if err != nil {
		return blockio.Extent{}, err
	}
	st.Depth++
	st.Start = off
	return st, nil
}

// ExtentFileAt returns the file name (as in Info) holding guest offset off.
func (img *Image) ExtentFileAt(off int64) string {
	if off < 0 || off >= img.size {
		return ""
	}
	return img.extents[img.extentAt(off)].file
}

// Flush makes every completed write durable.
func (img *Image) Flush() error {
	if err := img.begin(); err != nil {
		return err
	}
	defer img.end()
	if img.readOnly {
		return nil
	}
	if img.stream != nil {
		return img.stream.flush()
	}
	return img.flushAll()
}

func (img *Image) flushAll() error {
	for _, e := range img.extents {
		if e.kind == kindSparse && !e.sp.readOnly {
			if err := e.sp.flushMeta(); err != nil {
				return err
			}
		}
	}
	for _, d := range img.devices() {
		if err := d.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func (img *Image) devices() []blockio.Device {
	seen := map[blockio.Device]bool{}
	var out []blockio.Device
	add := func(d blockio.Device) {
		if d != nil && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	add(img.descDev)
	for _, e := range img.extents {
		add(e.dev)
	}
	return out
}

// Close finishes a stream-optimized image being written, then closes every
// file the image opened, including the parent.
func (img *Image) Close() error {
	img.closeMu.Lock()
	defer img.closeMu.Unlock()
	if img.closed {
		return blockio.ErrClosed
	}
	img.closed = true
	var first error
	if img.stream != nil {
		first = img.stream.finish()
	} else if !img.readOnly {
		first = img.flushAll()
	}
	for _, d := range img.devices() {
		if err := d.Close(); err != nil && first == nil {
			first = err
		}
	}
	if img.parent != nil {
		if err := img.parent.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// updateCID gives the disk a new random CID on the first write after open,
// as QEMU does, so that children's parentCID no longer matches.
func (img *Image) updateCID() error {
	if img.cidUpdated.Load() {
		return nil // every write but the first: no lock
	}
	img.cidMu.Lock()
	defer img.cidMu.Unlock()
	if img.cidUpdated.Load() {
		return nil
	}
	if img.descDev == nil {
		img.cidUpdated.Store(true)
		return nil
	}
	cid := rand.Uint32()
	for cid == noParentCID || cid == img.desc.CID {
		cid = rand.Uint32()
	}
	if err := img.writeDescCID(cid); err != nil {
		return err
	}
	img.desc.CID = cid
	img.cidUpdated.Store(true)
	return nil
}

func (img *Image) writeDescCID(cid uint32) error {
	d := img.descDev
	var old []byte
	if img.descStandalone {
		old = make([]byte, min(d.Size(), maxDescriptor))
		if _, err := d.ReadAt(old, 0); err != nil {
			return err
		}
	} else {
		n := min(img.descCap, maxDescriptor, d.Size()-img.descOff)
		old = make([]byte, n)
		if _, err := d.ReadAt(old, img.descOff); err != nil {
			return err
		}
	}
	text := replaceCID(old, cid)
	if img.descStandalone {
		size := (int64(len(text)) + sectorSize - 1) / sectorSize * sectorSize
		size = max(size, d.Size())
		buf := make([]byte, size)
		copy(buf, text)
		if size > d.Size() {
			if err := blockio.Truncate(d, size, blockio.PreallocOff); err != nil {
				return err
			}
		}
		if _, err := d.WriteAt(buf, 0); err != nil {
			return err
		}
	} else {
		if int64(len(text)) > int64(len(old)) {
			return blockio.Corruptf("vmdk embedded descriptor", img.descOff, "no room to update the CID")
		}
		buf := make([]byte, len(old))
		copy(buf, text)
		if _, err := d.WriteAt(buf, img.descOff); err != nil {
			return err
		}
	}
	return d.Flush()
}
