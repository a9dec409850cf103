package blockio

// Device is a fixed-size random-access block device.
//
// ReadAt and WriteAt follow the io.ReaderAt and io.WriterAt contracts: a
// short count always comes with a non-nil error. A read or write that
// starts or ends outside [0, Size()) fails with an error wrapping
// ErrOutOfRange and transfers nothing; a negative offset likewise.
//
// Implementations must be safe for concurrent use by multiple goroutines:
// concurrent requests to disjoint ranges never interfere, and concurrent
// requests to overlapping ranges behave as if executed in some order
// (sector-granular). Flush returns once every write that completed before
// the call is durable. Close releases resources; a closed Device returns
// errors wrapping ErrClosed.
type Device interface {
	ReadAt(p []byte, off int64) (n int, err error)
	WriteAt(p []byte, off int64) (n int, err error)
	Size() int64
	Flush() error
	Close() error
}

// Discarder is implemented by devices that can deallocate a range. After a
// successful Discard the range reads back as zeros or as its previous
// content (a discard is advisory), unless the device documents otherwise.
// Implementations must be safe for concurrent use, like Device.
type Discarder interface {
	Discard(off, n int64) error
}

// ZeroWriter is implemented by devices that can write zeros efficiently.
// When mayUnmap is true the device may deallocate the range as long as it
// reads back as zeros afterwards.
// Implementations must be safe for concurrent use, like Device.
type ZeroWriter interface {
	WriteZeroes(off, n int64, mayUnmap bool) error
}

// StatusReporter is implemented by devices that know which parts of
// themselves are allocated. BlockStatus describes the extent starting at
// off: the returned Extent begins at off and is at most n bytes long (at
// least one byte unless n is 0).
// Implementations must be safe for concurrent use, like Device.
type StatusReporter interface {
	BlockStatus(off, n int64) (Extent, error)
}

// Truncater is implemented by devices whose size can change.
// Implementations must be safe for concurrent use, like Device.
type Truncater interface {
	Truncate(size int64, prealloc Prealloc) error
}
