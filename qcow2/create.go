package qcow2

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"os"
	"path/filepath"

	"github.com/blocklayer/blocklayer/blockio"
)

// CreateOptions are the qcow2 creation options of `qemu-img create -f
// qcow2 -o ...`. The zero value (plus a Size) creates a compat=1.1 image
// with 64 KiB clusters and 16-bit refcounts, like qemu-img.
type CreateOptions struct {
	// Size is the virtual disk size in bytes (0 with a backing file: the
	// backing file's size).
	Size int64
	// Compat is "1.1" (default, also "v3") or "0.10" (also "v2").
	Compat string
	// ClusterSize in bytes: a power of two from 512 to 2 MiB (default 64 KiB).
	ClusterSize int64
	// RefcountBits: 1, 2, 4, 8, 16 (default), 32 or 64.
	RefcountBits int
	// LazyRefcounts sets the lazy_refcounts compatible feature (compat=1.1).
	LazyRefcounts bool
	// BackingFile and BackingFormat name the backing file; a relative name
	// is resolved against the new image's directory. An empty format is
	// probed (raw or qcow2) and recorded.
	BackingFile, BackingFormat string
	// Preallocation: off, metadata, falloc or full.
	Preallocation blockio.Prealloc
	// CompressionType is "zlib" (default, raw deflate) or "zstd".
	CompressionType string
	// ExtendedL2 enables subcluster allocation (cluster size >= 16 KiB).
	ExtendedL2 bool
	// DataFile names an external data file (created or truncated beside
	// the image); DataFileRaw keeps it a valid raw image.
	DataFile    string
	DataFileRaw bool
	// Filename is the image's path, used to resolve relative backing and
	// data file names (CreateFile sets it).
	Filename string
	// DataFileDevice supplies the data file instead of creating DataFile
	// on the file system (DataFile is still recorded in the header).
	DataFileDevice blockio.Device
}

func invalidCreate(what string, v any, reason string) error {
	return &blockio.InvalidError{What: what, Value: v, Reason: reason}
}

// CreateFile creates a qcow2 image file at path of size bytes (size
// overrides opts.Size) and returns it open for reading and writing.
func CreateFile(path string, size int64, opts CreateOptions) (*Image, error) {
	opts.Size = size
	if opts.Filename == "" {
		opts.Filename = path
	}
	dev, err := blockio.CreateFile(path, 0, blockio.FileOptions{})
	if err != nil {
		return nil, err
	}
	img, err := Create(dev, opts)
	if err != nil {
		dev.Close()
		os.Remove(path)
		return nil, err
	}
	return img, nil
}

