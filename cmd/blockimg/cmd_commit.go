package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/qcow2"
)

// cmdCommit implements "commit [-q] [-f fmt] [-t cache] [-b base] [-r
// rate_limit] [-d] [-p] filename" as qemu-img 7.2 does for qcow2 images
// whose backing chain is made of qcow2 and raw images: every range the
// chain above the base allocates is copied into the base (grown to the
// image's size when smaller), the base is flushed, and then, unless -d or
// -b is given, the image is emptied so that it reads through to its
// backing file.
func cmdCommit(e *env, args []string) int {
	opts, operands, err := getopt(args, "hf:ct:b:dpqr:", []longOpt{
		{name: "help", key: "h"},
		{name: "object", hasArg: true},
		{name: "image-opts"},
	})
	if err != nil {
		return e.usage("%v", err)
	}
	var fmtName, base, cache string
	haveBase, drop, showProgress := false, false, false
	var rateLimit int64 // bytes per second, 0 = unlimited
	for _, op := range opts {
		switch op.key {
		case "h":
			printHelp(e)
			return 0
		case "f":
			fmtName = op.val
		case "t":
			cache = op.val
		case "b":
			base, haveBase = op.val, true
			// Committing into a deeper image leaves the images in
			// between invalid: keep the top image's data (-b implies -d).
			drop = true
		case "d":
			drop = true
		case "p":
			showProgress = true
		case "q":
			e.quiet = true
		case "r":
			var ok bool
			if rateLimit, ok = e.cvtnum("rate limit", op.val, 0, math.MaxInt64); !ok {
				return 1
			}
		case "--object":
			e.errorf("--object is not supported")
			return 1
		case "--image-opts":
			e.errorf("--image-opts is not supported")
			return 1
		}
	}
	if e.quiet {
		showProgress = false
	}
	if len(operands) != 1 {
		return e.usage("Expecting one image file name")
	}
	if cache != "" && !validCacheMode(cache) {
		e.errorf("Invalid cache option: %s", cache)
		return 1
	}
	path := operands[0]

	probed := fmtName == ""
	if probed {
		hdr, err := readHeader(path)
		if err != nil {
			e.errorf("%v", openFailed(path, err))
			return 1
		}
		fmtName = probeFormat(hdr)
	}
	if fmtName != "qcow2" {
		// Formats without a backing file (raw) or whose chains blockimg
		// cannot commit: open them for qemu's messages.
		im, err := openImage(path, map[bool]string{true: "", false: fmtName}[probed], openOptions{})
		if err != nil {
			e.errorf("%v", err)
			return 1
		}
		defer im.Close()
		if im.probed && im.fmt.name == "raw" {
			warnProbedRaw(e, path)
		}
		if bh, ok := im.dev.(backingHolder); ok && bh.Backing() != nil {
			e.errorf("Committing %s images is not supported", im.fmt.name)
			return 1
		}
		if haveBase {
			e.errorf("Did not find '%s' in the backing chain of '%s'", base, path)
			return 1
		}
		e.errorf("Image does not have a backing file")
		return 1
	}
	if hdr, err := readHeader(path); err == nil && !qcow2.Probe(hdr) {
		e.errorf("Could not open '%s': Image is not in qcow2 format", path)
		return 1
	}

	ch := &commitChain{base: base, haveBase: haveBase}
	// Read-write, so that the image stays locked against other writers
	// until it is emptied and closed.
	top, err := qcow2.OpenFile(path, qcow2.Options{Filename: path, BackingOpener: ch.opener(path, 1)})
	if err != nil {
		ch.close()
		e.errorf("%v", openFailed(path, err))
		return 1
	}
	closeAll := func() error {
		err := top.Close()
		if cerr := ch.close(); err == nil {
			err = cerr
		}
		return err
	}
	if ch.baseDev == nil {
		closeAll()
		if haveBase {
			e.errorf("Did not find '%s' in the backing chain of '%s'", base, path)
		} else {
			e.errorf("Image does not have a backing file")
		}
		return 1
	}
	var prog *progress
	if showProgress {
		prog = newProgress(e)
		prog.print(0)
	}
	if err := commitCopy(top, ch, prog, rateLimit); err != nil {
		closeAll()
		e.errorf("%v", err)
		return 1
	}
	if !drop {
		// The base holds the data durably now (commitCopy flushed it):
		// empty the image in place, still holding its write lock, so that
		// it reads entirely from its backing file (QEMU's make_empty).
		if err := top.Deallocate(0, top.Size()); err != nil {
			closeAll()
			e.errorf("the data was committed, but the image could not be emptied: %s", describeErr(err))
			return 1
		}
		if err := top.Flush(); err != nil {
			closeAll()
			e.errorf("%s", describeErr(err))
			return 1
		}
	}
	if err := closeAll(); err != nil {
		e.errorf("%s", describeErr(err))
		return 1
	}
	if prog != nil {
		prog.finish()
	}
	e.printf("Image committed.\n")
	return 0
}

