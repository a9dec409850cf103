package vmdk

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
)

var fuzzDescSeeds = []string{
	"# Disk DescriptorFile\nversion=1\nCID=7fad5a3f\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\n\n# Extent description\nRW 2097152 SPARSE \"vmdk-monolithicSparse.vmdk\"\n\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"2080\"\nddb.geometry.heads = \"16\"\nddb.geometry.sectors = \"63\"\nddb.adapterType = \"ide\"\nddb.toolsVersion = \"2147483647\"\n",
	"version=1 \r\nCID=a454774a \r\nparentCID=ffffffff\r\ncreateType=\"streamOptimized\" \r\nRDONLY 33554432 SPARSE \"generated-stream.vmdk\"\r\n",
	"version=1\ncreateType=\"twoGbMaxExtentFlat\"\nRW 4194304 FLAT \"x\" 0\nRW 2048 ZERO\nNOACCESS 1 VMFS \"x\"\nRW 9 SPARSE \"x\"\n",
	"version=1\nparentCID=12\nparentFileNameHint=\"../base.vmdk\"\nCID=\n",
}

func FuzzParseDescriptor(f *testing.F) {
	for _, s := range fuzzDescSeeds {
		f.Add([]byte(s))
	}
	f.Add(repeatedExtents(2000, 1<<40)) // thousands of extents
	f.Fuzz(func(t *testing.T, text []byte) {
		d, err := ParseDescriptor(text)
		if err != nil {
			if !errors.Is(err, blockio.ErrCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		for _, e := range d.Extents {
			if e.Sectors < 0 || e.Offset < 0 || len(e.File) > maxExtentNameLen {
				t.Fatalf("bad extent %+v", e)
			}
		}
		// The CID rewrite keeps the text parseable with the new CID.
		out := replaceCID(text, 0x1234abc)
		d2, err := ParseDescriptor(out)
		if err != nil {
			t.Fatalf("rewritten descriptor does not parse: %v\n%q", err, out)
		}
		if d2.CID != 0x1234abc || len(d2.Extents) != len(d.Extents) {
			t.Fatalf("rewrite changed the descriptor: %+v vs %+v", d2, d)
		}
	})
}

// FuzzOpen feeds arbitrary bytes as the first file of an image (sparse
// header, embedded descriptor, grain tables, markers) and exercises reads,
// status and info. Extent files named by descriptors resolve to small
// in-memory devices.
func FuzzOpen(f *testing.F) {
	mem := blockio.NewMem(0)
	if img, err := Create(keepOpen{mem}, CreateOptions{Size: 4 << 20, ZeroedGrain: true}); err == nil {
		img.WriteAt([]byte("hello fuzz"), 70000)
		img.WriteZeroes(1<<20, 64<<10, true)
		img.Close()
		f.Add(mem.Bytes())
	}
	smem := blockio.NewMem(0)
	if img, err := Create(keepOpen{smem}, CreateOptions{Size: 1 << 20, Subformat: StreamOptimized}); err == nil {
		img.WriteAt(halfRandom(1, 256<<10), 0)
		img.Close()
		f.Add(smem.Bytes())
	}
	f.Add(makeCOWD())
	// Hostile shapes: 1 GiB compressed grains, a 1 TiB directory in a tiny
	// file, one extent file named hundreds of times.
	f.Add(hugeCompressedGrain(f))
	f.Add(bigGDExtent())
	f.Add(bytes.ReplaceAll(repeatedExtents(300, 16384*512*128), []byte(`"x"`), []byte(`"big"`)))
	for _, s := range fuzzDescSeeds {
		f.Add([]byte(s))
	}
	for _, p := range []string{"/tmp/blocklayer-corpus/vmdk-lsilogic.vmdk"} {
		if b, err := os.ReadFile(p); err == nil && len(b) < 1<<20 {
			f.Add(b[:min(len(b), 128<<10)])
		}
	}
	big := bigGDExtent()
	opener := func(path string, ro bool) (blockio.Device, error) {
		if filepath.Base(path) == "big" {
			m := blockio.NewMem(int64(len(big)))
			m.WriteAt(big, 0)
			return m, nil
		}
		if filepath.Base(path) != "x" {
			return nil, os.ErrNotExist // keeps hostile extent lists cheap
		}
		m := blockio.NewMem(8192)
		m.WriteAt([]byte("KDMV"), 0)
		return m, nil
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dev := blockio.NewMem(int64(len(data)))
		dev.WriteAt(data, 0)
		img, err := Open(dev, Options{ReadOnly: true, MaxMetadataMemory: 1 << 20, FileOpener: opener, NoParent: true})
		if err != nil {
			if !errors.Is(err, blockio.ErrCorrupt) && !errors.Is(err, blockio.ErrUnsupported) &&
				!errors.Is(err, blockio.ErrInvalid) && !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("untyped open error: %v", err)
			}
			return
		}
		defer img.Close()
		buf := make([]byte, 70000)
		size := img.Size()
		for _, off := range []int64{0, size / 3, size - 1} {
			if off < 0 {
				continue
			}
			n := min(int64(len(buf)), size-off)
			img.ReadAt(buf[:n], off)
			img.BlockStatus(off, size-off)
		}
		img.Info()
	})
}

// FuzzSESparse feeds arbitrary bytes as a seSparse extent.
func FuzzSESparse(f *testing.F) {
	f.Add(makeSESparse()[:80<<10])
	f.Fuzz(func(t *testing.T, data []byte) {
		dev := blockio.NewMem(int64(len(data)))
		dev.WriteAt(data, 0)
		se, err := openSESparse(dev, sparseLimits{maxMeta: 1 << 20})
		if err != nil {
			return
		}
		buf := make([]byte, 9000)
		for _, off := range []int64{0, se.size() / 2, se.size() - 1} {
			if off < 0 {
				continue
			}
			n := min(int64(len(buf)), se.size()-off)
			se.readAt(buf[:n], off, nil)
			se.status(off, min(se.size()-off, 1<<20))
		}
	})
}

// FuzzSparseWrite opens arbitrary bytes read-write and writes, zeroes,
// flushes and checks: corrupt metadata must give errors, never panics or
// writes outside the file's metadata rules.
func FuzzSparseWrite(f *testing.F) {
	mem := blockio.NewMem(0)
	if img, err := Create(keepOpen{mem}, CreateOptions{Size: 2 << 20, ZeroedGrain: true}); err == nil {
		img.WriteAt([]byte("seed"), 100000)
		img.Close()
		f.Add(mem.Bytes(), int64(70000), int64(5000))
	}
	f.Add(makeCOWD(), int64(0), int64(600))
	f.Fuzz(func(t *testing.T, data []byte, off, n int64) {
		dev := blockio.NewMem(int64(len(data)))
		dev.WriteAt(data, 0)
		img, err := Open(dev, Options{MaxMetadataMemory: 1 << 20, NoParent: true})
		if err != nil {
			return
		}
		defer img.Close()
		size := img.Size()
		if size == 0 {
			return
		}
		off = min(max(off, 0), size-1)
		n = min(max(n, 1), size-off, 1<<20)
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i) | 1
		}
		res, cerr := img.Check(context.Background())
		clean := cerr == nil && res.Corruptions == 0 // shared grains may alias otherwise
		if _, err := img.WriteAt(p, off); err == nil && clean {
			q := make([]byte, n)
			if _, err := img.ReadAt(q, off); err == nil && string(p) != string(q) {
				t.Fatalf("read back differs at %d+%d", off, n)
			}
		}
		img.WriteZeroes(off/2, min(n, size-off/2), true)
		img.Flush()
		img.Check(context.Background())
	})
}
