package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/blocklayer/blocklayer/blockio"
)

// Options configures Open. The zero value opens read-write with QEMU's
// default cache sizes, following the backing chain relative to the image's
// directory.
type Options struct {
	// ReadOnly opens the image (and never writes to it).
	ReadOnly bool
	// L2CacheSize, RefcountCacheSize and CacheSize are QEMU's
	// l2-cache-size, refcount-cache-size and cache-size in bytes (0 =
	// default: an L2 cache covering the whole disk up to 32 MiB, and a
	// refcount cache of a quarter of that, at least 4 clusters).
	L2CacheSize, RefcountCacheSize, CacheSize int64
	// NoBacking opens the image without its backing file: unallocated
	// ranges read as zeros.
	NoBacking bool
	// BackingOpener opens the backing file named in the header (name as
	// stored, format from the backing-format extension, possibly ""). nil
	// uses the default: the name is resolved against the image's
	// directory and opened as raw or qcow2 (probed when format is empty),
	// subject to BackingDir / NoAbsoluteBacking.
	BackingOpener func(name, format string, readOnly bool) (blockio.Device, error)
	// Filename is the image path used to resolve relative backing and data
	// file names and reported by Info. OpenFile sets it.
	Filename string
	// DataFile supplies the external data file device; nil opens the name
	// stored in the image relative to its directory. Image.Close closes it.
	DataFile blockio.Device
	// MaxBackingDepth limits the backing chain length (0 = 32).
	MaxBackingDepth int
	// BackingDir, when set, confines backing files opened by the default
	// opener, and the external data file named in the image, to this
	// directory tree.
	BackingDir string
	// NoAbsoluteBacking makes the default opener refuse absolute backing
	// file names.
	NoAbsoluteBacking bool
	// MemoryLimit caps the memory used for in-memory tables (L1, refcount
	// table, snapshot and bitmap tables) before they are allocated (0 =
	// 512 MiB).
	MemoryLimit int64
	// NoLazyRefcounts disables lazy refcount updates on images created
	// with lazy_refcounts=on (QEMU's lazy-refcounts=off). With lazy
	// refcounts the image is marked dirty on the first write, refcount
	// blocks are written without ordering against L2 tables, and the
	// dirty bit is cleared on Close; a crash leaves a dirty image whose
	// refcounts are rebuilt by the next read-write open.
	NoLazyRefcounts bool
	// OverlapCheck is QEMU's overlap-check mode for metadata and data
	// writes: "none", "constant", "cached" (default, also "") or "all".
	OverlapCheck string
	// Repair allows a read-write open of an image marked corrupt so that
	// Check can repair it; other writes stay refused until Check clears
	// the corrupt bit.
	Repair bool
	// Direct, NoLock and ForceShare are passed to blockio.OpenFile for the
	// files OpenFile opens (image, data file, backing files): O_DIRECT,
	// no image locking, and qemu-img -U style shared read-only access.
	Direct, NoLock, ForceShare bool
	// OnCorrupt is called when the image is found corrupt at run time and
	// marked so (the fields of QEMU's BLOCK_IMAGE_CORRUPTED event). It runs
	// with the image's metadata lock held and must not call back into the
	// Image.
	OnCorrupt func(CorruptEvent)

	chain []string // absolute paths of images above this one (loop check)
}

// CorruptEvent carries the fields of QEMU's BLOCK_IMAGE_CORRUPTED event.
type CorruptEvent struct {
	Msg    string
	Offset int64 // -1 when unknown
	Size   int64 // -1 when unknown
	Fatal  bool
}

const nShards = 1024

