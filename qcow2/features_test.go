package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// newImageBytes returns the bytes of a fresh flushed image.
func newImageBytes(t *testing.T, o CreateOptions) []byte {
	t.Helper()
	mem := blockio.NewMem(0)
	img, err := Create(mem, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt([]byte("data"), 0); err != nil {
		t.Fatal(err)
	}
	if err := img.Flush(); err != nil {
		t.Fatal(err)
	}
	return mem.Bytes()
}

func memOf(b []byte) *blockio.Mem {
	m := blockio.NewMem(int64(len(b)))
	m.WriteAt(b, 0)
	return m
}

func TestUnknownIncompatibleRefusedByName(t *testing.T) {
	b := newImageBytes(t, CreateOptions{Size: 1 << 20})
	binary.BigEndian.PutUint64(b[72:], 1<<5|1<<9)
	// Name bit 5 in the feature table (replace the "dirty bit" entry's bit).
	_, err := Open(memOf(b), Options{ReadOnly: true})
	if !errors.Is(err, blockio.ErrUnsupported) {
		t.Fatalf("err = %v, want ErrUnsupported", err)
	}
	if !strings.Contains(err.Error(), "Unknown incompatible feature: 20") || !strings.Contains(err.Error(), "200") {
		t.Errorf("error does not name the bits: %v", err)
	}
	// With a feature table entry the name is used.
	off := 112 + 8 // feature table data in a fresh image
	if binary.BigEndian.Uint32(b[112:]) != extFeatureTable {
		t.Fatalf("feature table not at 112")
	}
	b[off] = 0
	b[off+1] = 5
	copy(b[off+2:off+48], append([]byte("shiny future"), make([]byte, 34)...))
	_, err = Open(memOf(b), Options{ReadOnly: true})
	if err == nil || !strings.Contains(err.Error(), "shiny future") {
		t.Errorf("error does not use the feature table name: %v", err)
	}
}

func TestCorruptOpensReadOnlyOnly(t *testing.T) {
	b := newImageBytes(t, CreateOptions{Size: 1 << 20})
	binary.BigEndian.PutUint64(b[72:], incCorrupt)
	if _, err := Open(memOf(b), Options{}); !errors.Is(err, blockio.ErrCorrupt) {
		t.Fatalf("read-write open of corrupt image: %v", err)
	}
	img, err := Open(memOf(b), Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 4)
	if _, err := img.ReadAt(p, 0); err != nil || string(p) != "data" {
		t.Fatalf("read %q %v", p, err)
	}
	info, _ := img.Info()
	if !*info.FormatSpecific.Data.(InfoSpecific).Corrupt {
		t.Error("info does not report corrupt")
	}
}

func TestAutoclearClearedOnFirstWrite(t *testing.T) {
	b := newImageBytes(t, CreateOptions{Size: 1 << 20})
	binary.BigEndian.PutUint64(b[88:], 1<<0|1<<7)
	mem := memOf(b)
	img, err := Open(mem, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := mem.Bytes()
	if binary.BigEndian.Uint64(got[88:]) == 0 {
		t.Fatal("autoclear cleared before any write")
	}
	if _, err := img.WriteAt([]byte("x"), 100); err != nil {
		t.Fatal(err)
	}
	got = mem.Bytes()
	if v := binary.BigEndian.Uint64(got[88:]); v != 0 {
		t.Errorf("autoclear = %#x after first write, want 0", v)
	}
}

func TestRuntimeCorruptionMarksImage(t *testing.T) {
	b := newImageBytes(t, CreateOptions{Size: 1 << 20, ClusterSize: 4096})
	// Point L1[0] at an unaligned L2 offset.
	l1 := binary.BigEndian.Uint64(b[40:])
	binary.BigEndian.PutUint64(b[l1:], binary.BigEndian.Uint64(b[l1:])+512)
	// As in QEMU the image opens (so that Check can report it), but any
	// request needing that L2 table fails with ErrCorrupt and marks the
	// image corrupt, after which read-write opens are refused.
	mem := memOf(b)
	var events []CorruptEvent
	img0, err := Open(mem, Options{OnCorrupt: func(e CorruptEvent) { events = append(events, e) }})
	if err != nil {
		t.Fatalf("open with unaligned L1 entry: %v", err)
	}
	if _, err := img0.ReadAt(make([]byte, 4), 0); !errors.Is(err, blockio.ErrCorrupt) {
		t.Fatalf("read through an unaligned L1 entry: %v", err)
	}
	if _, err := img0.WriteAt(make([]byte, 4), 4096); !errors.Is(err, blockio.ErrCorrupt) {
		t.Fatalf("write through an unaligned L1 entry: %v", err)
	}
	if len(events) != 1 || !events[0].Fatal {
		t.Errorf("events = %+v", events)
	}
	img0.Close()
	if _, err := Open(memOf(mem.Bytes()), Options{}); !errors.Is(err, blockio.ErrCorrupt) {
		t.Fatalf("read-write open after the corruption was found: %v", err)
	}
	events = nil
	// Unaligned data cluster in L2: reads fail with ErrCorrupt, image is marked.
	b = newImageBytes(t, CreateOptions{Size: 1 << 20, ClusterSize: 4096})
	l2 := binary.BigEndian.Uint64(b[binary.BigEndian.Uint64(b[40:]):]) & l1OffsetMask
	e := binary.BigEndian.Uint64(b[l2:])
	binary.BigEndian.PutUint64(b[l2:], e+512)
	mem = memOf(b)
	img, err := Open(mem, Options{OnCorrupt: func(e CorruptEvent) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 4)
	if _, err := img.ReadAt(p, 0); !errors.Is(err, blockio.ErrCorrupt) {
		t.Fatalf("read of corrupt entry: %v", err)
	}
	if len(events) != 1 || !events[0].Fatal {
		t.Errorf("events = %+v", events)
	}
	if binary.BigEndian.Uint64(mem.Bytes()[72:])&incCorrupt == 0 {
		t.Error("corrupt bit not set on disk")
	}
	if _, err := img.WriteAt(p, 8192); !errors.Is(err, blockio.ErrCorrupt) {
		t.Errorf("write after corruption: %v", err)
	}
}

func TestWriteMarksBitmapsInUse(t *testing.T) {
	dir, _ := corpusImages(t)
	p := filepath.Join(t.TempDir(), "bm.qcow2")
	copyFile(t, filepath.Join(dir, "qcow2-bitmaps.qcow2"), p)
	img, err := OpenFile(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt([]byte("changed"), 12345); err != nil {
		t.Fatal(err)
	}
	img = closeCheckReopen(t, img, p)
	bms, err := img.Bitmaps()
	if err != nil || len(bms) != 4 {
		t.Fatalf("bitmaps %v %v", bms, err)
	}
	for _, b := range bms {
		if !b.InUse {
			t.Errorf("bitmap %s not marked in use", b.Name)
		}
	}
}

// TestWriteImageWithSnapshots writes over clusters shared with internal
// snapshots (copy on write of L2 tables and data clusters) and checks that
// the snapshots still hold their data.
func TestWriteImageWithSnapshots(t *testing.T) {
	dir, _ := corpusImages(t)
	tmp := t.TempDir()
	p := filepath.Join(tmp, "snap.qcow2")
	copyFile(t, filepath.Join(dir, "qcow2-snapshots.qcow2"), p)
	export := func(name, out string) {
		qemutest.Run(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", "-l", "snapshot.name="+name, p, out)
	}
	export("snap1", filepath.Join(tmp, "before.raw"))
	img, err := OpenFile(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cs := img.ClusterSize()
	buf := bytes.Repeat([]byte{0xee}, int(cs))
	for _, off := range []int64{0, cs / 2, 1 << 20, 4 << 20, 64 << 20, 128 << 20} {
		if _, err := img.WriteAt(buf[:cs/2+100], off); err != nil {
			t.Fatal(err)
		}
	}
	if err := img.WriteZeroes(2<<20, 4*cs, true); err != nil {
		t.Fatal(err)
	}
	if err := img.Discard(8<<20, 8*cs); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	qemuCheck(t, p)
	export("snap1", filepath.Join(tmp, "after.raw"))
	qemutest.Run(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", filepath.Join(tmp, "before.raw"), filepath.Join(tmp, "after.raw"))
}

// TestCompressedReadableByQemu writes clusters whose content repeats at
// distances beyond 4 KiB: QEMU inflates with a 4 KiB window, so our
// deflate stream must not reference further back.
func TestCompressedReadableByQemu(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	dir := t.TempDir()
	for _, ct := range []string{"zlib", "zstd"} {
		p := filepath.Join(dir, ct+".qcow2")
		img, err := CreateFile(p, 1<<20, CreateOptions{CompressionType: ct})
		if err != nil {
			t.Fatal(err)
		}
		block := make([]byte, 8192)
		r := rand.New(rand.NewPCG(5, 5))
		for i := range block {
			block[i] = byte(r.Uint32())
		}
		data := bytes.Repeat(block, 16) // 128 KiB, repeats every 8 KiB
		if err := img.WriteCompressed(data, 0); err != nil {
			t.Fatal(err)
		}
		if err := img.Close(); err != nil {
			t.Fatal(err)
		}
		raw := filepath.Join(dir, ct+".raw")
		model := make([]byte, 1<<20)
		copy(model, data)
		if err := os.WriteFile(raw, model, 0o644); err != nil {
			t.Fatal(err)
		}
		qemuCheck(t, p)
		qemuCompare(t, p, "qcow2", raw)
	}
}

// TestOverwriteQemuImages writes over qemu-made images (compressed
// clusters packed at byte offsets, extended L2, zero clusters, a chain
// top): qemu-img check stays clean and the data matches a model.
func TestOverwriteQemuImages(t *testing.T) {
	dir, _ := corpusImages(t)
	for _, name := range []string{"qcow2-compressed-zlib.qcow2", "qcow2-compressed-zstd.qcow2", "qcow2-extl2.qcow2", "qcow2-c512.qcow2", "qcow2-rc1.qcow2"} {
		t.Run(name, func(t *testing.T) {
			tmp := t.TempDir()
			p := filepath.Join(tmp, name)
			copyFile(t, filepath.Join(dir, name), p)
			img, err := OpenFile(p, Options{})
			if err != nil {
				t.Fatal(err)
			}
			size := min(img.Size(), 48<<20)
			model := make([]byte, size)
			if _, err := img.ReadAt(model, 0); err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(7, uint64(len(name))))
			m := &model2{data: model}
			for i := 0; i < 200; i++ {
				randomOpModel(t, img, m, r, size)
			}
			img = closeCheckReopen(t, img, p)
			got := make([]byte, size)
			if _, err := img.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, model) {
				t.Fatal("content differs from model")
			}
			raw := filepath.Join(tmp, "model.raw")
			full := make([]byte, img.Size())
			if _, err := img.ReadAt(full, 0); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(raw, full, 0o644)
			qemuCompare(t, p, "qcow2", raw)
		})
	}
}

type model2 struct{ data []byte }

func randomOpModel(t *testing.T, img *Image, m *model2, r *rand.Rand, size int64) {
	cs := img.ClusterSize()
	off := r.Int64N(size)
	n := min(size-off, 1+r.Int64N(3*cs))
	switch r.IntN(4) {
	case 0, 1:
		p := pattern(r, int(n))
		if _, err := img.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(m.data[off:], p)
	case 2:
		if err := img.WriteZeroes(off, n, r.IntN(2) == 0); err != nil {
			t.Fatal(err)
		}
		clear(m.data[off : off+n])
	default:
		off &^= cs - 1
		n = min(size-off, cs)
		p := pattern(r, int(n))
		if err := img.WriteCompressed(p, off); err != nil {
			t.Fatal(err)
		}
		copy(m.data[off:], p)
	}
}
