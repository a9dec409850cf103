package vmdk

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// makeSESparse builds a 1 MiB seSparse extent: grains 0 and 1 allocated
// (at grain indexes 1 and 0, so out of order), grain 2 zero, grain 3
// SCSI-unmapped, grain 200 allocated at index 4100 (which exercises the
// split index encoding).
func makeSESparse() []byte {
	const grainsOff = 72
	b := make([]byte, (grainsOff+4101*8)*512)
	le := binary.LittleEndian
	h := []uint64{seConstMagic, seVersion, 2048, 8, 64, 0, 0, 0, 0, 0,
		1, 1, 2, 1, 3, 1, 4, 1, 5, 64, 69, 1, 70, 1, grainsOff, 4101 * 8}
	for i, v := range h {
		le.PutUint64(b[8*i:], v)
	}
	le.PutUint64(b[512:], seVolatileMagic)
	le.PutUint64(b[4*512:], 0x1000000000000000) // GD[0] -> GT index 0
	gt := func(g int, e uint64) { le.PutUint64(b[5*512+8*g:], e) }
	enc := func(idx uint64) uint64 { return 3<<60 | (idx&0xfff)<<48 | idx>>12 }
	gt(0, enc(1))
	gt(1, enc(0))
	gt(2, 2<<60)
	gt(3, 1<<60)
	gt(200, enc(4100))
	fill := func(idx int, c byte) {
		copy(b[(grainsOff+idx*8)*512:], bytes.Repeat([]byte{c}, 4096))
	}
	fill(1, 0xa0) // grain 0
	fill(0, 0xa1) // grain 1
	fill(4100, 0xa2)
	return b
}

func TestSESparse(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "se-sesparse.vmdk"), makeSESparse(), 0o644)
	p := filepath.Join(dir, "se.vmdk")
	os.WriteFile(p, []byte("# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"seSparse\"\n# Extent description\nRW 2048 SESPARSE \"se-sesparse.vmdk\"\n"), 0o644)
	img, err := OpenFile(p, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 1<<20)
	copy(want, bytes.Repeat([]byte{0xa0}, 4096))
	copy(want[4096:], bytes.Repeat([]byte{0xa1}, 4096))
	copy(want[200*4096:], bytes.Repeat([]byte{0xa2}, 4096))
	checkModel(t, img, want)
	if _, err := img.WriteAt([]byte{1}, 0); !errors.Is(err, blockio.ErrReadOnly) {
		t.Errorf("write: %v", err)
	}
	gotMap := mapLike(t, img, img.Size())
	img.Close()
	qemutest.Require(t, "qemu-img")
	if got := qemuSHA(t, p); got != sha256Hex(want) {
		t.Errorf("qemu reads %s", got)
	}
	var wantMap []qemuMapEntry
	json.Unmarshal([]byte(qemutest.Run(t, "qemu-img", "map", "--output=json", p)), &wantMap)
	if !reflect.DeepEqual(gotMap, wantMap) {
		t.Errorf("map %+v, qemu %+v", gotMap, wantMap)
	}
	img, err = OpenFile(p, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	compareInfoJSON(t, img, []byte(qemutest.Run(t, "qemu-img", "info", "--output=json", p)))
	img.Close()
	// A dirty journal is refused.
	b := makeSESparse()
	binary.LittleEndian.PutUint64(b[512+24:], 1)
	os.WriteFile(filepath.Join(dir, "se-sesparse.vmdk"), b, 0o644)
	if _, err := OpenFile(p, Options{ReadOnly: true}); !errors.Is(err, blockio.ErrUnsupported) {
		t.Errorf("dirty: %v", err)
	}
}
