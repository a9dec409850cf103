package vmdk

import (
	"os"
	"syscall"

	"github.com/blocklayer/blocklayer/blockio"
)

// InfoSpecific is the schema's ImageInfoSpecificVmdk, as printed by
// qemu-img info --output=json under format-specific.data. A plain value.
type InfoSpecific struct {
	CreateType string              `json:"create-type"`
	CID        int64               `json:"cid"`
	ParentCID  int64               `json:"parent-cid"`
	Extents    []blockio.ImageInfo `json:"extents"`
}

// Info implements blockio.Informer with qemu-img info's fields. ActualSize
// is filled when the image's files are OS files reachable by name.
func (img *Image) Info() (blockio.ImageInfo, error) {
	if err := img.begin(); err != nil {
		return blockio.ImageInfo{}, err
	}
	defer img.end()
	img.cidMu.Lock()
	cid := img.desc.CID
	img.cidMu.Unlock()
	spec := InfoSpecific{CreateType: img.desc.CreateType, CID: int64(cid), ParentCID: int64(img.desc.ParentCID)}
	info := blockio.ImageInfo{Filename: img.filename, Format: "vmdk", VirtualSize: img.size}
	f := false
	info.DirtyFlag = &f
	var actual int64
	haveActual := img.filename != ""
	if haveActual {
		if a, ok := allocatedSize(img.filename); ok {
			actual += a
		} else {
			haveActual = false
		}
	}
	for i, e := range img.extents {
		ei := blockio.ImageInfo{Filename: e.file, Format: e.typ, VirtualSize: e.size}
		if e.kind == kindSESparse {
			cs := int64(seGrainSectors * sectorSize)
			ei.ClusterSize = &cs
			if i == 0 {
				info.ClusterSize = &cs
			}
		}
		if e.kind == kindSparse {
			cs := e.sp.grainBytes
			ei.ClusterSize = &cs
			if i == 0 {
				info.ClusterSize = &cs
			}
			if e.sp.compressed {
				t := true
				ei.Compressed = &t
			}
		}
		if e.dev != nil && e.file != img.filename && haveActual {
			if a, ok := allocatedSize(e.file); ok {
				actual += a
			}
		}
		spec.Extents = append(spec.Extents, ei)
	}
	if haveActual {
		info.ActualSize = &actual
	}
	if img.desc.ParentFileNameHint != "" {
		info.BackingFilename = img.desc.ParentFileNameHint
		info.FullBackingFilename = img.parentPath
		if img.parentPath == "" {
			info.FullBackingFilename = img.desc.ParentFileNameHint
		}
		switch img.parent.(type) {
		case *Image:
			info.BackingFilenameFormat = "vmdk"
		case nil:
		default:
			if img.opts.ParentOpener == nil {
				info.BackingFilenameFormat = "raw"
			}
		}
	}
	info.FormatSpecific = &blockio.ImageInfoSpecific{Type: "vmdk", Data: spec}
	return info, nil
}

func allocatedSize(path string) (int64, bool) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Blocks * 512, true
	}
	return st.Size(), true
}