// Image is an open qcow2 image. It implements blockio.Device and the
// Discarder, ZeroWriter, StatusReporter, Truncater capabilities and
// blockio.Informer.
//
// Image is safe for concurrent use by multiple goroutines: requests to
// different clusters run in parallel; requests touching the same guest
// cluster are serialised per cluster. Metadata (L1, L2 and refcount
// caches) is guarded by one mutex that is never held across guest data
// I/O.
type Image struct {
	dev      blockio.Device // the qcow2 file
	data     blockio.Device // data file (== dev without an external data file)
	backing  blockio.Device
	opts     Options
	readOnly bool

	h        *header
	vsize    atomic.Int64 // virtual size (Truncate changes it)
	cbits    uint
	cs       int64
	l2Bits   uint // log2 entries per L2 table
	l2Ent    int64
	extL2    bool
	entSize  int64 // 8 or 16
	scSize   int64 // subcluster size (extended L2)
	rcOrder  uint
	rbBits   uint // log2 entries per refcount block
	rcMax    uint64
	cShift   uint // compressed: csize shift
	cMask    uint64
	cOffMask uint64
	lazy     bool // lazy refcounts in use
	hasData  bool // external data file
	dataRaw  bool

	shards [nShards]sync.RWMutex
	dataMu sync.Mutex // serialises growth of the external data file

	mu         sync.Mutex // guards everything below
	l1         []uint64
	l1Dirty    []bool // per 4 KiB chunk of L1
	l1AnyDirty bool
	rt         []uint64
	rtDirty    bool
	l2c        *tableCache
	rbc        *tableCache
	pending    []pendingFree
	freeHint   int64 // cluster index
	fileEnd    int64 // bytes, allocation high water (cluster aligned)
	written    bool  // first-write header work done
	corrupt    bool
	cmpTail    int64 // compressed-packing: next free byte in current cluster
	cmpTailEnd int64
	reserved   [][2]int64 // clusters being allocated
	metaBits   []uint64   // host clusters holding active L2 tables or refcount blocks
	// preallocMeta caches metaPreallocLocked's answer once preallocChecked.
	preallocChecked, preallocMeta bool

	closed atomic.Bool
	bufs   sync.Pool // cluster-sized []byte
	zbuf   []byte    // read-only zeros, one cluster
}

type pendingFree struct {
	off, n int64 // host byte range; every cluster touched loses one ref
}

// OpenFile opens the qcow2 image at path.
func OpenFile(path string, opts Options) (*Image, error) {
	dev, err := blockio.OpenFile(path, opts.fileOptions(opts.ReadOnly))
	if err != nil {
		return nil, err
	}
	if opts.Filename == "" {
		opts.Filename = path
	}
	img, err := Open(dev, opts)
	if err != nil {
		dev.Close()
		return nil, err
	}
	return img, nil
}

// Open opens a qcow2 image stored on dev. On success the Image owns dev
// (Image.Close closes it); on error the caller keeps dev.
func Open(dev blockio.Device, opts Options) (*Image, error) {
	img := &Image{dev: dev, data: dev, opts: opts, readOnly: opts.ReadOnly}
	if err := img.open(); err != nil {
		if img.data == opts.DataFile {
			img.data = nil // the caller keeps its devices
		}
		img.closeAux()
		return nil, err
	}
	return img, nil
}

func (o *Options) fileOptions(readOnly bool) blockio.FileOptions {
	return blockio.FileOptions{ReadOnly: readOnly, Direct: o.Direct, NoLock: o.NoLock, ForceShare: o.ForceShare && readOnly}
}

func (img *Image) memLimit() int64 {
	if img.opts.MemoryLimit > 0 {
		return img.opts.MemoryLimit
	}
	return 512 << 20
}

