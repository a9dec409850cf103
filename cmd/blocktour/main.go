// Command blocktour is a runnable tour of blocklayer: it creates a qcow2
// image, writes to it from several goroutines (plain, zero, compressed and
// discard requests), flushes, reopens it read-only, verifies every byte
// against an in-memory model, and prints the image's info and map as
// qemu-img would. When qemu-img is installed it also runs `qemu-img check`
// and `qemu-img compare` on the result.
//
// Usage:
//
//	blocktour [-dir DIR] [-size BYTES] [-cluster BYTES] [-keep]
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/qcow2"
)

func main() {
	dir := flag.String("dir", "", "directory for the image (default: a temporary directory)")
	size := flag.Int64("size", 256<<20, "virtual size in bytes")
	cluster := flag.Int64("cluster", 64<<10, "cluster size in bytes")
	keep := flag.Bool("keep", false, "keep the image instead of removing it")
	flag.Parse()
	if err := run(*dir, *size, *cluster, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "blocktour:", err)
		os.Exit(1)
	}
}

type op struct {
	kind string // "write", "zero", "compressed", "discard"
	off  int64
	data []byte
	n    int64
}

func run(dir string, size, cluster int64, keep bool) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "blocktour-")
		if err != nil {
			return err
		}
		if !keep {
			defer os.RemoveAll(d)
		}
		dir = d
	}
	path := filepath.Join(dir, "tour.qcow2")
	fmt.Printf("1. create %s: qcow2, %d bytes, cluster_size=%d\n", path, size, cluster)
	img, err := qcow2.CreateFile(path, size, qcow2.CreateOptions{ClusterSize: cluster})
	if err != nil {
		return err
	}

	// The model is what the guest should see afterwards.
	model := blockio.NewMem(size)
	ops := plan(size, cluster)
	fmt.Printf("2. %d requests from 4 goroutines (writes, zero writes, compressed writes, discards)\n", len(ops))
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(ops); i += 4 {
				if err := apply(img, ops[i]); err != nil {
					errs <- fmt.Errorf("%s at %d: %w", ops[i].kind, ops[i].off, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		img.Close()
		return err
	}
	for _, o := range ops { // the goroutines touch disjoint clusters, so order is free
		if err := apply(model, o); err != nil {
			return err
		}
	}
	fmt.Println("3. flush (durable on return) and close")
	if err := img.Flush(); err != nil {
		return err
	}
	if err := img.Close(); err != nil {
		return err
	}

	fmt.Println("4. reopen read-only and verify every byte against the model")
	img, err = qcow2.OpenFile(path, qcow2.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer img.Close()
	got, want := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(got)) {
		n := min(int64(len(got)), size-off)
		if _, err := img.ReadAt(got[:n], off); err != nil {
			return err
		}
		if _, err := model.ReadAt(want[:n], off); err != nil {
			return err
		}
		if !bytes.Equal(got[:n], want[:n]) {
			return fmt.Errorf("content mismatch in the 1 MiB block at offset %d", off)
		}
	}
	fmt.Println("   all", size, "bytes match")

	info, err := img.Info()
	if err != nil {
		return err
	}
	js, _ := json.MarshalIndent(info, "   ", "  ")
	fmt.Printf("5. info:\n   %s\n", js)
	fmt.Println("6. map (allocation status; first 8 allocated extents):")
	shown, total := 0, 0
	for off := int64(0); off < size; {
		e, err := img.BlockStatus(off, size-off)
		if err != nil {
			return err
		}
		if e.Data || e.Zero && e.Allocated {
			total++
		}
		if (e.Data || e.Zero && e.Allocated) && shown < 8 {
			shown++
			fmt.Printf("   %#010x +%-9d data=%-5v zero=%-5v offset=%d\n", e.Start, e.Length, e.Data, e.Zero, e.Offset)
		}
		off = e.End()
	}
	fmt.Printf("   ... %d allocated extents in all\n", total)

	if q, err := exec.LookPath("qemu-img"); err == nil {
		fmt.Println("7. qemu-img's verdict:")
		out, err := exec.Command(q, "check", "-U", path).CombinedOutput()
		fmt.Printf("   qemu-img check: %s", indent(out))
		if err != nil {
			return fmt.Errorf("qemu-img check failed: %v", err)
		}
		raw := filepath.Join(dir, "model.raw")
		if err := os.WriteFile(raw, model.Bytes(), 0o644); err != nil {
			return err
		}
		out, err = exec.Command(q, "compare", "-U", "-f", "qcow2", "-F", "raw", path, raw).CombinedOutput()
		fmt.Printf("   qemu-img compare with the model: %s", indent(out))
		if err != nil {
			return fmt.Errorf("qemu-img compare failed: %v", err)
		}
	} else {
		fmt.Println("7. qemu-img not installed: skipping its check (apt-get install qemu-utils)")
	}
	fmt.Println("tour complete")
	return nil
}

func indent(b []byte) string {
	return string(bytes.ReplaceAll(b, []byte("\n"), []byte("\n   "))) + "\n"
}

// plan builds a deterministic mix of requests on disjoint clusters.
func plan(size, cluster int64) []op {
	rng := rand.New(rand.NewPCG(1, 2))
	clusters := size / cluster
	perm := rng.Perm(int(min(clusters, 4096)))
	var ops []op
	for i, c := range perm[:min(len(perm), 400)] {
		off := int64(c) * cluster
		switch i % 8 {
		case 6:
			ops = append(ops, op{kind: "zero", off: off, n: cluster})
		case 7:
			ops = append(ops, op{kind: "discard", off: off, n: cluster})
		case 5:
			d := bytes.Repeat([]byte{byte(i)}, int(cluster))
			ops = append(ops, op{kind: "compressed", off: off, data: d})
		default:
			n := 512 + rng.Int64N(cluster-512)
			d := make([]byte, n)
			for j := range d {
				d[j] = byte(rng.Uint32())
			}
			ops = append(ops, op{kind: "write", off: off + rng.Int64N(cluster-n+1), data: d})
		}
	}
	return ops
}

func apply(dev blockio.Device, o op) error {
	switch o.kind {
	case "zero":
		return blockio.WriteZeroes(dev, o.off, o.n, true)
	case "discard":
		return blockio.Discard(dev, o.off, o.n)
	case "compressed":
		if c, ok := dev.(interface{ WriteCompressed([]byte, int64) error }); ok {
			return c.WriteCompressed(o.data, o.off)
		}
	}
	_, err := dev.WriteAt(o.data, o.off)
	return err
}
