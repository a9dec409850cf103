// Package vmdk reads and writes VMware virtual disks (VMDK) the way QEMU
// does, for every subformat qemu-img creates: monolithicSparse,
// monolithicFlat, twoGbMaxExtentSparse, twoGbMaxExtentFlat and
// streamOptimized, plus vmfs/vmfsSparse (COWD) descriptors, read-only
// seSparse extents, ZERO/RDONLY/NOACCESS extent lines,
// zeroed-grain entries, redundant grain directories, embedded and separate
// descriptors, VMware's footer-based version-3 streams, and parent links
// (parentFileNameHint with the parentCID check).
//
// Open a disk with OpenFile (or Open on a blockio.Device); the *Image is a
// blockio.Device with BlockStatus (qemu-img map semantics), WriteZeroes and
// Info (qemu-img info's ImageInfoSpecificVmdk). Create disks with
// CreateFile (or Create on a Device for single-file subformats).
//
// Writes to sparse extents allocate grains on first write, anywhere and in
// any order, concurrently: the grain is written in full (with the parent's
// data or zeros around the request) and entered in the grain tables only
// when the image is flushed, after the data is durable; new grain tables
// are written and flushed before the directory points at them. A crash
// therefore leaves at most leaked space. The descriptor's CID is renewed on
// the first write after opening, as QEMU does.
//
// Stream-optimized disks are read-only once written. A new one is written
// append-only through the Image returned by CreateFile/Create: WriteAt in
// increasing offset order, grains compressed (zlib) by several goroutines,
// and Close writes grain tables, directory, footer and end-of-stream
// marker in VMware's layout.
//
// Untrusted input: descriptor size (1 MiB) and line limits, extent file
// names that are absolute or leave the image's directory are refused
// unless Options.AllowUnsafePaths, grain directory sizes are checked
// against QEMU's limits ("L1 size too big"), the file size and
// Options.MaxMetadataMemory before allocation, and parent-chain loops are
// refused. Errors wrap blockio's sentinels (ErrCorrupt, ErrUnsupported,
// ErrInvalid, ErrReadOnly...).
package vmdk
