// Package qcow2 reads, writes, creates and checks qcow2 images, the QEMU
// copy-on-write format, with the on-disk behaviour of QEMU 7.2.
//
// An open *Image is a blockio.Device (and Discarder, ZeroWriter,
// StatusReporter, Truncater, Informer). Guest reads and writes go through the L1/L2
// tables; writes allocate clusters with refcounts and copy partial
// clusters from the backing file (only the touched subclusters with
// extended L2 entries). All variants qemu-img 7.2 makes are read:
// compat 0.10 and 1.1, 512 B to 2 MiB clusters, refcount widths 1 to 64
// bits, zero clusters, deflate and zstd compressed clusters, extended L2
// entries, external data files (raw or not), backing chains (raw or qcow2
// backing files, names resolved against the image's directory), internal
// snapshots and persistent bitmaps. Snapshots and bitmaps are not managed:
// writes to an image with snapshots copy shared L2 tables and clusters so
// the snapshots stay intact, and the first write marks persistent bitmaps
// in use (inconsistent), as a writer that does not maintain them must.
//
// Crash safety: the L2 and refcount caches are write-back and reach the
// disk in dependency order (refcount blocks, refcount table, L2 tables,
// L1 table, each level behind a flush barrier); clusters released by a
// write, discard or copy on write return to the allocator only after the
// metadata that no longer references them is durable. A power cut
// therefore leaves at most leaked clusters. With lazy refcounts the image
// is marked dirty instead and its refcounts are rebuilt by the next
// read-write open. Before writing a table or data cluster the image checks
// that it does not overlap other metadata (Options.OverlapCheck); a hit,
// or an L2 entry that cannot be right, marks the image corrupt and fails
// the request with an error wrapping blockio.ErrCorrupt.
//
// Image.Check reports what `qemu-img check` reports (the schema's
// ImageCheck) and repairs leaks or everything (rebuilding the refcount
// structure from the L1/L2, snapshot and bitmap tables, fixing COPIED
// flags and, as QEMU does, turning preallocated zero clusters with an
// unaligned offset into plain zero clusters; data clusters with unaligned
// or out-of-file offsets stay reported, as in QEMU).
//
// Image.Truncate resizes the virtual disk like qemu-img resize: growing
// moves the L1 table when needed (new table durable before the header
// points at it) and makes the new area read as zeros even over a larger
// backing file; shrinking discards the clusters past the new end.
//
// Hostile images: every size and count read from the file is checked
// against the file size, QEMU's limits and Options.MemoryLimit before
// anything is allocated; backing chains that loop or exceed
// Options.MaxBackingDepth are refused, and backing files can be confined
// (Options.BackingDir, Options.NoAbsoluteBacking).
//
// Concurrency: an Image is safe for concurrent use. Requests are split per
// guest cluster; each cluster is guarded by a striped lock (reads shared,
// writes exclusive), and one metadata mutex guards the tables. Guest data
// I/O happens outside the metadata mutex, so reads and writes to
// different clusters proceed in parallel, and two writers racing to
// allocate the same cluster are serialised. Check and Truncate wait for
// the requests in flight and hold off new ones while they run. Options, CreateOptions,
// CheckOptions and CheckResult are plain values.
package qcow2
