package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/blocklayer/blocklayer/blockio"
)

// backingChanger is implemented by images whose header names a backing
// file: ChangeBackingFile durably rewrites the backing file name and
// format recorded in the image ("" for both removes the reference) without
// touching any data (QEMU's bdrv_change_backing_file). rebase needs it;
// images without it fail as qemu-img fails for formats that cannot
// record a backing file.
type backingChanger interface {
	ChangeBackingFile(name, format string) error
}

// backingHolder is implemented by images opened with their backing chain.
type backingHolder interface {
	Backing() blockio.Device
}

// qemuFormatNames are the format names qemu-img 7.2 accepts for -F
// (bdrv_find_format), beyond those registered here.
var qemuFormatNames = map[string]bool{
	"raw": true, "qcow2": true, "qcow": true, "vmdk": true, "vdi": true, "vpc": true,
	"vhdx": true, "qed": true, "luks": true, "parallels": true, "dmg": true, "bochs": true,
	"cloop": true, "vvfat": true, "file": true, "host_device": true, "host_cdrom": true,
	"nbd": true, "blkdebug": true, "blkverify": true, "blklogwrites": true, "null-co": true,
	"null-aio": true, "throttle": true, "copy-on-read": true, "compress": true,
	"quorum": true, "replication": true, "preallocate": true, "snapshot-access": true,
	"copy-before-write": true, "http": true, "https": true, "ftp": true, "ftps": true,
	"nfs": true, "ssh": true, "iscsi": true, "rbd": true, "gluster": true,
}

func knownFormatName(name string) bool {
	_, ok := formats[name]
	return ok || qemuFormatNames[name]
}

// rebaseBuf is the size of the ranges rebase compares at a time (qemu-img
// uses 2 MiB too); differences are found with 512-byte granularity.
const rebaseBuf = 2 << 20

// cmdRebase implements "rebase [-f fmt] [-F backing_fmt] [-b backing_file]
// [-u] [-q] [-p] [-U] FILE" as qemu-img 7.2 does. Safe mode (without -u)
// first copies into the image every unallocated range where the old and
// the new backing file differ, so the image reads the same afterwards;
// -u only rewrites the backing file reference.
func cmdRebase(e *env, args []string) int {
	opts, operands, err := getopt(args, "hf:F:b:upt:T:qU", []longOpt{
		{name: "help", key: "h"},
		{name: "force-share", key: "U"},
	})
	if err != nil {
		return e.usage("%v", err)
	}
	var fmtName, baseFmt string
	var base *string
	unsafe, showProgress := false, false
	noLock := false
	for _, op := range opts {
		switch op.key {
		case "h":
			printHelp(e)
			return 0
		case "f":
			fmtName = op.val
		case "F":
			baseFmt = op.val
		case "b":
			v := op.val
			base = &v
		case "u":
			unsafe = true
		case "p":
			showProgress = true
		case "q":
			e.quiet = true
		case "U":
			noLock = true
		}
	}
	if e.quiet {
		showProgress = false
	}
	if len(operands) != 1 {
		return e.usage("Expecting one image file name")
	}
	if !unsafe && base == nil {
		return e.usage("Must specify backing file (-b) or use unsafe mode (-u)")
	}
	newBase := ""
	if base != nil {
		newBase = *base
	}
	path := operands[0]
	var prog *progress
	if showProgress {
		prog = newProgress(e)
		prog.print(0)
	}
	im, err := openImage(path, fmtName, openOptions{noBacking: unsafe})
	if err != nil {
		e.errorf("%v", err)
		return 1
	}
	defer im.Close()
	if im.probed && im.fmt.name == "raw" {
		warnProbedRaw(e, path)
	}
	if baseFmt != "" && !knownFormatName(baseFmt) {
		e.errorf("Invalid format name: '%s'", baseFmt)
		return 1
	}
	var newDev blockio.Device
	if !unsafe && newBase != "" {
		full := pathCombine(path, newBase)
		nim, err := openImage(full, baseFmt, openOptions{readOnly: true, noLock: noLock})
		if err != nil {
			// qemu reports the protocol layer's message here, once.
			msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("Could not open '%s': ", full))
			if !strings.HasPrefix(msg, "Could not open '") {
				msg = err.Error()
			}
			e.errorf("Could not open new backing file '%s': %s", newBase, msg)
			return 1
		}
		defer nim.Close()
		newDev = nim.dev
	}
	bc, ok := im.dev.(backingChanger)
	if !ok {
		e.errorf("Could not change the backing file to '%s': Operation not supported", newBase)
		return 1
	}
	if !unsafe {
		var oldDev blockio.Device
		if bh, ok := im.dev.(backingHolder); ok {
			oldDev = bh.Backing()
		}
		if err := rebaseCopy(im.dev, oldDev, newDev, prog); err != nil {
			e.errorf("%v", err)
			return 1
		}
	}
	if newBase != "" && baseFmt == "" {
		e.errorf("Could not change the backing file to '%s': backing format must be specified", newBase)
		return 1
	}
	if newBase == "" {
		baseFmt = ""
	}
	if err := bc.ChangeBackingFile(newBase, baseFmt); err != nil {
		e.errorf("Could not change the backing file to '%s': %s", newBase, describeErr(err))
		return 1
	}
	err = im.Close()
	im.dev = nil
	if err != nil {
		e.errorf("%s", describeErr(err))
		return 1
	}
	if prog != nil {
		prog.finish()
	}
	return 0
}

