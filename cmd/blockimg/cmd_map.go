package main

import (
	"fmt"
	"math"

	"github.com/blocklayer/blocklayer/blockio"
)

// mapEntry is one line of qemu-img map.
type mapEntry struct {
	start, length int64
	depth         int
	present       bool
	zero, data    bool
	hasOffset     bool
	offset        int64
	file          string // host file holding the data (when hasOffset)
}

func extentEntry(x blockio.Extent) mapEntry {
	return mapEntry{start: x.Start, length: x.Length, depth: x.Depth, present: x.Allocated,
		zero: x.Zero, data: x.Data, hasOffset: x.Offset >= 0, offset: x.Offset}
}

// mergeable reports whether next continues cur (qemu-img map's rule: same
// flags and depth, and contiguous host offsets when they are known).
func (cur *mapEntry) mergeable(next *mapEntry) bool {
	if cur.length == 0 {
		return false
	}
	if cur.zero != next.zero || cur.data != next.data || cur.depth != next.depth ||
		cur.present != next.present || cur.hasOffset != next.hasOffset {
		return false
	}
	if cur.hasOffset && (cur.offset+cur.length != next.offset || cur.file != next.file) {
		return false
	}
	return true
}

func cmdMap(e *env, args []string) int {
	opts, operands, err := getopt(args, "f:hU", []longOpt{
		{name: "output", hasArg: true},
		{name: "start-offset", hasArg: true},
		{name: "max-length", hasArg: true},
		{name: "force-share", key: "U"},
		{name: "format", hasArg: true, key: "f"},
		{name: "help", key: "h"},
	})
	if err != nil {
		return e.usage("%v", err)
	}
	var fmtName string
	jsonOut := false
	var start, maxLen int64 = 0, -1
	o := openOptions{readOnly: true}
	for _, op := range opts {
		switch op.key {
		case "f":
			fmtName = op.val
		case "h":
			printHelp(e)
			return 0
		case "U":
			o.noLock = true
		case "--output":
			var ok bool
			if jsonOut, ok = e.parseOutput(op.val); !ok {
				return 1
			}
		case "--start-offset":
			var ok bool
			if start, ok = e.cvtnum("start offset", op.val, 0, math.MaxInt64); !ok {
				return 1
			}
		case "--max-length":
			var ok bool
			if maxLen, ok = e.cvtnum("max length", op.val, 0, math.MaxInt64); !ok {
				return 1
			}
		}
	}
	if len(operands) != 1 {
		return e.usage("Expecting one image file name")
	}
	path := operands[0]
	im, err := openImage(path, fmtName, o)
	if err != nil {
		e.errorf("%v", err)
		return 1
	}
	defer im.Close()

	// Host file names per backing-chain depth (the data file for images
	// with an external one), for the human output and qemu's merge rule.
	var names []string
	if infos, err := collectInfo(path, im.fmt.name, openOptions{readOnly: true, noBacking: true, noLock: o.noLock}, true); err == nil {
		for _, in := range infos {
			name := in.Filename
			if in.FormatSpecific != nil {
				if n, err := toQNode(in.FormatSpecific.Data); err == nil && n.kind == 'o' {
					if df := n.get("data-file"); df != nil && df.kind == 's' && df.str != "" {
						name = pathCombine(in.Filename, df.str)
					}
				}
			}
			names = append(names, name)
		}
	}
	extentFiler, _ := im.dev.(interface{ ExtentFileAt(off int64) string })
	fileName := func(x blockio.Extent) string {
		if x.Depth == 0 && extentFiler != nil {
			if f := extentFiler.ExtentFileAt(x.Start); f != "" {
				return f
			}
		}
		if x.Depth < len(names) {
			return names[x.Depth]
		}
		return path
	}

	length := im.dev.Size()
	if maxLen >= 0 && start <= length && maxLen < length-start {
		length = start + maxLen
	}
	if jsonOut {
		e.printf("[")
	} else {
		e.printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File")
	}
	dump := func(x *mapEntry, more bool) error {
		if jsonOut {
			e.printf(`{ "start": %d, "length": %d, "depth": %d, "present": %t, "zero": %t, "data": %t`,
				x.start, x.length, x.depth, x.present, x.zero, x.data)
			if x.hasOffset {
				e.printf(`, "offset": %d`, x.offset)
			}
			e.printf("}")
			if more {
				e.printf(",\n")
			}
			return nil
		}
		if x.data && !x.hasOffset {
			return fmt.Errorf("File contains external, encrypted or compressed clusters.")
		}
		if x.data && !x.zero {
			e.printf("%-16s%-16s%-16s%s\n", hexAlt(x.start), hexAlt(x.length), hexAlt(x.offset), x.file)
		}
		return nil
	}
	cur := mapEntry{start: start}
	for cur.start+cur.length < length {
		off := cur.start + cur.length
		x, err := blockio.BlockStatus(im.dev, off, length-off)
		if err != nil {
			e.errorf("Could not read file metadata: %s", describeErr(err))
			return 1
		}
		if x.Length <= 0 {
			e.errorf("Could not read file metadata: empty extent at offset %d", off)
			return 1
		}
		next := extentEntry(x)
		if next.hasOffset {
			next.file = fileName(x)
		}
		if cur.mergeable(&next) {
			cur.length += next.length
			continue
		}
		if cur.length > 0 {
			if err := dump(&cur, true); err != nil {
				e.errorf("%v", err)
				return 1
			}
		}
		cur = next
	}
	if err := dump(&cur, false); err != nil {
		e.errorf("%v", err)
		return 1
	}
	if jsonOut {
		e.printf("]\n")
	}
	return 0
}

// hexAlt formats like C's "%#x": 0 as "0", others with a 0x prefix.
func hexAlt(v int64) string {
	if v == 0 {
		return "0"
	}
	return fmt.Sprintf("%#x", v)
}
