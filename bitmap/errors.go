package bitmap

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package wraps one of them,
// so callers test with errors.Is.
var (
	// ErrInvalid: an argument is out of its domain (granularity not a power
	// of two, unaligned serialization chunk, short buffer, ...).
	ErrInvalid = errors.New("bitmap: invalid argument")
	// ErrTooLarge: the bitmap would exceed MaxBits stored bits.
	ErrTooLarge = errors.New("bitmap: bitmap too large")
	// ErrSizeMismatch: two bitmaps that must cover the same size do not.
	ErrSizeMismatch = errors.New("bitmap: bitmaps cover different sizes")

	// ErrFrozen: the bitmap has a successor (a backup job owns it); only
	// Abdicate or Reclaim end that state.
	ErrFrozen = errors.New("bitmap is frozen")
	// ErrBusy: the bitmap is in use by an operation (QEMU's "locked").
	ErrBusy = errors.New("bitmap is busy")
	// ErrInconsistent: the bitmap was not saved cleanly; it may only be
	// removed.
	ErrInconsistent = errors.New("bitmap is inconsistent")
	// ErrReadOnly: the bitmap is read-only (e.g. loaded from a read-only
	// image).
	ErrReadOnly = errors.New("bitmap is read-only")
	// ErrExists: a bitmap with that name already exists.
	ErrExists = errors.New("bitmap already exists")
	// ErrNotFound: no bitmap with that name.
	ErrNotFound = errors.New("bitmap not found")
	// ErrNoSuccessor: Abdicate/Reclaim/EnableSuccessor on a bitmap without
	// a successor.
	ErrNoSuccessor = errors.New("bitmap has no successor")
	// ErrReleased: the handle refers to a bitmap that was removed or
	// released (e.g. a successor after Abdicate/Reclaim).
	ErrReleased = errors.New("bitmap was released")
)

// StateError reports an operation refused because of a bitmap's state.
// Unwrap yields the sentinel (ErrFrozen, ErrBusy, ErrInconsistent,
// ErrReadOnly, ErrReleased, ErrNoSuccessor, ErrExists, ErrNotFound).
// StateError is a plain value: safe to copy and to read from many
// goroutines; do not modify one another goroutine uses.
type StateError struct {
	Op   string // "clear", "remove", "create-successor", ...
	Name string // bitmap name ("" for anonymous bitmaps)
	Err  error  // sentinel
}

func (e *StateError) Error() string {
	name := e.Name
	if name == "" {
		name = "(anonymous)"
	}
	return fmt.Sprintf("bitmap: %s %q: %v", e.Op, name, e.Err)
}

// Unwrap returns the sentinel.
func (e *StateError) Unwrap() error { return e.Err }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
