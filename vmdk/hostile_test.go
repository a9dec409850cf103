package vmdk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
)

func writeDesc(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	text := "# Disk DescriptorFile\nversion=1\nCID=abc\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n" + body
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnsafeExtentPaths(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "img")
	os.Mkdir(dir, 0o755)
	secret := filepath.Join(root, "secret")
	os.WriteFile(secret, bytes.Repeat([]byte("S"), 4096), 0o644)
	for _, name := range []string{secret, "../secret", "sub/../../secret"} {
		p := writeDesc(t, dir, "d.vmdk", "RW 8 FLAT \""+name+"\" 0\n")
		_, err := OpenFile(p, Options{ReadOnly: true})
		if !errors.Is(err, blockio.ErrInvalid) {
			t.Errorf("%q: got %v, want ErrInvalid", name, err)
		}
		img, err := OpenFile(p, Options{ReadOnly: true, AllowUnsafePaths: true})
		if err != nil {
			t.Fatalf("%q with AllowUnsafePaths: %v", name, err)
		}
		b := make([]byte, 512)
		img.ReadAt(b, 0)
		if b[0] != 'S' {
			t.Errorf("%q: did not read the file", name)
		}
		img.Close()
	}
	// A symlink inside the directory pointing out of it.
	os.Symlink(secret, filepath.Join(dir, "link"))
	p := writeDesc(t, dir, "d.vmdk", "RW 8 FLAT \"link\" 0\n")
	if _, err := OpenFile(p, Options{ReadOnly: true}); !errors.Is(err, blockio.ErrInvalid) {
		t.Errorf("symlink out: %v", err)
	}
	// Names that stay inside are fine.
	os.WriteFile(filepath.Join(dir, "ok-flat.vmdk"), make([]byte, 4096), 0o644)
	p = writeDesc(t, dir, "d.vmdk", "RW 8 FLAT \"sub/../ok-flat.vmdk\" 0\n")
	img, err := OpenFile(p, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	img.Close()
}

func TestDescriptorLimits(t *testing.T) {
	dir := t.TempDir()
	big := "# Disk DescriptorFile\nversion=1\n" + strings.Repeat("#"+strings.Repeat("x", 100)+"\n", 12000)
	p := filepath.Join(dir, "big.vmdk")
	os.WriteFile(p, []byte(big), 0o644)
	if _, err := OpenFile(p, Options{ReadOnly: true}); !errors.Is(err, blockio.ErrCorrupt) {
		t.Errorf("1.2 MB descriptor: %v", err)
	}
	long := writeDesc(t, dir, "long.vmdk", "ddb.x = \""+strings.Repeat("y", 5000)+"\"\n")
	if _, err := OpenFile(long, Options{ReadOnly: true}); !errors.Is(err, blockio.ErrCorrupt) {
		t.Errorf("long line: %v", err)
	}
	for _, bad := range []string{
		"RW 8 FLAT \"x\"\n",            // FLAT without offset
		"RW 8 SPARSE \"x\" 5\n",        // offset on SPARSE
		"RW -8 FLAT \"x\" 0\n",         // negative size
		"RW 8 FLAT \"unterminated 0\n", // quote
		"RW 8 FLAT x 0\n",              // unquoted
	} {
		p := writeDesc(t, dir, "bad.vmdk", bad)
		if _, err := OpenFile(p, Options{ReadOnly: true}); !errors.Is(err, blockio.ErrCorrupt) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	p = writeDesc(t, dir, "raw.vmdk", "RW 8 VMFSRAW \"x\"\n")
	if _, err := OpenFile(p, Options{ReadOnly: true}); !errors.Is(err, blockio.ErrUnsupported) {
		t.Errorf("VMFSRAW: %v", err)
	}
	text := "# Disk DescriptorFile\nversion=1\ncreateType=\"fullDevice\"\n"
	os.WriteFile(p, []byte(text), 0o644)
	if _, err := OpenFile(p, Options{ReadOnly: true}); !errors.Is(err, blockio.ErrUnsupported) {
		t.Errorf("fullDevice: %v", err)
	}
}

// TestExtentKinds covers ZERO, RDONLY and NOACCESS lines mixed with FLAT
// extents at an offset, and a CRLF descriptor.
func TestExtentKinds(t *testing.T) {
	dir := t.TempDir()
	a := bytes.Repeat([]byte{0xaa}, 8192)
	b := bytes.Repeat([]byte{0xbb}, 8192)
	os.WriteFile(filepath.Join(dir, "a.bin"), a, 0o644)
	os.WriteFile(filepath.Join(dir, "b.bin"), b, 0o644)
	body := "RW 8 FLAT \"a.bin\" 4\r\nRW 4 ZERO\r\nRDONLY 16 FLAT \"b.bin\" 0\r\nNOACCESS 2 FLAT \"b.bin\" 0\r\nRW 0 FLAT \"a.bin\" 0\r\n"
	p := writeDesc(t, dir, "k.vmdk", strings.ReplaceAll(body, "\r\n", "\r\n"))
	img, err := OpenFile(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if img.Size() != (8+4+16+2)*512 {
		t.Fatalf("size %d", img.Size())
	}
	got := make([]byte, img.Size())
	if _, err := img.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	want := append(append(append(bytes.Repeat([]byte{0xaa}, 4096), make([]byte, 2048)...), bytes.Repeat([]byte{0xbb}, 8192)...), make([]byte, 1024)...)
	if !bytes.Equal(got, want) {
		t.Fatal("content differs")
	}
	if _, err := img.WriteAt([]byte{1}, 12*512); !errors.Is(err, blockio.ErrReadOnly) {
		t.Errorf("write to RDONLY: %v", err)
	}
	if _, err := img.WriteAt([]byte{1}, 9*512); !errors.Is(err, blockio.ErrUnsupported) {
		t.Errorf("write to ZERO: %v", err)
	}
	if _, err := img.WriteAt([]byte{1, 2}, 0); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "a.bin"))
	if raw[2048] != 1 || raw[2049] != 2 {
		t.Error("FLAT offset not honoured on write")
	}
	// The CID was rewritten, padding the CRLF descriptor to 512 bytes.
	d, _ := os.ReadFile(p)
	if len(d)%512 != 0 || bytes.Contains(d, []byte("CID=abc")) || !bytes.Contains(d, []byte("\r\n")) {
		t.Errorf("descriptor after write: %q", d)
	}
}

// makeCOWD builds a small vmfsSparse (COWD) extent: 1 MiB, 8 KiB grains.
func makeCOWD() []byte {
	const capacity, grain = 2048, 16
	h := cowdHeader{Version: 1, Flags: 3, Capacity: capacity, GrainSize: grain, GDOffset: 4, GDEntries: 1, FreeSector: 37}
	b := make([]byte, 37*512)
	copy(b, h.marshal())
	binary.LittleEndian.PutUint32(b[4*512:], 5) // GT 0 at sector 5
	// grain 3 at sector 37
	binary.LittleEndian.PutUint32(b[5*512+3*4:], 37)
	b = append(b, bytes.Repeat([]byte{0xc0}, grain*512)...)
	return b
}

func TestCOWD(t *testing.T) {
	mem := blockio.NewMem(0)
	data := makeCOWD()
	mem.Truncate(int64(len(data)), blockio.PreallocOff)
	mem.WriteAt(data, 0)
	img, err := Open(mem, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if img.Size() != 1<<20 || img.CreateType() != "vmfsSparse" {
		t.Fatalf("size %d type %s", img.Size(), img.CreateType())
	}
	b := make([]byte, 8192)
	img.ReadAt(b, 3*8192)
	if b[0] != 0xc0 || b[8191] != 0xc0 {
		t.Fatal("grain 3 not read")
	}
	img.ReadAt(b, 0)
	if !blockio.IsZero(b) {
		t.Fatal("grain 0 not zero")
	}
	if _, err := img.WriteAt([]byte("hello"), 100<<10); err != nil {
		t.Fatal(err)
	}
	img.ReadAt(b[:5], 100<<10)
	if string(b[:5]) != "hello" {
		t.Fatal("COWD write lost")
	}
	if err := img.Flush(); err != nil {
		t.Fatal(err)
	}
	hb := make([]byte, 512)
	mem.ReadAt(hb, 0)
	if h, _ := parseCOWDHeader(hb); int64(h.FreeSector)*512 != mem.Size() {
		t.Errorf("free sector %d, file %d bytes", h.FreeSector, mem.Size())
	}
}

func TestHeaderChecks(t *testing.T) {
	base := sparseLayout(2048, false, false)
	for name, mod := range map[string]func(h *sparseHeader){
		"gtes":       func(h *sparseHeader) { h.NumGTEsPerGT = 1024 },
		"grain0":     func(h *sparseHeader) { h.GrainSize = 0 },
		"grainHuge":  func(h *sparseHeader) { h.GrainSize = 0x400000 },
		"l1":         func(h *sparseHeader) { h.Capacity = 1 << 49 },
		"gdBeyond":   func(h *sparseHeader) { h.GDOffset = 1 << 30 },
		"version":    func(h *sparseHeader) { h.Version = 4 },
		"compressor": func(h *sparseHeader) { h.CompressAlgorithm = 7 },
		"truncated":  func(h *sparseHeader) { h.OverHead = 1 << 20 },
	} {
		h := base
		mod(&h)
		mem := blockio.NewMem(0)
		writeSparseExtent(mem, base, "")
		mem.WriteAt(h.marshal(), 0)
		_, err := Open(mem, Options{ReadOnly: true})
		t.Logf("%s: %v", name, err)
		if !errors.Is(err, blockio.ErrCorrupt) && !errors.Is(err, blockio.ErrUnsupported) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	// The metadata memory cap applies before allocation.
	mem := blockio.NewMem(0)
	writeSparseExtent(mem, sparseLayout(1<<30, false, false), "")
	if _, err := Open(mem, Options{ReadOnly: true, MaxMetadataMemory: 4096}); !errors.Is(err, blockio.ErrCorrupt) {
		t.Errorf("memory cap: %v", err)
	}
}

func TestVMFSDescriptor(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "v-flat.vmdk"), bytes.Repeat([]byte{0x5f}, 8192), 0o644)
	p := filepath.Join(dir, "v.vmdk")
	os.WriteFile(p, []byte("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"vmfs\"\n\nRW 16 VMFS \"v-flat.vmdk\"\n\nddb.adapterType = \"lsilogic\"\n"), 0o644)
	img, err := OpenFile(p, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	b := make([]byte, 8192)
	if _, err := img.ReadAt(b, 0); err != nil || b[8191] != 0x5f || img.CreateType() != "vmfs" {
		t.Fatalf("vmfs read: %v %#x %s", err, b[8191], img.CreateType())
	}
	d := img.Descriptor()
	if d.DDBValue("ddb.adapterType") != "lsilogic" || d.CID != 0xfffffffe {
		t.Errorf("descriptor: %+v", d)
	}
}
