//go:build linux

package blockio

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// File is a Device backed by an OS file or block device: pread/pwrite,
// Flush = fdatasync, Discard = fallocate(PUNCH_HOLE), WriteZeroes =
// fallocate(ZERO_RANGE) with fallbacks, BlockStatus from SEEK_DATA and
// SEEK_HOLE, Truncate with preallocation, optional O_DIRECT, and image
// locking compatible with QEMU's.
//
// File implements Device, Discarder, ZeroWriter, StatusReporter and
// Truncater. It is safe for concurrent use by multiple goroutines; Close
// waits for requests in flight. Open it with OpenFile or CreateFile.
type File struct {
	path     string
	readOnly bool
	direct   bool
	blockDev bool
	locked   bool
	align    int64 // logical block size for O_DIRECT; 1 when cached

	mu     sync.RWMutex // held shared by requests, exclusively by Close
	closed bool
	fd     int
	tailFd int // buffered descriptor for an unaligned tail in O_DIRECT mode, -1 otherwise
	size   atomic.Int64
	track  *rangeTracker // O_DIRECT only

	// flushErr makes Flush fail for good after fdatasync failed on a
	// cached file: the kernel may have dropped the dirty pages, so later
	// flushes that succeed would lie (QEMU does the same).
	flushErr atomic.Pointer[error]
}

// OpenFile opens an existing file or block device as a Device.
func OpenFile(path string, opts FileOptions) (*File, error) {
	return openFile(path, opts, false, 0)
}

// CreateFile creates the file at path (or reuses an existing one, like
// qemu-img create), locks it, and sets its size to size bytes with
// opts.Prealloc. Existing content is discarded. On a block device the
// size must not exceed the device's; the device content is left alone.
func CreateFile(path string, size int64, opts FileOptions) (*File, error) {
	if opts.ReadOnly {
		return nil, &InvalidError{What: "option", Value: "ReadOnly", Reason: "cannot create a read-only file"}
	}
	if size < 0 {
		return nil, &InvalidError{What: "size", Value: size}
	}
	if opts.Prealloc < PreallocOff || opts.Prealloc > PreallocFull {
		return nil, &InvalidError{What: "preallocation", Value: int(opts.Prealloc)}
	}
	return openFile(path, opts, true, size)
}

