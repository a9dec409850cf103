package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/qcow2"
)

// cmdMeasure implements "measure [--output=ofmt] [-O output_fmt] [-o
// options] [--size N | [-f fmt] [-l snapshot_param] filename]" as
// qemu-img 7.2 does: the file size a new image of the output format needs
// for a virtual size (or for the allocated data of an input image), and
// the size when fully allocated.
func cmdMeasure(e *env, args []string) int {
	opts, operands, err := getopt(args, "hf:O:o:l:U", []longOpt{
		{name: "help", key: "h"},
		{name: "image-opts"},
		{name: "object", hasArg: true},
		{name: "output", hasArg: true},
		{name: "size", hasArg: true},
		{name: "force-share", key: "U"},
	})
	if err != nil {
		// qemu-img prints getopt's complaint and the help text, and
		// exits successfully.
		e.errorf("measure: %v", err)
		printHelp(e)
		return 0
	}
	var fmtName, snapshot, output string
	outFmt := "raw"
	var ol *optList
	size := int64(-1)
	noLock, imageOpts, haveSnap := false, false, false
	for _, op := range opts {
		switch op.key {
		case "h":
			printHelp(e)
			return 0
		case "f":
			fmtName = op.val
		case "O":
			outFmt = op.val
		case "o":
			if ol, err = parseOptList(ol, op.val); err != nil {
				e.errorf("%v", err)
				return 1
			}
		case "l":
			snapshot, haveSnap = op.val, true
		case "--output":
			output = op.val
		case "--size":
			var ok bool
			if size, ok = e.cvtnum("image size", op.val, 0, math.MaxInt64); !ok {
				return 1
			}
		case "U":
			noLock = true
		case "--image-opts":
			imageOpts = true
		case "--object":
			e.errorf("--object is not supported")
			return 1
		}
	}
	asJSON := false
	if output != "" {
		var ok bool
		if asJSON, ok = e.parseOutput(output); !ok {
			return 1
		}
	}
	if len(operands) > 1 {
		e.errorf("At most one filename argument is allowed.")
		return 1
	}
	filename := ""
	if len(operands) == 1 {
		filename = operands[0]
	}
	if filename == "" && (imageOpts || fmtName != "" || haveSnap) {
		e.errorf("--image-opts, -f, and -l require a filename argument.")
		return 1
	}
	if filename != "" && size >= 0 {
		e.errorf("--size N cannot be used together with a filename.")
		return 1
	}
	if filename == "" && size < 0 {
		e.errorf("Either --size N or one filename must be specified.")
		return 1
	}
	if imageOpts {
		e.errorf("--image-opts is not supported")
		return 1
	}
	var in *image
	if filename != "" {
		in, err = openImage(filename, fmtName, openOptions{readOnly: true, noLock: noLock})
		if err != nil {
			e.errorf("%v", err)
			return 1
		}
		defer in.Close()
		if haveSnap {
			if _, ok := in.dev.(*qcow2.Image); !ok {
				e.errorf("Failed to load snapshot: Block format '%s' used by device '' does not support temporarily loading internal snapshots", in.fmt.name)
			} else {
				e.errorf("Failed to load snapshot %q: loading internal snapshots is not supported", snapshot)
			}
			return 1
		}
	}
	types, known := measureOptTypes(outFmt)
	if !known {
		e.errorf("Unknown file format '%s'", outFmt)
		return 1
	}
	if bad := validateOpts(ol, types); bad != "" {
		e.out.Flush()
		fmt.Fprintf(e.stderr, "blockimg: %s\n", bad)
		e.errorf("Invalid options for file format '%s'", outFmt)
		return 1
	}
	var res measureResult
	switch outFmt {
	case "raw":
		res, err = measureRaw(in, size)
	case "qcow2":
		res, err = measureQcow2(ol, in, size)
	default:
		err = fmt.Errorf("Block driver '%s' does not support size measurement", outFmt)
	}
	if err != nil {
		e.errorf("%v", err)
		return 1
	}
	if asJSON {
		n := qobj().set("required", qint(res.required)).set("fully-allocated", qint(res.full))
		if res.hasBitmaps {
			n.set("bitmaps", qint(res.bitmaps))
		}
		writeQJSON(e.out, n)
		return 0
	}
	e.printf("required size: %d\n", res.required)
	e.printf("fully allocated size: %d\n", res.full)
	if res.hasBitmaps {
		e.printf("bitmaps size: %d\n", res.bitmaps)
	}
	return 0
}