// validCacheMode reports whether s is a cache mode QEMU accepts.
func validCacheMode(s string) bool {
	switch s {
	case "none", "off", "writeback", "writethrough", "directsync", "unsafe":
		return true
	}
	return false
}

// commitChain opens the backing chain of the image being committed: the
// images above the base read-only, the base read-write (kept open by the
// chain so that it is written and flushed through one handle).
type commitChain struct {
	base     string
	haveBase bool
	baseDev  blockio.Device // the base, opened read-write
	depth    int            // the base's depth below the top image
	sizes    []int64        // sizes of the images above the base, top excluded
	closers  []blockio.Device
}

// noClose hands the base to the chain without giving it ownership.
type noClose struct{ blockio.Device }

func (noClose) Close() error { return nil }

// opener returns the backing opener for the image at imgPath, which is
// depth-1 levels below the top.
func (ch *commitChain) opener(imgPath string, depth int) func(name, format string, readOnly bool) (blockio.Device, error) {
	return func(name, format string, _ bool) (blockio.Device, error) {
		p := pathCombine(imgPath, name)
		if format == "" {
			hdr, err := readHeader(p)
			if err != nil {
				return nil, fmt.Errorf("qcow2: opening backing file: %w", &os.PathError{Op: "open", Path: p, Err: errors.Unwrap(err)})
			}
			format = probeFormat(hdr)
		}
		isBase := ch.baseDev == nil && (!ch.haveBase && depth == 1 || ch.haveBase && sameBacking(imgPath, name, ch.base, p))
		switch {
		case ch.baseDev != nil || (!isBase && format != "qcow2"):
			// Below the base, or a leaf that is not it: read-only.
			dev, err := openLeaf(p, format)
			if err != nil {
				return nil, err
			}
			return dev, nil
		case isBase:
			var dev blockio.Device
			var err error
			if format == "qcow2" {
				dev, err = qcow2.OpenFile(p, qcow2.Options{Filename: p})
			} else if format == "raw" || format == "file" {
				dev, err = blockio.OpenFile(p, blockio.FileOptions{})
			} else {
				err = &blockio.UnsupportedError{Feature: "backing file format " + format}
			}
			if err != nil {
				return nil, fmt.Errorf("qcow2: opening backing file: %w", err)
			}
			ch.baseDev, ch.depth = dev, depth
			ch.closers = append(ch.closers, dev)
			return noClose{dev}, nil
		default:
			img, err := qcow2.OpenFile(p, qcow2.Options{ReadOnly: true, Filename: p, BackingOpener: ch.opener(p, depth+1)})
			if err != nil {
				return nil, fmt.Errorf("qcow2: opening backing file %q: %w", name, err)
			}
			if ch.baseDev != nil {
				ch.sizes = append([]int64{img.Size()}, ch.sizes...)
			}
			return img, nil
		}
	}
}

// openLeaf opens a backing image read-only with its own chain.
func openLeaf(p, format string) (blockio.Device, error) {
	switch format {
	case "qcow2":
		img, err := qcow2.OpenFile(p, qcow2.Options{ReadOnly: true, Filename: p})
		if err != nil {
			return nil, fmt.Errorf("qcow2: opening backing file: %w", err)
		}
		return img, nil
	case "raw", "file":
		d, err := blockio.OpenFile(p, blockio.FileOptions{ReadOnly: true})
		if err != nil {
			return nil, fmt.Errorf("qcow2: opening backing file: %w", err)
		}
		return d, nil
	}
	return nil, &blockio.UnsupportedError{Feature: "backing file format " + format}
}

