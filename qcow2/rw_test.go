package qcow2

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/internal/qemutest"
)

type rwConfig struct {
	name    string
	create  CreateOptions
	size    int64
	backing string // "", "raw", "qcow2"
	nops    int    // 0: default
}

var rwConfigs = []rwConfig{
	{name: "c64k", size: 32 << 20},
	{name: "c512-rc64-growth", size: 8 << 20, create: CreateOptions{ClusterSize: 512, RefcountBits: 64}},
	{name: "c4k-v2", size: 16 << 20, create: CreateOptions{ClusterSize: 4096, Compat: "0.10"}},
	{name: "c64k-rc1", size: 32 << 20, create: CreateOptions{RefcountBits: 1}},
	{name: "c64k-rc8-zstd", size: 32 << 20, create: CreateOptions{RefcountBits: 8, CompressionType: "zstd"}},
	{name: "c2M", size: 24 << 20, create: CreateOptions{ClusterSize: 2 << 20}, nops: 120},
	{name: "c128k-extl2", size: 32 << 20, create: CreateOptions{ClusterSize: 128 << 10, ExtendedL2: true}},
	{name: "c64k-rawbacking", size: 32 << 20, backing: "raw"},
	{name: "c4k-qcow2backing", size: 16 << 20, create: CreateOptions{ClusterSize: 4096}, backing: "qcow2"},
	{name: "c64k-v2-backing", size: 16 << 20, create: CreateOptions{Compat: "0.10"}, backing: "qcow2"},
	{name: "c32k-rc2-lazy", size: 16 << 20, create: CreateOptions{ClusterSize: 32 << 10, RefcountBits: 2, LazyRefcounts: true}},
}

