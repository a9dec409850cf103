package qcow2

// metaPreallocLocked reports whether the image looks metadata-preallocated,
// deciding once per open as QEMU does (qcow2_detect_metadata_preallocation):
// it is when clearly more host clusters carry a reference than the file has
// storage for — more than max(stored*10/9, stored+2) clusters, stored being
// the file's allocated bytes in clusters. Only then does BlockStatus look
// for holes of the file inside data clusters (QEMU's BDRV_BLOCK_RECURSE),
// reporting them as zero; for other images a data cluster is data even
// where the file has a hole (a partial write into a fresh cluster), as in
// `qemu-img map`. When the file cannot tell its allocated size the answer
// is no, as in QEMU.
func (img *Image) metaPreallocLocked() bool {
	if img.preallocChecked {
		return img.preallocMeta
	}
	img.preallocChecked = true
	alloc := actualSize(img.dev)
	if alloc == nil {
		return false
	}
	stored := *alloc / img.cs
	threshold := max(stored*10/9, stored+2)
	end := (img.dev.Size() + img.cs - 1) / img.cs
	var used int64
	for c := int64(0); c < end && used <= threshold; c++ {
		rc, err := img.refcountLocked(c)
		if err != nil {
			return false
		}
		if rc != 0 {
			used++
		}
	}
	img.preallocMeta = used > threshold
	return img.preallocMeta
}
