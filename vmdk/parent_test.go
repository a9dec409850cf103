package vmdk

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

func qemuSHA(t *testing.T, path string) string {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "out.raw")
	qemutest.Run(t, "qemu-img", "convert", "-O", "raw", path, raw)
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestParentChain reads a qemu-made delta (parentFileNameHint, parentCID),
// writes through our own delta with COW from the parent, and checks
// qemu-img agrees; then modifies the base and expects the CID check to fail.
func TestParentChain(t *testing.T) {
	qemutest.Require(t, "qemu-io")
	dir := t.TempDir()
	base := filepath.Join(dir, "base.vmdk")
	qemutest.Run(t, "qemu-img", "create", "-q", "-f", "vmdk", base, "16M")
	qemutest.Run(t, "qemu-io", "-f", "vmdk", "-c", "write -P 0x61 0 1M", "-c", "write -P 0x62 8M 100k", base)
	mid := filepath.Join(dir, "mid.vmdk")
	qemutest.Run(t, "qemu-img", "create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", mid)
	qemutest.Run(t, "qemu-io", "-f", "vmdk", "-c", "write -P 0x71 4k 8k", "-c", "write -P 0x72 9M 64k", mid)

	img, err := OpenFile(mid, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sha256Device(t, img), qemuSHA(t, mid); got != want {
		t.Fatalf("qemu delta: sha %s want %s", got, want)
	}
	st, _ := img.BlockStatus(1<<20, 1<<20)
	if st.Depth != 1 || st.Allocated {
		t.Errorf("status over the parent: %+v", st)
	}
	img.Close()
	img, err = OpenFile(mid, Options{ReadOnly: true, Filename: mid})
	if err != nil {
		t.Fatal(err)
	}
	compareInfoJSON(t, img, []byte(qemutest.Run(t, "qemu-img", "info", "--output=json", mid)))
	img.Close()

	// Our own delta on top of mid.
	top := filepath.Join(dir, "top.vmdk")
	img, err = CreateFile(top, 0, CreateOptions{BackingFile: "mid.vmdk"})
	if err != nil {
		t.Fatal(err)
	}
	if img.Size() != 16<<20 {
		t.Fatalf("size from backing: %d", img.Size())
	}
	p := []byte(strings.Repeat("top!", 1000))
	for _, off := range []int64{100, 8<<20 + 5000, 9<<20 + 70000, 16<<20 - 4000} {
		if _, err := img.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := img.WriteZeroes(512<<10, 4096, false); err != nil {
		t.Fatal(err)
	}
	ours := sha256Device(t, img)
	gotMap := mapLike(t, img, img.Size())
	img.Close()
	var wantMap []qemuMapEntry
	if err := json.Unmarshal([]byte(qemutest.Run(t, "qemu-img", "map", "--output=json", top)), &wantMap); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotMap, wantMap) {
		gj, _ := json.Marshal(gotMap)
		wj, _ := json.Marshal(wantMap)
		t.Errorf("map of the chain differs:\n got %s\nwant %s", gj, wj)
	}
	if want := qemuSHA(t, top); ours != want {
		t.Fatalf("our delta: sha %s, qemu reads %s", ours, want)
	}
	qemuCheck(t, top)

	// Writing to mid changes its CID: top's parentCID no longer matches.
	m, err := OpenFile(mid, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.WriteAt([]byte{1}, 15<<20); err != nil {
		t.Fatal(err)
	}
	m.Close()
	img, err = OpenFile(top, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if _, err := img.ReadAt(make([]byte, 512), 2<<20); !errors.Is(err, blockio.ErrInvalid) {
		t.Fatalf("read through a modified parent: %v", err)
	}
}

func TestParentLoopRefused(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.vmdk")
	b := filepath.Join(dir, "b.vmdk")
	for _, c := range [][2]string{{a, "b.vmdk"}, {b, "a.vmdk"}} {
		flat := strings.TrimSuffix(c[0], ".vmdk") + "-flat.vmdk"
		os.WriteFile(flat, make([]byte, 1<<20), 0o644)
		d := "# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=1\ncreateType=\"vmfsSparse\"\nparentFileNameHint=\"" + c[1] + "\"\n" +
			"RW 2048 FLAT \"" + filepath.Base(flat) + "\" 0\n"
		os.WriteFile(c[0], []byte(d), 0o644)
	}
	_, err := OpenFile(a, Options{ReadOnly: true})
	if !errors.Is(err, blockio.ErrCorrupt) || !strings.Contains(err.Error(), "loop") {
		t.Fatalf("got %v, want a loop error", err)
	}
	// A self-reference too.
	d := "# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=1\ncreateType=\"monolithicFlat\"\nparentFileNameHint=\"./a.vmdk\"\nRW 2048 FLAT \"a-flat.vmdk\" 0\n"
	os.WriteFile(a, []byte(d), 0o644)
	if _, err := OpenFile(a, Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "loop") {
		t.Fatalf("self reference: %v", err)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