// qemuCheck runs qemu-img check and fails on errors or leaks.
func qemuCheck(t *testing.T, path string, args ...string) map[string]any {
	t.Helper()
	bin := qemutest.Require(t, "qemu-img")
	cmd := exec.Command(bin, append([]string{"check", "--output=json"}, append(args, path)...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	var res map[string]any
	if jerr := json.Unmarshal(out.Bytes(), &res); jerr != nil {
		t.Fatalf("qemu-img check %s: %v %v\n%s\n%s", path, err, jerr, out.String(), stderr.String())
	}
	for _, k := range []string{"corruptions", "leaks", "check-errors"} {
		if v, ok := res[k].(float64); ok && v != 0 {
			t.Errorf("qemu-img check %s: %s = %v\n%s\n%s", path, k, v, out.String(), stderr.String())
		}
	}
	if err != nil {
		t.Errorf("qemu-img check %s: %v\n%s", path, err, stderr.String())
	}
	return res
}

func qemuCompare(t *testing.T, img, fmtA, raw string) {
	t.Helper()
	out, stderr, err := qemutest.RunErr(t, "qemu-img", "compare", "-f", fmtA, "-F", "raw", img, raw)
	if err != nil {
		t.Errorf("qemu-img compare: %v\n%s%s", err, out, stderr)
	}
}

type model struct {
	mu   sync.Mutex
	data []byte
}

func pattern(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	switch rng.IntN(3) {
	case 0:
		v := byte(rng.IntN(255) + 1)
		for i := range b {
			b[i] = v
		}
	case 1:
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	default:
		// compressible but not uniform
		for i := range b {
			b[i] = byte(i/64) ^ byte(rng.IntN(2))
		}
	}
	return b
}

// randomOp applies one random operation to img and the model. Operations
// on disjoint regions (chosen by the caller's region) keep concurrent runs
// deterministic.
func randomOp(t *testing.T, img *Image, m *model, rng *rand.Rand, lo, hi int64, v2backing bool) {
	cs := img.ClusterSize()
	span := hi - lo
	switch op := rng.IntN(10); {
	case op < 5: // write
		n := 1 + rng.Int64N(min(span, 3*cs))
		off := lo + rng.Int64N(span-n+1)
		if rng.IntN(2) == 0 {
			off &^= 511
			n = max(512, n&^511)
			if off+n > hi {
				n = hi - off
			}
		}
		p := pattern(rng, int(n))
		if _, err := img.WriteAt(p, off); err != nil {
			t.Fatalf("write %d+%d: %v", off, n, err)
		}
		m.mu.Lock()
		copy(m.data[off:], p)
		m.mu.Unlock()
	case op < 7: // zero write
		n := 1 + rng.Int64N(min(span, 4*cs))
		off := lo + rng.Int64N(span-n+1)
		if rng.IntN(2) == 0 {
			off = (off + cs - 1) &^ (cs - 1)
			n = max(cs, n&^(cs-1))
			if off+n > hi {
				return
			}
		}
		if err := img.WriteZeroes(off, n, rng.IntN(2) == 0); err != nil {
			t.Fatalf("write zeroes %d+%d: %v", off, n, err)
		}
		m.mu.Lock()
		clear(m.data[off : off+n])
		m.mu.Unlock()
	case op < 8: // discard
		n := 1 + rng.Int64N(min(span, 4*cs))
		off := lo + rng.Int64N(span-n+1)
		if err := img.Discard(off, n); err != nil {
			t.Fatalf("discard %d+%d: %v", off, n, err)
		}
		if v2backing {
			return
		}
		m.mu.Lock()
		for c := (off + cs - 1) &^ (cs - 1); c+cs <= off+n || (c < off+n && off+n == img.Size()); c += cs {
			clear(m.data[c:min(c+cs, img.Size())])
		}
		m.mu.Unlock()
	case op < 9: // compressed write
		nc := 1 + rng.Int64N(2)
		off := (lo + rng.Int64N(span)) &^ (cs - 1)
		if off < lo {
			off += cs
		}
		n := min(nc*cs, hi-off)
		if n <= 0 || n&(cs-1) != 0 && off+n != img.Size() {
			return
		}
		p := pattern(rng, int(n))
		if err := img.WriteCompressed(p, off); err != nil {
			t.Fatalf("compressed write %d+%d: %v", off, n, err)
		}
		m.mu.Lock()
		copy(m.data[off:], p)
		m.mu.Unlock()
	default: // read and verify, sometimes flush
		if rng.IntN(4) == 0 {
			if err := img.Flush(); err != nil {
				t.Fatalf("flush: %v", err)
			}
			return
		}
		n := 1 + rng.Int64N(min(span, 3*cs))
		off := lo + rng.Int64N(span-n+1)
		p := make([]byte, n)
		if _, err := img.ReadAt(p, off); err != nil {
			t.Fatalf("read %d+%d: %v", off, n, err)
		}
		m.mu.Lock()
		want := m.data[off : off+n]
		if !bytes.Equal(p, want) {
			i := 0
			for p[i] == want[i] {
				i++
			}
			m.mu.Unlock()
			t.Fatalf("read %d+%d: mismatch at %d: got %#x want %#x", off, n, off+int64(i), p[i], want[i])
		}
		m.mu.Unlock()
	}
}

// makeBacking creates a backing file with random content in places and
// returns its name (relative to dir) and content.
func makeBacking(t *testing.T, dir, kind string, size int64, rng *rand.Rand) (string, []byte) {
	data := make([]byte, size)
	for i := 0; i < 16; i++ {
		off := rng.Int64N(size - 65536)
		n := 1 + rng.Int64N(65536)
		copy(data[off:], pattern(rng, int(n)))
	}
	switch kind {
	case "raw":
		if err := os.WriteFile(filepath.Join(dir, "base.raw"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		return "base.raw", data
	default:
		b, err := CreateFile(filepath.Join(dir, "base.qcow2"), size, CreateOptions{ClusterSize: 65536})
		if err != nil {
			t.Fatal(err)
		}
		for off := int64(0); off < size; off += 65536 {
			if !blockio.IsZero(data[off : off+65536]) {
				if _, err := b.WriteAt(data[off:off+65536], off); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		return "base.qcow2", data
	}
}

func TestRandomOps(t *testing.T) {
	qemutest.Require(t, "qemu-img")
	for ci, cfg := range rwConfigs {
		nops := 500
		if cfg.nops != 0 {
			nops = cfg.nops
		}
		if testing.Short() {
			nops /= 4
		}
		for _, conc := range []bool{false, true} {
			name := cfg.name
			if conc {
				name += "-concurrent"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				rng := rand.New(rand.NewPCG(uint64(ci), 42))
				m := &model{data: make([]byte, cfg.size)}
				opts := cfg.create
				if cfg.backing != "" {
					name, data := makeBacking(t, dir, cfg.backing, cfg.size, rng)
					opts.BackingFile = name
					opts.BackingFormat = cfg.backing
					copy(m.data, data)
				}
				path := filepath.Join(dir, "img.qcow2")
				img, err := CreateFile(path, cfg.size, opts)
				if err != nil {
					t.Fatal(err)
				}
				v2backing := opts.Compat == "0.10" && cfg.backing != ""
				if !conc {
					for range nops {
						randomOp(t, img, m, rng, 0, cfg.size, v2backing)
					}
				} else {
					const workers = 8
					var wg sync.WaitGroup
					region := cfg.size / workers
					for w := range workers {
						wg.Add(1)
						go func() {
							defer wg.Done()
							r := rand.New(rand.NewPCG(uint64(ci), uint64(w)))
							for range nops / workers * 2 {
								randomOp(t, img, m, r, int64(w)*region, int64(w+1)*region, v2backing)
							}
						}()
					}
					wg.Wait()
				}
				if err := img.Close(); err != nil {
					t.Fatal(err)
				}
				qemuCheck(t, path)
				raw := filepath.Join(dir, "model.raw")
				if err := os.WriteFile(raw, m.data, 0o644); err != nil {
					t.Fatal(err)
				}
				qemuCompare(t, path, "qcow2", raw)
				img2, err := OpenFile(path, Options{ReadOnly: true})
				if err != nil {
					t.Fatal(err)
				}
				defer img2.Close()
				got := make([]byte, cfg.size)
				if _, err := img2.ReadAt(got, 0); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, m.data) {
					t.Fatal(fmt.Sprintf("reopened image differs from model"))
				}
			})
		}
	}
}