// measureResult is QEMU's BlockMeasureInfo.
type measureResult struct {
	required, full int64
	hasBitmaps     bool
	bitmaps        int64
}

// Option value types of QEMU's creation option lists.
const (
	optStr = iota
	optBool
	optSize
	optNum
)

// measureOptTypes returns the creation options qemu-img measure accepts
// for an output format (the format's own and the file protocol's), and
// whether the format is known at all.
func measureOptTypes(outFmt string) (map[string]int, bool) {
	t := map[string]int{
		"size": optSize, "preallocation": optStr, "nocow": optBool, "extent_size_hint": optSize,
	}
	switch outFmt {
	case "raw":
		return t, true
	case "qcow2":
		for k, v := range map[string]int{
			"compat": optStr, "backing_file": optStr, "backing_fmt": optStr, "data_file": optStr,
			"data_file_raw": optBool, "encryption": optBool, "encrypt.format": optStr,
			"encrypt.key-secret": optStr, "encrypt.cipher-alg": optStr, "encrypt.cipher-mode": optStr,
			"encrypt.ivgen-alg": optStr, "encrypt.ivgen-hash-alg": optStr, "encrypt.hash-alg": optStr,
			"encrypt.iter-time": optNum, "cluster_size": optSize, "extended_l2": optBool,
			"lazy_refcounts": optBool, "refcount_bits": optNum, "compression_type": optStr,
		} {
			t[k] = v
		}
		return t, true
	}
	if f, ok := formats[outFmt]; ok {
		for _, o := range f.options {
			switch o.typ {
			case "size":
				t[o.name] = optSize
			case "bool (on/off)":
				t[o.name] = optBool
			case "num":
				t[o.name] = optNum
			default:
				t[o.name] = optStr
			}
		}
		return t, true
	}
	return nil, qemuFormatNames[outFmt]
}

// validateOpts checks -o options in order as QEMU parses them and returns
// the first complaint ("" when all are valid). For formats QEMU knows but
// blockimg does not, only the file protocol's options are known, so other
// names pass.
func validateOpts(l *optList, types map[string]int) string {
	if l == nil {
		return ""
	}
	for i, k := range l.keys {
		v := l.vals[i]
		typ, ok := types[k]
		if !ok {
			return fmt.Sprintf("Invalid parameter '%s'", k)
		}
		switch typ {
		case optBool:
			if _, err := (&optList{keys: []string{k}, vals: []string{v}, used: map[string]bool{}}).getBool(k, false); err != nil {
				return err.Error()
			}
		case optSize:
			if _, _, err := parseSizeU(v); err != nil {
				return fmt.Sprintf("Parameter '%s' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.", k)
			}
		case optNum:
			if _, err := (&optList{keys: []string{k}, vals: []string{v}, used: map[string]bool{}}).getInt(k, 0); err != nil {
				return err.Error()
			}
		}
	}
	return ""
}

// inputLength is QEMU's bdrv_getlength: the size in whole 512-byte
// sectors.
func inputLength(in *image) int64 {
	return roundUp(in.dev.Size(), 512)
}

func roundUp(v, to int64) int64 { return (v + to - 1) / to * to }

// measureRaw: a raw image needs its whole virtual size (rounded up to
// sectors), allocated or not.
func measureRaw(in *image, size int64) (measureResult, error) {
	req := roundUp(size, 512)
	if in != nil {
		req = inputLength(in)
	}
	return measureResult{required: req, full: req}, nil
}

