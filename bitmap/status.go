package bitmap

// Status is a dirty bitmap's state as QMP reports it (the schema's
// DirtyBitmapStatus). QEMU 2.4 defines active, disabled and frozen; locked
// (QEMU 3.0, our "busy") and inconsistent (QEMU 4.0) are later additions
// of the same enum. When several apply the precedence is
// inconsistent > frozen > locked > disabled > active.
// Status is a plain value: safe to copy and to read from many goroutines; do
// not modify one another goroutine uses.
type Status string

// Status values.
const (
	// StatusActive: recording writes; may be cleared, removed, merged into,
	// or used by a backup.
	StatusActive Status = "active"
	// StatusDisabled: not recording writes; may still be read, cleared,
	// removed or enabled.
	StatusDisabled Status = "disabled"
	// StatusFrozen: has a successor (owned by a backup job); immutable
	// until Abdicate or Reclaim.
	StatusFrozen Status = "frozen"
	// StatusLocked: busy — in use by an operation (an NBD export,
	// migration, a job); users may not modify or remove it.
	StatusLocked Status = "locked"
	// StatusInconsistent: a persistent bitmap that was not stored cleanly
	// (qcow2 in_use flag); its contents are meaningless and it may only be
	// removed.
	StatusInconsistent Status = "inconsistent"
)

// BlockDirtyInfo is the schema's BlockDirtyInfo (query-block's
// "dirty-bitmaps" entries): Name is omitted for anonymous bitmaps, Count is
// dirty bytes (dirty groups × granularity), Granularity is in bytes.
// BlockDirtyInfo is a plain value: safe to copy and to read from many
// goroutines; do not modify one another goroutine uses.
type BlockDirtyInfo struct {
	Name        string `json:"name,omitempty"`
	Count       int64  `json:"count"`
	Granularity uint32 `json:"granularity"`
	Status      Status `json:"status"`
}
