package main

import (
	"errors"
	"fmt"
	"math"
	"syscall"

	"github.com/blocklayer/blocklayer/blockio"
	"github.com/blocklayer/blocklayer/qcow2"
)

// cmdResize implements "resize [-f fmt] [--preallocation=mode] [-q]
// [--shrink] FILE [+|-]SIZE" with qemu-img 7.2's checks, messages and
// exit codes. As in qemu-img the size is always the last argument and is
// taken off before option parsing, so "-1G" needs no "--".
func cmdResize(e *env, args []string) int {
	if len(args) < 2 {
		return e.usage("Not enough arguments")
	}
	sizeArg := args[len(args)-1]
	opts, operands, err := getopt(args[:len(args)-1], "f:hq", []longOpt{
		{name: "help", key: "h"},
		{name: "preallocation", hasArg: true},
		{name: "shrink"},
	})
	if err != nil {
		return e.usage("%v", err)
	}
	var fmtName string
	shrink := false
	prealloc := blockio.PreallocOff
	for _, op := range opts {
		switch op.key {
		case "h":
			printHelp(e)
			return 0
		case "f":
			fmtName = op.val
		case "q":
			e.quiet = true
		case "--shrink":
			shrink = true
		case "--preallocation":
			if prealloc, err = blockio.ParsePrealloc(op.val); err != nil {
				e.errorf("Invalid preallocation mode '%s'", op.val)
				return 1
			}
		}
	}
	if len(operands) != 1 {
		return e.usage("Expecting image file name and size")
	}
	path := operands[0]

	// "+N" grows by N, "-N" shrinks by N, anything else is absolute.
	sign := int64(0)
	num := sizeArg
	if num != "" && (num[0] == '+' || num[0] == '-') {
		sign = 1
		if num[0] == '-' {
			sign = -1
		}
		num = num[1:]
	}
	n, hexSuffix, err := parseSizeU(num)
	switch {
	case errors.Is(err, errSizeRange):
		e.errorf("Value '%s' is out of range for parameter 'size'", num)
		return 1
	case err != nil:
		e.out.Flush()
		fmt.Fprintf(e.stderr, "blockimg: Parameter 'size' expects a non-negative number below 2^64\n"+
			"Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"+
			"and exabytes, respectively.\n")
		return 1
	}
	if hexSuffix {
		e.errorf("warning: Using a multiplier suffix on hex numbers is deprecated: %s", num)
	}

	im, err := openImage(path, fmtName, openOptions{})
	if err != nil {
		e.errorf("%v", err)
		return 1
	}
	defer im.Close()
	if im.probed && im.fmt.name == "raw" {
		warnProbedRaw(e, path)
	}
	dev := im.dev
	if pr, ok := dev.(*probedRaw); ok {
		dev = pr.Device
	}
	cur := dev.Size()
	// qemu does this arithmetic in int64: sizes of 2^63 and more wrap
	// to negative values and are reported as not positive.
	total := int64(n)
	if sign != 0 {
		total = cur + sign*int64(n)
	}
	if total <= 0 {
		e.errorf("New image size must be positive")
		return 1
	}
	if prealloc != blockio.PreallocOff && total <= cur {
		e.errorf("Preallocation can only be used for growing images")
		return 1
	}
	if total < cur && !shrink {
		e.errorf("Use the --shrink option to perform a shrink operation.")
		e.errorf("warning: Shrinking an image will delete all data beyond the shrunken image's end. " +
			"Before performing such an operation, make sure there is no important data there.")
		return 1
	}
	if err := resizeDevice(im.fmt.name, dev, total, prealloc); err != nil {
		e.errorf("%v", err)
		return 1
	}
	err = im.Close()
	im.dev = nil
	if err != nil {
		e.errorf("%s", describeErr(err))
		return 1
	}
	e.printf("Image resized.\n")
	return 0
}

// maxLength is the largest device length QEMU's block layer accepts
// (INT64_MAX rounded down to a multiple of 1 GiB).
const maxLength = math.MaxInt64 &^ (1<<30 - 1)

// resizeDevice truncates an opened image to size and words failures as
// the matching QEMU driver does.
func resizeDevice(fmtName string, dev blockio.Device, size int64, prealloc blockio.Prealloc) error {
	if size > maxLength {
		return fmt.Errorf("offset(%d) exceeds maximum(%d)", size, int64(maxLength))
	}
	switch d := dev.(type) {
	case *qcow2.Image:
		if size&511 != 0 {
			return errors.New("The new size must be a multiple of 512")
		}
		if size == d.Size() {
			return nil
		}
		err := d.Truncate(size, prealloc)
		var inv *blockio.InvalidError
		var uns *blockio.UnsupportedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &uns) && uns.Feature == "resizing a version 2 image with internal snapshots":
			return errors.New("Can't resize a v2 image which has snapshots")
		case errors.As(err, &inv) && (inv.What == "size" || inv.What == "qcow2 tables"):
			return errors.New("Failed to grow the L1 table: File too large")
		}
		return errors.New(describeErr(err))
	case *blockio.File:
		if fmtName != "raw" {
			break
		}
		if prealloc == blockio.PreallocMetadata {
			return fmt.Errorf("Unsupported preallocation mode: %s", prealloc)
		}
		if size == d.Size() {
			return nil
		}
		if err := d.Truncate(size, prealloc); err != nil {
			var errno syscall.Errno
			if errors.As(err, &errno) {
				if prealloc == blockio.PreallocOff {
					return fmt.Errorf("Could not resize file: %s", capitalize(errno.Error()))
				}
				return fmt.Errorf("Could not preallocate new data: %s", capitalize(errno.Error()))
			}
			return errors.New(describeErr(err))
		}
		return nil
	}
	return errors.New("Image format driver does not support resize")
}

// warnProbedRaw prints qemu's warning about a writable raw image whose
// format was guessed.
func warnProbedRaw(e *env, path string) {
	e.out.Flush()
	fmt.Fprintf(e.stderr, "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"+
		"         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n"+
		"         Specify the 'raw' format explicitly to remove the restrictions.\n", path)
}
