//go:build linux

package blockio_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/blockio/blocktest"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// testDir returns a temporary directory for a test file; with direct, one
// whose file system supports O_DIRECT: t.TempDir() when it does (not every
// tmpfs does), else a directory beside the package sources. When neither
// works the test is skipped with a message, and fails under CI=true, so
// the O_DIRECT path is never silently untested there.
func testDir(t *testing.T, direct bool) string {
	t.Helper()
	dir := t.TempDir()
	if !direct || supportsDirect(dir) {
		return dir
	}
	if d, err := os.MkdirTemp(".", ".odirect-test-"); err == nil {
		t.Cleanup(func() { os.RemoveAll(d) })
		if supportsDirect(d) {
			return d
		}
	}
	msg := "O_DIRECT unsupported in " + dir + " and in the package directory"
	if qemutest.InCI() {
		t.Fatal(msg + "; the O_DIRECT tests cannot be skipped under CI")
	}
	t.Skip(msg)
	return ""
}

func supportsDirect(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, ".probe"), os.O_CREATE|os.O_RDWR|syscall.O_DIRECT, 0o644)
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(filepath.Join(dir, ".probe"))
	return true
}

func fileOpener(opts blockio.FileOptions) blocktest.Open {
	return func(t *testing.T, size int64) blockio.Device {
		path := filepath.Join(testDir(t, opts.Direct), "disk.raw")
		f, err := blockio.CreateFile(path, size, opts)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
}

func TestFileConformance(t *testing.T) {
	blocktest.Run(t, fileOpener(blockio.FileOptions{}), blocktest.Options{})
}

func TestFileDirectConformance(t *testing.T) {
	blocktest.Run(t, fileOpener(blockio.FileOptions{Direct: true}), blocktest.Options{})
}

func TestFileDirectUnalignedSize(t *testing.T) {
	// The partial last block goes through the buffered descriptor.
	blocktest.Run(t, fileOpener(blockio.FileOptions{Direct: true}), blocktest.Options{Size: 1<<20 + 1000, Short: true})
}

func TestFileUnalignedSize(t *testing.T) {
	blocktest.Run(t, fileOpener(blockio.FileOptions{}), blocktest.Options{Size: 1<<20 + 777, Short: true})
}

func TestFileReadOnlyConformance(t *testing.T) {
	for _, direct := range []bool{false, true} {
		blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
			path := filepath.Join(testDir(t, direct), "ro.raw")
			data := make([]byte, size)
			for i := 0; i < len(data); i += 1000 {
				copy(data[i:], "not zero")
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := blockio.OpenFile(path, blockio.FileOptions{ReadOnly: true, Direct: direct})
			if err != nil {
				t.Fatal(err)
			}
			return f
		}, blocktest.Options{ReadOnly: true})
	}
}

func TestFileDirectAlignment(t *testing.T) {
	path := filepath.Join(testDir(t, true), "d.raw")
	f, err := blockio.CreateFile(path, 1<<20, blockio.FileOptions{Direct: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if bs := f.BlockSize(); bs < 512 || bs&(bs-1) != 0 {
		t.Fatalf("BlockSize() = %d", bs)
	}
	if !f.Direct() {
		t.Fatal("Direct() = false")
	}
	t.Logf("O_DIRECT logical block size %d", f.BlockSize())
}

func TestFileMissing(t *testing.T) {
	_, err := blockio.OpenFile(filepath.Join(t.TempDir(), "nope"), blockio.FileOptions{})
	var oe *blockio.OpError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &oe) {
		t.Fatalf("OpenFile(missing) = %v", err)
	}
}

func TestFileNotRegular(t *testing.T) {
	_, err := blockio.OpenFile(t.TempDir(), blockio.FileOptions{ReadOnly: true})
	if err == nil {
		t.Fatal("opening a directory succeeded")
	}
	// A FIFO is refused without hanging.
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip(err)
	}
	for _, ro := range []bool{true, false} {
		if _, err := blockio.OpenFile(fifo, blockio.FileOptions{ReadOnly: ro}); !errors.Is(err, blockio.ErrInvalid) {
			t.Fatalf("opening a FIFO = %v, want ErrInvalid", err)
		}
	}
	if _, err := blockio.OpenFile("/dev/null", blockio.FileOptions{ReadOnly: true}); !errors.Is(err, blockio.ErrInvalid) {
		t.Fatalf("opening a character device = %v, want ErrInvalid", err)
	}
}

func TestFileReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.raw")
	f, err := blockio.CreateFile(path, 1<<20, blockio.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("hello"), 4096)
	f.Close()
	r, err := blockio.OpenFile(path, blockio.FileOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for name, err := range map[string]error{
		"write":    func() error { _, err := r.WriteAt([]byte{1}, 0); return err }(),
		"discard":  r.Discard(0, 512),
		"zero":     r.WriteZeroes(0, 512, false),
		"truncate": r.Truncate(2<<20, blockio.PreallocOff),
	} {
		if !errors.Is(err, blockio.ErrReadOnly) {
			t.Errorf("%s on read-only file = %v, want ErrReadOnly", name, err)
		}
	}
	b := make([]byte, 5)
	if _, err := r.ReadAt(b, 4096); err != nil || string(b) != "hello" {
		t.Fatalf("read = %q, %v", b, err)
	}
	if _, err := blockio.CreateFile(path, 1, blockio.FileOptions{ReadOnly: true}); !errors.Is(err, blockio.ErrInvalid) {
		t.Fatalf("CreateFile(ReadOnly) = %v", err)
	}
}

