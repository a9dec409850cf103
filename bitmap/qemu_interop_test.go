package bitmap_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/blocklayer/blocklayer/bitmap"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// qcowBitmap is one entry of a qcow2 bitmap directory (test-only parser;
// the real one belongs to package qcow2).
type qcowBitmap struct {
	name     string
	granBits uint
	flags    uint32
	table    []uint64 // raw bitmap table entries
}

func readQcow2Bitmaps(t *testing.T, img []byte) (size int64, clusterSize int64, bms []qcowBitmap) {
	t.Helper()
	be := binary.BigEndian
	if string(img[:4]) != "QFI\xfb" || be.Uint32(img[4:]) != 3 {
		t.Fatal("not a qcow2 v3 image")
	}
	clusterSize = 1 << be.Uint32(img[20:])
	size = int64(be.Uint64(img[24:]))
	off := int(be.Uint32(img[100:]))
	for {
		typ, ln := be.Uint32(img[off:]), int(be.Uint32(img[off+4:]))
		data := img[off+8 : off+8+ln]
		off += 8 + (ln+7)&^7
		if typ == 0 {
			break
		}
		if typ != 0x23852875 {
			continue
		}
		nb := int(be.Uint32(data))
		dir := int(be.Uint64(data[16:]))
		for range nb {
			e := img[dir:]
			tableOff, tableSize := be.Uint64(e), int(be.Uint32(e[8:]))
			nameSize, extra := int(be.Uint16(e[18:])), int(be.Uint32(e[20:]))
			bm := qcowBitmap{
				name:     string(e[24+extra : 24+extra+nameSize]),
				granBits: uint(e[17]),
				flags:    be.Uint32(e[12:]),
			}
			for i := range tableSize {
				bm.table = append(bm.table, be.Uint64(img[int(tableOff)+8*i:]))
			}
			bms = append(bms, bm)
			dir += (24 + extra + nameSize + 7) &^ 7
		}
	}
	return size, clusterSize, bms
}

// loadQcow2Bitmap deserializes a qcow2 bitmap cluster by cluster, the way
// package qcow2 is expected to.
func loadQcow2Bitmap(t *testing.T, img []byte, size, cs int64, q qcowBitmap) *bitmap.HBitmap {
	t.Helper()
	h, err := bitmap.New(size, 1<<q.granBits)
	if err != nil {
		t.Fatal(err)
	}
	cover := h.SerializationCoverage(cs)
	for i, e := range q.table {
		off := int64(i) * cover
		n := min(cover, size-off)
		data := int64(e & 0x00fffffffffffe00)
		switch {
		case data != 0:
			err = h.DeserializePart(img[data:data+cs], off, n)
		case e&1 == 1:
			err = h.DeserializeOnes(off, n)
		default:
			err = h.DeserializeZeroes(off, n)
		}
		if err != nil {
			t.Fatalf("%s cluster %d: %v", q.name, i, err)
		}
	}
	h.DeserializeFinish()
	return h
}

type extent struct{ off, n int64 }

