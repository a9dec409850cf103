package vmdk

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/blocklayer/blocklayer/internal/qemutest"
)

// qemuInfoShape returns qemu-img info's JSON for path with the fields that
// legitimately differ between two images of the same shape removed
// (file names, sizes on disk, CIDs).
func qemuInfoShape(t *testing.T, path string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(qemutest.Run(t, "qemu-img", "info", "--output=json", path)), &v); err != nil {
		t.Fatal(err)
	}
	var strip func(m map[string]any)
	strip = func(m map[string]any) {
		delete(m, "filename")
		delete(m, "actual-size")
		delete(m, "cid")
		delete(m, "children")
		for _, x := range m {
			switch x := x.(type) {
			case map[string]any:
				strip(x)
			case []any:
				for _, e := range x {
					if em, ok := e.(map[string]any); ok {
						strip(em)
					}
				}
			}
		}
	}
	strip(v)
	return v
}

// TestOddSizesInterop creates every subformat at sizes that stress extent
// and grain-table boundaries (one sector, 2 GiB + 512, exactly 4 GiB),
// writes seeded random data at both ends and around 2 GiB, and checks the
// image with qemu-img check, qemu-img compare against the model, and
// qemu-img info against an image qemu-img creates with the same options.
func TestOddSizesInterop(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	subformats := []string{MonolithicSparse, MonolithicFlat, TwoGbMaxExtentSparse, TwoGbMaxExtentFlat, StreamOptimized}
	sizes := []int64{512, 2<<30 + 512, 4 << 30}
	if testing.Short() {
		sizes = []int64{512, 2<<30 + 512}
	}
	for si, sub := range subformats {
		for zi, size := range sizes {
			t.Run(fmt.Sprintf("%s-%d", sub, size), func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "ours.vmdk")
				img, err := CreateFile(path, size, CreateOptions{Subformat: sub})
				if err != nil {
					t.Fatal(err)
				}
				m := newSparseModel(size)
				rng := rand.New(rand.NewPCG(uint64(si), uint64(zi)))
				var offs []int64
				for _, base := range []int64{0, size/2 - 777, 2<<30 - 3000, size - 70000} {
					offs = append(offs, max(0, min(base, size-1)))
				}
				slices.Sort(offs) // increasing, for streamOptimized
				last := int64(-1)
				for _, off := range offs {
					if off <= last {
						continue
					}
					l := min(int64(rng.IntN(100<<10)+1), size-off)
					if sub == StreamOptimized && last >= 0 && off/65536 <= last/65536 {
						continue
					}
					p := make([]byte, l)
					for i := range p {
						p[i] = byte(rng.Uint32() | 1)
					}
					if _, err := img.WriteAt(p, off); err != nil {
						t.Fatalf("write %d+%d: %v", off, l, err)
					}
					m.write(p, off)
					last = off + l - 1
				}
				m.reopen(t, img, path).Close()
				qemuCheck(t, path)
				qemuCompare(t, path, m.raw(t))

				ref := filepath.Join(dir, "ref.vmdk")
				qemutest.Run(t, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat="+sub, ref, fmt.Sprint(size))
				if got, want := qemuInfoShape(t, path), qemuInfoShape(t, ref); !reflect.DeepEqual(got, want) {
					gj, _ := json.Marshal(got)
					wj, _ := json.Marshal(want)
					t.Errorf("qemu-img info of our image differs from qemu-img's own:\n ours %s\n qemu %s", gj, wj)
				}
			})
		}
	}
}
