package qcow2

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/blockio/faultio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// TestChangeBackingFileMatchesQemu changes the backing file of copies of
// the same image with ChangeBackingFile and with `qemu-img rebase -u`, and
// requires the header clusters to be byte-identical and the image to pass
// qemu-img check.
func TestChangeBackingFileMatchesQemu(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	dir := t.TempDir()
	t.Chdir(dir)
	qemutest.Run(t, "qemu-img", "create", "-q", "-f", "qcow2", "base.qcow2", "4M")
	qemutest.Run(t, "qemu-img", "create", "-q", "-f", "raw", "base.raw", "4M")
	type change struct{ name, format string }
	cases := []struct {
		name   string
		create []string // qemu-img create arguments before the file name and size
		setup  func(t *testing.T, file string)
		to     []change
	}{
		{name: "v3", create: []string{"-f", "qcow2"},
			to: []change{{"base.qcow2", "qcow2"}, {"base.raw", "raw"}, {"", ""}}},
		{name: "v3-backed", create: []string{"-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2"},
			to: []change{{"base.raw", "raw"}, {"", ""}, {strings.Repeat("n", 300) + ".qcow2", "qcow2"}}},
		{name: "v2-backed", create: []string{"-f", "qcow2", "-o", "compat=0.10", "-b", "base.qcow2", "-F", "qcow2"},
			to: []change{{"other.qcow2", "qcow2"}, {"", ""}}},
		{name: "512-byte clusters", create: []string{"-f", "qcow2", "-o", "cluster_size=512"},
			to: []change{{"base.qcow2", "qcow2"}, {strings.Repeat("x", 200), "qcow2"}, {"", ""}}},
		{name: "4 KiB clusters", create: []string{"-f", "qcow2", "-o", "cluster_size=4096"},
			to: []change{{"base.qcow2", "qcow2"}, {"", ""}}},
		{name: "8 KiB clusters", create: []string{"-f", "qcow2", "-o", "cluster_size=8192"},
			to: []change{{"base.qcow2", "qcow2"}, {"", ""}}},
		{name: "extended L2, zstd, lazy refcounts", create: []string{"-f", "qcow2", "-o", "extended_l2=on,compression_type=zstd,lazy_refcounts=on"},
			to: []change{{"base.qcow2", "qcow2"}}},
		{name: "external data file", create: []string{"-f", "qcow2", "-o", "data_file=data.bin"},
			to: []change{{"base.raw", "raw"}, {"", ""}}},
		{name: "persistent bitmap", create: []string{"-f", "qcow2"},
			setup: func(t *testing.T, file string) {
				qemutest.Run(t, "qemu-img", "bitmap", "--add", "-g", "65536", file, "b0")
			},
			to: []change{{"base.qcow2", "qcow2"}, {"", ""}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i, to := range c.to {
				ours, theirs := "ours.qcow2", "theirs.qcow2"
				for _, f := range []string{ours, theirs, "data.bin"} {
					os.Remove(f)
				}
				qemutest.Run(t, "qemu-img", append(append([]string{"create", "-q"}, c.create...), theirs, "4M")...)
				if c.setup != nil {
					c.setup(t, theirs)
				}
				copyFile(t, theirs, ours)
				args := []string{"rebase", "-u", "-f", "qcow2", "-b", to.name}
				if to.format != "" {
					args = append(args, "-F", to.format)
				}
				qemutest.Run(t, "qemu-img", append(args, theirs)...)

				img, err := OpenFile(ours, Options{NoBacking: true})
				if err != nil {
					t.Fatal(err)
				}
				if err := img.ChangeBackingFile(to.name, to.format); err != nil {
					t.Fatalf("change %d to %q/%q: %v", i, to.name, to.format, err)
				}
				info, _ := img.Info()
				if info.BackingFilename != to.name || info.BackingFilenameFormat != to.format {
					t.Errorf("change %d: Info backing %q/%q, want %q/%q", i, info.BackingFilename, info.BackingFilenameFormat, to.name, to.format)
				}
				if err := img.Close(); err != nil {
					t.Fatal(err)
				}
				a, b := readHeaderCluster(t, ours), readHeaderCluster(t, theirs)
				// QEMU stores persistent bitmaps again when it closes an
				// image it opened read-write, moving their directory;
				// this package leaves them where they were.
				maskBitmapDir(a)
				maskBitmapDir(b)
				if !bytes.Equal(a, b) {
					t.Errorf("change %d to %q/%q: header differs from qemu-img's at byte %d", i, to.name, to.format, firstDiff(a, b))
				}
				if _, err := os.Stat(to.name); to.name == "" || err == nil {
					qemutest.Run(t, "qemu-img", "check", "-q", "-f", "qcow2", ours)
				}
				if c.setup != nil {
					out := qemutest.Run(t, "qemu-img", "info", "-U", "--output=json", "-f", "qcow2", ours)
					if !strings.Contains(out, `"name": "b0"`) || strings.Contains(out, "in-use") {
						t.Errorf("change %d: bitmap lost or marked in use:\n%s", i, out)
					}
				}
			}
		})
	}
}