// nbdDirtyMap returns QEMU's view of a bitmap: the dirty extents qemu-nbd
// exports in the qemu:dirty-bitmap:<name> metadata context.
func nbdDirtyMap(t *testing.T, img string, names ...string) map[string][]extent {
	t.Helper()
	nbd := qemutest.Require(t, "qemu-nbd")
	info := qemutest.Require(t, "nbdinfo")
	dir, err := os.MkdirTemp("", "bmnbd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	args := []string{"-r", "-t", "-f", "qcow2", "-k", sock}
	for _, n := range names {
		args = append(args, "-B", n)
	}
	cmd := exec.Command(nbd, append(args, img)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 200 {
			t.Fatalf("qemu-nbd did not start: %s", stderr.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	out := make(map[string][]extent)
	for _, n := range names {
		m := qemutest.Run(t, info, "--map=qemu:dirty-bitmap:"+n, "nbd+unix:///?socket="+sock)
		sc := bufio.NewScanner(strings.NewReader(m))
		var ext []extent
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 3 || f[2] != "1" {
				continue
			}
			o, _ := strconv.ParseInt(f[0], 10, 64)
			l, _ := strconv.ParseInt(f[1], 10, 64)
			if k := len(ext); k > 0 && ext[k-1].off+ext[k-1].n == o {
				ext[k-1].n += l // NBD may split a run into several replies
			} else {
				ext = append(ext, extent{o, l})
			}
		}
		out[n] = ext
	}
	return out
}

func dirtyAreas(h *bitmap.HBitmap) []extent {
	var ext []extent
	it := h.Iterator(0)
	for {
		off, n, ok := it.NextArea(0)
		if !ok {
			return ext
		}
		ext = append(ext, extent{off, n})
	}
}

// TestQEMUBitmapInterop: QEMU records writes in persistent qcow2 bitmaps;
// we load them with DeserializePart and must see exactly QEMU's bits. Then
// we write our own serialization into the bitmap data clusters and QEMU
// (qemu-nbd's dirty-bitmap export) must read exactly our bits.
func TestQEMUBitmapInterop(t *testing.T) {
	qimg := qemutest.Require(t, "qemu-img")
	qio := qemutest.Require(t, "qemu-io")
	img := filepath.Join(t.TempDir(), "bm.qcow2")
	const size = 1 << 30
	qemutest.Run(t, qimg, "create", "-f", "qcow2", img, strconv.Itoa(size))
	qemutest.Run(t, qimg, "bitmap", "--add", "--granularity", "512", img, "b512")
	qemutest.Run(t, qimg, "bitmap", "--add", "--granularity", "65536", img, "b64k")
	writes := []extent{{0, 4096}, {1 << 20, 200 << 10}, {700 << 20, 512}, {size - 1536, 1000}, {300<<20 + 100, 70000}}
	var args []string
	for _, w := range writes {
		args = append(args, "-c", fmt.Sprintf("write %d %d", w.off, w.n))
	}
	qemutest.Run(t, qio, append([]string{"-f", "qcow2"}, append(args, img)...)...)

	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	vsize, cs, qbms := readQcow2Bitmaps(t, raw)
	if len(qbms) != 2 {
		t.Fatalf("%d bitmaps in the image", len(qbms))
	}
	got := map[string]*bitmap.HBitmap{}
	for _, q := range qbms {
		h := loadQcow2Bitmap(t, raw, vsize, cs, q)
		want, _ := bitmap.New(vsize, 1<<q.granBits)
		for _, w := range writes {
			want.Set(w.off, w.n)
		}
		if !h.Equal(want) {
			t.Fatalf("%s: loaded %v, want %v", q.name, dirtyAreas(h), dirtyAreas(want))
		}
		got[q.name] = h
	}
	qemuView := nbdDirtyMap(t, img, "b512", "b64k")
	for name, h := range got {
		if fmt.Sprint(qemuView[name]) != fmt.Sprint(dirtyAreas(h)) {
			t.Fatalf("%s: qemu exports %v, we loaded %v", name, qemuView[name], dirtyAreas(h))
		}
	}

	// Reverse: random bits of ours in every allocated data cluster of b512.
	var q qcowBitmap
	for _, b := range qbms {
		if b.name == "b512" {
			q = b
		}
	}
	ours, _ := bitmap.New(vsize, 512)
	cover := ours.SerializationCoverage(cs)
	rng := rand.New(rand.NewPCG(5, 6))
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i, e := range q.table {
		data := int64(e & 0x00fffffffffffe00)
		if data == 0 {
			continue
		}
		off := int64(i) * cover
		n := min(cover, vsize-off)
		for range 300 {
			ours.Set(off+rng.Int64N(n), 1+rng.Int64N(1<<20))
		}
		ours.Reset(off+n, cover) // keep the run inside this cluster
		ours.Set(off+n-512, 512) // and dirty its very last group
		buf := make([]byte, cs)
		if err := ours.SerializePart(buf, off, n); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(buf, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	qemuView = nbdDirtyMap(t, img, "b512")
	if fmt.Sprint(qemuView["b512"]) != fmt.Sprint(dirtyAreas(ours)) {
		t.Fatalf("qemu reads %d extents %v...\nwe wrote %d extents %v...", len(qemuView["b512"]), head(qemuView["b512"]), len(dirtyAreas(ours)), head(dirtyAreas(ours)))
	}
	t.Logf("QEMU read back %d dirty extents we serialized", len(qemuView["b512"]))
}

func head(e []extent) []extent { return e[:min(len(e), 8)] }