func openFile(path string, opts FileOptions, create bool, size int64) (*File, error) {
	if opts.ForceShare && !opts.ReadOnly {
		return nil, &InvalidError{What: "option", Value: "ForceShare", Reason: "force-share requires a read-only open"}
	}
	flags := unix.O_CLOEXEC
	if opts.ReadOnly {
		flags |= unix.O_RDONLY
	} else {
		flags |= unix.O_RDWR
	}
	if create {
		flags |= unix.O_CREAT
	}
	if opts.Direct {
		flags |= unix.O_DIRECT
	}
	// O_NONBLOCK keeps a FIFO or a device node from hanging the open; it
	// is cleared once the file is known to be a regular file or a block
	// device.
	fd, err := openRetry(path, flags|unix.O_NONBLOCK)
	if err != nil {
		if err == unix.EINVAL && opts.Direct {
			return nil, &OpError{Op: "open", Path: path, Off: -1, Err: &UnsupportedError{Feature: "O_DIRECT on this file system (try without Direct)"}}
		}
		return nil, &OpError{Op: "open", Path: path, Off: -1, Err: err}
	}
	f := &File{path: path, readOnly: opts.ReadOnly, direct: opts.Direct, fd: fd, tailFd: -1, align: 1}
	fail := func(err error) (*File, error) {
		f.closeFds()
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(&OpError{Op: "stat", Path: path, Off: -1, Err: err})
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFBLK:
		f.blockDev = true
	default:
		return fail(&InvalidError{What: "file", Value: path, Reason: "not a regular file or block device"})
	}
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil {
		return fail(&OpError{Op: "open", Path: path, Off: -1, Err: err})
	} else if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK); err != nil {
		return fail(&OpError{Op: "open", Path: path, Off: -1, Err: err})
	}
	if f.blockDev && !opts.ReadOnly {
		if ro, err := unix.IoctlGetInt(fd, unix.BLKROGET); err == nil && ro != 0 {
			return fail(&OpError{Op: "open", Path: path, Off: -1, Err: ErrReadOnly})
		}
	}
	if !opts.NoLock {
		perm, unshared := lockPerms(opts.ReadOnly, opts.ForceShare)
		if create {
			// Creation rewrites the whole file: share nothing.
			unshared = PermAll
		}
		switch err := applyImageLocks(fd, path, perm, unshared); {
		case err == nil:
			f.locked = true
		case errors.Is(err, errNoOFDLocks):
		default:
			return fail(err)
		}
	}
	cur, err := f.probeSize()
	if err != nil {
		return fail(err)
	}
	f.size.Store(cur)
	if opts.Direct {
		a, err := probeDirectAlign(fd, f.blockDev)
		if err != nil {
			return fail(&OpError{Op: "probe alignment", Path: path, Off: -1, Err: err})
		}
		if testDirectAlign > a {
			a = testDirectAlign
		}
		f.align = a
		f.track = newRangeTracker()
		tflags := flags &^ (unix.O_DIRECT | unix.O_CREAT)
		if f.tailFd, err = openRetry(path, tflags); err != nil {
			return fail(&OpError{Op: "open", Path: path, Off: -1, Err: err})
		}
	}
	if create {
		if f.blockDev {
			if size > cur {
				return fail(&InvalidError{What: "size", Value: size, Reason: "larger than the block device"})
			}
		} else {
			if err := f.truncate(0, PreallocOff); err != nil {
				return fail(err)
			}
			if err := f.truncate(size, opts.Prealloc); err != nil {
				return fail(err)
			}
		}
		if f.locked {
			// Creation is done: share what an ordinary writer shares.
			_, unshared := lockPerms(false, false)
			if err := releaseSharedBytes(fd, PermAll&^unshared); err != nil {
				return fail(&OpError{Op: "unlock", Path: path, Off: -1, Err: err})
			}
		}
	}
	return f, nil
}

func openRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0o644)
		if err == unix.EINTR {
			continue
		}
		return fd, err
	}
}

func (f *File) probeSize() (int64, error) {
	if f.blockDev {
		if n, err := unix.IoctlGetUint64(f.fd, unix.BLKGETSIZE64); err == nil {
			return int64(n), nil
		}
		n, err := unix.Seek(f.fd, 0, io.SeekEnd)
		if err != nil {
			return 0, &OpError{Op: "size", Path: f.path, Off: -1, Err: err}
		}
		return n, nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(f.fd, &st); err != nil {
		return 0, &OpError{Op: "stat", Path: f.path, Off: -1, Err: err}
	}
	return st.Size, nil
}

// testDirectAlign, when larger than the probed block size, replaces it
// (tests use it to exercise 4 KiB-sector paths on 512-byte storage).
var testDirectAlign int64

// probeDirectAlign finds the logical block size O_DIRECT requests must be
// aligned to: BLKSSZGET on block devices, statx's DIO alignment where the
// kernel reports it, else trial reads of 512 and then 4096 bytes.
func probeDirectAlign(fd int, blockDev bool) (int64, error) {
	if blockDev {
		if n, err := unix.IoctlGetInt(fd, unix.BLKSSZGET); err == nil && validAlign(int64(n)) {
			return int64(n), nil
		}
	}
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &stx); err == nil && stx.Mask&unix.STATX_DIOALIGN != 0 {
		a := int64(max(stx.Dio_offset_align, stx.Dio_mem_align))
		if validAlign(a) {
			return max(a, 512), nil
		}
	}
	buf := alignedBuf(bounceAlign, bounceAlign)
	for _, a := range []int64{512, 4096} {
		_, err := unix.Pread(fd, buf[:a], 0)
		if err == nil || err != unix.EINVAL {
			return a, nil
		}
	}
	return 0, unix.EINVAL
}

