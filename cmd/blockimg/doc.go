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
//	blockimg bench [-c count] [-d depth] [-f fmt] [--flush-interval=N] [-i aio] [-n] [--no-drain]
//	               [-o offset] [--pattern=byte] [-q] [-s buffer_size] [-S step_size] [-t cache] [-w] [-U] FILE
//	blockimg snapshot [-U] [-q] -l FILE
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
// emptied in place, still under its write lock: every cluster is
// deallocated (qcow2.Image.Deallocate) so that it reads entirely through
// to its backing file, as after QEMU's make-empty. The
// chain may hold qcow2 and raw images; -t is checked (writes are cached
// and flushed), -r paces the copied data to that many bytes per second.
//
// bench sends -c requests (default 75000) of -s bytes (default 4 KiB),
// reads or, with -w, writes of the --pattern byte (default 0), keeping -d
// of them (default 64) in flight on as many goroutines. The first request
// goes to -o, each next one -S bytes further (default: the buffer size),
// wrapping at the image size exactly as qemu-img 7.2 does (so a request
// can reach past the end; it then fails with "Failed request:
// Input/output error" and exit code 1). With --flush-interval=N (write
// runs only, N at least the depth) new requests are held whenever the
// number not yet sent is a multiple of N until the queue is empty and a
// flush has completed; --no-drain sends the flush beside the running
// requests instead. -t none/off/directsync open raw and qcow2 images with
// O_DIRECT, writethrough/directsync flush after every write; -n and -i
// native need such a direct mode, as in QEMU. Output ("Sending N write
// requests, ..." and "Run completed in X.XXX seconds."), argument checks,
// messages and exit codes are qemu-img's; -q does not silence the report,
// as in qemu-img. Unlike qemu-img, depth 0 is refused instead of waiting
// forever, and an empty image fails its requests instead of crashing.
//
// snapshot -l lists a qcow2 image's internal snapshots in qemu-img's
// table (ID, TAG, VM SIZE, DATE in local time, VM CLOCK, ICOUNT; nothing
// at all when there are none or the format has no snapshots). As in
// qemu-img 7.2 snapshot has no -f option (the format is probed) and
// without an action it only opens the image. Creating, applying and
// deleting snapshots (-c, -a, -d) are not supported yet: they fail with
// exit code 1 and a message saying so, without changing the image.
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
