package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/blocklayer/blocklayer/blockio"
)

// maxChainDepth bounds --backing-chain walks.
const maxChainDepth = 64

func cmdInfo(e *env, args []string) int {
	opts, operands, err := getopt(args, "f:hU", []longOpt{
		{name: "output", hasArg: true},
		{name: "backing-chain"},
		{name: "force-share", key: "U"},
		{name: "format", hasArg: true, key: "f"},
		{name: "help", key: "h"},
	})
	if err != nil {
		return e.usage("%v", err)
	}
	var fmtName string
	jsonOut, chain := false, false
	o := openOptions{readOnly: true, noBacking: true}
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
		case "--backing-chain":
			chain = true
		}
	}
	if len(operands) != 1 {
		return e.usage("Expecting one image file name")
	}
	infos, err := collectInfo(operands[0], fmtName, o, chain)
	if err != nil {
		e.errorf("%v", err)
		return 1
	}
	if jsonOut {
		var n *qnode
		if chain {
			n = &qnode{kind: 'a'}
			for i := range infos {
				n.items = append(n.items, infoNode(&infos[i]))
			}
		} else {
			n = infoNode(&infos[0])
		}
		writeQJSON(e.out, n)
		return 0
	}
	for i := range infos {
		if i > 0 {
			e.printf("\n")
		}
		dumpHumanInfo(e, &infos[i])
	}
	return 0
}

// collectInfo describes path and, with chain, its backing files.
func collectInfo(path, fmtName string, o openOptions, chain bool) ([]blockio.ImageInfo, error) {
	var out []blockio.ImageInfo
	seen := map[string]bool{}
	for depth := 0; ; depth++ {
		if abs, err := filepath.Abs(path); err == nil {
			if seen[abs] {
				return nil, fmt.Errorf("Backing file '%s' creates an infinite loop.", path)
			}
			seen[abs] = true
		}
		if depth > maxChainDepth {
			return nil, fmt.Errorf("Backing chain of '%s' is longer than %d images", path, maxChainDepth)
		}
		im, err := openImage(path, fmtName, o)
		if err != nil {
			return nil, err
		}
		info, err := imageInfo(im)
		im.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		out = append(out, info)
		if !chain || info.BackingFilename == "" {
			return out, nil
		}
		path = info.FullBackingFilename
		fmtName = info.BackingFilenameFormat
	}
}

// imageInfo asks the image to describe itself and completes the fields
// qemu-img computes itself (filename, actual size, full backing name).
func imageInfo(im *image) (blockio.ImageInfo, error) {
	var info blockio.ImageInfo
	if inf, ok := im.dev.(blockio.Informer); ok {
		var err error
		if info, err = inf.Info(); err != nil {
			return info, err
		}
	} else if im.fmt.name == "raw" {
		info = rawInfo(im.path, im.dev)
	} else {
		info = blockio.ImageInfo{Format: im.fmt.name, VirtualSize: im.dev.Size()}
	}
	info.Filename = im.path
	if info.Format == "" {
		info.Format = im.fmt.name
	}
	if info.ActualSize == nil {
		if a, err := allocatedSize(im.path); err == nil {
			info.ActualSize = &a
		}
	}
	if info.BackingFilename != "" {
		info.FullBackingFilename = pathCombine(im.path, info.BackingFilename)
	} else {
		info.FullBackingFilename = ""
		info.BackingFilenameFormat = ""
	}
	info.BackingImage = nil
	return info, nil
}

// pathCombine resolves a backing file name as QEMU does: absolute names
// and names with a protocol stay as they are; relative names replace the
// last component of the image's own path (no cleaning).
func pathCombine(base, name string) string {
	if strings.HasPrefix(name, "/") || strings.Contains(strings.SplitN(name, "/", 2)[0], ":") {
		return name
	}
	i := strings.LastIndexByte(base, '/')
	if i < 0 {
		return name
	}
	return base[:i+1] + name
}

func infoNode(info *blockio.ImageInfo) *qnode {
	n, err := toQNode(info)
	if err != nil {
		return qobj()
	}
	return n
}

func dumpHumanInfo(e *env, info *blockio.ImageInfo) {
	e.printf("image: %s\n", info.Filename)
	e.printf("file format: %s\n", info.Format)
	e.printf("virtual size: %s (%d bytes)\n", sizeToStr(uint64(info.VirtualSize)), info.VirtualSize)
	if info.ActualSize != nil && *info.ActualSize >= 0 {
		e.printf("disk size: %s\n", sizeToStr(uint64(*info.ActualSize)))
	} else {
		e.printf("disk size: unavailable\n")
	}
	if info.ClusterSize != nil {
		e.printf("cluster_size: %d\n", *info.ClusterSize)
	}
	if info.Encrypted != nil && *info.Encrypted {
		e.printf("encrypted: yes\n")
	}
	if info.DirtyFlag != nil && *info.DirtyFlag {
		e.printf("cleanly shut down: no\n")
	}
	if info.BackingFilename != "" {
		e.printf("backing file: %s", info.BackingFilename)
		if info.FullBackingFilename != "" && info.FullBackingFilename != info.BackingFilename {
			e.printf(" (actual path: %s)", info.FullBackingFilename)
		}
		e.printf("\n")
		if info.BackingFilenameFormat != "" {
			e.printf("backing file format: %s\n", info.BackingFilenameFormat)
		}
	}
	dumpSnapshotTable(e, info.Snapshots)
	if info.FormatSpecific != nil {
		n, err := toQNode(info.FormatSpecific.Data)
		if err == nil && n.kind == 'o' {
			e.printf("Format specific information:\n")
			dumpHumanNode(e, n, 1)
		}
	}
}

// dumpHumanNode prints a format-specific dictionary as QEMU's generic
// dumper does: member names with '-' turned into spaces, nested
// dictionaries and lists indented by four spaces, list items as "[i]:".
func dumpHumanNode(e *env, n *qnode, indent int) {
	pad := strings.Repeat("    ", indent)
	dumpValue := func(name string, v *qnode) {
		switch v.kind {
		case 'o', 'a':
			e.printf("%s%s:\n", pad, name)
			dumpHumanNode(e, v, indent+1)
		case 's':
			e.printf("%s%s: %s\n", pad, name, v.str)
		case 'z':
			e.printf("%s%s: null\n", pad, name)
		default:
			e.printf("%s%s: %s\n", pad, name, v.str)
		}
	}
	switch n.kind {
	case 'o':
		for _, i := range qdictOrder(n) {
			dumpValue(strings.ReplaceAll(n.keys[i], "-", " "), n.vals[i])
		}
	case 'a':
		for i, it := range n.items {
			dumpValue(fmt.Sprintf("[%d]", i), it)
		}
	}
}
