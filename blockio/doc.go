// Package blockio is the contract every layer of blocklayer speaks.
//
// A Device is a random-access block of bytes with io.ReaderAt/io.WriterAt
// semantics, a fixed size, a durable Flush and a Close. OS files, qcow2 and
// vmdk images, graph nodes and filters are all Devices, which is how images
// stack: a qcow2 image's backing file is just another Device.
//
// Optional capabilities are discovered by type assertion, in the style of
// io.WriterTo: Discarder, ZeroWriter, StatusReporter and Truncater. The
// helpers Discard, WriteZeroes, BlockStatus and Truncate fall back to a
// portable behaviour when a Device lacks the capability.
//
// Two Devices live here: Mem, a sparse in-memory device, and File
// (OpenFile, CreateFile), an OS file or block device with pread/pwrite,
// fdatasync, hole punching, SEEK_DATA/SEEK_HOLE status, preallocation,
// optional O_DIRECT with aligned bounce buffers, and image locking that
// QEMU's tools respect. Subpackages: faultio injects errors and simulates
// power cuts; blocktest is the conformance suite every Device runs.
//
// Errors are sentinel values (ErrCorrupt, ErrReadOnly, ErrNoSpace,
// ErrOutOfRange, ErrUnsupported, ErrLocked, ErrInvalid) wrapped by typed
// errors that carry context; test them with errors.Is.
package blockio
