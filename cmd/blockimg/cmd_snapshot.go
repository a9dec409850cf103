package main

import (
	"fmt"
	"time"

	"github.com/blocklayer/blocklayer/blockio"
)

// cmdSnapshot implements "snapshot [-U] [-q] [-l | -a snapshot | -c
// snapshot | -d snapshot] FILE" with qemu-img 7.2's option handling: -l
// lists the internal snapshots in qemu's table format (nothing at all
// for an image without snapshots or a format without them); creating,
// applying and deleting snapshots are not implemented yet and fail with
// exit code 1 after the same argument checks qemu-img makes. Like
// qemu-img 7.2, snapshot takes no -f option: the format is probed.
func cmdSnapshot(e *env, args []string) int {
	opts, operands, err := getopt(args, "la:c:d:hqU", []longOpt{
		{name: "help", key: "h"},
		{name: "force-share", key: "U"},
	})
	if err != nil {
		return e.usage("%v", err)
	}
	action := ""
	o := openOptions{readOnly: true, noBacking: true}
	for _, op := range opts {
		switch op.key {
		case "h":
			printHelp(e)
			return 0
		case "l", "a", "c", "d":
			if action != "" {
				return e.usage("Cannot mix '-l', '-a', '-c', '-d'")
			}
			action = op.key
		case "q":
			e.quiet = true
		case "U":
			o.noLock = true
		}
	}
	if len(operands) != 1 {
		return e.usage("Expecting one image file name")
	}
	path := operands[0]
	switch action {
	case "":
		// qemu-img opens the image and does nothing.
		im, err := openImage(path, "", o)
		if err != nil {
			e.errorf("%v", err)
			return 1
		}
		im.Close()
		return 0
	case "l":
	default:
		if o.noLock {
			e.errorf("Could not open '%s': force-share=on can only be used with read-only images", path)
			return 1
		}
		// Open read-write first so that open errors read as qemu-img's.
		im, err := openImage(path, "", openOptions{noBacking: true})
		if err != nil {
			e.errorf("%v", err)
			return 1
		}
		im.Close()
		names := map[string]string{"a": "applying", "c": "creating", "d": "deleting"}
		e.errorf("%s internal snapshots is not supported yet (only -l is)", capitalize(names[action]))
		return 1
	}
	im, err := openImage(path, "", o)
	if err != nil {
		e.errorf("%v", err)
		return 1
	}
	defer im.Close()
	inf, ok := im.dev.(blockio.Informer)
	if !ok {
		// Formats without internal snapshots list nothing.
		return 0
	}
	info, err := inf.Info()
	if err != nil {
		e.errorf("%v", err)
		return 1
	}
	// qemu-img prints the list even with -q.
	q := e.quiet
	e.quiet = false
	dumpSnapshotTable(e, info.Snapshots)
	e.quiet = q
	return 0
}

// dumpSnapshotTable prints internal snapshots as qemu's snapshot dump
// does: nothing for an empty list, else "Snapshot list:", the column
// line and one line per snapshot (date in local time, VM clock as
// hours:minutes:seconds.milliseconds, VM state size as size_to_str).
func dumpSnapshotTable(e *env, snaps []blockio.SnapshotInfo) {
	if len(snaps) == 0 {
		return
	}
	e.printf("Snapshot list:\n")
	e.printf("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT")
	for _, s := range snaps {
		e.printf("%-9s %-16s %8s%20s%13s%11s\n", s.ID, s.Name, sizeToStr(uint64(s.VMStateSize)),
			time.Unix(s.DateSec, 0).Format("2006-01-02 15:04:05"), vmClockStr(s.VMClockSec, s.VMClockNsec), icountStr(s.ICount))
	}
}

// vmClockStr formats a snapshot's guest clock as "HH:MM:SS.mmm".
func vmClockStr(sec, nsec int64) string {
	ns := uint64(sec)*1_000_000_000 + uint64(nsec)
	secs := int64(ns / 1_000_000_000)
	return fmt.Sprintf("%02d:%02d:%02d.%03d", int32(secs/3600), int32(secs/60%60), int32(secs%60), int32(ns/1_000_000%1000))
}

func icountStr(p *int64) string {
	if p == nil {
		return ""
	}
	return fmt.Sprint(*p)
}
