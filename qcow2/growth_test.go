package qcow2

import (
	"bytes"
	"path/filepath"
	"testing"
)

// TestRefTableGrowth fills an image with 512-byte clusters and 64-bit
// refcounts so the refcount table must grow several times.
func TestRefTableGrowth(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.qcow2")
	size := int64(16 << 20)
	img, err := CreateFile(path, size, CreateOptions{ClusterSize: 512, RefcountBits: 64})
	if err != nil {
		t.Fatal(err)
	}
	startRT := img.h.rtClusters
	buf := bytes.Repeat([]byte{0x5a}, 64<<10)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := img.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	if img.h.rtClusters <= startRT {
		t.Errorf("refcount table did not grow: %d clusters", img.h.rtClusters)
	}
	t.Logf("refcount table %d -> %d clusters at %#x", startRT, img.h.rtClusters, img.h.rtOffset)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	res := qemuCheck(t, path)
	t.Logf("qemu-img check: %v", res)
}