// measureQcow2 follows QEMU's qcow2 measure: the fully allocated size is
// the data plus every table a fully allocated image of that size needs;
// the required size replaces the data by the clusters holding allocated,
// non-zero data of the input (all of it with a backing file or with
// falloc/full preallocation).
func measureQcow2(l *optList, in *image, size int64) (measureResult, error) {
	var r measureResult
	if l == nil {
		l = &optList{used: map[string]bool{}}
	}
	if v, ok := l.get("encrypt.format"); ok && v == "luks" {
		if !l.has("encrypt.key-secret") {
			return r, errors.New("Parameter 'encrypt.key-secret' is required for cipher")
		}
		return r, errors.New("encrypted images are not supported")
	}
	cs, _ := l.getSize("cluster_size", 64<<10)
	if cs < 512 || cs > 2<<20 || cs&(cs-1) != 0 {
		return r, errors.New("Cluster size must be a power of two between 512 and 2048k")
	}
	extL2, _ := l.getBool("extended_l2", false)
	if extL2 && cs < 16<<10 {
		return r, fmt.Errorf("Extended L2 entries are only supported with cluster sizes of at least %d bytes", 16<<10)
	}
	version := 3
	if v, ok := l.get("compat"); ok {
		switch v {
		case "0.10":
			version = 2
		case "1.1":
			version = 3
		default:
			return r, fmt.Errorf("Invalid compatibility level: '%s'", v)
		}
	}
	rb, _ := l.getInt("refcount_bits", 16)
	if rb <= 0 || rb > 64 || rb&(rb-1) != 0 {
		return r, errors.New("Refcount width must be a power of two and may not exceed 64 bits")
	}
	if version < 3 && rb != 16 {
		return r, errors.New("Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)")
	}
	prealloc := blockio.PreallocOff
	if v, ok := l.get("preallocation"); ok {
		p, err := blockio.ParsePrealloc(v)
		if err != nil {
			return r, fmt.Errorf("invalid parameter value: %s", v)
		}
		prealloc = p
	}
	_, hasBacking := l.get("backing_file")

	var vsize, required int64
	if in == nil {
		vsize = roundUp(size, cs)
	} else {
		vsize = roundUp(inputLength(in), cs)
	}
	l2e := int64(8)
	if extL2 {
		l2e = 16
	}
	if l2Tables := divRoundUp(vsize/cs, cs/l2e); l2Tables > qcowMaxL1Size/8 {
		return r, errors.New("The image size is too large (try using a larger cluster size)")
	}
	if in != nil {
		ssize := inputLength(in)
		if hasBacking {
			// The new image's backing file may share nothing with the
			// input: assume every cluster must be written.
			required = vsize
		} else {
			n, err := allocatedClusterBytes(in.dev, ssize, cs, !qcow2MetadataPreallocated(in))
			if err != nil {
				return r, err
			}
			required = n
		}
	}
	if prealloc == blockio.PreallocFalloc || prealloc == blockio.PreallocFull {
		required = vsize
	}
	r.full = qcow2PreallocSize(vsize, cs, bits.TrailingZeros64(uint64(rb)), extL2)
	r.required = r.full - vsize + required
	if version >= 3 && in != nil {
		if img, ok := in.dev.(*qcow2.Image); ok && qcow2FileVersion(in.path) >= 3 {
			r.hasBitmaps = true
			b, err := qcow2BitmapsSize(img, cs)
			if err != nil {
				return r, err
			}
			r.bitmaps = b
		}
	}
	return r, nil
}

// allocatedClusterBytes counts, in bytes, the clusters of size cs that
// hold any allocated data that is not known to read as zeros in the first
// ssize bytes of dev (the whole backing chain included), as QEMU's block
// status walk does.
//
// QEMU asks the image file about holes under allocated qcow2 clusters only
// when the image looks metadata-preallocated; otherwise such clusters
// count as data. hostHolesAreData selects that: ranges mapped to the
// image file but reported as zeros there count as data.
func allocatedClusterBytes(dev blockio.Device, ssize, cs int64, hostHolesAreData bool) (int64, error) {
	limit := min(ssize, dev.Size())
	var total int64
	for off := int64(0); off < limit; {
		ext, err := blockio.BlockStatus(dev, off, limit-off)
		if err != nil {
			return 0, fmt.Errorf("Unable to get block status: %s", describeErr(err))
		}
		n := ext.Length
		if n <= 0 {
			return 0, fmt.Errorf("Unable to get block status: no progress at offset %d", off)
		}
		zero := ext.Zero
		if hostHolesAreData && ext.Data && ext.Offset >= 0 {
			zero = false
		}
		if !zero && ext.Data {
			n = roundUp(off+n, cs) - off
			total += off%cs + n
		}
		off += n
	}
	return total, nil
}

