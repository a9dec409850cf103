package blockio

// FileOptions configures OpenFile and CreateFile. The zero value opens the
// file read-write, through the host page cache (cache=writeback), with
// QEMU-compatible image locking.
// FileOptions is a plain value: safe to copy and to read from many
// goroutines; do not modify one another goroutine uses.
type FileOptions struct {
	// ReadOnly opens the file read-only. Writes, discards, zero writes and
	// truncation then fail with an error wrapping ErrReadOnly, and only the
	// shared locks QEMU takes for readers are held.
	ReadOnly bool

	// Direct bypasses the host page cache with O_DIRECT (QEMU's
	// cache=none / cache.direct=on). Requests that are not aligned to the
	// logical block size (see File.BlockSize) go through pooled aligned
	// bounce buffers, so callers may use any offset, length and buffer.
	Direct bool

	// NoLock disables image locking (QEMU's locking=off).
	NoLock bool

	// ForceShare lets a read-only open share every permission, so it
	// succeeds beside writers (QEMU's force-share=on, qemu-img -U). It
	// requires ReadOnly. The data read may be inconsistent while another
	// process writes.
	ForceShare bool

	// Prealloc selects how CreateFile reserves space for the new file
	// (QEMU's preallocation=off|falloc|full; metadata behaves as off for
	// a raw file). OpenFile ignores it.
	Prealloc Prealloc
}

// The permission bits of QEMU's image locking scheme. QEMU holds a shared
// (read) OFD lock on byte LockPermBase+bit for each permission it uses,
// and on byte LockSharedBase+bit for each permission it does not let
// other users have. A user that wants permission P fails when another
// process holds byte LockSharedBase+P; a user that refuses to share P fails
// when another process holds byte LockPermBase+P.
const (
	LockPermBase   = 100 // first byte of the "permission used" range
	LockSharedBase = 200 // first byte of the "permission not shared" range

	PermConsistentRead = 1 << 0 // "consistent read"
	PermWrite          = 1 << 1 // "write"
	PermWriteUnchanged = 1 << 2 // "write unchanged"
	PermResize         = 1 << 3 // "resize"
	PermGraphMod       = 1 << 4 // "change children" (QEMU before 6.1)
	PermAll            = PermConsistentRead | PermWrite | PermWriteUnchanged | PermResize | PermGraphMod
)

var permNames = [...]string{"consistent read", "write", "write unchanged", "resize", "change children"}

// lockPerms returns the permissions a File takes and the ones it refuses
// to share (none with force-share), mirroring what QEMU holds on the protocol node under a format
// driver (qemu-img, qemu-io and QEMU itself on a qcow2 image): readers take
// "consistent read" and do not share "write" and "resize"; writers also
// take "write" and "resize".
func lockPerms(readOnly, forceShare bool) (perm, unshared uint64) {
	perm = PermConsistentRead
	if !readOnly {
		perm |= PermWrite | PermResize
	}
	if forceShare {
		return perm, 0
	}
	return perm, PermWrite | PermResize
}

func permName(bit int) string {
	if bit < len(permNames) {
		return permNames[bit]
	}
	return "unknown"
}
