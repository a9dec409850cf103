package vmdk

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/blockio/blocktest"
	"github.com/blocklayer/blocklayer/blockio/faultio"
)

func onBase(opts CreateOptions) blocktest.OnBase {
	return func(t *testing.T, base blockio.Device, size int64, create bool) blockio.Device {
		if create {
			opts.Size = size
			img, err := Create(base, opts)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
		img, err := Open(base, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
}

func TestConformance(t *testing.T) {
	for name, opts := range map[string]CreateOptions{
		"monolithicSparse": {},
		"zeroedGrain":      {ZeroedGrain: true},
	} {
		t.Run(name, func(t *testing.T) {
			blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
				opts.Size = size
				img, err := Create(blockio.NewMem(0), opts)
				if err != nil {
					t.Fatal(err)
				}
				return img
			}, blocktest.Options{OnBase: onBase(opts), BaseSize: 512})
		})
	}
}

// TestConformanceFiles runs the suite on file-backed multi-file
// subformats (descriptor + extent files).
func TestConformanceFiles(t *testing.T) {
	for _, sub := range []string{MonolithicFlat, TwoGbMaxExtentSparse, TwoGbMaxExtentFlat} {
		t.Run(sub, func(t *testing.T) {
			blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
				img, err := CreateFile(filepath.Join(t.TempDir(), "c.vmdk"), size, CreateOptions{Subformat: sub})
				if err != nil {
					t.Fatal(err)
				}
				return img
			}, blocktest.Options{Short: true})
		})
	}
}

func TestConformanceStreamReadOnly(t *testing.T) {
	var image []byte // built once, copied for every subtest
	blocktest.Run(t, func(t *testing.T, size int64) blockio.Device {
		if image == nil {
			mem := blockio.NewMem(0)
			img, err := Create(keepOpen{mem}, CreateOptions{Size: size, Subformat: StreamOptimized})
			if err != nil {
				t.Fatal(err)
			}
			writeSequential(t, img, halfRandom(11, size), 48<<10)
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			image = mem.Bytes()
		}
		mem := blockio.NewMem(int64(len(image)))
		mem.WriteAt(image, 0)
		r, err := Open(mem, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return readOnlyErr{r}
	}, blocktest.Options{ReadOnly: true})
}

// readOnlyErr maps the stream image's "unsupported" write errors to
// ErrReadOnly as a read-only device must report them... only for the
// suite's sake; see TestStreamMem for the real error.
type readOnlyErr struct{ *Image }

func (r readOnlyErr) WriteAt(p []byte, off int64) (int, error) {
	if _, err := r.Image.WriteAt(p, off); err != nil {
		return 0, blockio.ErrReadOnly
	}
	return len(p), nil
}

func (r readOnlyErr) WriteZeroes(off, n int64, mayUnmap bool) error {
	if err := r.Image.WriteZeroes(off, n, mayUnmap); err != nil {
		return blockio.ErrReadOnly
	}
	return nil
}

// snapDev takes a crash image before every write and flush that reaches
// the file, so a test can inspect a power cut at each point in between.
type snapDev struct {
	*faultio.CrashDevice
	rng     *rand.Rand
	snaps   []*blockio.Mem
	durable []map[int64]bool // grains known durable at each snapshot
	cur     map[int64]bool
}

func (d *snapDev) snap() {
	img, err := d.Crash(d.rng)
	if err != nil {
		panic(err)
	}
	d.snaps = append(d.snaps, img)
	c := make(map[int64]bool, len(d.cur))
	for k := range d.cur {
		c[k] = true
	}
	d.durable = append(d.durable, c)
}

func (d *snapDev) WriteAt(p []byte, off int64) (int, error) {
	d.snap()
	return d.CrashDevice.WriteAt(p, off)
}

func (d *snapDev) Flush() error {
	d.snap()
	return d.CrashDevice.Flush()
}

// TestCrashAllocation cuts power before every write and flush the image
// issues while grains (and, on a fresh extent, grain tables) are being
// allocated, and checks each crash image: it opens, a grain reads either
// as zeros or exactly as written (never a table entry pointing at
// unwritten data), grains flushed before the cut survive, and the tables
// are consistent.
func TestCrashAllocation(t *testing.T) {
	const size = 8 << 20
	const grain = 64 << 10
	base := &snapDev{CrashDevice: faultio.NewCrashMem(0), rng: rand.New(rand.NewPCG(7, 7)), cur: map[int64]bool{}}
	// A VMware-style extent without preallocated grain tables, so table
	// allocation is exercised too.
	// 16 entries per table: each table covers 1 MiB, so 8 tables.
	h := sparseLayout(size/512, false, false)
	h.NumGTEsPerGT = 16
	h.GDOffset = 21
	h.Flags &^= flagRGD
	h.RGDOffset = 0
	h.OverHead = 128
	if err := writeSparseExtent(base.CrashDevice, h, ""); err != nil {
		t.Fatal(err)
	}
	clear4 := make([]byte, 512)
	base.CrashDevice.WriteAt(clear4, 21*512) // empty directory
	base.CrashDevice.Flush()
	img, err := Open(base, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(42, 1))
	pattern := func(g int64) []byte {
		p := make([]byte, grain)
		for i := range p {
			p[i] = byte(g) | 1
		}
		return p
	}
	written := map[int64]bool{}
	var pendingG []int64
	for i := range 30 {
		g := rng.Int64N(size / grain)
		if written[g] {
			continue
		}
		if _, err := img.WriteAt(pattern(g), g*grain); err != nil {
			t.Fatal(err)
		}
		written[g] = true
		pendingG = append(pendingG, g)
		if i%9 == 8 {
			if err := img.Flush(); err != nil {
				t.Fatal(err)
			}
			for _, g := range pendingG {
				base.cur[g] = true
			}
			pendingG = nil
		}
	}
	img.Close()
	if len(base.snaps) < 40 {
		t.Fatalf("only %d crash points", len(base.snaps))
	}
	buf := make([]byte, grain)
	for k, snap := range base.snaps {
		r, err := Open(snap, Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("crash point %d: open: %v", k, err)
		}
		for g := range int64(size / grain) {
			r.ReadAt(buf, g*grain)
			if blockio.IsZero(buf) {
				if base.durable[k][g] {
					t.Fatalf("crash point %d: flushed grain %d lost", k, g)
				}
				continue
			}
			if !written[g] || string(buf) != string(pattern(g)) {
				t.Fatalf("crash point %d: grain %d holds data that was never completely written", k, g)
			}
		}
		res, err := r.Check(context.Background())
		if err != nil || res.Corruptions != 0 {
			t.Fatalf("crash point %d: check %+v %v", k, res, err)
		}
		r.Close()
	}
	t.Logf("%d crash points checked", len(base.snaps))
}