// sameBacking reports whether -b base names the backing file name (as
// stored in the image at imgPath, resolved to p), as QEMU's backing chain
// search does: the same string, or the same file once base is resolved
// relative to the image.
func sameBacking(imgPath, name, base, p string) bool {
	if base == name {
		return true
	}
	a, err := filepath.EvalSymlinks(pathCombine(imgPath, base))
	if err != nil {
		return false
	}
	b, err := filepath.EvalSymlinks(p)
	return err == nil && a == b
}

func (ch *commitChain) close() error {
	var first error
	for _, c := range ch.closers {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	ch.closers = nil
	return first
}

// commitBuf is the size of the pieces commit copies at a time.
const commitBuf = 2 << 20

// commitCopy copies into the base every range of top that an image above
// the base provides (data, or zeros), grows the base to top's size first
// when it is smaller, and flushes the base.
//
// With a rate limit (bytes per second, 0 for none) the data copied is
// paced: after each piece the copy waits until the bytes written so far
// are due.
func commitCopy(top *qcow2.Image, ch *commitChain, prog *progress, rateLimit int64) error {
	start := time.Now()
	var copied int64
	pace := func(n int64) {
		copied += n
		if rateLimit <= 0 {
			return
		}
		due := time.Duration(float64(copied) / float64(rateLimit) * float64(time.Second))
		if d := due - time.Since(start); d > 0 {
			time.Sleep(d)
		}
	}
	baseDev := ch.baseDev
	size := top.Size()
	baseSize := baseDev.Size()
	if baseSize < size {
		if err := blockio.Truncate(baseDev, size, blockio.PreallocOff); err != nil {
			return fmt.Errorf("Top image is larger than base image, and resize of base image failed: %s", describeErr(err))
		}
		// As QEMU does when growing an image with a backing file, make
		// the new area read as zeros (not as the base's own backing
		// file) with zero clusters.
		if bh, ok := baseDev.(backingHolder); ok && bh.Backing() != nil {
			if err := blockio.WriteZeroes(baseDev, baseSize, size-baseSize, true); err != nil {
				return fmt.Errorf("error while writing to the base image: %s", describeErr(err))
			}
		}
	}
	// Past the end of an image between top and base, top reads zeros
	// whatever the base holds: such ranges are committed as zeros.
	zeroFrom := size
	for _, s := range ch.sizes {
		zeroFrom = min(zeroFrom, s)
	}
	buf := make([]byte, commitBuf)
	for off := int64(0); off < size; {
		ext, err := top.BlockStatus(off, size-off)
		if err != nil {
			return fmt.Errorf("error while reading image metadata: %s", describeErr(err))
		}
		n := ext.Length
		if n <= 0 {
			return fmt.Errorf("error while reading image metadata at offset %d", off)
		}
		switch {
		case ext.Allocated && ext.Depth < ch.depth && ext.Zero && !ext.Data:
			if err := blockio.WriteZeroes(baseDev, off, n, true); err != nil {
				return fmt.Errorf("error while writing to the base image: %s", describeErr(err))
			}
		case ext.Allocated && ext.Depth < ch.depth:
			for done := int64(0); done < n; {
				c := min(n-done, commitBuf)
				if _, err := top.ReadAt(buf[:c], off+done); err != nil {
					return fmt.Errorf("error while reading image: %s", describeErr(err))
				}
				if _, err := baseDev.WriteAt(buf[:c], off+done); err != nil {
					return fmt.Errorf("error while writing to the base image: %s", describeErr(err))
				}
				done += c
				pace(c)
			}
		case !ext.Allocated && off+n > zeroFrom:
			zs := max(off, zeroFrom)
			if ze := off + n; ze > zs {
				if err := blockio.WriteZeroes(baseDev, zs, ze-zs, true); err != nil {
					return fmt.Errorf("error while writing to the base image: %s", describeErr(err))
				}
			}
		}
		off += n
		if prog != nil {
			prog.update(float64(off) * 100 / float64(size))
		}
	}
	if err := baseDev.Flush(); err != nil {
		return fmt.Errorf("error while flushing the base image: %s", describeErr(err))
	}
	return nil
}