// A file that vanishes or shrinks underneath keeps working or fails with
// typed errors; nothing panics.
func TestFileVanishes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.raw")
	f, err := blockio.CreateFile(path, 1<<20, blockio.FileOptions{NoLock: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteAt(bytes.Repeat([]byte{7}, 8192), 1<<19)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	// The open descriptor still reaches the unlinked inode.
	b := make([]byte, 8192)
	if _, err := f.ReadAt(b, 1<<19); err != nil || b[0] != 7 {
		t.Fatalf("read after unlink = %v", err)
	}
	// Shrunk underneath: reads past the real end are zero-filled (as QEMU).
	g, err := blockio.CreateFile(path, 1<<20, blockio.FileOptions{NoLock: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	g.WriteAt(bytes.Repeat([]byte{9}, 4096), 1<<20-4096)
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := g.ReadAt(b[:4096], 1<<20-4096); err != nil || !blockio.IsZero(b[:4096]) {
		t.Fatalf("read past the shrunk end = %v", err)
	}
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.ReadAt(b, 0); !errors.Is(err, blockio.ErrClosed) {
		t.Fatalf("read after close = %v", err)
	}
	if err := g.Close(); !errors.Is(err, blockio.ErrClosed) {
		t.Fatalf("second close = %v", err)
	}
}

func TestFileCloseDuringIO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.raw")
	f, err := blockio.CreateFile(path, 4<<20, blockio.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			buf := make([]byte, 4096)
			for i := 0; i < 200; i++ {
				if _, err := f.WriteAt(buf, int64(g*4096)); err != nil {
					if !errors.Is(err, blockio.ErrClosed) {
						t.Errorf("write: %v", err)
					}
					return
				}
			}
		}(g)
	}
	f.Close()
	wg.Wait()
}

func TestFilePrealloc(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []blockio.Prealloc{blockio.PreallocOff, blockio.PreallocMetadata, blockio.PreallocFalloc, blockio.PreallocFull} {
		path := filepath.Join(dir, p.String()+".raw")
		f, err := blockio.CreateFile(path, 1<<20, blockio.FileOptions{Prealloc: p})
		if err != nil {
			t.Fatalf("%v: %v", p, err)
		}
		if err := f.Truncate(3<<20, p); err != nil {
			t.Fatalf("%v: grow: %v", p, err)
		}
		var st os.FileInfo
		if st, err = os.Stat(path); err != nil || st.Size() != 3<<20 || f.Size() != 3<<20 {
			t.Fatalf("%v: size %v %d", p, err, f.Size())
		}
		alloc := allocated(t, path)
		if a, err := f.AllocatedSize(); err != nil || a != alloc {
			t.Fatalf("%v: AllocatedSize() = %d, %v; stat says %d", p, a, err, alloc)
		}
		switch p {
		case blockio.PreallocFalloc, blockio.PreallocFull:
			if alloc < 3<<20 {
				t.Errorf("%v: only %d bytes allocated", p, alloc)
			}
		default:
			if alloc > 64<<10 {
				t.Errorf("%v: %d bytes allocated for a sparse file", p, alloc)
			}
		}
		if b := make([]byte, 3<<20); func() bool { f.ReadAt(b, 0); return !blockio.IsZero(b) }() {
			t.Errorf("%v: preallocated file not zero", p)
		}
		if p >= blockio.PreallocFalloc {
			if err := f.Truncate(1<<20, p); !errors.Is(err, blockio.ErrInvalid) {
				t.Errorf("%v: shrinking with preallocation = %v", p, err)
			}
		}
		f.Close()
	}
}

func TestFileStatusHoles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.raw")
	f, err := blockio.CreateFile(path, 4<<20, blockio.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteAt(bytes.Repeat([]byte{1}, 65536), 1<<20)
	e, err := f.BlockStatus(0, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	if e.Data || !e.Zero || !e.Allocated || e.Length != 1<<20 || e.Offset != 0 {
		t.Fatalf("hole extent = %+v", e)
	}
	e, _ = f.BlockStatus(1<<20, 3<<20)
	if !e.Data || e.Zero || e.Length != 65536 || e.Offset != 1<<20 {
		t.Fatalf("data extent = %+v", e)
	}
	if err := f.Discard(1<<20, 65536); err != nil {
		t.Fatal(err)
	}
	e, _ = f.BlockStatus(0, 4<<20)
	if e.Data || e.Length != 4<<20 {
		t.Fatalf("after discard = %+v", e)
	}
}

func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st os.FileInfo
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return blocksOf(st) * 512
}

func TestFileDirect4KConformance(t *testing.T) {
	defer blockio.SetTestDirectAlign(4096)()
	blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
		f := fileOpener(blockio.FileOptions{Direct: true})(t, size).(*blockio.File)
		if f.BlockSize() != 4096 {
			t.Fatalf("BlockSize() = %d", f.BlockSize())
		}
		return f
	}, blocktest.Options{Size: 2<<20 + 4096*3 + 1536})
}