func (img *Image) open() error {
	fsize := img.dev.Size()
	first := make([]byte, min(fsize, 1<<maxClusterBits))
	if len(first) < v2HeaderLen {
		return herr(0, "file too short (%d bytes) for a qcow2 header", fsize)
	}
	if _, err := img.dev.ReadAt(first[:v2HeaderLen], 0); err != nil {
		return err
	}
	if binary.BigEndian.Uint32(first) != magic {
		return herr(0, "bad magic: not a qcow2 image")
	}
	cb := binary.BigEndian.Uint32(first[20:])
	if cb >= minClusterBits && cb <= maxClusterBits {
		first = first[:min(int64(len(first)), int64(1)<<cb)]
	}
	if _, err := img.dev.ReadAt(first, 0); err != nil {
		return err
	}
	h, err := parseHeader(first, fsize)
	if err != nil {
		return err
	}
	img.h = h
	img.vsize.Store(int64(h.size))
	img.cbits = uint(h.clusterBits)
	img.cs = 1 << img.cbits
	img.extL2 = h.incompat&incExtL2 != 0
	img.entSize = 8
	if img.extL2 {
		img.entSize = 16
		img.scSize = img.cs / 32
	}
	img.l2Ent = img.cs / img.entSize
	img.l2Bits = uint(bits.TrailingZeros64(uint64(img.l2Ent)))
	img.rcOrder = uint(h.refcountOrder)
	img.rbBits = img.cbits + 3 - img.rcOrder
	if img.rcOrder == 6 {
		img.rcMax = 1<<63 - 1
	} else {
		img.rcMax = 1<<(uint(1)<<img.rcOrder) - 1
	}
	img.cShift = 62 - (img.cbits - 8)
	img.cMask = 1<<(img.cbits-8) - 1
	img.cOffMask = 1<<img.cShift - 1
	img.lazy = h.version >= 3 && h.compat&compatLazy != 0 && !img.opts.NoLazyRefcounts && !img.readOnly
	img.hasData = h.incompat&incDataFile != 0
	img.dataRaw = img.hasData && h.autoclear&acDataFileRaw != 0
	img.zbuf = make([]byte, img.cs)
	cs := img.cs
	img.bufs.New = func() any { b := make([]byte, cs); return &b }

	if h.incompat&incCorrupt != 0 && !img.readOnly && img.opts.Repair {
		img.corrupt = true
	} else if h.incompat&incCorrupt != 0 && !img.readOnly {
		return &blockio.CorruptError{Structure: "qcow2 image", Offset: -1,
			Reason: "image is marked corrupt; it can only be opened read-only"}
	}
	if h.version == 2 && h.incompat != 0 {
		return herr(72, "version 2 image with feature bits")
	}

	// Memory accounting before allocating tables.
	need := int64(h.l1Size)*8 + int64(h.rtClusters)*cs + int64(h.bitmaps.dirSize)
	if need > img.memLimit() {
		return &blockio.InvalidError{What: "qcow2 tables", Value: need, Reason: "exceed the memory limit"}
	}
	img.l1 = make([]uint64, h.l1Size)
	if err := img.readTable(int64(h.l1Offset), img.l1); err != nil {
		return err
	}
	// An unaligned L2 table offset is not refused here (QEMU opens such
	// images too): Check reports it, and any request that needs that L2
	// table fails with ErrCorrupt (marking the image corrupt when
	// writable).
	img.l1Dirty = make([]bool, (len(img.l1)*8+4095)/4096)
	img.rt = make([]uint64, int64(h.rtClusters)*cs/8)
	if err := img.readTable(int64(h.rtOffset), img.rt); err != nil {
		return err
	}
	img.fileEnd = (fsize + cs - 1) &^ (cs - 1)
	for _, e := range img.l1 {
		if off := int64(e & l1OffsetMask); off&(cs-1) == 0 {
			img.setMeta(off)
		}
	}
	for _, e := range img.rt {
		if off := int64(e & rtOffsetMask); off > 0 && off&(cs-1) == 0 {
			img.setMeta(off)
		}
	}
	img.setupCaches()

	if img.hasData {
		if err := img.openDataFile(); err != nil {
			return err
		}
	}
	if h.backingFile != "" && !img.opts.NoBacking {
		if img.dataRaw {
			return herr(8, "a backing file conflicts with a raw external data file")
		}
		b, err := img.openBacking()
		if err != nil {
			return err
		}
		img.backing = b
	}
	if !img.readOnly && h.incompat&incDirty != 0 && !img.corrupt {
		if err := img.repairDirty(); err != nil {
			return err
		}
	}
	return nil
}

func (img *Image) readTable(off int64, dst []uint64) error {
	if len(dst) == 0 {
		return nil
	}
	buf := make([]byte, len(dst)*8)
	if _, err := img.dev.ReadAt(buf, off); err != nil {
		return err
	}
	for i := range dst {
		dst[i] = binary.BigEndian.Uint64(buf[i*8:])
	}
	return nil
}

