package vmdk

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zlib"

	"github.com/blocklayer/blocklayer/blockio"
)

// Subformats accepted by CreateOptions.Subformat.
const (
	MonolithicSparse     = "monolithicSparse"
	MonolithicFlat       = "monolithicFlat"
	TwoGbMaxExtentSparse = "twoGbMaxExtentSparse"
	TwoGbMaxExtentFlat   = "twoGbMaxExtentFlat"
	StreamOptimized      = "streamOptimized"
)

const (
	createGrainSectors = 128
	createGTEs         = 512
	createDescSectors  = 20
	twoGbSectors       = 4194304
)

// CreateOptions mirrors qemu-img's vmdk creation options (a plain value). The zero value
// creates a monolithicSparse disk for an IDE adapter, hardware version 4.
type CreateOptions struct {
	// Size is the virtual size in bytes (rounded up to 512). CreateFile's
	// size argument takes precedence when non-zero.
	Size int64
	// Subformat: monolithicSparse (default), monolithicFlat,
	// twoGbMaxExtentSparse, twoGbMaxExtentFlat, streamOptimized.
	Subformat string
	// AdapterType: ide (default), buslogic, lsilogic, legacyESX.
	AdapterType string
	// HWVersion is ddb.virtualHWVersion (default "4"); exclusive with Compat6.
	HWVersion string
	// Compat6 sets virtualHWVersion "6".
	Compat6 bool
	// ZeroedGrain enables zeroed-grain table entries (header version 2).
	ZeroedGrain bool
	// ToolsVersion is ddb.toolsVersion (default "2147483647").
	ToolsVersion string
	// BackingFile names a VMDK parent (written as parentFileNameHint as
	// given; resolved against the new image's directory when relative).
	BackingFile string
	// CompressionLevel for streamOptimized grains (zlib level 1..9; 0 =
	// level 1, which keeps conversion fast).
	CompressionLevel int
	// CompressionWorkers is the number of goroutines compressing grains
	// (0 = max(2, GOMAXPROCS)).
	CompressionWorkers int
	// ExtentName overrides the file name written in the extent line of a
	// single-file image created with Create (default "disk.vmdk").
	ExtentName string
}

func (o *CreateOptions) normalize() error {
	if o.Subformat == "" {
		o.Subformat = MonolithicSparse
	}
	switch o.Subformat {
	case MonolithicSparse, MonolithicFlat, TwoGbMaxExtentSparse, TwoGbMaxExtentFlat, StreamOptimized:
	default:
		return &blockio.InvalidError{What: "subformat", Value: o.Subformat, Reason: "expected monolithicSparse, monolithicFlat, twoGbMaxExtentSparse, twoGbMaxExtentFlat or streamOptimized"}
	}
	if o.AdapterType == "" {
		o.AdapterType = "ide"
	}
	switch o.AdapterType {
	case "ide", "buslogic", "lsilogic", "legacyESX":
	default:
		return &blockio.InvalidError{What: "adapter_type", Value: o.AdapterType, Reason: "Unknown adapter type (ide, buslogic, lsilogic, legacyESX)"}
	}
	if o.Compat6 && o.HWVersion != "" {
		return &blockio.InvalidError{What: "compat6", Value: true, Reason: "compat6 cannot be enabled with hwversion set"}
	}
	if o.HWVersion == "" {
		o.HWVersion = "4"
		if o.Compat6 {
			o.HWVersion = "6"
		}
	}
	if o.ToolsVersion == "" {
		o.ToolsVersion = "2147483647"
	}
	if o.BackingFile != "" && (o.Subformat == MonolithicFlat || o.Subformat == TwoGbMaxExtentFlat) {
		return &blockio.InvalidError{What: "backing_file", Value: o.BackingFile, Reason: "flat image can't have backing file"}
	}
	if o.Size < 0 {
		return &blockio.InvalidError{What: "size", Value: o.Size}
	}
	o.Size = (o.Size + sectorSize - 1) / sectorSize * sectorSize
	if o.CompressionLevel == 0 {
		o.CompressionLevel = zlib.BestSpeed
	}
	if o.CompressionLevel < zlib.HuffmanOnly || o.CompressionLevel > zlib.BestCompression {
		return &blockio.InvalidError{What: "compression level", Value: o.CompressionLevel}
	}
	return nil
}

func (o *CreateOptions) template(sectors int64, cid, parentCID uint32) descTemplate {
	heads := 16
	if o.AdapterType != "ide" {
		heads = 255
	}
	return descTemplate{
		CID: cid, ParentCID: parentCID, CreateType: o.Subformat, ParentHint: o.BackingFile,
		HWVersion: o.HWVersion, Heads: heads, Cylinders: sectors * sectorSize / (63 * int64(heads) * sectorSize),
		AdapterType: o.AdapterType, ToolsVersion: o.ToolsVersion,
	}
}

func newCID() uint32 {
	for {
		c := rand.Uint32()
		if c != noParentCID {
			return c
		}
	}
}

