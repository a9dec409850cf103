//go:build linux

package blockio_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/blockio/blocktest"
)

// loopDevice attaches a new size-byte file as a loop block device with
// the given logical sector size and detaches it at cleanup. It skips the
// test when loop devices cannot be used (not root, no losetup, no
// /dev/loop-control in a container).
func loopDevice(t *testing.T, size int64, sector int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("block device tests need root for losetup")
	}
	bin, err := exec.LookPath("losetup")
	if err != nil {
		t.Skip("losetup not found")
	}
	back := filepath.Join(t.TempDir(), "loop.img")
	if err := os.WriteFile(back, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(back, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-f", "--show", "-b", itoa(sector), back).CombinedOutput()
	if err != nil {
		t.Skipf("cannot attach a loop device: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(bin, "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestBlockDevice(t *testing.T) {
	for _, c := range []struct {
		name   string
		sector int
		direct bool
	}{{"cached", 512, false}, {"direct512", 512, true}, {"direct4096", 4096, true}} {
		t.Run(c.name, func(t *testing.T) {
			blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
				dev := loopDevice(t, size, c.sector)
				f, err := blockio.OpenFile(dev, blockio.FileOptions{Direct: c.direct})
				if err != nil {
					t.Fatal(err)
				}
				if !f.IsBlockDevice() || f.Size() != size {
					t.Fatalf("IsBlockDevice %v Size %d", f.IsBlockDevice(), f.Size())
				}
				if c.direct && f.BlockSize() != int64(c.sector) {
					t.Fatalf("BlockSize() = %d, want %d (BLKSSZGET)", f.BlockSize(), c.sector)
				}
				return f
			}, blocktest.Options{Size: 2 << 20, Short: true})
		})
	}
}

func TestBlockDeviceResize(t *testing.T) {
	dev := loopDevice(t, 1<<20, 512)
	f, err := blockio.OpenFile(dev, blockio.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(2<<20, blockio.PreallocOff); !errors.Is(err, blockio.ErrUnsupported) {
		t.Fatalf("growing a block device = %v", err)
	}
	if err := f.Truncate(1<<20, blockio.PreallocOff); err != nil {
		t.Fatalf("truncate to the same size = %v", err)
	}
}

// tinyTmpfs mounts a size-byte tmpfs for the test, skipping when mounting
// is not allowed.
func tinyTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+itoa(size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func TestFileNoSpace(t *testing.T) {
	dir := tinyTmpfs(t, 256<<10)
	f, err := blockio.CreateFile(filepath.Join(dir, "full.raw"), 4<<20, blockio.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = f.WriteAt(make([]byte, 1<<20), 0)
	var oe *blockio.OpError
	if !errors.Is(err, blockio.ErrNoSpace) || !errors.As(err, &oe) || oe.Path == "" {
		t.Fatalf("writing past the file system's capacity = %v, want ErrNoSpace", err)
	}
	t.Log(err)
	if err := f.Truncate(8<<20, blockio.PreallocFalloc); !errors.Is(err, blockio.ErrNoSpace) {
		t.Fatalf("falloc preallocation past capacity = %v, want ErrNoSpace", err)
	}
	if f.Size() != 4<<20 {
		t.Fatalf("size after failed preallocation = %d", f.Size())
	}
	if _, err := blockio.CreateFile(filepath.Join(dir, "full2.raw"), 8<<20, blockio.FileOptions{Prealloc: blockio.PreallocFull}); !errors.Is(err, blockio.ErrNoSpace) {
		t.Fatalf("full preallocation past capacity = %v, want ErrNoSpace", err)
	}
}