func (img *Image) setupCaches() {
	cs := img.cs
	l2, rc := img.opts.L2CacheSize, img.opts.RefcountCacheSize
	// QEMU: by default the L2 cache covers the whole disk, capped at 32 MiB.
	covering := (img.vsize.Load() + (cs*img.l2Ent - 1)) / (cs * img.l2Ent) * cs
	if img.opts.CacheSize > 0 {
		switch {
		case l2 == 0 && rc == 0:
			l2 = min(covering, img.opts.CacheSize*4/5)
			rc = img.opts.CacheSize - l2
		case l2 == 0:
			l2 = img.opts.CacheSize - rc
		case rc == 0:
			rc = img.opts.CacheSize - l2
		}
	}
	if l2 <= 0 {
		l2 = min(covering, 32<<20)
	}
	if rc <= 0 {
		rc = max(4*cs, l2/4)
	}
	l2n := int(max(2, l2/cs))
	rcn := int(max(4, rc/cs))
	img.l2c = newTableCache(l2n, int(cs))
	img.l2c.writeback = img.writebackL2
	img.rbc = newTableCache(rcn, int(cs))
	img.rbc.writeback = img.writebackRB
}

func (img *Image) imageDir() string {
	if img.opts.Filename == "" {
		return "."
	}
	return filepath.Dir(img.opts.Filename)
}

func (img *Image) openDataFile() error {
	if img.opts.DataFile != nil {
		img.data = img.opts.DataFile
		return nil
	}
	name := img.h.dataFile
	if name == "" {
		return herr(-1, "external data file bit set but no data file name in the image")
	}
	if strings.HasPrefix(name, "json:") {
		return &blockio.UnsupportedError{Feature: "json: pseudo file names for data files"}
	}
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(img.imageDir(), name)
	} else if img.opts.NoAbsoluteBacking {
		return &blockio.InvalidError{What: "data file name", Value: name, Reason: "absolute paths are refused by policy"}
	}
	// The data file is opened read-write with the image: a hostile image
	// must not name a file outside the directory the caller allows.
	if img.opts.BackingDir != "" && !withinDir(img.opts.BackingDir, p) {
		return &blockio.InvalidError{What: "data file name", Value: name, Reason: "outside the allowed backing directory"}
	}
	d, err := blockio.OpenFile(p, img.opts.fileOptions(img.readOnly))
	if err != nil {
		return fmt.Errorf("qcow2: opening data file: %w", err)
	}
	img.data = d
	return nil
}

func (img *Image) openBacking() (blockio.Device, error) {
	name, format := img.h.backingFile, img.h.backingFormat
	if img.opts.BackingOpener != nil {
		return img.opts.BackingOpener(name, format, true)
	}
	if strings.HasPrefix(name, "json:") {
		return nil, &blockio.UnsupportedError{Feature: "json: pseudo file names for backing files"}
	}
	depth := img.opts.MaxBackingDepth
	if depth <= 0 {
		depth = 32
	}
	if len(img.opts.chain)+1 > depth {
		return nil, &blockio.InvalidError{What: "backing chain", Value: len(img.opts.chain) + 1, Reason: "too deep"}
	}
	p := name
	if filepath.IsAbs(p) {
		if img.opts.NoAbsoluteBacking {
			return nil, &blockio.InvalidError{What: "backing file name", Value: name, Reason: "absolute paths are refused by policy"}
		}
	} else {
		p = filepath.Join(img.imageDir(), name)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, err
	}
	if img.opts.BackingDir != "" && !withinDir(img.opts.BackingDir, abs) {
		return nil, &blockio.InvalidError{What: "backing file name", Value: name, Reason: "outside the allowed backing directory"}
	}
	self := ""
	if img.opts.Filename != "" {
		self, _ = filepath.Abs(img.opts.Filename)
	}
	chain := append(append([]string(nil), img.opts.chain...), self)
	for _, c := range chain {
		if c == abs {
			return nil, &blockio.InvalidError{What: "backing chain", Value: name, Reason: "backing file loop"}
		}
	}
	if format == "" {
		f, err := os.Open(abs)
		if err != nil {
			return nil, fmt.Errorf("qcow2: opening backing file: %w", err)
		}
		hdr := make([]byte, 8)
		n, _ := f.ReadAt(hdr, 0)
		f.Close()
		format = "raw"
		if Probe(hdr[:n]) {
			format = "qcow2"
		}
	}
	switch format {
	case "raw", "file":
		d, err := blockio.OpenFile(abs, img.opts.fileOptions(true))
		if err != nil {
			return nil, fmt.Errorf("qcow2: opening backing file: %w", err)
		}
		return d, nil
	case "qcow2":
		o := img.opts
		o.ReadOnly = true
		o.Filename = p
		o.DataFile = nil
		o.chain = chain
		b, err := OpenFile(p, o)
		if err != nil {
			return nil, fmt.Errorf("qcow2: opening backing file %q: %w", name, err)
		}
		return b, nil
	}
	return nil, &blockio.UnsupportedError{Feature: "backing file format " + format}
}