// rebaseCopy writes into dev the old backing file's data wherever dev
// does not allocate a range itself and the old and new backing files
// (nil: reads as zeros; past their end: zeros) differ. The image reads
// the same before, during and after the copy, so an interruption does no
// harm.
func rebaseCopy(dev, oldDev, newDev blockio.Device, prog *progress) error {
	size := dev.Size()
	oldBuf := make([]byte, rebaseBuf)
	newBuf := make([]byte, rebaseBuf)
	for off := int64(0); off < size; {
		n := min(int64(rebaseBuf), size-off)
		ext, err := blockio.BlockStatus(dev, off, n)
		if err != nil {
			return fmt.Errorf("error while reading image metadata: %s", describeErr(err))
		}
		if ext.Length > 0 && ext.Length < n {
			n = ext.Length
		}
		if ext.Allocated && ext.Depth == 0 {
			off += n
			continue
		}
		if err := readPadded(oldDev, oldBuf[:n], off); err != nil {
			return fmt.Errorf("error while reading from old backing file")
		}
		if err := readPadded(newDev, newBuf[:n], off); err != nil {
			return fmt.Errorf("error while reading from new backing file")
		}
		for i := int64(0); i < n; {
			// Find the next run of differing 512-byte sectors.
			j := i
			for j < n && bytes.Equal(oldBuf[j:min(j+512, n)], newBuf[j:min(j+512, n)]) {
				j = min(j+512, n)
			}
			k := j
			for k < n && !bytes.Equal(oldBuf[k:min(k+512, n)], newBuf[k:min(k+512, n)]) {
				k = min(k+512, n)
			}
			if k > j {
				if _, err := dev.WriteAt(oldBuf[j:k], off+j); err != nil {
					return fmt.Errorf("Error while writing to COW image: %s", describeErr(err))
				}
			}
			i = k
		}
		off += n
		if prog != nil {
			prog.update(float64(off) * 100 / float64(size))
		}
	}
	return nil
}

// readPadded reads p at off from dev, with zeros past dev's end (or
// everywhere when dev is nil).
func readPadded(dev blockio.Device, p []byte, off int64) error {
	clear(p)
	if dev == nil || off >= dev.Size() {
		return nil
	}
	q := p[:min(int64(len(p)), dev.Size()-off)]
	_, err := dev.ReadAt(q, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
