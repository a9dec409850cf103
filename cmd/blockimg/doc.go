// Command blockimg is a qemu-img work-alike built on blocklayer.
//
//	blockimg info [-f fmt] [--output=human|json] [--backing-chain] [-U] FILE
//	blockimg map [-f fmt] [--output=human|json] [--start-offset=N] [--max-length=N] [-U] FILE
//	blockimg create [-f fmt] [-o k=v,...] [-b backing -F fmt] [-u] [-q] FILE [SIZE]
//	blockimg convert [-f fmt] [-O fmt] [-o opts] [-c] [-p] [-q] [-n] [-B backing [-F fmt]]
//	                 [-S sparse] [-m N] [-W] [-U] SRC DST
//	blockimg compare [-f fmt] [-F fmt] [-s] [-p] [-q] [-U] A B
//	blockimg check [-f fmt] [--output=human|json] [-r leaks|all] [-q] [-U] FILE
//	blockimg io [-f fmt] [-r] [-U] [-c CMD]... FILE
//	blockimg resize [-f fmt] [--preallocation=off|metadata|falloc|full] [-q] [--shrink] FILE [+|-]SIZE
//	blockimg rebase [-f fmt] [-b backing [-F fmt]] [-u] [-p] [-q] [-U] FILE
//	blockimg measure [--output=human|json] [-O fmt] [-o opts] [--size N | [-f fmt] [-U] FILE]
//	blockimg commit [-f fmt] [-t cache] [-b base] [-r rate] [-d] [-p] [-q] FILE
//
// Flags, messages, exit codes and JSON output follow qemu-img 7.2 (JSON is
// byte-identical: members are printed in QEMU's QDict hash order), so
// scripts and tests can swap one for the other. Sizes take qemu's suffixes
// (k, M, G, T, P, E; "1.5G"). Formats are probed when -f is absent; a
// probed raw image refuses writes to its first sector that would make it
// look like another format, as QEMU does.
//
// The io command runs qemu-io style commands: read [-P pattern] [-v] [-q]
// [-s off -l len] OFF LEN, write [-P pattern | -z [-u] | -s file] [-c] [-q]
// OFF LEN, discard OFF LEN, flush, length. Their output matches qemu-io's
// ("wrote 65536/65536 bytes at offset 0" and a timing line); a failed
// command makes the exit code 1.
//
// resize grows or (with --shrink) shrinks raw and qcow2 images; the size
// is the last argument, "+N"/"-N" relative, and qemu-img's refusals are
// kept (shrinking without --shrink, preallocation when not growing,
// metadata preallocation of raw, unaligned qcow2 sizes, version 2 qcow2
// images with internal snapshots, formats that cannot be resized).
//
// rebase changes the backing file of an image. Without -u it first copies
// into the image every range the image does not allocate where the old
// and the new backing file differ, so the image reads the same; -b ""
// flattens the old backing chain into the image. The header is switched
// only after the copied data is durable (qcow2.Image.ChangeBackingFile);
// formats that cannot record a backing file (raw) fail with "Operation not
// supported" before changing anything.
//
// measure prints the file size a new raw or qcow2 image needs ("required
// size") and its size when fully allocated, for a virtual size (--size)
// or for the data of an input image, as qemu-img measure does (default
// output format raw). For qcow2 the fully allocated size is the rounded
// virtual size plus a header cluster, whole L2 tables (8 or, with
// extended_l2, 16 bytes per cluster), the L1 table in whole clusters and
// the refcount table and blocks covering all of it; the required size
// replaces the data part by the output clusters holding allocated,
// non-zero data of the input's whole backing chain (all of it with -o
// backing_file or falloc/full preallocation). A version 3 qcow2 input adds
// "bitmaps size" for its persistent bitmaps. Option checks and their order
// (cluster_size, extended_l2, compat, refcount_bits, preallocation) and
// the messages are qemu-img's; -l (internal snapshots) is refused.
//
// commit copies into the backing file every range the image (and, with
// -b, every image between it and the named base) provides, data or
// zeros, growing the base when it is smaller; the base is opened
// read-write on its own and flushed before anything else happens. Then,
// unless -d or -b is given (-b implies -d, as in qemu-img), the image is
// emptied: it is replaced by a fresh image with the same options and
// backing file (written beside it, synced, renamed over it), so it reads
// entirely through to its backing file, as after QEMU's make-empty. The
// chain may hold qcow2 and raw images; -t is checked (writes are cached
// and flushed), -r paces the copied data to that many bytes per second.
//
// convert copies with -m parallel workers (default 8) using large aligned
// buffers allocated once per worker: holes reported by the source's block
// status are skipped, runs of zeros (-S, default 4 KiB) are detected and
// left unallocated, writes are issued in order unless -W is given, and
// compressed output (-c; streamOptimized vmdk) compresses in parallel.
//
// The command logic lives in run(args, stdout, stderr), so tests drive it
// in-process. Each image format is registered from its own file
// (format_raw.go, format_qcow2.go, format_vmdk.go) with its probe, open,
// create and check functions; the commands work on blockio.Device and its
// optional capabilities and are otherwise format-independent.
package main