// withinDir reports whether path lies in the directory tree dir (lexically;
// symbolic links are not resolved).
func withinDir(dir, path string) bool {
	d, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	p, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	rel, err := filepath.Rel(d, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// Size returns the virtual disk size.
func (img *Image) Size() int64 { return img.vsize.Load() }

// ClusterSize returns the cluster size in bytes.
func (img *Image) ClusterSize() int64 { return img.cs }

// Backing returns the backing device, nil when there is none.
func (img *Image) Backing() blockio.Device {
	if img.backing == nil {
		return nil
	}
	return img.backing
}

// Close flushes and closes the image, its data file and backing chain.
func (img *Image) Close() error {
	if img.closed.Load() {
		return blockio.ErrClosed
	}
	var err error
	if !img.readOnly {
		err = img.Flush()
		if err == nil {
			err = img.markCleanOnClose()
		}
		if err == nil && img.dev.Size() > img.fileEnd {
			// Trim the unused tail left by stepped growth.
			if e := blockio.Truncate(img.dev, img.fileEnd, blockio.PreallocOff); e != nil && !errors.Is(e, blockio.ErrUnsupported) {
				err = e
			}
		}
	}
	img.closed.Store(true)
	if e := img.closeAux(); err == nil {
		err = e
	}
	if e := img.dev.Close(); err == nil {
		err = e
	}
	return err
}

func (img *Image) closeAux() error {
	var err error
	if img.data != nil && img.data != img.dev {
		err = img.data.Close()
		img.data = nil
	}
	if img.backing != nil {
		if e := img.backing.Close(); err == nil {
			err = e
		}
		img.backing = nil
	}
	return err
}

func (img *Image) getBuf() *[]byte  { return img.bufs.Get().(*[]byte) }
func (img *Image) putBuf(b *[]byte) { img.bufs.Put(b) }

// markCleanOnClose clears the dirty bit set by lazy refcounts once
// everything (refcounts included) is durable.
func (img *Image) markCleanOnClose() error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if !img.lazy || img.h.incompat&incDirty == 0 || img.corrupt {
		return nil
	}
	if err := img.syncRefcountsLocked(); err != nil {
		return err
	}
	if err := img.barrier(); err != nil {
		return err
	}
	return img.setIncompatLocked(img.h.incompat &^ incDirty)
}

// setIncompatLocked writes the incompatible feature bits durably.
func (img *Image) setIncompatLocked(v uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	if _, err := img.dev.WriteAt(b[:], 72); err != nil {
		return err
	}
	if err := img.dev.Flush(); err != nil {
		return err
	}
	img.h.incompat = v
	return nil
}

// setMeta records that the host cluster at off holds an active L2 table or
// a refcount block (so the allocator can detect refcounts that claim it is
// free). Bits are kept only for clusters inside the file.
func (img *Image) setMeta(off int64) {
	if off <= 0 || off >= img.fileEnd {
		return
	}
	c := off >> img.cbits
	for int64(len(img.metaBits))*64 <= c {
		img.metaBits = append(img.metaBits, 0)
	}
	img.metaBits[c/64] |= 1 << (c % 64)
}

func (img *Image) clearMeta(off int64) {
	c := off >> img.cbits
	if off > 0 && c/64 < int64(len(img.metaBits)) {
		img.metaBits[c/64] &^= 1 << (c % 64)
	}
}

func (img *Image) isMeta(c int64) bool {
	return c >= 0 && c/64 < int64(len(img.metaBits)) && img.metaBits[c/64]&(1<<(c%64)) != 0
}

// Capabilities implemented by *Image.
var (
	_ blockio.Device         = (*Image)(nil)
	_ blockio.Discarder      = (*Image)(nil)
	_ blockio.ZeroWriter     = (*Image)(nil)
	_ blockio.StatusReporter = (*Image)(nil)
	_ blockio.Informer       = (*Image)(nil)
	_ blockio.Truncater      = (*Image)(nil)
)
