package qcow2

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestConcurrentStress races the paths that share metadata:
//   - many goroutines writing disjoint pieces of the same unallocated
//     cluster that has backing data (each COW must see the others' bytes);
//   - partial writes (COW), zero writes and discards on different clusters
//     of the same L2 table, each goroutine verifying its own clusters;
//   - compressed and normal whole-cluster writes racing on the same
//     cluster (the result must be one of them, whole);
//   - concurrent Flush, BlockStatus and Check.
//
// The deterministic parts are compared with a model, then the image is
// checked by Check, qemu-img check and qemu-img compare.
func TestConcurrentStress(t *testing.T) {
	cases := []struct {
		name string
		opts CreateOptions
	}{
		{"c4k", CreateOptions{ClusterSize: 4096}},
		{"c16k-extl2-rc2", CreateOptions{ClusterSize: 16 << 10, ExtendedL2: true, RefcountBits: 2}},
		{"c4k-zstd-lazy", CreateOptions{ClusterSize: 4096, CompressionType: "zstd", LazyRefcounts: true}},
		{"c512-rc64", CreateOptions{ClusterSize: 512, RefcountBits: 64}},
	}
	rounds := 6
	if testing.Short() {
		rounds = 2
	}
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			const size = 4 << 20
			rng := rand.New(rand.NewPCG(uint64(ci), 11))
			bdata := make([]byte, size)
			for i := range bdata {
				bdata[i] = byte(i*7+i>>9) | 1 // no zero bytes: backing shows
			}
			if err := os.WriteFile(filepath.Join(dir, "base.raw"), bdata, 0o644); err != nil {
				t.Fatal(err)
			}
			o := c.opts
			o.BackingFile, o.BackingFormat = "base.raw", "raw"
			path := filepath.Join(dir, "img.qcow2")
			img, err := CreateFile(path, size, o)
			if err != nil {
				t.Fatal(err)
			}
			cs := img.ClusterSize()
			model := append([]byte(nil), bdata...)
			for r := range rounds {
				base := int64(r) * 40 * cs
				stressRound(t, img, model, base, cs, rng.Uint64())
			}
			got := make([]byte, size)
			if _, err := img.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if i := firstDiff(got, model); i >= 0 {
				t.Fatalf("content differs from the model at %#x", i)
			}
			res, err := img.Check(context.Background(), CheckOptions{})
			if err != nil || res.Corruptions != 0 || res.Leaks != 0 || res.CheckErrors != 0 {
				t.Fatalf("Check = %+v, %v", res, err)
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			qemuCheck(t, path)
			raw := filepath.Join(dir, "model.raw")
			if err := os.WriteFile(raw, model, 0o644); err != nil {
				t.Fatal(err)
			}
			qemuCompare(t, path, "qcow2", raw)
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// stressRound runs one burst of concurrent operations on the clusters
// starting at base and updates model.
func stressRound(t *testing.T, img *Image, model []byte, base, cs int64, seed uint64) {
	const workers = 12
	var wg sync.WaitGroup
	errs := make(chan error, 4*workers)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	// 1. Disjoint pieces of one unallocated cluster with backing data.
	shared := base
	piece := cs / workers &^ 7
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := bytes.Repeat([]byte{byte(0x10 + w)}, int(piece))
			off := shared + int64(w)*piece
			if _, err := img.WriteAt(p, off); err != nil {
				fail(err)
			}
		}()
	}
	for w := range workers {
		copy(model[shared+int64(w)*piece:], bytes.Repeat([]byte{byte(0x10 + w)}, int(piece)))
	}
	// 2. Each worker owns clusters base+1+w, base+1+w+workers, ... (all
	// in the same few L2 tables) and mixes COW writes, zero writes and
	// discards on them, verifying as it goes.
	own := func(w, k int) int64 { return base + cs*(1+int64(w)+int64(k)*workers) }
	const owned = 3
	local := make([][]byte, workers)
	for w := range workers {
		buf := make([]byte, owned*cs)
		for k := range owned {
			copy(buf[int64(k)*cs:], model[own(w, k):own(w, k)+cs])
		}
		local[w] = buf
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			m := local[w]
			for range 24 {
				k := r.IntN(owned)
				c := own(w, k)
				mc := m[int64(k)*cs : int64(k+1)*cs]
				switch op := r.IntN(6); op {
				case 0, 1: // partial write: COW from backing or in place
					a := r.Int64N(cs)
					n := 1 + r.Int64N(cs-a)
					p := bytes.Repeat([]byte{byte(r.IntN(255) + 1)}, int(n))
					if _, err := img.WriteAt(p, c+a); err != nil {
						fail(err)
						return
					}
					copy(mc[a:], p)
				case 2: // partial zero write
					a := r.Int64N(cs)
					n := 1 + r.Int64N(cs-a)
					if err := img.WriteZeroes(c+a, n, r.IntN(2) == 0); err != nil {
						fail(err)
						return
					}
					clear(mc[a : a+n])
				case 3: // whole-cluster zero
					if err := img.WriteZeroes(c, cs, r.IntN(2) == 0); err != nil {
						fail(err)
						return
					}
					clear(mc)
				case 4: // discard (whole cluster: reads zeros on v3)
					if err := img.Discard(c, cs); err != nil {
						fail(err)
						return
					}
					clear(mc)
				case 5: // compressed whole cluster
					p := make([]byte, cs)
					for i := range p {
						p[i] = byte(i/64 + w)
					}
					if err := img.WriteCompressed(p, c); err != nil {
						fail(err)
						return
					}
					copy(mc, p)
				}
				got := make([]byte, cs)
				if _, err := img.ReadAt(got, c); err != nil {
					fail(err)
					return
				}
				if !bytes.Equal(got, mc) {
					fail(fmt.Errorf("worker %d cluster %#x: read back differs at %d", w, c, firstDiff(got, mc)))
					return
				}
			}
		}()
	}
	// 3. Compressed vs normal whole-cluster writes on the same cluster.
	race := base + cs*(1+workers*owned)
	pa := make([]byte, cs)
	pb := bytes.Repeat([]byte{0xab}, int(cs))
	for i := range pa {
		pa[i] = byte(i / 32)
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 8 {
				var err error
				if w%2 == 0 {
					err = img.WriteCompressed(pa, race)
				} else {
					_, err = img.WriteAt(pb, race)
				}
				if err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	// 4. Flush, BlockStatus and Check running alongside.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 6 {
			if err := img.Flush(); err != nil {
				fail(err)
				return
			}
			if _, err := img.Info(); err != nil {
				fail(err)
				return
			}
			if _, err := img.BlockStatus(base, min(64*cs, img.Size()-base)); err != nil {
				fail(err)
				return
			}
			if i%3 == 0 {
				res, err := img.Check(context.Background(), CheckOptions{})
				// Check waits for requests in flight, so even an allocated
				// cluster not yet entered in its L2 table is never seen
				// as leaked.
				if err != nil || res.Corruptions != 0 || res.Leaks != 0 || res.CheckErrors != 0 {
					fail(fmt.Errorf("concurrent Check = %+v, %v", res, err))
					return
				}
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := range workers {
		for k := range owned {
			copy(model[own(w, k):], local[w][int64(k)*cs:int64(k+1)*cs])
		}
	}
	got := make([]byte, cs)
	if _, err := img.ReadAt(got, race); err != nil {
		t.Fatal(err)
	}
	switch {
	case bytes.Equal(got, pa):
		copy(model[race:], pa)
	case bytes.Equal(got, pb):
		copy(model[race:], pb)
	default:
		t.Fatalf("cluster %#x written concurrently compressed and plain holds neither", race)
	}
}
