package main

import (
	"fmt"

	"github.com/blocklayer/blocklayer/blockio"
	"golang.org/x/sys/unix"
)

func init() {
	registerFormat(&format{
		name:     "raw",
		open:     openRaw,
		create:   createRaw,
		describe: describeRaw,
		options: []createOpt{
			{"preallocation", "str", "space reservation: off, falloc or full"},
			{"size", "size", "virtual disk size in bytes (k, M, G, T suffixes)"},
		},
		zeroInit: true,
	})
}

func openRaw(path string, o openOptions) (blockio.Device, error) {
	return blockio.OpenFile(path, blockio.FileOptions{ReadOnly: o.readOnly, NoLock: o.noLock})
}

func rawPrealloc(p *createParams) (blockio.Prealloc, error) {
	v, ok := p.opts.get("preallocation")
	if !ok {
		return blockio.PreallocOff, nil
	}
	pa, err := blockio.ParsePrealloc(v)
	if err != nil || pa == blockio.PreallocMetadata {
		return 0, fmt.Errorf("Invalid parameter '%s'", v)
	}
	return pa, nil
}

func createRaw(path string, p *createParams) (blockio.Device, error) {
	if p.backing != "" {
		return nil, fmt.Errorf("Backing file not supported for file format 'raw'")
	}
	pa, err := rawPrealloc(p)
	if err != nil {
		return nil, err
	}
	f, err := blockio.CreateFile(path, p.size, blockio.FileOptions{Prealloc: pa})
	if err != nil {
		return nil, fmt.Errorf("Could not create '%s': %s", path, describeErr(err))
	}
	if pa != blockio.PreallocFull && p.size > 0 {
		// Like qemu-img, allocate the first block so that later
		// O_DIRECT users can probe the alignment (and so that info
		// and map match qemu-img's for a fresh image).
		if _, err := f.WriteAt(make([]byte, min(4096, p.size)), 0); err != nil {
			f.Close()
			return nil, fmt.Errorf("Could not write to '%s': %s", path, describeErr(err))
		}
	}
	return f, nil
}

// allocatedSize returns st_blocks*512 of path (qemu's actual-size).
func allocatedSize(path string) (int64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Blocks * 512, nil
}

func describeRaw(p *createParams) string {
	s := fmt.Sprintf("size=%d", p.size)
	if v, ok := p.opts.get("preallocation"); ok {
		s += " preallocation=" + v
	}
	return s
}

// rawInfo describes a raw file as qemu-img info does.
func rawInfo(path string, dev blockio.Device) blockio.ImageInfo {
	f := false
	info := blockio.ImageInfo{Filename: path, Format: "raw", VirtualSize: dev.Size(), DirtyFlag: &f}
	if a, err := allocatedSize(path); err == nil {
		info.ActualSize = &a
	}
	return info
}