// sparseLayout computes QEMU's layout of a fresh sparse extent.
func sparseLayout(sectors int64, zeroed, stream bool) sparseHeader {
	grains := (sectors + createGrainSectors - 1) / createGrainSectors
	gtCount := (grains + createGTEs - 1) / createGTEs
	gtSec := int64(createGTEs * 4 / sectorSize)
	gdSec := (gtCount*4 + sectorSize - 1) / sectorSize
	rgd := int64(1 + createDescSectors)
	gd := rgd + gdSec + gtCount*gtSec
	over := (gd + gdSec + gtCount*gtSec + createGrainSectors - 1) / createGrainSectors * createGrainSectors
	h := sparseHeader{
		Version: 1, Flags: flagNLDetect | flagRGD, Capacity: uint64(sectors), GrainSize: createGrainSectors,
		DescOffset: 1, DescSize: createDescSectors, NumGTEsPerGT: createGTEs,
		RGDOffset: uint64(rgd), GDOffset: uint64(gd), OverHead: uint64(over),
	}
	if zeroed {
		h.Version = 2
		h.Flags |= flagZeroGrain
	}
	if stream {
		h = sparseHeader{
			Version: 3, Flags: flagNLDetect | flagCompressed | flagMarker, Capacity: uint64(sectors),
			GrainSize: createGrainSectors, DescOffset: 1, DescSize: createDescSectors,
			NumGTEsPerGT: createGTEs, GDOffset: gdAtEnd, OverHead: 128, CompressAlgorithm: compressDeflate,
		}
	}
	return h
}

// writeSparseExtent lays out a fresh, empty sparse extent on dev: header,
// optional embedded descriptor, redundant GD + GTs, GD + GTs, sized to the
// overhead.
func writeSparseExtent(dev blockio.Device, h sparseHeader, desc string) error {
	over := int64(h.OverHead) * sectorSize
	if err := growTo(dev, over); err != nil {
		return err
	}
	meta := make([]byte, over)
	copy(meta, h.marshal())
	if desc != "" {
		if len(desc) > createDescSectors*sectorSize {
			return &blockio.InvalidError{What: "descriptor", Value: len(desc), Reason: "too long for the embedded area"}
		}
		copy(meta[sectorSize:], desc)
	}
	if h.GDOffset != gdAtEnd {
		grains := (int64(h.Capacity) + createGrainSectors - 1) / createGrainSectors
		gtCount := (grains + createGTEs - 1) / createGTEs
		gdSec := (gtCount*4 + sectorSize - 1) / sectorSize
		for _, gdOff := range []int64{int64(h.RGDOffset), int64(h.GDOffset)} {
			if gdOff == 0 {
				continue
			}
			for i := range gtCount {
				binary.LittleEndian.PutUint32(meta[gdOff*sectorSize+4*i:], uint32(gdOff+gdSec+i*4))
			}
		}
	}
	if _, err := dev.WriteAt(meta, 0); err != nil {
		return err
	}
	return dev.Flush()
}

func growTo(dev blockio.Device, size int64) error {
	if dev.Size() >= size {
		return nil
	}
	return blockio.Truncate(dev, size, blockio.PreallocOff)
}

// Create formats dev (which must be resizable or large enough) as a
// single-file monolithicSparse or streamOptimized disk and opens it. The
// extent line names opts.ExtentName. The Image owns dev on success.
func Create(dev blockio.Device, opts CreateOptions) (*Image, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	if opts.Subformat != MonolithicSparse && opts.Subformat != StreamOptimized {
		return nil, &blockio.InvalidError{What: "subformat", Value: opts.Subformat, Reason: "Create supports single-file subformats; use CreateFile"}
	}
	if opts.BackingFile != "" {
		return nil, &blockio.InvalidError{What: "backing_file", Value: opts.BackingFile, Reason: "use CreateFile for images with a parent"}
	}
	name := opts.ExtentName
	if name == "" {
		name = "disk.vmdk"
	}
	return createSingle(dev, opts, name, noParentCID, Options{Filename: name})
}

func createSingle(dev blockio.Device, opts CreateOptions, name string, parentCID uint32, oo Options) (*Image, error) {
	sectors := opts.Size / sectorSize
	if sectors >= maxExtentSectors {
		return nil, &blockio.InvalidError{What: "size", Value: opts.Size, Reason: "too large for a sparse extent"}
	}
	stream := opts.Subformat == StreamOptimized
	h := sparseLayout(sectors, opts.ZeroedGrain && !stream, stream)
	t := opts.template(sectors, newCID(), parentCID)
	t.Extents = []ExtentLine{{Access: "RW", Sectors: sectors, Type: "SPARSE", File: name}}
	if err := writeSparseExtent(dev, h, formatDescriptor(t)); err != nil {
		return nil, err
	}
	if stream {
		sw := newStreamWriter(dev, h, opts.CompressionWorkers, opts.CompressionLevel)
		d, _ := ParseDescriptor([]byte(formatDescriptor(t)))
		img := &Image{
			opts: oo, filename: oo.Filename, desc: d, size: opts.Size, stream: sw,
			descDev: dev, descOff: sectorSize, descCap: createDescSectors * sectorSize,
		}
		img.cidUpdated.Store(true)
		img.extents = []*extent{{size: opts.Size, kind: kindSparse, access: "RW", file: oo.Filename, dev: dev,
			sp: &sparseExtent{grainBytes: createGrainSectors * sectorSize, compressed: true}}}
		return img, nil
	}
	img, err := Open(dev, oo)
	if err != nil {
		return nil, err
	}
	img.cidUpdated.Store(true) // a fresh CID was just written
	return img, nil
}