// TestChangeBackingFileRefusals covers read-only images, names longer than
// QEMU allows and a name that cannot fit beside the header extensions.
func TestChangeBackingFileRefusals(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.qcow2")
	img, err := CreateFile(p, 1<<20, CreateOptions{ClusterSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.ChangeBackingFile(strings.Repeat("a", 1024), "raw"); !errors.Is(err, blockio.ErrInvalid) {
		t.Errorf("1024-byte name: %v", err)
	}
	// 512-byte clusters: the header, the backing format extension and a
	// 1000-byte name cannot share the first cluster.
	if err := img.ChangeBackingFile(strings.Repeat("a", 1000), "raw"); !errors.Is(err, blockio.ErrInvalid) {
		t.Errorf("name too long for the cluster: %v", err)
	}
	if err := img.ChangeBackingFile("b.raw", "raw"); err != nil {
		t.Fatal(err)
	}
	img.Close()
	if err := img.ChangeBackingFile("c.raw", "raw"); !errors.Is(err, blockio.ErrClosed) {
		t.Errorf("closed image: %v", err)
	}
	ro, err := OpenFile(p, Options{ReadOnly: true, NoBacking: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.ChangeBackingFile("c.raw", "raw"); !errors.Is(err, blockio.ErrReadOnly) {
		t.Errorf("read-only image: %v", err)
	}
	if info, _ := ro.Info(); info.BackingFilename != "b.raw" || info.BackingFilenameFormat != "raw" {
		t.Errorf("after reopen: backing %q/%q", info.BackingFilename, info.BackingFilenameFormat)
	}
}

func readHeaderCluster(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseHeader(b, int64(len(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b[:min(len(b), 1<<h.clusterBits)]
}

// maskBitmapDir zeroes the bitmap directory offset in a header cluster.
func maskBitmapDir(hdr []byte) {
	if i := bytes.Index(hdr, []byte{0x23, 0x85, 0x28, 0x75, 0, 0, 0, 24}); i >= 0 && i+32 <= len(hdr) {
		clear(hdr[i+24 : i+32])
	}
}

// TestChangeBackingFileCrash cuts the power before every device request of
// a ChangeBackingFile that follows unflushed writes (a safe rebase's
// copy): whenever the header names the new backing file, every byte
// written before the call must be there, and the image must check clean.
func TestChangeBackingFileCrash(t *testing.T) {
	const size = 4 << 20
	oldB, newB := blockio.NewMem(size), blockio.NewMem(size)
	fill := func(m *blockio.Mem, v byte) {
		buf := bytes.Repeat([]byte{v}, size)
		if _, err := m.WriteAt(buf, 0); err != nil {
			t.Fatal(err)
		}
	}
	fill(oldB, 0xaa)
	fill(newB, 0xbb)
	opener := func(name, format string, readOnly bool) (blockio.Device, error) {
		switch name {
		case "old.raw":
			return oldB.Clone()
		case "new.raw":
			return newB.Clone()
		}
		return nil, os.ErrNotExist
	}
	for _, cs := range []int64{512, 65536} {
		// An image backed by old.raw, durable, on a crash device.
		setup := blockio.NewMem(0)
		img, err := Create(setup, CreateOptions{Size: size, ClusterSize: cs})
		if err != nil {
			t.Fatal(err)
		}
		if err := img.ChangeBackingFile("old.raw", "raw"); err != nil {
			t.Fatal(err)
		}
		start := blockio.NewMem(int64(len(setup.Bytes())))
		if _, err := start.WriteAt(setup.Bytes(), 0); err != nil {
			t.Fatal(err)
		}
		img.Close()
		crash := faultio.NewCrashDevice(start)
		dev := &cutDevice{CrashDevice: crash, every: 1}
		if img, err = Open(dev, Options{BackingOpener: opener}); err != nil {
			t.Fatal(err)
		}
		// Unflushed writes: what a safe rebase copies before switching.
		written := bytes.Repeat([]byte{0xbb}, size)                // as read through new.raw
		for i, off := range []int64{0, 3 * cs, 1 << 20, 3 << 20} { // whole clusters: no COW
			data := bytes.Repeat([]byte{byte(0x10 + i)}, int(2*cs))
			if _, err := img.WriteAt(data, off); err != nil {
				t.Fatal(err)
			}
			copy(written[off:], data)
		}
		cuts, switched := 0, 0
		dev.cut = func(seq int) {
			for c := 0; c < 3; c++ {
				mem := crashImage(t, crash, seq, c)
				cuts++
				got, err := Open(mem, Options{BackingOpener: opener})
				if err != nil {
					t.Fatalf("cs %d cut %d/%d: open: %v", cs, seq, c, err)
				}
				res, err := got.Check(context.Background(), CheckOptions{})
				if err != nil || res.Corruptions != 0 || res.CheckErrors != 0 {
					t.Fatalf("cs %d cut %d/%d: check %+v %v", cs, seq, c, res, err)
				}
				if info, _ := got.Info(); info.BackingFilename == "new.raw" {
					switched++
					buf := make([]byte, size)
					if _, err := got.ReadAt(buf, 0); err != nil {
						t.Fatal(err)
					}
					if i := firstDiff(buf, written); i >= 0 {
						t.Fatalf("cs %d cut %d/%d: header names new.raw but byte %d = %#x, want %#x", cs, seq, c, i, buf[i], written[i])
					}
				}
				got.Close()
			}
		}
		if err := img.ChangeBackingFile("new.raw", "raw"); err != nil {
			t.Fatal(err)
		}
		dev.cut(dev.seq + 1) // and once it returned: durable
		dev.cut = nil
		img.Close()
		if cuts == 0 || switched == 0 {
			t.Fatalf("cs %d: %d cuts, %d with the new header", cs, cuts, switched)
		}
	}
}

// TestChangeBackingFileUnknownParts: unknown header extensions (in QEMU's
// rewrite order) and unknown autoclear bits (dropped) are handled as
// qemu-img rebase -u does, byte for byte; a raw external data file refuses
// a backing file as in QEMU.
func TestChangeBackingFileUnknownParts(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	dir := t.TempDir()
	t.Chdir(dir)
	qemutest.Run(t, "qemu-img", "create", "-q", "-f", "qcow2", "theirs.qcow2", "4M")
	b, err := os.ReadFile("theirs.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseHeader(b, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	// The feature table ends at 112+8+384: put two unknown extensions
	// there, then the end marker (the file holds zeros after them).
	off := int(h.headerLength) + 8 + 48*len(h.features)
	for i, ext := range [][]byte{[]byte("abcd"), []byte("12345678")} {
		binary.BigEndian.PutUint32(b[off:], 0x12345670+uint32(i))
		binary.BigEndian.PutUint32(b[off+4:], uint32(len(ext)))
		copy(b[off+8:], ext)
		off += 8 + (len(ext)+7)&^7
	}
	b[95] |= 0x80 // an unknown autoclear feature
	if err := os.WriteFile("theirs.qcow2", b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("ours.qcow2", b, 0o644); err != nil {
		t.Fatal(err)
	}
	qemutest.Run(t, "qemu-img", "create", "-q", "-f", "raw", "base.raw", "4M")
	qemutest.Run(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "theirs.qcow2")
	img, err := OpenFile("ours.qcow2", Options{NoBacking: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.ChangeBackingFile("base.raw", "raw"); err != nil {
		t.Fatal(err)
	}
	img.Close()
	if a, b := readHeaderCluster(t, "ours.qcow2"), readHeaderCluster(t, "theirs.qcow2"); !bytes.Equal(a, b) {
		t.Errorf("header differs from qemu-img's at byte %d", firstDiff(a, b))
	}
	raw, err := CreateFile("dr.qcow2", 1<<20, CreateOptions{DataFile: "dr.data", DataFileRaw: true})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.ChangeBackingFile("base.raw", "raw"); !errors.Is(err, blockio.ErrInvalid) {
		t.Errorf("backing file on a raw data file image: %v", err)
	}
}
