package main

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/blocklayer/blocklayer/blockio"
)

func cmdCreate(e *env, args []string) int {
	opts, operands, err := getopt(args, "F:b:f:ho:qu", []longOpt{
		{name: "help", key: "h"},
	})
	if err != nil {
		return e.usage("%v", err)
	}
	fmtName := "raw"
	p := &createParams{size: -1}
	for _, op := range opts {
		switch op.key {
		case "F":
			p.backingFmt = op.val
		case "b":
			p.backing = op.val
		case "f":
			fmtName = op.val
		case "h":
			printHelp(e)
			return 0
		case "o":
			if p.opts, err = parseOptList(p.opts, op.val); err != nil {
				e.errorf("%v", err)
				return 1
			}
		case "q":
			e.quiet = true
		case "u":
			p.unsafe = true
		}
	}
	if p.opts == nil {
		p.opts = &optList{used: map[string]bool{}}
	}
	if p.opts.wantsHelp() {
		f, err := lookupFormat(fmtName)
		if err != nil {
			e.errorf("%v", err)
			return 1
		}
		printOptionHelp(e, f)
		return 0
	}
	if len(operands) < 1 {
		return e.usage("Expecting image file name")
	}
	path := operands[0]
	if len(operands) > 1 {
		sz, ok := e.cvtnum("image size", operands[1], 0, math.MaxInt64)
		if !ok {
			return 1
		}
		p.size = sz
	}
	if len(operands) > 2 {
		return e.usage("Unexpected argument: %s", operands[2])
	}
	f, err := lookupFormat(fmtName)
	if err != nil {
		e.errorf("%v", err)
		return 1
	}
	dev, err := createImage(e, f, path, p)
	if err == nil {
		err = dev.Close()
	}
	if err != nil {
		e.errorf("%s: %v", path, err)
		return 1
	}
	return 0
}

// parseSizeArg parses create's SIZE operand with qemu-img's messages.
func parseSizeArg(s string) (int64, error) {
	v, _, err := parseSizeU(s)
	if err != nil && !errors.Is(err, errSizeRange) {
		return 0, fmt.Errorf("Invalid image size specified. You may use k, M, G, T, P or E suffixes for\nkilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.")
	}
	if err != nil || v > 1<<63-1 {
		return 0, fmt.Errorf("Invalid image size specified. Must be between 0 and %d.", int64(1<<63-1))
	}
	return int64(v), nil
}

// createImage fills in backing-derived defaults, prints qemu-img's
// "Formatting" line and creates the image, which it returns open.
func createImage(e *env, f *format, path string, p *createParams) (dev blockio.Device, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("%s", strings.TrimPrefix(describeErr(err), path+": "))
		}
	}()
	if v, ok := p.opts.get("backing_file"); ok && p.backing == "" {
		p.backing = v
	}
	if v, ok := p.opts.get("backing_fmt"); ok && p.backingFmt == "" {
		p.backingFmt = v
	}
	if p.size < 0 {
		if v, ok := p.opts.get("size"); ok {
			sz, err := parseSizeArg(v)
			if err != nil {
				return nil, err
			}
			p.size = sz
		}
	}
	if p.backing != "" {
		full := pathCombine(path, p.backing)
		if p.backingFmt == "" {
			hdr, err := readHeader(full)
			if err == nil {
				return nil, fmt.Errorf("Backing file specified without backing format\nDetected format of %s.", probeFormat(hdr))
			}
			return nil, fmt.Errorf("Backing file specified without backing format")
		}
		if !p.unsafe || p.size < 0 {
			bim, err := openImage(full, p.backingFmt, openOptions{readOnly: true, noLock: true})
			if err != nil {
				if p.unsafe {
					return nil, fmt.Errorf("Image creation needs a size parameter")
				}
				return nil, fmt.Errorf("%v\nCould not open backing image.", err)
			}
			if p.size < 0 {
				p.size = bim.dev.Size()
			}
			bim.Close()
		}
	}
	if p.size < 0 {
		return nil, fmt.Errorf("Image creation needs a size parameter")
	}
	if f.create == nil {
		return nil, fmt.Errorf("Format driver '%s' does not support image creation", f.name)
	}
	desc := ""
	if f.describe != nil {
		desc = " " + f.describe(p)
	}
	p.opts.get("size")
	if k := p.opts.unused(); k != "" {
		return nil, fmt.Errorf("Invalid parameter '%s'", k)
	}
	if !e.quiet {
		e.printf("Formatting '%s', fmt=%s%s\n", path, f.name, desc)
		e.out.Flush()
	}
	return f.create(path, p)
}
