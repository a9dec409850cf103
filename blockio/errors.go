package blockio

import (
	"errors"
	"fmt"
	"syscall"
)

// Sentinel errors. Typed errors in this and other packages wrap them, so
// callers test with errors.Is.
var (
	ErrCorrupt     = errors.New("image is corrupt")
	ErrReadOnly    = errors.New("device is read-only")
	ErrNoSpace     = errors.New("no space left on device")
	ErrOutOfRange  = errors.New("request out of range")
	ErrUnsupported = errors.New("operation not supported")
	ErrLocked      = errors.New("image is locked")
	ErrInvalid     = errors.New("invalid argument")
	ErrClosed      = errors.New("device is closed")
)

// RangeError reports a request outside a device's bounds.
// RangeError is a plain value: safe to copy and to read from many
// goroutines; do not modify one another goroutine uses.
type RangeError struct {
	Op       string // "read", "write", "discard", ...
	Off, Len int64
	Size     int64
}

func (e *RangeError) Error() string {
	return fmt.Sprintf("%s at offset %d length %d: outside device of size %d", e.Op, e.Off, e.Len, e.Size)
}

// Unwrap returns ErrOutOfRange.
func (e *RangeError) Unwrap() error { return ErrOutOfRange }

// CorruptError reports an on-disk structure that cannot be right. It names
// the structure and the byte offset where it was found.
// CorruptError is a plain value: safe to copy and to read from many
// goroutines; do not modify one another goroutine uses.
type CorruptError struct {
	Structure string // e.g. "qcow2 header", "L2 table", "grain directory"
	Offset    int64  // host byte offset of the structure or entry, -1 if unknown
	Reason    string
}

func (e *CorruptError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("corrupt %s at offset %#x: %s", e.Structure, e.Offset, e.Reason)
	}
	return fmt.Sprintf("corrupt %s: %s", e.Structure, e.Reason)
}

// Unwrap returns ErrCorrupt.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Corruptf returns a *CorruptError for structure at offset.
func Corruptf(structure string, offset int64, format string, args ...any) error {
	return &CorruptError{Structure: structure, Offset: offset, Reason: fmt.Sprintf(format, args...)}
}

// InvalidError reports an invalid argument or option value.
// InvalidError is a plain value: safe to copy and to read from many
// goroutines; do not modify one another goroutine uses.
type InvalidError struct {
	What   string
	Value  any
	Reason string
}

func (e *InvalidError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("invalid %s %v: %s", e.What, e.Value, e.Reason)
	}
	return fmt.Sprintf("invalid %s %v", e.What, e.Value)
}

// Unwrap returns ErrInvalid.
func (e *InvalidError) Unwrap() error { return ErrInvalid }

// UnsupportedError reports a feature the implementation does not handle.
// UnsupportedError is a plain value: safe to copy and to read from many
// goroutines; do not modify one another goroutine uses.
type UnsupportedError struct {
	Feature string
}

func (e *UnsupportedError) Error() string { return "unsupported: " + e.Feature }

// Unwrap returns ErrUnsupported.
func (e *UnsupportedError) Unwrap() error { return ErrUnsupported }

// LockedError reports that another process holds a conflicting lock on a
// file.
// LockedError is a plain value: safe to copy and to read from many
// goroutines; do not modify one another goroutine uses.
type LockedError struct {
	Path   string
	Detail string
}

func (e *LockedError) Error() string {
	msg := fmt.Sprintf("failed to get lock on %q", e.Path)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg + " (is another process using the image?)"
}

// Unwrap returns ErrLocked.
func (e *LockedError) Unwrap() error { return ErrLocked }

// OpError wraps an operating-system error from an operation on a named
// device. Unwrap yields both the matching sentinel (ErrNoSpace for ENOSPC,
// ErrReadOnly for EROFS/EBADF on a read-only file...) and the errno.
type OpError struct {
	Op   string
	Path string
	Off  int64
	Err  error
}

func (e *OpError) Error() string {
	return fmt.Sprintf("%s %s at offset %d: %v", e.Op, e.Path, e.Off, e.Err)
}

// Unwrap returns the underlying error and, where one applies, the
// sentinel it maps to.
func (e *OpError) Unwrap() []error {
	errs := []error{e.Err}
	if s := sentinelFor(e.Err); s != nil {
		errs = append(errs, s)
	}
	return errs
}

func sentinelFor(err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return nil
	}
	switch errno {
	case syscall.ENOSPC, syscall.EDQUOT:
		return ErrNoSpace
	case syscall.EROFS:
		return ErrReadOnly
	case syscall.EOPNOTSUPP:
		return ErrUnsupported
	case syscall.EINVAL:
		return ErrInvalid
	}
	return nil
}

// CheckRange validates a request of n bytes at off against size and
// returns a *RangeError when it does not fit.
func CheckRange(op string, off, n, size int64) error {
	if off < 0 || n < 0 || off > size || n > size-off {
		return &RangeError{Op: op, Off: off, Len: n, Size: size}
	}
	return nil
}
