package blockio

// Extent describes a run of bytes with uniform allocation status. It
// mirrors QEMU's BlockDeviceMapEntry (qemu-img map --output=json).
// Extent is a plain value: safe to copy and to read from many goroutines; do
// not modify one another goroutine uses.
type Extent struct {
	// Start and Length are the guest-visible byte range.
	Start, Length int64
	// Data is true when the range is backed by data at this layer or a
	// backing layer (false means it reads as zeros or from nowhere).
	Data bool
	// Zero is true when the range is known to read as zeros.
	Zero bool
	// Allocated is true when this layer (depth 0) or a backing layer at
	// Depth provides the content.
	Allocated bool
	// Offset is the host offset of the data in HostFile, or -1 when unknown
	// or not applicable (compressed, zero, unallocated).
	Offset int64
	// Depth is the number of backing layers below the top at which the
	// content was found; for unallocated ranges, the chain length.
	Depth int
}

// End returns Start + Length.
func (e Extent) End() int64 { return e.Start + e.Length }

// Prealloc selects how much storage Truncate or image creation reserves.
// It mirrors QEMU's PreallocMode.
// Prealloc is a plain value: safe to copy and to read from many goroutines;
// do not modify one another goroutine uses.
type Prealloc int

const (
	// PreallocOff reserves nothing; new space is sparse.
	PreallocOff Prealloc = iota
	// PreallocMetadata allocates format metadata only.
	PreallocMetadata
	// PreallocFalloc reserves space with fallocate without writing it.
	PreallocFalloc
	// PreallocFull writes zeros to every new byte.
	PreallocFull
)

var preallocNames = [...]string{"off", "metadata", "falloc", "full"}

// String returns QEMU's name for the mode.
func (p Prealloc) String() string {
	if p >= 0 && int(p) < len(preallocNames) {
		return preallocNames[p]
	}
	return "invalid"
}

// ParsePrealloc parses QEMU's name of a preallocation mode.
func ParsePrealloc(s string) (Prealloc, error) {
	for i, n := range preallocNames {
		if n == s {
			return Prealloc(i), nil
		}
	}
	return 0, &InvalidError{What: "preallocation", Value: s}
}
