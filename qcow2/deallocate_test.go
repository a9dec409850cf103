package qcow2

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// TestDeallocateEmptiesIntoBacking empties top images of several kinds
// with Deallocate and checks with qemu-img that they then read exactly as
// their backing file, keep no cluster of their own (map), have clean
// refcounts without leaks (check), and that an internal snapshot of the
// image still holds its data.
func TestDeallocateEmptiesIntoBacking(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	qemutest.Require(t, "qemu-io")
	dir := t.TempDir()
	t.Chdir(dir)
	qemutest.Run(t, "qemu-img", "create", "-q", "-f", "qcow2", "base.qcow2", "4M")
	qemutest.Run(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0xaa 0 4M", "base.qcow2")
	for _, c := range []struct {
		name     string
		opts     string
		snapshot bool
	}{
		{"v3", "", false},
		{"v2", "compat=0.10", false},
		{"512", "cluster_size=512", false},
		{"extl2", "extended_l2=on", false},
		{"snapshot", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			top := c.name + ".qcow2"
			args := []string{"create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2"}
			if c.opts != "" {
				args = append(args, "-o", c.opts)
			}
			qemutest.Run(t, "qemu-img", append(args, top, "4M")...)
			for _, w := range []string{"write -P 0x11 0 64k", "write -P 0x22 100k 3k", "write -c -P 0x33 1M 64k", "write -z 2M 128k", "write -P 0x44 3M 1M"} {
				qemutest.Run(t, "qemu-io", "-f", "qcow2", "-c", w, top)
			}
			if c.snapshot {
				qemutest.Run(t, "qemu-img", "snapshot", "-c", "s1", top)
			}
			img, err := OpenFile(top, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := img.Deallocate(0, img.Size()); err != nil {
				t.Fatal(err)
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			qemutest.Run(t, "qemu-img", "compare", "-q", top, "base.qcow2")
			out, stderr, err := qemutest.RunErr(t, "qemu-img", "check", top)
			if err != nil || !strings.Contains(out, "No errors were found") || strings.Contains(out, "leaked") {
				t.Errorf("check: %v\n%s%s", err, out, stderr)
			}
			m := qemutest.Run(t, "qemu-img", "map", "--output=json", top)
			if strings.Contains(m, `"depth": 0, "present": true`) {
				t.Errorf("clusters left in the image:\n%s", m)
			}
			if c.snapshot {
				qemutest.Run(t, "qemu-img", "snapshot", "-a", "s1", top)
				qemutest.Run(t, "qemu-io", "-f", "qcow2", "-c", "read -P 0x44 3M 1M", "-c", "read -P 0x11 0 64k", top)
			}
		})
	}
	// Partial clusters stay; a raw external data file cannot be unmapped.
	img, err := Create(blockio.NewMem(0), CreateOptions{Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if _, err := img.WriteAt([]byte{1}, 70000); err != nil {
		t.Fatal(err)
	}
	if err := img.Deallocate(65536, 65535); err != nil {
		t.Fatal(err)
	}
	if ext, _ := img.BlockStatus(65536, 65536); !ext.Allocated {
		t.Errorf("a partial-cluster Deallocate dropped the cluster")
	}
	if err := img.Deallocate(0, 1<<21); !errors.Is(err, blockio.ErrOutOfRange) {
		t.Errorf("out of range: %v", err)
	}
	raw, err := CreateFile(filepath.Join(dir, "raw.qcow2"), 1<<20, CreateOptions{DataFile: "raw.data", DataFileRaw: true})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.Deallocate(0, 65536); !errors.Is(err, blockio.ErrUnsupported) {
		t.Errorf("data_file_raw: %v", err)
	}
}