// Create formats dev (which must be empty or will be overwritten and
// resized) as a qcow2 image and opens it read-write. On error the caller
// keeps dev.
func Create(dev blockio.Device, o CreateOptions) (*Image, error) {
	h := &header{version: 3, refcountOrder: 4}
	switch o.Compat {
	case "", "1.1", "v3":
	case "0.10", "v2":
		h.version = 2
	default:
		return nil, invalidCreate("compat", o.Compat, "must be 0.10 or 1.1")
	}
	cs := o.ClusterSize
	if cs == 0 {
		cs = 64 << 10
	}
	if cs < 512 || cs > 2<<20 || cs&(cs-1) != 0 {
		return nil, invalidCreate("cluster size", cs, "must be a power of two between 512 and 2M")
	}
	h.clusterBits = uint32(bits.TrailingZeros64(uint64(cs)))
	if o.RefcountBits != 0 {
		rb := o.RefcountBits
		if rb < 1 || rb > 64 || rb&(rb-1) != 0 {
			return nil, invalidCreate("refcount bits", rb, "must be a power of two up to 64")
		}
		h.refcountOrder = uint32(bits.TrailingZeros(uint(rb)))
	}
	switch o.CompressionType {
	case "", "zlib":
	case "zstd":
		h.compressionType = compressionZstd
		h.incompat |= incCompression
	default:
		return nil, invalidCreate("compression type", o.CompressionType, "must be zlib or zstd")
	}
	if o.ExtendedL2 {
		if cs < 16<<10 {
			return nil, invalidCreate("cluster size", cs, "extended L2 entries need at least 16 KiB clusters")
		}
		h.incompat |= incExtL2
	}
	if o.LazyRefcounts {
		h.compat |= compatLazy
	}
	if o.DataFile != "" || o.DataFileDevice != nil {
		if o.DataFile == "" {
			return nil, invalidCreate("data file", "", "a data file device needs a data file name")
		}
		h.incompat |= incDataFile
		h.dataFile = o.DataFile
		if o.DataFileRaw {
			h.autoclear |= acDataFileRaw
		}
	} else if o.DataFileRaw {
		return nil, invalidCreate("data_file_raw", true, "requires a data file")
	}
	if h.version == 2 && (h.refcountOrder != 4 || h.compat != 0 || h.incompat != 0) {
		return nil, invalidCreate("compat", "0.10", "lazy refcounts, refcount bits other than 16, extended L2, zstd and data files need compat=1.1")
	}
	if o.DataFileRaw && o.BackingFile != "" {
		return nil, invalidCreate("backing file", o.BackingFile, "conflicts with data_file_raw")
	}
	if o.Preallocation < blockio.PreallocOff || o.Preallocation > blockio.PreallocFull {
		return nil, invalidCreate("preallocation", o.Preallocation, "")
	}
	size := o.Size
	dir := "."
	if o.Filename != "" {
		dir = filepath.Dir(o.Filename)
	}
	if o.BackingFile != "" {
		if len(o.BackingFile) > maxBackingNameLen {
			return nil, invalidCreate("backing file", o.BackingFile, "name too long")
		}
		p := o.BackingFile
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		bsize, bfmt, err := probeBacking(p, o.BackingFormat)
		if err != nil {
			return nil, err
		}
		if size == 0 {
			size = bsize
		}
		h.backingFile = o.BackingFile
		h.backingFormat = bfmt
	}
	if size < 0 {
		return nil, invalidCreate("size", size, "negative")
	}
	size = (size + 511) &^ 511
	h.size = uint64(size)

	entSize := int64(8)
	if o.ExtendedL2 {
		entSize = 16
	}
	l2Ent := cs / entSize
	l1Size := (size + cs*l2Ent - 1) / (cs * l2Ent)
	if l1Size*8 > maxL1Bytes {
		return nil, invalidCreate("size", size, "too large for this cluster size")
	}
	l1c := (l1Size*8 + cs - 1) / cs
	rbEnt := cs * 8 / (int64(1) << h.refcountOrder)
	rtc, rbc := int64(1), int64(1)
	for {
		total := 1 + rtc + rbc + max(l1c, 1)
		nrbc := (total + rbEnt - 1) / rbEnt
		nrtc := (nrbc*8 + cs - 1) / cs
		if nrbc == rbc && nrtc == rtc {
			break
		}
		rbc, rtc = max(rbc, nrbc), max(rtc, nrtc)
	}
	h.rtOffset = uint64(cs)
	h.rtClusters = uint32(rtc)
	h.l1Offset = uint64((1 + rtc + rbc) * cs)
	h.l1Size = uint32(l1Size)
	total := 1 + rtc + rbc + max(l1c, 1)

	hdr, err := h.encode(int(cs))
	if err != nil {
		return nil, err
	}
	if err := blockio.Truncate(dev, 0, blockio.PreallocOff); err == nil {
		if err := blockio.Truncate(dev, total*cs, blockio.PreallocOff); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, blockio.ErrUnsupported) || dev.Size() < total*cs {
		return nil, err
	} else if err := blockio.WriteZeroes(dev, 0, total*cs, false); err != nil {
		// A fixed-size device (block device): format it in place.
		return nil, err
	}
	if _, err := dev.WriteAt(hdr, 0); err != nil {
		return nil, err
	}
	rt := make([]byte, rtc*cs)
	for i := range rbc {
		binary.BigEndian.PutUint64(rt[i*8:], uint64((1+rtc+i)*cs))
	}
	if _, err := dev.WriteAt(rt, cs); err != nil {
		return nil, err
	}
	rbs := make([]byte, rbc*cs)
	for c := range total {
		putRC(rbs, c, uint(h.refcountOrder), 1)
	}
	if _, err := dev.WriteAt(rbs, (1+rtc)*cs); err != nil {
		return nil, err
	}
	if l1c > 0 {
		if _, err := dev.WriteAt(make([]byte, l1c*cs), int64(h.l1Offset)); err != nil {
			return nil, err
		}
	}

	opts := Options{Filename: o.Filename, DataFile: o.DataFileDevice}
	var dataDev blockio.Device
	if h.dataFile != "" && o.DataFileDevice == nil {
		p := h.dataFile
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		d, err := blockio.CreateFile(p, size, blockio.FileOptions{})
		if err != nil {
			return nil, err
		}
		dataDev = d
		opts.DataFile = d
	}
	if err := dev.Flush(); err != nil {
		return nil, err
	}
	img, err := Open(dev, opts)
	if err != nil {
		if dataDev != nil {
			dataDev.Close()
		}
		return nil, err
	}
	prealloc := o.Preallocation
	if o.DataFileRaw && prealloc == blockio.PreallocOff {
		prealloc = blockio.PreallocMetadata
	}
	if prealloc != blockio.PreallocOff {
		if err := img.preallocate(prealloc); err != nil {
			if img.data == o.DataFileDevice {
				img.data = nil
			}
			img.closeAux()
			return nil, err
		}
	}
	return img, nil
}