// CreateFile creates a VMDK at path (plus its extent files for the
// multi-file subformats, named like qemu-img: NAME-flat.vmdk,
// NAME-s001.vmdk, NAME-f001.vmdk) and opens it read-write.
//
// For streamOptimized the returned Image is a sequential writer: WriteAt
// must be called with increasing offsets (grain-granular; gaps read as
// zeros), from one goroutine at a time; grains are compressed in parallel
// in the background; Close writes the grain tables, directory, footer and
// end-of-stream marker (Flush only syncs what was appended so far; the file
// is a valid image only after Close). Reads fail until the image is
// reopened.
func CreateFile(path string, size int64, opts CreateOptions) (*Image, error) {
	if size != 0 {
		opts.Size = size
	}
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	base := filepath.Base(path)
	ext := filepath.Ext(base)
	prefix := strings.TrimSuffix(base, ext)
	parentCID := uint32(noParentCID)
	if opts.BackingFile != "" {
		bp := opts.BackingFile
		if !filepath.IsAbs(bp) {
			bp = filepath.Join(dir, bp)
		}
		parent, err := OpenFile(bp, Options{ReadOnly: true})
		if err != nil {
			return nil, fmt.Errorf("vmdk: backing file %q must be a VMDK: %w", opts.BackingFile, err)
		}
		parentCID = parent.CID()
		if opts.Size == 0 {
			opts.Size = parent.Size()
		}
		parent.Close()
	}
	sectors := opts.Size / sectorSize
	oo := Options{Filename: path, Dir: dir}
	var created []string
	fail := func(err error) (*Image, error) {
		for _, p := range created {
			os.Remove(p)
		}
		return nil, err
	}
	create := func(p string) (*blockio.File, error) {
		f, err := blockio.CreateFile(p, 0, blockio.FileOptions{})
		if err == nil {
			created = append(created, p)
		}
		return f, err
	}
	switch opts.Subformat {
	case MonolithicSparse, StreamOptimized:
		f, err := create(path)
		if err != nil {
			return fail(err)
		}
		img, err := createSingle(f, opts, base, parentCID, oo)
		if err != nil {
			f.Close()
			return fail(err)
		}
		return img, nil
	}
	// Multi-file subformats: extent files, then the descriptor.
	t := opts.template(sectors, newCID(), parentCID)
	flat := opts.Subformat == MonolithicFlat || opts.Subformat == TwoGbMaxExtentFlat
	piece := sectors
	if opts.Subformat == TwoGbMaxExtentSparse || opts.Subformat == TwoGbMaxExtentFlat {
		piece = twoGbSectors
	}
	for i, left := 1, sectors; left > 0 || i == 1; i++ {
		n := min(left, piece)
		var name string
		switch opts.Subformat {
		case MonolithicFlat:
			name = prefix + "-flat" + ext
		case TwoGbMaxExtentFlat:
			name = fmt.Sprintf("%s-f%03d%s", prefix, i, ext)
		default:
			name = fmt.Sprintf("%s-s%03d%s", prefix, i, ext)
		}
		f, err := create(filepath.Join(dir, name))
		if err != nil {
			return fail(err)
		}
		if flat {
			err = f.Truncate(n*sectorSize, blockio.PreallocOff)
			t.Extents = append(t.Extents, ExtentLine{Access: "RW", Sectors: n, Type: "FLAT", File: name, HasOffset: true})
		} else {
			err = writeSparseExtent(f, sparseLayout(n, opts.ZeroedGrain, false), "")
			t.Extents = append(t.Extents, ExtentLine{Access: "RW", Sectors: n, Type: "SPARSE", File: name})
		}
		if err == nil {
			err = f.Flush()
		}
		f.Close()
		if err != nil {
			return fail(err)
		}
		left -= n
		if left == 0 {
			break
		}
	}
	df, err := create(path)
	if err != nil {
		return fail(err)
	}
	text := formatDescriptor(t)
	if err := df.Truncate(int64(len(text)), blockio.PreallocOff); err != nil {
		df.Close()
		return fail(err)
	}
	if _, err := df.WriteAt([]byte(text), 0); err != nil {
		df.Close()
		return fail(err)
	}
	if err := df.Flush(); err != nil {
		df.Close()
		return fail(err)
	}
	df.Close()
	img, err := OpenFile(path, oo)
	if err != nil {
		return fail(err)
	}
	img.cidUpdated.Store(true) // a fresh CID was just written
	return img, nil
}
