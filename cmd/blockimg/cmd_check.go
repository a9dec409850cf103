package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// checkReport is the result of a consistency check (the schema's
// ImageCheck without filename and format).
type checkReport struct {
	CheckErrors        int64
	Corruptions        int64
	Leaks              int64
	CorruptionsFixed   int64
	LeaksFixed         int64
	ImageEndOffset     int64
	TotalClusters      int64
	AllocatedClusters  int64
	FragmentedClusters int64
	CompressedClusters int64
}

// Exit codes of qemu-img check.
const (
	checkClean       = 0
	checkFailed      = 1
	checkCorrupt     = 2
	checkLeaks       = 3
	checkUnsupported = 63
)

func cmdCheck(e *env, args []string) int {
	opts, operands, err := getopt(args, "hf:r:T:qU", []longOpt{
		{name: "help", key: "h"},
		{name: "format", hasArg: true, key: "f"},
		{name: "repair", hasArg: true, key: "r"},
		{name: "output", hasArg: true},
		{name: "force-share", key: "U"},
	})
	if err != nil {
		return e.usage("%v", err)
	}
	var fmtName, fix string
	jsonOut := false
	o := openOptions{readOnly: true}
	for _, op := range opts {
		switch op.key {
		case "h":
			printHelp(e)
			return 0
		case "f":
			fmtName = op.val
		case "r":
			switch op.val {
			case "leaks", "all":
				fix = op.val
				o.readOnly = false
			default:
				return e.usage("Unknown option value for -r (expecting 'leaks' or 'all'): %s", op.val)
			}
		case "--output":
			var ok bool
			if jsonOut, ok = e.parseOutput(op.val); !ok {
				return 1
			}
		case "q":
			e.quiet = true
		case "U":
			o.noLock = true
		}
	}
	if len(operands) != 1 {
		return e.usage("Expecting one image file name")
	}
	if fix != "" && o.noLock {
		e.errorf("--force-share/-U is not allowed when repairing")
		return 1
	}
	path := operands[0]
	// qemu-img opens the image for "-r leaks" without replaying the lazy
	// refcounts of a dirty qcow2, then finds corruptions that leak repair
	// cannot fix and fails (exit 1). Opening read-write here would repair
	// everything on open, so first check such an image read-only and fail
	// (leaving it untouched) if it needs more than leak repair.
	if fix == "leaks" && (fmtName == "" || fmtName == "qcow2") && qcow2DirtyOnDisk(path) {
		if dirtyNeedsRebuild(e, path, fmtName, o) {
			return checkFailed
		}
	}
	im, err := openImage(path, fmtName, o)
	if err != nil {
		e.errorf("%v", err)
		return 1
	}
	defer im.Close()
	if im.fmt.check == nil {
		e.errorf("This image format does not support checks")
		return checkUnsupported
	}
	log := func(msg string) {
		if !e.quiet {
			e.out.Flush()
			fmt.Fprintln(e.stderr, msg)
		}
	}
	rep, err := im.fmt.check(e.ctx, im.dev, path, fix, log)
	if err != nil {
		e.errorf("Check failed: %s", describeErr(err))
		return checkFailed
	}
	if (rep.CorruptionsFixed != 0 || rep.LeaksFixed != 0) && !jsonOut {
		e.printf("The following inconsistencies were found and repaired:\n\n"+
			"    %d leaked clusters\n    %d corruptions\n\nDouble checking the fixed image now...\n",
			rep.LeaksFixed, rep.CorruptionsFixed)
	}
	if jsonOut {
		writeQJSON(e.out, checkNode(path, im.fmt.name, rep))
	} else {
		dumpHumanCheck(e, rep)
	}
	switch {
	case rep.CheckErrors != 0:
		e.errorf("Check failed")
		return checkFailed
	case rep.Corruptions != 0:
		return checkCorrupt
	case rep.Leaks != 0:
		return checkLeaks
	}
	return checkClean
}

// checkNode builds the ImageCheck JSON object: optional members appear
// only when non-zero, as in qemu-img.
func checkNode(path, fmtName string, r *checkReport) *qnode {
	n := qobj()
	n.set("filename", qstr(path))
	n.set("format", qstr(fmtName))
	n.set("check-errors", qint(r.CheckErrors))
	opt := func(k string, v int64) {
		if v != 0 {
			n.set(k, qint(v))
		}
	}
	opt("image-end-offset", r.ImageEndOffset)
	opt("corruptions", r.Corruptions)
	opt("leaks", r.Leaks)
	opt("corruptions-fixed", r.CorruptionsFixed)
	opt("leaks-fixed", r.LeaksFixed)
	opt("total-clusters", r.TotalClusters)
	opt("allocated-clusters", r.AllocatedClusters)
	opt("fragmented-clusters", r.FragmentedClusters)
	opt("compressed-clusters", r.CompressedClusters)
	return n
}

func dumpHumanCheck(e *env, r *checkReport) {
	if r.Corruptions == 0 && r.Leaks == 0 && r.CheckErrors == 0 {
		e.printf("No errors were found on the image.\n")
	} else {
		if r.Corruptions != 0 {
			e.printf("\n%d errors were found on the image.\n"+
				"Data may be corrupted, or further writes to the image may corrupt it.\n", r.Corruptions)
		}
		if r.Leaks != 0 {
			e.printf("\n%d leaked clusters were found on the image.\n"+
				"This means waste of disk space, but no harm to data.\n", r.Leaks)
		}
		if r.CheckErrors != 0 {
			e.printf("\n%d internal errors have occurred during the check.\n", r.CheckErrors)
		}
	}
	if r.TotalClusters != 0 && r.AllocatedClusters != 0 {
		e.printf("%d/%d = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed clusters\n",
			r.AllocatedClusters, r.TotalClusters,
			float64(r.AllocatedClusters)*100/float64(r.TotalClusters),
			float64(r.FragmentedClusters)*100/float64(r.AllocatedClusters),
			float64(r.CompressedClusters)*100/float64(r.AllocatedClusters))
	}
	if r.ImageEndOffset != 0 {
		e.printf("Image end offset: %d\n", r.ImageEndOffset)
	}
}

// qcow2DirtyOnDisk reports whether path starts with a qcow2 v3 header
// whose dirty incompatible-feature bit (bit 0 at offset 72) is set.
func qcow2DirtyOnDisk(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var h [80]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return false
	}
	return string(h[:4]) == "QFI\xfb" && binary.BigEndian.Uint32(h[4:]) >= 3 && h[79]&1 != 0
}

// dirtyNeedsRebuild checks a dirty qcow2 read-only, as "-r leaks" sees it
// before any repair. If it finds corruptions (which leak repair cannot
// fix) it prints the findings and qemu-img's failure and returns true.
// Open errors are left to the caller's normal open.
func dirtyNeedsRebuild(e *env, path, fmtName string, o openOptions) bool {
	o.readOnly = true
	im, err := openImage(path, fmtName, o)
	if err != nil {
		return false
	}
	defer im.Close()
	if im.fmt.check == nil {
		return false
	}
	var lines []string
	rep, err := im.fmt.check(e.ctx, im.dev, path, "", func(msg string) { lines = append(lines, msg) })
	if err != nil || (rep.Corruptions == 0 && rep.CheckErrors == 0) {
		return false
	}
	if !e.quiet {
		e.out.Flush()
		for _, l := range lines {
			fmt.Fprintln(e.stderr, l)
		}
		fmt.Fprintln(e.stderr, "ERROR need to rebuild refcount structures")
	}
	e.errorf("Check failed: Input/output error")
	return true
}