func validAlign(a int64) bool { return a >= 1 && a <= maxAlign && a&(a-1) == 0 }

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.path }

// ReadOnly reports whether the file was opened read-only.
func (f *File) ReadOnly() bool { return f.readOnly }

// Direct reports whether the file bypasses the page cache (O_DIRECT).
func (f *File) Direct() bool { return f.direct }

// IsBlockDevice reports whether the file is a block device.
func (f *File) IsBlockDevice() bool { return f.blockDev }

// Locked reports whether QEMU-compatible image locks are held. It is false
// with NoLock and on file systems without OFD locks.
func (f *File) Locked() bool { return f.locked }

// BlockSize returns the request alignment the host requires: the logical
// block size with O_DIRECT, 1 otherwise. File accepts any request and
// bounces unaligned ones; aligned requests are faster.
func (f *File) BlockSize() int64 { return f.align }

// AllocatedSize returns the bytes of storage the file occupies on the host
// (st_blocks * 512), which qemu-img info reports as actual-size. For a
// block device it returns the device size.
func (f *File) AllocatedSize() (int64, error) {
	if err := f.acquire("stat", -1); err != nil {
		return 0, err
	}
	defer f.mu.RUnlock()
	if f.blockDev {
		return f.size.Load(), nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(f.fd, &st); err != nil {
		return 0, f.opErr("stat", -1, err)
	}
	return st.Blocks * 512, nil
}

// Size returns the device size in bytes as last seen or set by Truncate.
func (f *File) Size() int64 { return f.size.Load() }

func (f *File) opErr(op string, off int64, err error) error {
	return &OpError{Op: op, Path: f.path, Off: off, Err: err}
}

// acquire takes the shared lock for a request and checks the file is
// open. The caller releases f.mu.RUnlock when it returns nil.
func (f *File) acquire(op string, off int64) error {
	f.mu.RLock()
	if f.closed {
		f.mu.RUnlock()
		return f.opErr(op, off, ErrClosed)
	}
	return nil
}

func (f *File) writable(op string, off, n int64) error {
	if err := f.acquire(op, off); err != nil {
		return err
	}
	if f.readOnly {
		f.mu.RUnlock()
		return f.opErr(op, off, ErrReadOnly)
	}
	if err := CheckRange(op, off, n, f.size.Load()); err != nil {
		f.mu.RUnlock()
		return err
	}
	return nil
}

// ReadAt implements Device. Bytes beyond the end of a file that shrank
// underneath us read as zeros, as in QEMU.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	if err := f.acquire("read", off); err != nil {
		return 0, err
	}
	defer f.mu.RUnlock()
	if err := CheckRange("read", off, int64(len(p)), f.size.Load()); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !f.direct {
		if err := preadFull(f.fd, p, off); err != nil {
			return 0, f.opErr("read", off, err)
		}
		return len(p), nil
	}
	if err := f.directRead(p, off); err != nil {
		return 0, f.opErr("read", off, err)
	}
	return len(p), nil
}

// WriteAt implements Device. A write that fails (ENOSPC, EIO...) reports
// 0 bytes written; the range may then hold old data, new data or a mix.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if err := f.writable("write", off, int64(len(p))); err != nil {
		return 0, err
	}
	defer f.mu.RUnlock()
	if len(p) == 0 {
		return 0, nil
	}
	var err error
	if f.direct {
		err = f.directWrite(p, off)
	} else {
		err = pwriteFull(f.fd, p, off)
	}
	if err != nil {
		return 0, f.opErr("write", off, err)
	}
	return len(p), nil
}