// qcow2PreallocSize is the file size of a fully allocated qcow2 image of
// vsize bytes: header cluster, L2 tables covering every cluster (rounded
// to whole tables), an L1 table (rounded to whole clusters), the refcount
// structures for all of that, and the data.
func qcow2PreallocSize(vsize, cs int64, refcountOrder int, extL2 bool) int64 {
	aligned := roundUp(vsize, cs)
	l2e := int64(8)
	if extL2 {
		l2e = 16
	}
	meta := cs
	nl2e := roundUp(aligned/cs, cs/l2e)
	meta += nl2e * l2e
	nl1e := roundUp(nl2e*l2e/cs, cs/8)
	meta += nl1e * 8
	meta += qcow2RefcountMetadataSize((meta+aligned)/cs, cs, refcountOrder)
	return meta + aligned
}

// qcow2RefcountMetadataSize is the size of the refcount table and blocks
// needed to cover clusters clusters plus themselves.
func qcow2RefcountMetadataSize(clusters, cs int64, refcountOrder int) int64 {
	perTable := cs / 8
	perBlock := cs * 8 >> refcountOrder
	var table, blocks, n int64
	for {
		last := n
		blocks = divRoundUp(clusters+table+blocks, perBlock)
		table = divRoundUp(blocks, perTable)
		n = clusters + blocks + table
		if n == last {
			break
		}
	}
	return (blocks + table) * cs
}

func divRoundUp(a, b int64) int64 { return (a + b - 1) / b }

// qcow2BitmapsSize is the space the persistent bitmaps of img would take
// in a new image with cluster size cs: their data and tables, assumed
// fully allocated, and the bitmap directory.
func qcow2BitmapsSize(img *qcow2.Image, cs int64) (int64, error) {
	bms, err := img.Bitmaps()
	if err != nil {
		return 0, err
	}
	var total, dir int64
	for _, b := range bms {
		if b.Granularity <= 0 {
			continue
		}
		bytes := divRoundUp(divRoundUp(img.Size(), b.Granularity), 8)
		clusters := divRoundUp(bytes, cs)
		total += clusters * cs
		total += roundUp(clusters*8, cs)
		dir += roundUp(24+int64(len(b.Name)), 8)
	}
	return total + roundUp(dir, cs), nil
}

// qcow2FileVersion reads the version field of a qcow2 header (0 when it
// cannot be read).
func qcow2FileVersion(path string) uint32 {
	hdr, err := readHeader(path)
	if err != nil || len(hdr) < 8 {
		return 0
	}
	return binary.BigEndian.Uint32(hdr[4:8])
}

// qcowMaxL1Size is QEMU's limit on the L1 table size in bytes.
const qcowMaxL1Size = 32 << 20

// qcow2MetadataPreallocated approximates QEMU's detection of a
// metadata-preallocated qcow2 image: the clusters in use (bounded here by
// the file length) clearly outnumber those the file system has allocated.
// Only such images have their data clusters checked for holes in the
// image file.
func qcow2MetadataPreallocated(in *image) bool {
	img, ok := in.dev.(*qcow2.Image)
	if !ok {
		return true // not qcow2: status is reported as is
	}
	st, err := os.Stat(in.path)
	if err != nil {
		return false
	}
	alloc, err := allocatedSize(in.path)
	if err != nil {
		return false
	}
	cs := img.ClusterSize()
	real := alloc / cs
	threshold := max(real*10/9, real+2)
	return divRoundUp(st.Size(), cs) >= threshold
}