// probeBacking opens a prospective backing file to learn its size and
// (when not given) its format.
func probeBacking(path, format string) (int64, string, error) {
	if format != "" && format != "raw" && format != "qcow2" {
		return 0, "", &blockio.UnsupportedError{Feature: "backing format " + format}
	}
	if format == "" || format == "raw" {
		f, err := os.Open(path)
		if err != nil {
			return 0, "", err
		}
		defer f.Close()
		hdr := make([]byte, 8)
		n, _ := f.ReadAt(hdr, 0)
		if format == "" {
			format = "raw"
			if Probe(hdr[:n]) {
				format = "qcow2"
			}
		}
		if format == "raw" {
			st, err := f.Stat()
			if err != nil {
				return 0, "", err
			}
			return st.Size(), format, nil
		}
	}
	b, err := OpenFile(path, Options{ReadOnly: true})
	if err != nil {
		return 0, "", err
	}
	defer b.Close()
	return b.Size(), "qcow2", nil
}

// preallocate allocates L2 tables and data clusters for the whole disk
// (entries pointing at them, COPIED set), then reserves or zeroes the data
// area for falloc/full.
func (img *Image) preallocate(mode blockio.Prealloc) error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.beginWriteLocked(); err != nil {
		return err
	}
	type rng struct{ off, n int64 }
	var data []rng
	per := img.cs << img.l2Bits
	for g := int64(0); g < img.vsize.Load(); g += per {
		t, _, err := img.l2ForWriteLocked(g)
		if err != nil {
			return err
		}
		n := min(img.l2Ent, (img.vsize.Load()-g+img.cs-1)>>img.cbits)
		var host int64
		if img.hasData {
			host = g
		} else {
			if host, err = img.allocClustersLocked(n); err != nil {
				return err
			}
		}
		for i := range n {
			binary.BigEndian.PutUint64(t.buf[i*img.entSize:], uint64(host+i*img.cs)|oflagCopied)
			if img.extL2 {
				binary.BigEndian.PutUint64(t.buf[i*img.entSize+8:], allAllocated)
			}
		}
		img.l2c.markDirty(t)
		if k := len(data); k > 0 && data[k-1].off+data[k-1].n == host {
			data[k-1].n += n * img.cs
		} else {
			data = append(data, rng{host, n * img.cs})
		}
	}
	if mode == blockio.PreallocFalloc || mode == blockio.PreallocFull {
		d := img.dev
		if img.hasData {
			d = img.data
		}
		for _, r := range data {
			n := min(r.n, d.Size()-r.off)
			if mode == blockio.PreallocFalloc {
				// Reserve without writing (fallocate zero range where supported).
				if err := blockio.WriteZeroes(d, r.off, n, false); err != nil {
					return err
				}
				continue
			}
			for o := r.off; o < r.off+n; o += img.cs {
				if _, err := d.WriteAt(img.zbuf[:min(img.cs, r.off+n-o)], o); err != nil {
					return err
				}
			}
		}
	}
	return img.flushLocked()
}