// preadFull reads len(p) bytes at off, zero-filling past end of file.
func preadFull(fd int, p []byte, off int64) error {
	done := 0
	for done < len(p) {
		n, err := unix.Pread(fd, p[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			clear(p[done:])
			return nil
		}
		done += n
	}
	return nil
}

func pwriteFull(fd int, p []byte, off int64) error {
	done := 0
	for done < len(p) {
		n, err := unix.Pwrite(fd, p[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		done += n
	}
	return nil
}

// directLimit is where the O_DIRECT part of the file ends: requests at or
// beyond it (the partial last block of a file whose size is not a multiple
// of the block size) use the buffered descriptor, because an aligned write
// there would extend the file.
func (f *File) directLimit() int64 { return alignDown(f.size.Load(), f.align) }

func (f *File) directRead(p []byte, off int64) error {
	if lim := f.directLimit(); off+int64(len(p)) > lim {
		cut := max(lim-off, 0)
		if err := preadFull(f.tailFd, p[cut:], off+cut); err != nil {
			return err
		}
		p = p[:cut]
	}
	if len(p) == 0 {
		return nil
	}
	if isAligned(p, off, f.align) {
		return preadFull(f.fd, p, off)
	}
	bb := getBounce()
	defer putBounce(bb)
	for len(p) > 0 {
		start := alignDown(off, f.align)
		end := min(alignUp(off+int64(len(p)), f.align), start+bounceSize)
		if err := preadFull(f.fd, bb.b[:end-start], start); err != nil {
			return err
		}
		n := copy(p, bb.b[off-start:end-start])
		p = p[n:]
		off += int64(n)
	}
	return nil
}

func (f *File) directWrite(p []byte, off int64) error {
	if lim := f.directLimit(); off+int64(len(p)) > lim {
		cut := max(lim-off, 0)
		if err := pwriteFull(f.tailFd, p[cut:], off+cut); err != nil {
			return err
		}
		p = p[:cut]
	}
	if len(p) == 0 {
		return nil
	}
	a := f.align
	end := off + int64(len(p))
	aligned := isAligned(p, off, a)
	// Unaligned offsets or lengths need read-modify-write of the edge
	// blocks, which must not race with other writes to those blocks.
	rmw := off%a != 0 || end%a != 0
	r := f.track.begin(alignDown(off, a), alignUp(end, a), rmw)
	defer f.track.end(r)
	if aligned {
		return pwriteFull(f.fd, p, off)
	}
	bb := getBounce()
	defer putBounce(bb)
	for len(p) > 0 {
		start := alignDown(off, a)
		stop := min(alignUp(off+int64(len(p)), a), start+bounceSize)
		buf := bb.b[:stop-start]
		if off > start {
			if err := preadFull(f.fd, buf[:a], start); err != nil {
				return err
			}
		}
		if e := off + int64(len(p)); e < stop && (e-start > a || off == start) {
			if err := preadFull(f.fd, buf[stop-start-a:], stop-a); err != nil {
				return err
			}
		}
		n := copy(buf[off-start:], p)
		if err := pwriteFull(f.fd, buf, start); err != nil {
			return err
		}
		p = p[n:]
		off += int64(n)
	}
	return nil
}

// Flush implements Device with fdatasync.
func (f *File) Flush() error {
	if err := f.acquire("flush", -1); err != nil {
		return err
	}
	defer f.mu.RUnlock()
	if e := f.flushErr.Load(); e != nil {
		return *e
	}
	if f.readOnly {
		return nil
	}
	var err error
	for {
		if err = unix.Fdatasync(f.fd); err != unix.EINTR {
			break
		}
	}
	if err != nil {
		oe := f.opErr("flush", -1, err)
		if !f.direct {
			f.flushErr.Store(&oe)
		}
		return oe
	}
	return nil
}

// Close implements Device. It waits for requests in flight, then closes
// the file, which releases its image locks.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return f.opErr("close", -1, ErrClosed)
	}
	f.closed = true
	if err := f.closeFds(); err != nil {
		return f.opErr("close", -1, err)
	}
	return nil
}

func (f *File) closeFds() error {
	var err error
	if f.tailFd >= 0 {
		err = unix.Close(f.tailFd)
		f.tailFd = -1
	}
	if e := unix.Close(f.fd); e != nil && err == nil {
		err = e
	}
	f.fd = -1
	return err
}

// fallocate calls fallocate(2), retrying on EINTR.
func fallocate(fd int, mode uint32, off, n int64) error {
	for {
		err := unix.Fallocate(fd, mode, off, n)
		if err != unix.EINTR {
			return err
		}
	}
}

func notSupported(err error) bool {
	return err == unix.EOPNOTSUPP || err == unix.ENOSYS || err == unix.ENOTTY || err == unix.EINVAL
}

// mutate runs a non-write mutation under the O_DIRECT range tracker so it
// cannot interleave with a read-modify-write cycle on the same blocks.
func (f *File) mutate(off, n int64, fn func() error) error {
	if f.direct {
		r := f.track.begin(alignDown(off, f.align), alignUp(off+n, f.align), false)
		defer f.track.end(r)
	}
	return fn()
}

// Discard implements Discarder by punching a hole; the range then reads as
// zeros. On file systems that cannot punch holes, Discard does nothing
// (a discard is advisory).
func (f *File) Discard(off, n int64) error {
	if err := f.writable("discard", off, n); err != nil {
		return err
	}
	defer f.mu.RUnlock()
	if n == 0 {
		return nil
	}
	return f.mutate(off, n, func() error {
		err := fallocate(f.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
		if err == nil || notSupported(err) {
			return nil
		}
		return f.opErr("discard", off, err)
	})
}

// WriteZeroes implements ZeroWriter. It tries fallocate(ZERO_RANGE), then
// punching a hole (reallocating it unless mayUnmap), then writing zeros.
// With mayUnmap it punches a hole first, freeing the space.
func (f *File) WriteZeroes(off, n int64, mayUnmap bool) error {
	if err := f.writable("write zeroes", off, n); err != nil {
		return err
	}
	defer f.mu.RUnlock()
	if n == 0 {
		return nil
	}
	err := f.mutate(off, n, func() error {
		if mayUnmap {
			err := fallocate(f.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
			if err == nil || !notSupported(err) {
				return err
			}
		}
		err := fallocate(f.fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, n)
		if err == nil || !notSupported(err) {
			return err
		}
		if !mayUnmap && !f.blockDev {
			err = fallocate(f.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
			if err == nil {
				// Give the space back so later writes cannot hit ENOSPC;
				// failing to do so still leaves zeros.
				_ = fallocate(f.fd, unix.FALLOC_FL_KEEP_SIZE, off, n)
				return nil
			}
			if !notSupported(err) {
				return err
			}
		}
		return errFallbackWrite
	})
	if err == errFallbackWrite {
		err = f.writeZeroBytes(off, n)
	}
	if err != nil {
		var oe *OpError
		if errors.As(err, &oe) {
			return err
		}
		return f.opErr("write zeroes", off, err)
	}
	return nil
}

var errFallbackWrite = errors.New("fall back to writing zeros")

// writeZeroBytes writes zeros through the normal write path. The caller
// holds f.mu shared.
func (f *File) writeZeroBytes(off, n int64) error {
	for n > 0 {
		c := min(n, int64(len(zeroBuf)))
		var err error
		if f.direct {
			err = f.directWrite(zeroBuf[:c], off)
		} else {
			err = pwriteFull(f.fd, zeroBuf[:c], off)
		}
		if err != nil {
			return f.opErr("write zeroes", off, err)
		}
		off += c
		n -= c
	}
	return nil
}

// BlockStatus implements StatusReporter with SEEK_DATA/SEEK_HOLE. Holes
// are reported as zero, data as data; both are allocated (present) at
// depth 0 with the host offset equal to the guest offset, as QEMU reports
// a raw file. Block devices and file systems without SEEK_DATA report
// everything as data.
func (f *File) BlockStatus(off, n int64) (Extent, error) {
	if err := f.acquire("block status", off); err != nil {
		return Extent{}, err
	}
	defer f.mu.RUnlock()
	size := f.size.Load()
	if err := CheckRange("block status", off, n, size); err != nil {
		return Extent{}, err
	}
	e := Extent{Start: off, Length: n, Data: true, Allocated: true, Offset: off}
	if n == 0 || f.blockDev {
		return e, nil
	}
	end := off + n
	data, err := unix.Seek(f.fd, off, unix.SEEK_DATA)
	switch {
	case err == unix.ENXIO:
		// No data at or after off: a hole up to the end of the file.
		e.Data, e.Zero = false, true
		return e, nil
	case err != nil:
		if notSupported(err) {
			return e, nil
		}
		return Extent{}, f.opErr("block status", off, err)
	case data > off:
		e.Data, e.Zero = false, true
		e.Length = min(data, end) - off
		return e, nil
	}
	hole, err := unix.Seek(f.fd, off, unix.SEEK_HOLE)
	if err != nil {
		if err == unix.ENXIO || notSupported(err) {
			return e, nil
		}
		return Extent{}, f.opErr("block status", off, err)
	}
	if hole > off {
		e.Length = min(hole, end) - off
	}
	return e, nil
}

// Truncate implements Truncater for regular files. Growing with
// PreallocFalloc reserves the new space with fallocate; PreallocFull
// writes zeros to it; PreallocMetadata behaves as PreallocOff (a raw file
// has no metadata). Shrinking requires PreallocOff. A block device cannot
// change size; truncating it to its current size or less succeeds and
// changes nothing, as in QEMU.
func (f *File) Truncate(size int64, prealloc Prealloc) error {
	// Resizing waits for requests in flight and holds new ones back, so
	// no write lands beyond a new, smaller end of file.
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return f.opErr("truncate", size, ErrClosed)
	}
	if f.readOnly {
		return f.opErr("truncate", size, ErrReadOnly)
	}
	if size < 0 {
		return &InvalidError{What: "size", Value: size}
	}
	if prealloc < PreallocOff || prealloc > PreallocFull {
		return &InvalidError{What: "preallocation", Value: int(prealloc)}
	}
	if f.blockDev {
		if size > f.size.Load() {
			return &UnsupportedError{Feature: "growing a block device"}
		}
		return nil
	}
	return f.truncate(size, prealloc)
}

// truncate resizes a regular file. The caller holds f.mu exclusively or
// owns f alone.
func (f *File) truncate(size int64, prealloc Prealloc) error {
	old := f.size.Load()
	if size < old && prealloc != PreallocOff && prealloc != PreallocMetadata {
		return &InvalidError{What: "preallocation", Value: prealloc.String(), Reason: "cannot preallocate when shrinking a file"}
	}
	for {
		err := unix.Ftruncate(f.fd, size)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return f.opErr("truncate", size, err)
		}
		break
	}
	if size < old {
		f.size.Store(size)
	}
	if size > old {
		switch prealloc {
		case PreallocFalloc:
			if err := fallocate(f.fd, 0, old, size-old); err != nil {
				_ = unix.Ftruncate(f.fd, old)
				return f.opErr("preallocate", old, err)
			}
		case PreallocFull:
			fd := f.fd
			if f.direct {
				fd = f.tailFd
			}
			for off := old; off < size; {
				c := min(size-off, int64(len(zeroBuf)))
				if err := pwriteFull(fd, zeroBuf[:c], off); err != nil {
					_ = unix.Ftruncate(f.fd, old)
					return f.opErr("preallocate", off, err)
				}
				off += c
			}
		}
		f.size.Store(size)
	}
	return nil
}

// Compile-time capability checks.
var (
	_ Device         = (*File)(nil)
	_ Discarder      = (*File)(nil)
	_ ZeroWriter     = (*File)(nil)
	_ StatusReporter = (*File)(nil)
	_ Truncater      = (*File)(nil)
)
