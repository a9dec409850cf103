package vmdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// writeRaw stores the model as a raw file for qemu-img compare.
func writeRaw(t *testing.T, m model) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "model.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(len(m))); err != nil {
		t.Fatal(err)
	}
	const chunk = 1 << 20
	for off := 0; off < len(m); off += chunk {
		c := m[off:min(off+chunk, len(m))]
		if !isZero(c) {
			if _, err := f.WriteAt(c, int64(off)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return p
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func qemuCheck(t *testing.T, path string) {
	t.Helper()
	out, stderr, err := qemutest.RunErr(t, "qemu-img", "check", "-f", "vmdk", path)
	if err != nil {
		t.Fatalf("qemu-img check %s: %v\n%s%s", path, err, out, stderr)
	}
}

func qemuCompare(t *testing.T, path, raw string) {
	t.Helper()
	out, stderr, err := qemutest.RunErr(t, "qemu-img", "compare", "-f", "vmdk", "-F", "raw", path, raw)
	if err != nil {
		t.Fatalf("qemu-img compare: %v\n%s%s", err, out, stderr)
	}
}

// TestCreateInterop creates every subformat, writes a random pattern
// (past the first 2 GiB extent for twoGbMaxExtentSparse) and checks the
// result with our reader, qemu-img check and qemu-img compare.
func TestCreateInterop(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	cases := []struct {
		name string
		size int64
		opts CreateOptions
	}{
		{"monolithicSparse", 96 << 20, CreateOptions{}},
		{"zeroedGrain", 96 << 20, CreateOptions{ZeroedGrain: true}},
		{"lsilogic-compat6", 48 << 20, CreateOptions{AdapterType: "lsilogic", Compat6: true}},
		{"monolithicFlat", 48 << 20, CreateOptions{Subformat: MonolithicFlat}},
		{"twoGbMaxExtentFlat", 48 << 20, CreateOptions{Subformat: TwoGbMaxExtentFlat}},
		{"twoGbMaxExtentSparse", 5<<30 + 3<<20, CreateOptions{Subformat: TwoGbMaxExtentSparse}},
		{"twoGbMaxExtentSparse-zeroed", 5 << 30, CreateOptions{Subformat: TwoGbMaxExtentSparse, ZeroedGrain: true}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "d.vmdk")
			img, err := CreateFile(path, c.size, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			// A sparse model: only track touched windows for big disks.
			m := newSparseModel(c.size)
			rng := rand.New(rand.NewPCG(uint64(i), 77))
			n := 300
			if testing.Short() {
				n = 80
			}
			for k := range n {
				l := rng.Int64N(200<<10) + 1
				off := m.pickOffset(rng, l)
				if k%7 == 0 {
					if err := img.WriteZeroes(off, l, true); err != nil {
						t.Fatal(err)
					}
					m.zero(off, l)
					continue
				}
				p := make([]byte, l)
				for j := range p {
					p[j] = byte(k) ^ byte(j>>9) | 1
				}
				if _, err := img.WriteAt(p, off); err != nil {
					t.Fatalf("write %d+%d: %v", off, l, err)
				}
				m.write(p, off)
			}
			m.verify(t, img)
			img = m.reopen(t, img, path)
			compareInfoJSON(t, img, []byte(qemutest.Run(t, "qemu-img", "info", "--output=json", path)))
			var wantMap []qemuMapEntry
			if err := json.Unmarshal([]byte(qemutest.Run(t, "qemu-img", "map", "--output=json", path)), &wantMap); err != nil {
				t.Fatal(err)
			}
			if got := mapLike(t, img, img.Size()); !reflect.DeepEqual(got, wantMap) {
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(wantMap)
				t.Errorf("map differs:\n got %s\nwant %s", gj, wj)
			}
			res, err := img.Check(context.Background())
			// Zeroing an allocated grain into a zeroed-grain entry leaks it
			// (as in QEMU); nothing else may leak.
			if err != nil || res.Corruptions != 0 || (res.Leaks != 0 && !c.opts.ZeroedGrain) {
				t.Fatalf("check: %+v %v", res, err)
			}
			img.Close()
			qemuCheck(t, path)
			qemuCompare(t, path, m.raw(t))
			info := qemutest.Run(t, "qemu-img", "info", "--output=json", path)
			if !strings.Contains(info, fmt.Sprintf(`"virtual-size": %d`, c.size)) {
				t.Errorf("qemu-img info: %s", info)
			}
		})
	}
}

// sparseModel records writes in a map of 64 KiB pages so multi-GiB disks
// need little memory.
type sparseModel struct {
	size  int64
	pages map[int64][]byte
}

const pageSize = 64 << 10

func newSparseModel(size int64) *sparseModel {
	return &sparseModel{size: size, pages: map[int64][]byte{}}
}

// pickOffset chooses offsets clustered around a few hot spots, including
// both sides of every 2 GiB boundary and the end of the disk.
func (m *sparseModel) pickOffset(rng *rand.Rand, l int64) int64 {
	var base int64
	switch rng.IntN(4) {
	case 0:
		base = 0
	case 1:
		base = m.size - l
	case 2:
		b := int64(2<<30) * (rng.Int64N(max(m.size/(2<<30), 1)) + 1)
		base = b - rng.Int64N(l+1)
	default:
		base = rng.Int64N(m.size - l + 1)
	}
	base += rng.Int64N(1<<20) - 1<<19
	return max(0, min(base, m.size-l))
}

func (m *sparseModel) page(i int64) []byte {
	p := m.pages[i]
	if p == nil {
		p = make([]byte, pageSize)
		m.pages[i] = p
	}
	return p
}

func (m *sparseModel) write(p []byte, off int64) {
	for len(p) > 0 {
		pg := m.page(off / pageSize)
		n := copy(pg[off%pageSize:], p)
		p = p[n:]
		off += int64(n)
	}
}

func (m *sparseModel) zero(off, l int64) {
	for l > 0 {
		in := off % pageSize
		n := min(l, pageSize-in)
		if pg := m.pages[off/pageSize]; pg != nil {
			clear(pg[in : in+n])
		}
		off += n
		l -= n
	}
}

func (m *sparseModel) verify(t *testing.T, img *Image) {
	t.Helper()
	buf := make([]byte, pageSize)
	for i, pg := range m.pages {
		n := min(int64(pageSize), m.size-i*pageSize)
		if _, err := img.ReadAt(buf[:n], i*pageSize); err != nil {
			t.Fatal(err)
		}
		if string(buf[:n]) != string(pg[:n]) {
			t.Fatalf("content differs in page at %d", i*pageSize)
		}
	}
	// Some untouched pages must read as zeros.
	for k := int64(0); k < 64; k++ {
		i := (k * 7919 * pageSize) % m.size / pageSize
		if m.pages[i] != nil {
			continue
		}
		n := min(int64(pageSize), m.size-i*pageSize)
		if _, err := img.ReadAt(buf[:n], i*pageSize); err != nil {
			t.Fatal(err)
		}
		if !isZero(buf[:n]) {
			t.Fatalf("untouched page at %d not zero", i*pageSize)
		}
	}
}

// reopen closes img (which must succeed), opens path again read-only,
// checks it against m and returns it.
func (m *sparseModel) reopen(t *testing.T, img *Image, path string) *Image {
	t.Helper()
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	img, err := OpenFile(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	m.verify(t, img)
	return img
}

func (m *sparseModel) raw(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "model.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(m.size); err != nil {
		t.Fatal(err)
	}
	for i, pg := range m.pages {
		n := min(int64(pageSize), m.size-i*pageSize)
		if _, err := f.WriteAt(pg[:n], i*pageSize); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestQemuWritesOurImage: qemu-io writes into images we created (sparse
// with and without zeroed grains, twoGb sparse); we read qemu's result.
func TestQemuWritesOurImage(t *testing.T) {
	qemutest.Require(t, "qemu-io")
	for _, o := range []CreateOptions{{}, {ZeroedGrain: true}, {Subformat: TwoGbMaxExtentSparse}, {Subformat: MonolithicFlat}} {
		t.Run(o.Subformat+fmt.Sprint(o.ZeroedGrain), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "q.vmdk")
			img, err := CreateFile(path, 3<<30, o)
			if err != nil {
				t.Fatal(err)
			}
			img.WriteAt([]byte(strings.Repeat("ours", 5000)), 2<<30-1000)
			cid := img.CID()
			img.Close()
			qemutest.Run(t, "qemu-io", "-f", "vmdk", "-c", "write -P 0x5a 1M 200k", "-c", "write -z 2G 64k",
				"-c", "write -P 0x5b 3071M 1M", "-c", "write -P 0x5c 2047M 1536k", path)
			img, err = OpenFile(path, Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			if img.CID() == cid {
				t.Error("qemu's write did not change the CID we see")
			}
			m := newSparseModel(3 << 30)
			m.write([]byte(strings.Repeat("ours", 5000)), 2<<30-1000)
			fillB := func(c byte, off, n int64) { m.write(bytes.Repeat([]byte{c}, int(n)), off) }
			fillB(0x5a, 1<<20, 200<<10)
			m.zero(2<<30, 64<<10)
			fillB(0x5b, 3071<<20, 1<<20)
			fillB(0x5c, 2047<<20, 1536<<10)
			m.verify(t, img)
			res, err := img.Check(context.Background())
			if err != nil || res.Corruptions != 0 {
				t.Fatalf("check %+v %v", res, err)
			}
			img.Close()
			// Our CID rewrite (embedded or standalone descriptor) is what
			// qemu then reads.
			img, err = OpenFile(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := img.WriteAt([]byte{7}, 5<<20); err != nil {
				t.Fatal(err)
			}
			cid = img.CID()
			img.Close()
			var qi struct {
				Spec struct {
					Data struct {
						CID int64 `json:"cid"`
					} `json:"data"`
				} `json:"format-specific"`
			}
			json.Unmarshal([]byte(qemutest.Run(t, "qemu-img", "info", "--output=json", path)), &qi)
			if qi.Spec.Data.CID != int64(cid) {
				t.Errorf("qemu sees CID %x, we wrote %x", qi.Spec.Data.CID, cid)
			}
			qemuCheck(t, path)
		})
	}
}
