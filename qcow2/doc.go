// Package qcow2 reads, writes and creates qcow2 images, the QEMU
// copy-on-write format, with the on-disk behaviour of QEMU 7.2.
//
// An open *Image is a blockio.Device (and Discarder, ZeroWriter,
// StatusReporter, Informer): guest reads and writes go through the L1/L2
// tables, allocate clusters with refcounts, copy partial clusters from the
// backing file, and read compressed (deflate or zstd), zero, and
// extended-L2 (subcluster) clusters. Images with external data files,
// internal snapshots and persistent bitmaps are read; snapshots and
// bitmaps are not managed (a write invalidates bitmaps by clearing their
// autoclear bit, as any writer that does not maintain them must).
//
// Crash safety: metadata caches are write-back and written in dependency
// order (refcount blocks, refcount table, L2 tables, L1 table, each level
// behind a flush barrier); clusters freed by a write, discard or copy on
// write are only returned to the allocator once the metadata that no
// longer references them is durable. A power cut therefore leaves at most
// leaked clusters, never a reference to freed or unwritten storage.
//
// Concurrency: an Image is safe for concurrent use. Requests are split per
// guest cluster; each cluster is guarded by a striped lock (reads shared,
// writes exclusive), and one metadata mutex guards the tables. Guest data
// I/O happens outside the metadata mutex, so reads and writes to
// different clusters proceed in parallel.
package qcow2
