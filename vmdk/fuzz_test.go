package vmdk

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
)

var fuzzDescSeeds = []string{
	"# Disk DescriptorFile\nversion=1\nCID=7fad5a3f\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\n\n# Extent description\nRW 2097152 SPARSE \"vmdk-monolithicSparse.vmdk\"\n\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"2080\"\nddb.geometry.heads = \"16\"\nddb.geometry.sectors = \"63\"\nddb.adapterType = \"ide\"\nddb.toolsVersion = \"2147483647\"\n",
	"version=1 \r\nCID=a454774a \r\nparentCID=ffffffff\r\ncreateType=\"streamOptimized\" \r\nRDONLY 33554432 SPARSE \"generated-stream.vmdk\"\r\n",
	"version=1\ncreateType=\"twoGbMaxExtentFlat\"\nRW 4194304 FLAT \"p-f001.vmdk\" 0\nRW 2048 ZERO\nNOACCESS 1 VMFS \"x\"\n",
	"version=1\nparentCID=12\nparentFileNameHint=\"../base.vmdk\"\nCID=\n",
}

func FuzzParseDescriptor(f *testing.F) {
	for _, s := range fuzzDescSeeds {
		f.Add([]byte(s))
	}
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
	for _, s := range fuzzDescSeeds {
		f.Add([]byte(s))
	}
	for _, p := range []string{"/tmp/blocklayer-corpus/vmdk-lsilogic.vmdk"} {
		if b, err := os.ReadFile(p); err == nil && len(b) < 1<<20 {
			f.Add(b[:min(len(b), 128<<10)])
		}
	}
	opener := func(path string, ro bool) (blockio.Device, error) {
		if filepath.Base(path) == "missing" {
			return nil, os.ErrNotExist
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
